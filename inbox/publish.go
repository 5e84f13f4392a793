package inbox

import (
	"context"
	"fmt"
	"strconv"
	"time"
)

// Limits on message bytes carried in wake-ups: per message, and summed
// over the streams of one publish.
const (
	maxInlineFields = 2 << 10
	maxInlineFanout = 2 << 20
)

// wakeFields encodes entry fields the way wake-ups carry them, as
// "<len>:<bytes>" each (see publishScript). It is built once here rather
// than in the script, which would redo it for every recipient.
func wakeFields(fv []any) string {
	n := 0
	for _, v := range fv {
		n += len(v.(string)) + 8
	}
	b := make([]byte, 0, n)
	for _, v := range fv {
		str := v.(string)
		b = strconv.AppendInt(b, int64(len(str)), 10)
		b = append(b, ':')
		b = append(b, str...)
	}
	return string(b)
}

// MaxRecipients is the default cap on users in one publish.
const MaxRecipients = 10000

// ValidIdempotencyKey reports whether k may be used as an idempotency key:
// 1–128 characters from [A-Za-z0-9_.:@-].
func ValidIdempotencyKey(k string) bool { return len(k) <= MaxKeyLen && ValidGroup(k) }

// PublishOptions are the options of PublishWith.
type PublishOptions struct {
	IdemKey string    // client idempotency key, or ""
	SendAt  time.Time // zero or not after now: deliver now
	MaxBody int       // bound on body plus data bytes
	Owner   Owner     // who publishes
}

// PublishResult is what PublishWith did.
type PublishResult struct {
	PublishID string
	IDs       []string // one per input recipient; empty unless State is sent
	Count     int      // input recipients (1 for broadcast)
	State     string   // sent, scheduled, revoked or cancelled
	SendAt    time.Time
}

// Publish appends the draft to each target stream, as PublishWith does,
// and returns the message ids, but keeps no publish record: the entries
// cannot be withdrawn or listed by their sender (pollbox's HTTP API uses
// PublishWith).
func (s *Store) Publish(ctx context.Context, t Target, d Draft, idemKey string, maxBody int) ([]string, error) {
	r, err := s.PublishWith(ctx, t, d, PublishOptions{IdemKey: idemKey, MaxBody: maxBody})
	return r.IDs, err
}

// PublishWith appends the draft to each target stream: one entry per
// listed user's inbox, one per group stream, or one in the broadcast
// stream, and records the publish under o.Owner (see pubrec.go). IDs are
// the public message ids, one per target in the order given (duplicates
// in the list get the same id). It returns only after Redis has accepted
// every entry; on error some entries may exist, and a retry with the same
// idempotency key completes the rest without copies.
//
// With o.SendAt in the future (at most Retention ahead) nothing is
// written to the streams: the publish is recorded as scheduled and a
// scheduler delivers it when due (see schedule.go). A zero o.Owner
// publishes now without a record (see Publish).
func (s *Store) PublishWith(ctx context.Context, t Target, d Draft, o PublishOptions) (PublishResult, error) {
	if err := d.Validate(o.MaxBody); err != nil {
		return PublishResult{}, err
	}
	if o.IdemKey != "" && !ValidIdempotencyKey(o.IdemKey) {
		return PublishResult{}, fmt.Errorf("%w: idempotency_key must be 1-%d characters of [A-Za-z0-9_.:@-]", ErrInvalid, MaxKeyLen)
	}
	rt, err := s.resolveTargets(t)
	if err != nil {
		return PublishResult{}, err
	}
	now := s.opt.Now()
	if !o.SendAt.IsZero() && o.SendAt.After(now.Add(s.opt.Retention)) {
		return PublishResult{}, fmt.Errorf("%w: send_at more than %v ahead", ErrInvalid, s.opt.Retention)
	}
	if !o.SendAt.IsZero() && o.SendAt.After(now) {
		if !o.Owner.valid() {
			return PublishResult{}, fmt.Errorf("%w: a scheduled publish needs an owner", ErrInvalid)
		}
		return s.schedule(ctx, t, d, o, rt, now)
	}
	res := PublishResult{Count: len(rt.order), State: "sent"}
	if !o.Owner.valid() {
		// No record: the streams alone, as before records existed.
		idem := ""
		if o.IdemKey != "" {
			idem = d.Sender + ":" + o.IdemKey
		}
		es, err := s.writeStreams(ctx, d, rt, idem, "")
		if err != nil {
			return PublishResult{}, err
		}
		res.IDs = rt.publicIDs(es)
		return res, nil
	}
	rec := s.newPubRecord(o.Owner, d, t, rt, now, time.Time{}, o.IdemKey)
	if s.oneCall(rt) {
		r, ok, err := s.publishOne(ctx, d, rt, rec, now, o.IdemKey)
		if err != nil {
			return PublishResult{}, err
		}
		if ok {
			return r, nil
		}
		// An earlier publish under the same idempotency key: answered below.
	}
	rec, err = s.begin(ctx, rec, now, o.IdemKey, nil, nil)
	if err != nil {
		return PublishResult{}, err
	}
	res.PublishID = rec.p.String()
	if rec.f["send_at"] != "" {
		// An idempotent retry of a scheduled publish: never written from here.
		return s.scheduledAnswer(ctx, rec, rt, res)
	}
	switch st := rec.f["state"]; st {
	case "sending", "sent":
	case "":
		return PublishResult{}, fmt.Errorf("%w: publish record %s is gone", ErrUnavailable, rec.p)
	default: // revoking, revoked, cancelled
		if st == "revoking" {
			st = "revoked"
		}
		res.State, res.IDs = st, []string{}
		return res, nil
	}
	es, err := s.writeStreams(ctx, d, rt, rec.streamIdem(), rec.p.String())
	if err != nil {
		return PublishResult{}, err
	}
	if s.testHook != nil && s.testHook("written", rec.p.String()) {
		return PublishResult{}, fmt.Errorf("%w: stopped by a test", ErrUnavailable)
	}
	_, st, err := s.finishPublish(ctx, rec, rt, es)
	if err != nil {
		return PublishResult{}, err
	}
	if st == "revoked" {
		res.State, res.IDs = st, []string{}
		return res, nil
	}
	res.IDs = rt.publicIDs(es)
	return res, nil
}

// targets are a publish's distinct streams and, for each input
// recipient, the index of its stream.
type targets struct {
	streams []stream
	users   []string // user of each stream (kind 'u'), else ""
	order   []int
}

// rcpt is stream i's field in the recipient hash: the user id, g.<group> or b.
func (rt *targets) rcpt(i int) string {
	if st := rt.streams[i]; st.kind != 'u' {
		return st.name
	}
	return rt.users[i]
}

// publicIDs maps the streams' entry ids to the input recipients' message ids.
func (rt *targets) publicIDs(es []entryID) []string {
	out := make([]string, len(rt.order))
	for j, i := range rt.order {
		out[j] = rt.streams[i].publicID(es[i])
	}
	return out
}

// resolveTargets validates t and resolves it to distinct streams,
// remembering each input's slot.
func (s *Store) resolveTargets(t Target) (*targets, error) {
	n := 0
	if len(t.Users) > 0 {
		n++
	}
	if len(t.Groups) > 0 {
		n++
	}
	if t.Broadcast {
		n++
	}
	if n != 1 {
		return nil, fmt.Errorf("%w: exactly one of to, groups, broadcast is required", ErrInvalid)
	}
	rt := &targets{}
	index := map[string]int{}
	add := func(st stream, user string) {
		i, ok := index[st.key]
		if !ok {
			i = len(rt.streams)
			index[st.key] = i
			rt.streams = append(rt.streams, st)
			rt.users = append(rt.users, user)
		}
		rt.order = append(rt.order, i)
	}
	switch {
	case len(t.Users) > 0:
		if len(t.Users) > s.opt.MaxRecipients {
			return nil, fmt.Errorf("%w: more than %d recipients", ErrTooLarge, s.opt.MaxRecipients)
		}
		for _, u := range t.Users {
			if !ValidUser(u) {
				return nil, fmt.Errorf("%w: user id %q", ErrBadName, u)
			}
			add(s.k.userStream(u), u)
		}
	case len(t.Groups) > 0:
		if len(t.Groups) > s.opt.MaxRecipients {
			return nil, fmt.Errorf("%w: more than %d groups", ErrTooLarge, s.opt.MaxRecipients)
		}
		for _, g := range t.Groups {
			if !ValidGroup(g) {
				return nil, fmt.Errorf("%w: group %q", ErrBadName, g)
			}
			add(s.k.groupStream(g), "")
		}
	default:
		add(s.k.broadcastStream(), "")
	}
	return rt, nil
}

// writeStreams appends d to every stream of rt, one publishScript each,
// and returns the entry ids in stream order. idem is the per-stream
// idempotency key ("<sender>:<key>") or "" for none; pid, when set, is
// written into each entry so that an entry can be tied to its record.
func (s *Store) writeStreams(ctx context.Context, d Draft, rt *targets, idem, pid string) ([]entryID, error) {
	calls := s.streamCalls(d, rt, idem, pid)
	res, err := s.evalPipe(ctx, calls)
	// What this instance derived from the streams' content is stale from
	// now on, not only once the wake-ups have come back through the hub.
	for _, st := range rt.streams {
		s.view.touch(st.key)
	}
	if err != nil {
		return nil, err
	}
	es := make([]entryID, len(rt.streams))
	for i, r := range res {
		if es[i], err = parsePublishReply(r); err != nil {
			return nil, err
		}
	}
	return es, nil
}

// streamCalls returns the publishScript calls that append d to each
// stream of rt (see writeStreams).
func (s *Store) streamCalls(d Draft, rt *targets, idem, pid string) []scriptCall {
	now := s.opt.Now()
	fv, expiresAt := d.fields(now)
	if pid != "" {
		fv = append(fv, "pid", pid)
	}
	minID := strconv.FormatInt(ms(now.Add(-s.opt.Retention)), 10) + "-0"
	useIdem := "0"
	if idem != "" {
		useIdem = "1"
	}
	// Fields ride along in the wake-ups (so instances answer without a
	// read) unless the message or the fan-out is large: a broadcast's
	// wake-up reaches every instance, and Redis drops a subscriber whose
	// output buffer overflows.
	size := 0
	for _, v := range fv {
		if str, ok := v.(string); ok {
			size += len(str)
		}
	}
	inline := "-"
	if size <= maxInlineFields && size*len(rt.streams) <= maxInlineFanout {
		inline = wakeFields(fv)
	}
	base := []any{useIdem, int64(s.opt.IdempotentFor.Seconds()), s.opt.MaxLen, minID, expiresAt, "", inline, s.sharded()}
	args := append(base, fv...)
	calls := make([]scriptCall, len(rt.streams))
	for i, st := range rt.streams {
		// Each stream's wake-up goes on its own channel.
		args := append([]any(nil), args...)
		args[5] = s.k.wake(st.key)
		u := rt.users[i]
		// Keys are per publisher: two publishers choosing the same key
		// must not suppress each other's messages.
		ik := s.k.idem(st, u, idem)
		if idem == "" {
			ik = s.k.idem(st, u, "-") // never read or written; keeps the slot
		}
		ks := []string{st.key, ik, s.k.trim(st, u)}
		if st.kind == 'u' {
			ks = append(ks, s.k.unread(u), s.k.expiring(u), s.k.utype(u), s.k.tunread(u))
		}
		calls[i] = scriptCall{sc: publishScript, keys: ks, args: args}
	}
	return calls
}

// parsePublishReply returns the entry id of a publishScript reply.
func parsePublishReply(r any) (entryID, error) {
	pair, _ := r.([]any)
	if len(pair) != 2 {
		return entryID{}, fmt.Errorf("publish: unexpected reply %v", r)
	}
	idStr, _ := pair[0].(string)
	e, err := parseEntryID(idStr)
	if err != nil {
		return entryID{}, fmt.Errorf("publish: %w", err)
	}
	return e, nil
}
