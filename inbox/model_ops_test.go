package inbox

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"time"
)

// The operations of the model-based delivery test (see TestModel). They
// are generated up front from a seed, each from the same number of random
// draws whatever the list's length, so that any prefix of a list replays
// the same operations with the same picks and fault decisions. Picks of
// messages and clients are plain random numbers, resolved against the
// model when the operation runs (the model is deterministic).

// The model's universe: small, so that recipients, groups and clients
// collide often.
const (
	modelUsers          = 4
	modelGroups         = 3
	modelClientsPerUser = 3
	modelClients        = modelUsers * modelClientsPerUser
)

var (
	modelTypes   = []string{"notification", "like"}
	modelSenders = []string{"svc-a", "svc-b"}
	modelLimits  = []int{1, 2, 3, 5, 10, 100}
)

type opKind uint8

const (
	opPublish opKind = iota
	opRetry          // publish again with an earlier idempotency key
	opPoll
	opRead    // MarkRead by ids
	opReadAll // MarkRead all
	opDelete
	opUnread
	opHistory
	opRestart // a client starts over from a new or an old cursor
	opAdvance // the store's clock moves on
	opKick    // B's pub/sub connections, or the one carrying a user's inbox on either instance, are cut
	opProbe   // a long wait on B meets a change B loses the wake-up of, in quiet
	opRevoke  // the publisher revokes a picked message from its stream
	opExpire  // an instance's lingering channels (no poll waits on them) are unsubscribed at once
)

// Restart modes.
const (
	restartEmpty   = iota // poll without a cursor
	restartUnread         // the cursor Unread returns
	restartHistory        // the cursor History returns
	restartRewind         // one of the client's own earlier cursors
	restartFork           // another client's cursor (of the same user)
	restartModes
)

// Retry modes.
const (
	retrySame  = iota
	retryExtra // one more recipient
	retryOther // the same key from the other sender: a new message
)

// Probe modes: what changes while the probe's poll waits.
const (
	probeInbox  = iota // a message to the user
	probeShared        // a message to everyone or to one of the user's groups
	probeRead          // the user marks all read
	// The user marks all read, and the polls are on A, which loses no
	// wake-ups, with a wait shorter than the trust bound: the answer must
	// have the new count all the same.
	probeReadOnA
	probeModes
)

// modelOp is one operation. Fields not used by its kind are zero.
type modelOp struct {
	kind    opKind
	inst    int           // store it runs on: 0 = A, 1 = B (the one whose wake-ups are lost)
	client  int           // opPoll, opRestart, opProbe
	user    int           // opRead, opReadAll, opDelete, opUnread, opHistory
	target  byte          // opPublish, opRetry: 'u' users, 'g' groups, 'b' broadcast
	to      []int         // opPublish: user or group indices, may repeat; opRetry: the extra one
	idem    bool          // opPublish: with an idempotency key
	sender  int           // opPublish
	typ     int           // opPublish
	expires time.Duration // opPublish: 0 = never
	drop    bool          // B loses this operation's wake-ups
	limit   int           // opPoll, opHistory, opProbe
	wait    time.Duration // opPoll, opProbe
	picks   []int         // random numbers resolved against the model
	mode    int           // opRestart, opRetry, opProbe; opHistory: bit 0 unread only, bit 1 by type
	advance time.Duration // opAdvance
}

var modelMix = []struct {
	kind   opKind
	weight int
}{
	{opPublish, 27}, {opRetry, 4}, {opPoll, 34}, {opRead, 6}, {opReadAll, 2}, {opDelete, 5},
	{opUnread, 6}, {opHistory, 4}, {opRestart, 4}, {opAdvance, 2}, {opKick, 2},
	{opProbe, 1}, {opRevoke, 2}, {opExpire, 3},
}

// modelGroupsOf returns each user's groups (indices), drawn from the seed.
func modelGroupsOf(seed int64) [][]int {
	rng := rand.New(rand.NewPCG(uint64(seed), 1))
	out := make([][]int, modelUsers)
	for u := range out {
		for g := 0; g < modelGroups; g++ {
			if rng.IntN(2) == 0 {
				out[u] = append(out[u], g)
			}
		}
	}
	return out
}

// genModelOps returns the first n operations of seed's sequence, for
// stores whose trust bound is trust (waits are drawn relative to it).
func genModelOps(seed int64, n int, trust time.Duration) []modelOp {
	rng := rand.New(rand.NewPCG(uint64(seed), 2))
	total := 0
	for _, m := range modelMix {
		total += m.weight
	}
	ops := make([]modelOp, n)
	for i := range ops {
		x := rng.IntN(total)
		kind := modelMix[0].kind
		for _, m := range modelMix {
			if x < m.weight {
				kind = m.kind
				break
			}
			x -= m.weight
		}
		ops[i] = genModelOp(rng, kind, trust)
	}
	return ops
}

func genModelOp(rng *rand.Rand, kind opKind, trust time.Duration) modelOp {
	// Every field is drawn for every kind, so each operation consumes the
	// same draws and a change in one kind's use of them cannot shift the
	// rest of the sequence.
	op := modelOp{
		kind:    kind,
		inst:    rng.IntN(2),
		client:  rng.IntN(modelClients),
		user:    rng.IntN(modelUsers),
		idem:    rng.IntN(10) < 3,
		typ:     rng.IntN(len(modelTypes)),
		drop:    rng.IntN(10) < 3,
		limit:   modelLimits[rng.IntN(len(modelLimits))],
		picks:   []int{rng.IntN(1 << 20), rng.IntN(1 << 20), rng.IntN(1 << 20)},
		advance: time.Duration(300+rng.IntN(3700)) * time.Millisecond,
	}
	if rng.IntN(5) == 0 {
		op.sender = 1
	}
	if rng.IntN(5) == 0 {
		op.expires = time.Duration(2+rng.IntN(15)) * 500 * time.Millisecond
	}
	// One poll in five waits. Most waits are shorter than the trust bound
	// (0.1 to 1.5 times it); one in eight lasts 2 to 3 times it (as does
	// every probe's), so that a message whose wake-up was lost early in
	// the wait is owed well before the wait ends (the store must re-read
	// within the trust bound). Few, because a long wait holds up the run
	// when its client comes round before it ends.
	wait := trust * time.Duration(100+rng.IntN(1401)) / 1000
	longWait := trust * time.Duration(2000+rng.IntN(1001)) / 1000
	if rng.IntN(8) == 0 {
		wait = longWait
	}
	waits := rng.IntN(5) == 0
	switch t := rng.IntN(6); {
	case t < 3:
		op.target = 'u'
	case t < 5:
		op.target = 'g'
	default:
		op.target = 'b'
	}
	nTo := 1 + rng.IntN(3)
	to := []int{rng.IntN(modelUsers), rng.IntN(modelUsers), rng.IntN(modelUsers)}
	mode := rng.IntN(20)
	nPicks := 1 + rng.IntN(3)

	switch kind {
	case opPublish, opRetry:
		switch op.target {
		case 'u':
			op.to = to[:nTo]
		case 'g':
			op.to = to[:1+nTo%2]
			for j := range op.to {
				op.to[j] %= modelGroups
			}
		}
		if kind == opRetry {
			switch {
			case mode < 12:
				op.mode = retrySame
			case mode < 17:
				op.mode = retryExtra
			default:
				op.mode = retryOther
			}
		}
	case opPoll:
		if waits {
			op.wait = wait
		}
	case opRead:
		op.picks = op.picks[:nPicks]
	case opHistory:
		op.limit = []int{3, 10, 50}[mode%3]
		switch {
		case mode < 12:
			op.mode = 0
		case mode < 15:
			op.mode = 1
		case mode < 18:
			op.mode = 2
		default:
			op.mode = 3
		}
	case opRestart:
		op.mode = mode % restartModes
	case opProbe:
		op.wait, op.mode = longWait, mode%probeModes
	case opKick:
		op.mode, op.to = mode%2, to[:1]
	}
	return op
}

func instName(i int) string { return string(rune('A' + i)) }

func userName(u int) string { return fmt.Sprintf("u%d", u) }

func groupName(g int) string { return fmt.Sprintf("g%d", g) }

// String describes the operation readably (as the failure report lists it).
func (op modelOp) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s ", instName(op.inst))
	drop := ""
	if op.drop {
		drop = " [B loses its wake-ups]"
	}
	switch op.kind {
	case opPublish, opRetry:
		if op.kind == opRetry {
			b.WriteString("retry (" + [...]string{"same target", "one more recipient", "other sender"}[op.mode] + ") or else ")
		}
		b.WriteString("publish to ")
		switch op.target {
		case 'u':
			names := make([]string, len(op.to))
			for i, u := range op.to {
				names[i] = userName(u)
			}
			b.WriteString("users " + strings.Join(names, ","))
		case 'g':
			names := make([]string, len(op.to))
			for i, g := range op.to {
				names[i] = groupName(g)
			}
			b.WriteString("groups " + strings.Join(names, ","))
		default:
			b.WriteString("everyone")
		}
		fmt.Fprintf(&b, " type=%s sender=%s", modelTypes[op.typ], modelSenders[op.sender])
		if op.idem {
			b.WriteString(" idempotent")
		}
		if op.expires > 0 {
			fmt.Fprintf(&b, " expires_in=%v", op.expires)
		}
		b.WriteString(drop)
	case opPoll:
		fmt.Fprintf(&b, "poll c%d (%s) limit=%d wait=%v", op.client, userName(op.client/modelClientsPerUser), op.limit, op.wait)
		if op.wait > 0 {
			b.WriteString(" (in the background)")
		}
	case opRead:
		fmt.Fprintf(&b, "mark read %s: %d picked messages%s", userName(op.user), len(op.picks), drop)
	case opReadAll:
		fmt.Fprintf(&b, "mark all read %s%s", userName(op.user), drop)
	case opDelete:
		fmt.Fprintf(&b, "delete for %s: a picked message%s", userName(op.user), drop)
	case opUnread:
		fmt.Fprintf(&b, "unread %s", userName(op.user))
	case opHistory:
		fmt.Fprintf(&b, "history %s limit=%d", userName(op.user), op.limit)
		if op.mode&1 != 0 {
			b.WriteString(" unread=true")
		}
		if op.mode&2 != 0 {
			b.WriteString(" type=" + modelTypes[op.picks[0]%len(modelTypes)])
		}
	case opRestart:
		how := [...]string{"without a cursor", "from Unread's cursor", "from History's cursor",
			"from one of its earlier cursors", "from another client's cursor"}[op.mode]
		fmt.Fprintf(&b, "client c%d (%s) starts over %s", op.client, userName(op.client/modelClientsPerUser), how)
	case opProbe:
		inst, wait := op.probeOn()
		fmt.Fprintf(&b, "probe: poll c%d (%s) on %s limit=%d at once, then ", op.client, userName(op.client/modelClientsPerUser), instName(inst), op.limit)
		switch op.mode {
		case probeInbox:
			b.WriteString("a publish to its user")
		case probeShared:
			b.WriteString("a publish to everyone or one of its user's groups")
		default:
			b.WriteString("its user marks all read")
		}
		fmt.Fprintf(&b, " [B loses its wake-ups], then poll on %s wait=%v, and nothing else until it answers", instName(inst), wait)
		return b.String()
	case opRevoke:
		fmt.Fprintf(&b, "revoke a picked message%s", drop)
	case opAdvance:
		return fmt.Sprintf("clock +%v", op.advance)
	case opKick:
		if op.mode == 1 {
			return fmt.Sprintf("%sthe pub/sub connection carrying %s's inbox is cut", b.String(), userName(op.to[0]))
		}
		return "B's pub/sub connections are cut"
	case opExpire:
		return b.String() + "lingering wake-up channels are unsubscribed"
	}
	return b.String()
}

// probeOn returns the store a probe polls and how long its poll waits.
func (op modelOp) probeOn() (inst int, wait time.Duration) {
	if op.mode == probeReadOnA {
		return 0, op.wait * 3 / 10
	}
	return 1, op.wait
}
