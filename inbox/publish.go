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

// PublishWith publishes d to t now or, with o.SendAt in the future, at that
// time, and records the publish under o.Owner.
func (s *Store) PublishWith(ctx context.Context, t Target, d Draft, o PublishOptions) (PublishResult, error) {
	ids, err := s.Publish(ctx, t, d, o.IdemKey, o.MaxBody)
	if err != nil {
		return PublishResult{}, err
	}
	return PublishResult{IDs: ids, Count: len(ids), State: "sent"}, nil
}

// Publish appends the draft to each target stream: one entry per listed
// user's inbox, one per group stream, or one in the broadcast stream. It
// returns the public message ids, one per target in the order given
// (duplicates in the list get the same id). It returns only after Redis
// has accepted every entry; on error some entries may exist, and a retry
// with the same idempotency key completes the rest without copies.
func (s *Store) Publish(ctx context.Context, t Target, d Draft, idemKey string, maxBody int) ([]string, error) {
	if err := d.Validate(maxBody); err != nil {
		return nil, err
	}
	if idemKey != "" && !ValidIdempotencyKey(idemKey) {
		return nil, fmt.Errorf("%w: idempotency_key must be 1-%d characters of [A-Za-z0-9_.:@-]", ErrInvalid, MaxKeyLen)
	}
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

	// Resolve targets to distinct streams, remembering each input's slot.
	var streams []stream
	var users []string // user of each stream (for kind 'u')
	index := map[string]int{}
	order := []int{}
	add := func(st stream, user string) {
		i, ok := index[st.key]
		if !ok {
			i = len(streams)
			index[st.key] = i
			streams = append(streams, st)
			users = append(users, user)
		}
		order = append(order, i)
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
			st := s.k.userStream(u)
			add(st, u)
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

	now := s.opt.Now()
	fv, expiresAt := d.fields(now)
	minID := strconv.FormatInt(ms(now.Add(-s.opt.Retention)), 10) + "-0"
	useIdem := "0"
	if idemKey != "" {
		useIdem = "1"
	}
	// Fields ride along in the wake-ups (so instances answer without a
	// read) unless the message or the fan-out is large: every instance
	// receives every wake-up, and Redis drops a subscriber whose output
	// buffer overflows.
	size := 0
	for _, v := range fv {
		if str, ok := v.(string); ok {
			size += len(str)
		}
	}
	inline := "-"
	if size <= maxInlineFields && size*len(streams) <= maxInlineFanout {
		inline = wakeFields(fv)
	}
	base := []any{useIdem, int64(s.opt.IdempotentFor.Seconds()), s.opt.MaxLen, minID, expiresAt, s.k.wake(), inline}
	args := append(base, fv...)
	calls := make([]scriptCall, len(streams))
	for i, st := range streams {
		// Keys are per publisher: two publishers choosing the same key
		// must not suppress each other's messages.
		ik := s.k.idem(st, users[i], d.Sender+":"+idemKey)
		if idemKey == "" {
			ik = s.k.idem(st, users[i], "-") // never read or written; keeps the slot
		}
		ks := []string{st.key, ik, s.k.trim(st, users[i])}
		if st.kind == 'u' {
			ks = append(ks, s.k.unread(users[i]), s.k.expiring(users[i]))
		}
		calls[i] = scriptCall{sc: publishScript, keys: ks, args: args}
	}
	res, err := s.evalPipe(ctx, calls)
	// What this instance derived from the streams' content is stale from
	// now on, not only once the wake-ups have come back through the hub.
	for _, st := range streams {
		s.view.touch(st.key)
	}
	if err != nil {
		return nil, err
	}
	ids := make([]string, len(streams))
	for i, r := range res {
		pair, _ := r.([]any)
		if len(pair) != 2 {
			return nil, fmt.Errorf("publish: unexpected reply %v", r)
		}
		idStr, _ := pair[0].(string)
		e, err := parseEntryID(idStr)
		if err != nil {
			return nil, fmt.Errorf("publish: %w", err)
		}
		ids[i] = streams[i].publicID(e)
	}
	out := make([]string, len(order))
	for j, i := range order {
		out[j] = ids[i]
	}
	return out, nil
}
