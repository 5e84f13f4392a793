package inbox

import (
	"context"
	"fmt"
	"sort"
	"time"
)

// Poll limits.
const (
	DefaultLimit = 100
	MaxLimit     = 1000
)

// PollOptions are the parameters of one poll.
type PollOptions struct {
	Cursor string        // "" = start from now
	Limit  int           // messages per answer; 0 = DefaultLimit
	Wait   time.Duration // how long to wait for news; 0 = answer at once
	// Stop, when closed, ends a waiting poll at once with its cursor (for
	// graceful shutdown). Cancelling ctx instead ends it with ctx's error.
	Stop <-chan struct{}
}

// PollResult is the answer to a poll.
type PollResult struct {
	Messages []Message // oldest first
	Cursor   string
	Unread   int
	More     bool // more messages are ready: poll again at once
	Reset    bool // a stream was trimmed past the cursor: messages were missed
}

// Poll returns the reader's messages after the cursor, waiting up to
// o.Wait for some to arrive. A change to the reader's read state also ends
// the wait, so every device learns the new unread count. While waiting the
// poll holds no Redis connection: it sleeps on a hub Waiter.
func (s *Store) Poll(ctx context.Context, r Reader, o PollOptions) (PollResult, error) {
	streams, err := s.streamsOf(r)
	if err != nil {
		return PollResult{}, err
	}
	if o.Limit <= 0 {
		o.Limit = DefaultLimit
	}
	if o.Limit > MaxLimit {
		return PollResult{}, fmt.Errorf("%w: limit above %d", ErrInvalid, MaxLimit)
	}
	var pos positions
	if o.Cursor != "" {
		if pos, err = decodeCursor(o.Cursor, streams); err != nil {
			return PollResult{}, err
		}
	} else {
		pos = newPositions(len(streams))
	}

	// Register before the first read: see Hub for why this order matters.
	stateKey := s.k.read(r.User)
	keys := make([]string, 0, len(streams)+1)
	for _, st := range streams {
		keys = append(keys, st.key)
	}
	keys = append(keys, stateKey)
	w := s.hub.Register(keys...)
	defer s.hub.Unregister(w)

	// Streams the cursor does not cover (no cursor, or a group new to the
	// token) start from their current tail.
	var missing []stream
	for _, st := range streams {
		if _, ok := pos[st.name]; !ok {
			missing = append(missing, st)
		}
	}
	if len(missing) > 0 {
		gens := make([]countGen, len(missing))
		for i, st := range missing {
			gens[i] = s.recent.streamGen(st.key)
		}
		tails, err := s.tails(ctx, r.User, missing)
		if err != nil {
			return PollResult{}, err
		}
		for i, st := range missing {
			pos[st.name] = tails[st.name]
			s.recent.putTail(st.key, tails[st.name], gens[i])
		}
	}

	// The unread count is computed only when answering, never before a
	// wait: a poll that goes on to sleep reads its streams once at most,
	// and not at all when the instance's cache knows they hold nothing
	// newer (plus, now and then, the read state below). Only a waiting
	// poll may trust the cache: a wake-up it has not seen yet wakes it,
	// while a poll answering at once would miss the message.
	cached := o.Wait > 0
	preloaded := false

	var timer <-chan time.Time
	if o.Wait > 0 {
		t := time.NewTimer(o.Wait)
		defer t.Stop()
		timer = t.C
	}
	toRead := streams
	res := PollResult{}
	var st *userState // the latest state read, if still current
	stateChanged, stopping := false, false
	// Every way out but an error breaks to the one answer below.
wait:
	for {
		if len(toRead) > 0 {
			got, fresh, err := s.readAfter(ctx, r.User, toRead, pos, o.Limit, cached, &res)
			if err != nil {
				return PollResult{}, err
			}
			st = fresh
			if len(got) > 0 || res.Reset {
				res.Messages = got
				break
			}
			if res.More {
				// Only hidden or expired entries so far, and more behind them.
				res.More = false
				toRead = streams
				continue
			}
		}
		if o.Wait <= 0 || stateChanged {
			break
		}
		if !preloaded && s.recent.needsState(r.User, s.opt.Now()) {
			// About to sleep: load the read state now, while nothing is
			// urgent, rather than when a broadcast wakes this poll together
			// with thousands of others that would all need theirs at the
			// same moment. The instance keeps it (wake-ups keep it current)
			// for later polls. A wake-up that lands meanwhile is waiting on
			// w.C.
			preloaded = true
			if _, err := s.freshState(ctx, r.User); err != nil {
				return PollResult{}, err
			}
		}
		select {
		case <-w.C:
		case <-timer:
			// The state read before the wait may be a wait old (entries
			// may have expired since): answer with a current one.
			st = nil
			break wait
		case <-o.Stop:
			stopping = true
			break wait
		case <-ctx.Done():
			return PollResult{}, context.Cause(ctx)
		}
		fired, all := w.Take()
		if _, ok := fired[stateKey]; ok {
			// Another device changed the read state: answer with the new count.
			delete(fired, stateKey)
			st = nil
			if len(fired) == 0 && !all {
				break
			}
			// Streams fired too: read them first, then answer either way.
			stateChanged = true
		}
		toRead = toRead[:0:0]
		if all {
			toRead = streams
		} else {
			// A scan, not a map: a poll has few streams, and a map here
			// would sit in this frame for the whole wait.
			for _, st := range streams {
				if _, ok := fired[st.key]; ok {
					toRead = append(toRead, st)
				}
			}
		}
	}
	if !stopping {
		return s.finish(ctx, r.User, streams, pos, st, cached, res)
	}
	// Shutting down: answer now. The count is best effort, bounded so
	// that shutdown is not held up by a slow Redis.
	sctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancel()
	out, err := s.finish(sctx, r.User, streams, pos, nil, cached, res)
	if err != nil {
		out = s.answer(streams, pos, 0, res)
	}
	return out, nil
}

// emptyRead is a read that found nothing, as readScript answers it. It is
// shared (never modified): most polls' reads are this.
var emptyRead = []any{"", []any(nil), []any(nil)}

// newPositions is kept out of line so that the map is not placed in
// Poll's frame, which stays on the stack for the whole wait.
//
//go:noinline
func newPositions(n int) positions { return make(positions, n) }

func (s *Store) answer(streams []stream, pos positions, unread int, res PollResult) PollResult {
	res.Cursor = encodeCursor(streams, pos)
	res.Unread = unread
	if res.Messages == nil {
		res.Messages = []Message{}
	}
	return res
}

// finish answers with the unread count, reading the state first unless
// the caller has a current one.
func (s *Store) finish(ctx context.Context, user string, streams []stream, pos positions, st *userState, cached bool, res PollResult) (PollResult, error) {
	if st == nil {
		var err error
		if st, err = s.state(ctx, user, cached); err != nil {
			return PollResult{}, err
		}
	}
	n, err := s.unreadCount(ctx, streams, st)
	if err != nil {
		return PollResult{}, err
	}
	return s.answer(streams, pos, n, res), nil
}

// readAfter reads up to limit+1 entries after the position of each given
// stream, merges them oldest first, drops hidden and expired ones, and
// consumes up to limit visible messages, advancing pos past everything
// consumed (including dropped entries). It sets res.More when entries are
// left over and res.Reset when a stream was trimmed past its position.
// When anything was read it also returns the user's state (for read flags).
func (s *Store) readAfter(ctx context.Context, user string, toRead []stream, pos positions, limit int, cached bool, res *PollResult) ([]Message, *userState, error) {
	// Split in three so that the Redis calls (whose waits go deepest) are
	// made from small frames: a goroutine's stack grows for its deepest
	// moment and stays grown while the poll waits, for every waiting poll.
	out, found, inboxRead, err := s.fetch(ctx, user, toRead, pos, limit, cached)
	if err != nil || !found {
		// Most reads find nothing (a poll about to wait): they cost one
		// script per stream at most, and no state.
		return nil, nil, err
	}
	// Inbox entries read from Redis may be newer than the wake-ups this
	// instance has seen, and so than its cached unread count: read the
	// state afresh (and keep it) rather than answer with a count that
	// leaves them out.
	var st *userState
	if cached && inboxRead {
		st, err = s.freshState(ctx, user)
	} else {
		st, err = s.state(ctx, user, cached)
	}
	if err != nil {
		return nil, nil, err
	}
	got, err := s.consume(toRead, pos, limit, out, st, res)
	return got, st, err
}

// fetch returns the raw reads of toRead after their positions (from the
// instance's caches where they can answer), whether any found entries or
// a reset, and whether Redis (not the cache) returned inbox entries.
func (s *Store) fetch(ctx context.Context, user string, toRead []stream, pos positions, limit int, cached bool) (out []any, found, inboxRead bool, err error) {
	// Shared streams are read through the instance's cache (see countCache):
	// polls woken together by one broadcast share one read.
	out = make([]any, len(toRead))
	var calls []scriptCall
	var missed []int
	var rkeys []readKey
	var gens, tailGens []countGen
	for i, st := range toRead {
		var tailGen countGen
		if cached {
			if reply, upToDate, ok := s.recent.after(st.key, pos[st.name], limit+1, st.kind == 'u'); ok {
				if upToDate {
					reply = emptyRead
				}
				out[i] = reply
				continue
			}
			tailGen = s.recent.streamGen(st.key)
		}
		if st.kind != 'u' {
			rk := readKey{stream: st.key, after: pos[st.name].String(), count: limit + 1}
			if v, ok := s.counts.getRead(rk); ok {
				out[i] = v
				continue
			}
			rkeys = append(rkeys, rk)
			gens = append(gens, s.counts.snapshot(st.key))
		} else {
			rkeys = append(rkeys, readKey{})
			gens = append(gens, countGen{})
		}
		keys := []string{st.key, s.k.trim(st, user)}
		if st.kind == 'u' {
			keys = append(keys, s.k.unread(user))
		}
		missed = append(missed, i)
		tailGens = append(tailGens, tailGen)
		calls = append(calls, scriptCall{sc: readScript, keys: keys, args: []any{pos[st.name].String(), limit + 1}})
	}
	if len(calls) > 0 {
		res, err := s.evalPipe(ctx, calls)
		if err != nil {
			return nil, false, false, err
		}
		for j, i := range missed {
			out[i] = res[j]
			if toRead[i].kind != 'u' {
				s.counts.putRead(rkeys[j], res[j], gens[j])
			} else if parts, _ := res[j].([]any); len(parts) >= 2 {
				list, _ := parts[1].([]any)
				inboxRead = len(list) > 0
			}
			if cached {
				s.learnTail(toRead[i].key, res[j], limit, tailGens[j])
			}
		}
	}
	for _, o := range out {
		if parts, _ := o.([]any); len(parts) >= 3 {
			if moved, _ := parts[0].(string); moved != "" {
				found = true
			}
			if list, _ := parts[1].([]any); len(list) > 0 {
				found = true
			}
		}
	}
	return out, found, inboxRead, nil
}

// consume decodes fetched reads, merges them oldest first, drops hidden
// and expired entries and takes up to limit visible messages, advancing
// pos past everything taken (see readAfter).
func (s *Store) consume(toRead []stream, pos positions, limit int, out []any, st *userState, res *PollResult) ([]Message, error) {
	var all []*Message
	for i, sh := range toRead {
		parts, _ := out[i].([]any)
		if len(parts) < 3 {
			return nil, fmt.Errorf("read: unexpected reply %T", out[i])
		}
		if moved, _ := parts[0].(string); moved != "" {
			// Trimmed past the position: report it, and move the position
			// up to the trim so the next poll does not report it again.
			e, err := parseEntryID(moved)
			if err != nil {
				return nil, fmt.Errorf("read: %w", err)
			}
			res.Reset = true
			pos[sh.name] = e
		}
		msgs, err := decodeEntries(sh, parts[1])
		if err != nil {
			return nil, err
		}
		if len(msgs) > limit {
			// The stream may hold more than was read, whatever is consumed below.
			res.More = true
		}
		if sh.kind != 'u' && len(msgs) > 0 {
			if st.newest == nil {
				st.newest = map[string]entryID{}
			}
			st.newest[sh.key] = msgs[len(msgs)-1].entry
		}
		if sh.kind == 'u' {
			flags, _ := parts[2].([]any)
			for j, m := range msgs {
				st.inboxUnread[m.entry.String()] = j < len(flags) && flags[j] == int64(1)
			}
		}
		all = append(all, msgs...)
	}
	if len(all) == 0 {
		return nil, nil
	}
	sort.Slice(all, func(i, j int) bool { return all[i].before(all[j]) })
	now := ms(s.opt.Now())
	var got []Message
	for _, m := range all {
		visible := !m.expired(now) && !st.hidden[m.ID]
		if visible && len(got) == limit {
			res.More = true
			break
		}
		pos[m.stream] = m.entry
		if visible {
			m.Read = st.isRead(m)
			got = append(got, *m)
		}
	}
	return got, nil
}

// state returns the user's read state, from the instance's cache if allowed.
func (s *Store) state(ctx context.Context, user string, cached bool) (*userState, error) {
	if cached {
		return s.cachedState(ctx, user)
	}
	return s.loadState(ctx, user)
}

// learnTail tells the instance's cache the stream's tail when a read
// returned everything after the position: its last entry is the tail, or
// when it found nothing, the tail the script returned.
func (s *Store) learnTail(key string, reply any, limit int, at countGen) {
	parts, _ := reply.([]any)
	if len(parts) != 4 {
		return
	}
	list, _ := parts[1].([]any)
	if reset, _ := parts[0].(string); reset != "" || len(list) > limit {
		return
	}
	idStr, _ := parts[3].(string)
	if len(list) > 0 {
		last, _ := list[len(list)-1].([]any)
		if len(last) != 2 {
			return
		}
		idStr, _ = last[0].(string)
	}
	if e, err := parseEntryID(idStr); err == nil {
		s.recent.putTail(key, e, at)
	}
}
