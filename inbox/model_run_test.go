package inbox

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// The runner of TestModel: it applies operations to two stores (A and B,
// one Redis, one key prefix) and to the model, and checks every answer
// (see model_check_test.go). Polls that wait run in the background while
// the operations go on, so that publishes land during their waits.

// modelClock is the stores' clock in the model test. Unlike fakeClock it
// stands still between advances: expiry must happen exactly when the
// model says, not when the machine gets round to it.
type modelClock struct {
	base   time.Time
	offset atomic.Int64
}

func (c *modelClock) Now() time.Time { return c.base.Add(time.Duration(c.offset.Load())) }

func (c *modelClock) Advance(d time.Duration) { c.offset.Add(int64(d)) }

// modelFaults decides which wake-ups B loses: those of publishes whose
// title was registered (the title rides in the wake-up), and a number of
// read-state wake-ups per user. The decisions come from the operations,
// so a prefix of them replays the same losses (as far as timing allows).
type modelFaults struct {
	titles  sync.Map // title → struct{}
	mu      sync.Mutex
	state   map[string]int // read-state wake-up payload → how many more to lose
	dropped atomic.Int64
}

// modelTitle is the title of the message operation i publishes; titleLen
// is its length, which drop relies on.
func modelTitle(i int) string { return fmt.Sprintf("model#%06d", i) }

const titleLen = len("model#000000")

func (f *modelFaults) drop(payload string) bool {
	if i := strings.Index(payload, "model#"); i >= 0 {
		if i+titleLen > len(payload) {
			return false
		}
		if _, ok := f.titles.Load(payload[i : i+titleLen]); ok {
			f.dropped.Add(1)
			return true
		}
		return false
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.state[payload] > 0 {
		f.state[payload]--
		f.dropped.Add(1)
		return true
	}
	return false
}

func (f *modelFaults) loseState(payload string) {
	f.mu.Lock()
	f.state[payload]++
	f.mu.Unlock()
}

// forgetState clears pending losses: after a cut subscription the
// wake-ups they were meant for are lost anyway.
func (f *modelFaults) forgetState() {
	f.mu.Lock()
	clear(f.state)
	f.mu.Unlock()
}

// modelClient is one simulated tab or device.
type modelClient struct {
	idx    int
	user   int
	cursor string
	pos    map[string]int // per model stream: entries the client is past
	saved  []clientSnap   // earlier cursors, for rewinds
	bg     *bgPoll        // the poll waiting in the background, if any
	// shown: messages the client got since it last started over and not
	// yet heard were revoked (a client removes a message when told).
	shown map[*modelMsg]bool
}

type clientSnap struct {
	cursor string
	pos    map[string]int
}

func (c *modelClient) moveTo(cursor string, pos map[string]int) {
	c.cursor, c.pos = cursor, pos
	c.saved = append(c.saved, clientSnap{cursor, maps.Clone(pos)})
	if len(c.saved) > 8 {
		c.saved = c.saved[1:]
	}
}

// modelStats are a run's figures, for the log and the checks on them.
// Per-store figures are indexed by instance (0 = A, 1 = B).
type modelStats struct {
	ops, pollsNow, longWaits, emptyWaits int
	// waited: answers of waiting polls; tolerated: those whose unread
	// count was of a moment before the answer, and countAge how long
	// before at most (see checkWaited).
	waited, tolerated [2]int
	countAge          [2]time.Duration
	// leftOut: the age of the oldest owed message an answer with room for
	// it left out; the check allows trust + slack. slowest: the longest a
	// message a waiting poll returned had been there while the poll was.
	leftOut, slowest [2]time.Duration
	// maxOverrun, maxStall: the most a waiting poll overran its wait, and
	// the longest stall of the machine during one (see stallMeter).
	maxOverrun, maxStall time.Duration
	dropped              int64
}

// modelFailure is a run's first failed check.
type modelFailure struct {
	op  int // index of the operation at which it was found; len(ops) = the final checks
	err error
}

type modelRun struct {
	ctx          context.Context
	st           [2]*Store
	clock        *modelClock
	m            *model
	faults       *modelFaults
	stalls       *stallMeter
	readers      [modelUsers]Reader
	clients      []*modelClient
	trust, slack time.Duration
	notes        []string // per operation: what it resolved to and got
	cur          int
	stats        modelStats
}

// modelSetup is what one run needs besides its operations.
type modelSetup struct {
	rdb          redis.UniversalClient
	prefix       string
	seed         int64
	trust, slack time.Duration
}

// runModel runs ops on two fresh stores under su.prefix and returns the
// first failure (nil if none), the operations' notes and the figures.
// Errors of the setup itself fail the test at once.
func runModel(ctx context.Context, fatal func(string, ...any), su modelSetup, ops []modelOp) (*modelFailure, []string, *modelStats) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	clock := &modelClock{base: time.Now().Add(5 * time.Minute).Truncate(time.Millisecond)}
	faults := &modelFaults{state: map[string]int{}}
	r := &modelRun{ctx: ctx, clock: clock, m: newModel(modelGroupsOf(su.seed)), faults: faults,
		trust: su.trust, slack: su.slack, notes: make([]string, len(ops)+1)}
	r.m.nowMS = ms(clock.Now())
	r.stalls = &stallMeter{}
	var meter sync.WaitGroup
	meter.Go(func() { r.stalls.run(ctx) })
	defer func() { cancel(); meter.Wait() }()
	defer func() { r.stats.dropped = faults.dropped.Load() }()
	hubCtx, stopHubs := context.WithCancel(context.Background())
	var hubs sync.WaitGroup
	for i := range r.st {
		// Large caps: trimming is not what this test is about.
		s := New(su.rdb, Options{Prefix: su.prefix, MaxLen: 1 << 20, UnreadScan: 1 << 20, TrustFor: su.trust, Now: clock.Now})
		if i == 1 {
			s.Hub().drop = faults.drop
			// B's channels come and go between polls too: its linger is
			// shorter than the pauses between a client's polls.
			s.Hub().Linger = 20 * time.Millisecond
		}
		r.st[i] = s
		hubs.Go(func() { s.Hub().Run(hubCtx) })
	}
	defer func() {
		r.stopPolls(cancel)
		stopHubs()
		hubs.Wait()
		for _, s := range r.st {
			s.Close()
		}
	}()
	for deadline := time.Now().Add(10 * time.Second); !r.st[0].Hub().Connected() || !r.st[1].Hub().Connected(); {
		if time.Now().After(deadline) {
			fatal("model: hubs not subscribed after 10 s")
		}
		time.Sleep(2 * time.Millisecond) // Connected offers nothing to wait on
	}
	for u := range modelUsers {
		r.readers[u] = Reader{User: userName(u)}
		for _, g := range r.m.groupsOf[u] {
			r.readers[u].Groups = append(r.readers[u].Groups, groupName(g))
		}
	}
	// Every client starts at the (empty) tails.
	for i := range modelClients {
		c := &modelClient{idx: i, user: i / modelClientsPerUser}
		r.clients = append(r.clients, c)
		if err := r.restartEmpty(c, i%2); err != nil {
			return &modelFailure{op: 0, err: fmt.Errorf("first poll of c%d: %w", i, err)}, r.notes, &r.stats
		}
	}
	for i, op := range ops {
		r.cur = i
		if err := r.collect(); err != nil {
			return &modelFailure{op: i, err: err}, r.notes, &r.stats
		}
		if err := r.step(i, op); err != nil {
			return &modelFailure{op: i, err: err}, r.notes, &r.stats
		}
		r.stats.ops++
	}
	r.cur = len(ops)
	if err := r.finish(); err != nil {
		return &modelFailure{op: len(ops), err: err}, r.notes, &r.stats
	}
	return nil, r.notes, &r.stats
}

func (r *modelRun) notef(format string, args ...any) {
	if r.notes[r.cur] != "" {
		r.notes[r.cur] += "; "
	}
	r.notes[r.cur] += fmt.Sprintf(format, args...)
}

// stopPolls ends the background polls (cancelling them) and waits for them.
func (r *modelRun) stopPolls(cancel context.CancelFunc) {
	cancel()
	for _, c := range r.clients {
		if c.bg != nil {
			<-c.bg.done
		}
	}
}

func (r *modelRun) step(i int, op modelOp) error {
	switch op.kind {
	case opPublish:
		return r.publishNew(i, op)
	case opRetry:
		return r.retry(i, op)
	case opPoll:
		c := r.clients[op.client]
		if err := r.await(c); err != nil {
			return err
		}
		if op.wait == 0 {
			_, err := r.pollNow(c, op.inst, op.limit)
			return err
		}
		r.startWait(i, c, op)
		return nil
	case opRead:
		return r.markRead(op)
	case opReadAll:
		return r.markAll(op)
	case opDelete:
		return r.remove(op)
	case opUnread:
		n, _, err := r.st[op.inst].UnreadCounts(r.ctx, r.readers[op.user])
		if err != nil {
			return fmt.Errorf("Unread: %w", err)
		}
		r.notef("unread %d %v", n.Total, n.ByType)
		return r.exactCount("Unread", op.inst, op.user, n.Total, n.ByType)
	case opHistory:
		return r.history(op)
	case opRestart:
		return r.restart(op)
	case opAdvance:
		start := time.Now()
		r.clock.Advance(op.advance)
		sp := span{start, time.Now()}
		r.m.advance(ms(r.clock.Now()), sp)
		r.m.recordCounts(r.cur, sp)
		return nil
	case opKick:
		if op.mode == 1 {
			s := r.st[op.inst]
			s.Hub().kickOne(s.k.inbox(userName(op.to[0])))
		} else {
			r.st[1].Hub().kick()
		}
		r.faults.forgetState()
		return nil
	case opExpire:
		r.st[op.inst].Hub().expireIdle()
		return nil
	case opProbe:
		return r.probe(i, op)
	case opRevoke:
		return r.revoke(i, op)
	}
	return fmt.Errorf("unknown operation kind %d", op.kind)
}

func (r *modelRun) publishNew(i int, op modelOp) error {
	p := idemPub{target: op.target, to: op.to, sender: op.sender, op: i,
		draft: Draft{Title: modelTitle(i), Type: modelTypes[op.typ], Sender: modelSenders[op.sender], ExpiresIn: op.expires}}
	if op.idem {
		p.key = fmt.Sprintf("k%d", i)
		r.m.idemPubs = append(r.m.idemPubs, p)
	}
	return r.publish(i, op.inst, p, op.drop)
}

func (r *modelRun) retry(i int, op modelOp) error {
	if len(r.m.idemPubs) == 0 {
		r.notef("no idempotent publish yet: publishes anew")
		op.idem = true
		return r.publishNew(i, op)
	}
	p := r.m.idemPubs[op.picks[0]%len(r.m.idemPubs)]
	switch op.mode {
	case retryExtra:
		switch p.target {
		case 'u':
			p.to = append(append([]int(nil), p.to...), op.picks[1]%modelUsers)
		case 'g':
			p.to = append(append([]int(nil), p.to...), op.picks[1]%modelGroups)
		}
	case retryOther:
		p.sender = 1 - p.sender
		p.draft.Sender = modelSenders[p.sender]
		r.m.idemPubs = append(r.m.idemPubs, p)
	}
	r.notef("retries op #%d's key %s to %s %v as %s", p.op, p.key, string(p.target), p.to, p.draft.Sender)
	// The draft's title is the original's, and so is the decision to
	// lose its wake-ups.
	return r.publish(i, op.inst, p, false)
}

func (r *modelRun) publish(i, inst int, p idemPub, drop bool) error {
	if drop {
		r.faults.titles.Store(p.draft.Title, struct{}{})
	}
	tgt := Target{Broadcast: p.target == 'b'}
	for _, x := range p.to {
		switch p.target {
		case 'u':
			tgt.Users = append(tgt.Users, userName(x))
		case 'g':
			tgt.Groups = append(tgt.Groups, groupName(x))
		}
	}
	var expiresAt int64
	if p.draft.ExpiresIn > 0 {
		expiresAt = ms(r.clock.Now().Add(p.draft.ExpiresIn))
	}
	start := time.Now()
	ids, err := r.st[inst].Publish(r.ctx, tgt, p.draft, p.key, testMaxBody)
	sp := span{start, time.Now()}
	if err != nil {
		return fmt.Errorf("Publish: %w", err)
	}
	r.notef("ids %v", ids)
	if err := r.m.published(i, r.m.destStreams(p.target, p.to), ids, p, expiresAt, drop, sp); err != nil {
		return err
	}
	r.m.recordCounts(r.cur, sp)
	return nil
}

func (r *modelRun) markRead(op modelOp) error {
	msgs := r.m.userMsgs(op.user)
	if len(msgs) == 0 {
		r.notef("nothing to read")
		return nil
	}
	var ids []string
	var picked []*modelMsg
	for _, p := range op.picks {
		msg := msgs[p%len(msgs)]
		picked = append(picked, msg)
		ids = append(ids, msg.id)
	}
	r.notef("ids %v", ids)
	if op.drop {
		r.faults.loseState(r.st[0].k.read(userName(op.user)))
	}
	start := time.Now()
	n, err := r.st[op.inst].MarkReadCounts(r.ctx, r.readers[op.user], ids, false)
	sp := span{start, time.Now()}
	if err != nil {
		return fmt.Errorf("MarkRead(%v): %w", ids, err)
	}
	r.m.markRead(op.user, picked, sp)
	r.m.recordCounts(r.cur, sp)
	return r.exactCount("MarkRead", op.inst, op.user, n.Total, n.ByType)
}

func (r *modelRun) markAll(op modelOp) error {
	if op.drop {
		r.faults.loseState(r.st[0].k.read(userName(op.user)))
	}
	start := time.Now()
	n, err := r.st[op.inst].MarkReadCounts(r.ctx, r.readers[op.user], nil, true)
	sp := span{start, time.Now()}
	if err != nil {
		return fmt.Errorf("MarkRead(all): %w", err)
	}
	r.m.readAll(op.user, sp)
	r.m.recordCounts(r.cur, sp)
	return r.exactCount("MarkRead(all)", op.inst, op.user, n.Total, n.ByType)
}

func (r *modelRun) remove(op modelOp) error {
	msgs := r.m.userMsgs(op.user)
	if len(msgs) == 0 {
		r.notef("nothing to delete")
		return nil
	}
	msg := msgs[op.picks[0]%len(msgs)]
	r.notef("id %s", msg.id)
	if op.drop {
		r.faults.loseState(r.st[0].k.read(userName(op.user)))
	}
	start := time.Now()
	err := r.st[op.inst].Delete(r.ctx, r.readers[op.user], msg.id)
	sp := span{start, time.Now()}
	already := r.m.remove(op.user, msg, sp) || msg.revoked != nil
	r.m.recordCounts(r.cur, sp)
	switch {
	case already && !errors.Is(err, ErrNotFound):
		return fmt.Errorf("Delete(%s) of a message already deleted: err = %v, want ErrNotFound", msg, err)
	case !already && err != nil:
		return fmt.Errorf("Delete(%s): %w", msg, err)
	}
	return nil
}

// revoke revokes a picked message that is not revoked yet, as Withdraw
// does for each stream a publish wrote to. Its tombstone carries the
// operation's title as pid, so that B can lose its wake-up like a
// publish's.
func (r *modelRun) revoke(i int, op modelOp) error {
	var live []*modelMsg
	for _, msg := range r.m.all {
		if msg.revoked == nil {
			live = append(live, msg)
		}
	}
	if len(live) == 0 {
		r.notef("nothing to revoke")
		return nil
	}
	msg := live[op.picks[0]%len(live)]
	r.notef("id %s", msg.id)
	s := r.st[op.inst]
	t := revokeTarget{entry: fmt.Sprintf("%d-%d", msg.ms, msg.seq), pid: modelTitle(i), sender: modelSenders[0]}
	switch {
	case msg.stream == "b":
		t.st = s.k.broadcastStream()
	case isInbox(msg.stream):
		u, _ := strconv.Atoi(strings.TrimPrefix(msg.stream, "in:"))
		t.user = userName(u)
		t.st = s.k.userStream(t.user)
	default:
		g, _ := strconv.Atoi(strings.TrimPrefix(msg.stream, "g:"))
		t.st = s.k.groupStream(groupName(g))
	}
	if op.drop {
		r.faults.titles.Store(modelTitle(i), struct{}{})
	}
	start := time.Now()
	wrote, err := s.revokeStreams(r.ctx, []revokeTarget{t})
	sp := span{start, time.Now()}
	// Whatever the outcome, the message may be gone from now on.
	msg.revoked = &sp
	r.m.recordCounts(r.cur, sp)
	if err != nil {
		return fmt.Errorf("revoke %s: %w", msg, err)
	}
	// Its own deletion or expiry does not remove the entry (expiry only
	// hides it; a shared message's deletion only hides it for one user),
	// but an inbox deletion does: then there is nothing to revoke.
	deleted := false
	if isInbox(msg.stream) {
		u, _ := strconv.Atoi(strings.TrimPrefix(msg.stream, "in:"))
		deleted = r.m.relOf(u, msg).gone != nil
	}
	if wrote[0] == deleted {
		return fmt.Errorf("revoke %s wrote a tombstone: %v, want %v (deleted from its inbox: %v)", msg, wrote[0], !deleted, deleted)
	}
	return nil
}
