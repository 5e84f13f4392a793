package inbox

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"
)

// userState is one user's read state as of one read.
type userState struct {
	unreadInbox int                // live unread entries of the inbox
	inboxUnread map[string]bool    // inbox entry id → unread (only for ids asked about)
	readUpTo    map[string]entryID // shared stream name → read up to this entry
	seen        map[string]bool    // shared public ids read one by one
	hidden      map[string]bool    // shared public ids the user deleted
	allInbox    bool               // inboxUnread lists every unread inbox id
	until       time.Time          // unreadInbox is stale from then on (zero: never)
	// newest holds, per shared stream key, the newest entry just read: a
	// cached count must cover it (its invalidation may still be on its way).
	newest map[string]entryID
}

// loadState reads a user's read state in one script call. Inbox read
// flags come with the reads themselves (see readScript), not from here.
func (s *Store) loadState(ctx context.Context, user string) (*userState, error) {
	out, err := s.evalPipe(ctx, []scriptCall{{sc: stateScript, args: []any{ms(s.opt.Now())},
		keys: []string{s.k.unread(user), s.k.expiring(user), s.k.read(user), s.k.seen(user), s.k.hidden(user)}}})
	if err != nil {
		return nil, err
	}
	parts, _ := out[0].([]any)
	if len(parts) != 5 {
		return nil, fmt.Errorf("state: unexpected reply %T", out[0])
	}
	st := &userState{inboxUnread: map[string]bool{}, readUpTo: map[string]entryID{}, seen: map[string]bool{}, hidden: map[string]bool{}}
	n, _ := parts[0].(int64)
	st.unreadInbox = int(n)
	if soonest, _ := parts[4].(string); soonest != "" && soonest != "0" {
		if f, err := strconv.ParseFloat(soonest, 64); err == nil {
			st.until = time.UnixMilli(int64(f))
		}
	}
	h, _ := parts[1].([]any)
	for i := 0; i+1 < len(h); i += 2 {
		name, _ := h[i].(string)
		val, _ := h[i+1].(string)
		if e, err := parseEntryID(val); err == nil {
			st.readUpTo[name] = e
		}
	}
	for _, pair := range []struct {
		raw any
		set map[string]bool
	}{{parts[2], st.seen}, {parts[3], st.hidden}} {
		list, _ := pair.raw.([]any)
		for _, x := range list {
			if id, ok := x.(string); ok {
				pair.set[id] = true
			}
		}
	}
	return st, nil
}

// cachedState returns the user's read state from the instance's cache
// (see recentCache), reading it from Redis when the cache has none.
func (s *Store) cachedState(ctx context.Context, user string) (*userState, error) {
	if st, ok := s.recent.state(user, s.opt.Now()); ok {
		return st, nil
	}
	return s.freshState(ctx, user)
}

// freshState reads the user's read state from Redis and caches it.
func (s *Store) freshState(ctx context.Context, user string) (*userState, error) {
	at := s.recent.userGen(user)
	st, err := s.loadState(ctx, user)
	if err != nil {
		return nil, err
	}
	s.recent.putState(user, st, st.until, at)
	return st, nil
}

// isRead tells whether a message is read in this state.
func (st *userState) isRead(m *Message) bool {
	if m.stream == "u" {
		unread, known := st.inboxUnread[m.entry.String()]
		return (known || st.allInbox) && !unread
	}
	w := st.readUpTo[m.stream]
	return !w.less(m.entry) || st.seen[m.ID]
}

// unreadCount returns the reader's unread total: the inbox count kept by
// the publish script, plus for each shared stream the live entries after
// the user's read-up-to mark that were neither read one by one nor hidden
// (at most UnreadScan examined per stream). Shared-stream counts come from
// the instance's count cache when it holds them (see countCache).
func (s *Store) unreadCount(ctx context.Context, streams []stream, st *userState) (int, error) {
	total := st.unreadInbox
	now := s.opt.Now()
	var lead, own []countCall
	var follow []countCall
	for _, sh := range streams {
		if sh.kind == 'u' {
			continue
		}
		w := st.readUpTo[sh.name]
		var excl []string
		prefix := sh.name + "."
		for _, set := range []map[string]bool{st.seen, st.hidden} {
			for id := range set {
				if strings.HasPrefix(id, prefix) {
					if e, err := parseEntryID(id[len(prefix):]); err == nil && w.less(e) {
						excl = append(excl, e.String())
					}
				}
			}
		}
		sort.Strings(excl)
		key := countKey{stream: sh.key, after: w.String(), excl: strings.Join(excl, ",")}
		seen := st.newest[sh.key]
		if n, ok := s.counts.get(key, now, seen); ok {
			total += n
			continue
		}
		args := []any{w.String(), s.opt.UnreadScan, ms(now)}
		for _, e := range excl {
			args = append(args, e)
		}
		c := countCall{key: key, seen: seen, call: scriptCall{sc: sharedUnreadScript, keys: []string{sh.key}, args: args}}
		var leads bool
		if c.f, leads = s.counts.join(key); leads {
			lead = append(lead, c)
		} else {
			follow = append(follow, c)
		}
	}
	n, err := s.countShared(ctx, lead, now)
	if err != nil {
		return 0, err
	}
	total += n
	for _, c := range follow {
		select {
		case <-c.f.done:
		case <-ctx.Done():
			return 0, context.Cause(ctx)
		}
		// The leader may have failed (its client left, say), or counted
		// before the entry this poll has just read: then count here.
		if c.f.err != nil || c.f.upTo.less(c.seen) {
			own = append(own, countCall{key: c.key, seen: c.seen, call: c.call})
			continue
		}
		total += c.f.n
	}
	if len(own) > 0 {
		for i := range own {
			own[i].f = &countFlight{at: s.counts.snapshot(own[i].key.stream), done: make(chan struct{})}
		}
		n, err := s.countShared(ctx, own, now)
		if err != nil {
			return 0, err
		}
		total += n
	}
	return total, nil
}

// countCall is one shared-stream count to compute, or to wait for.
type countCall struct {
	key  countKey
	seen entryID
	call scriptCall
	f    *countFlight
}

// countShared runs the counts of flights the caller leads, caches and
// lands them, and returns their sum.
func (s *Store) countShared(ctx context.Context, cs []countCall, now time.Time) (int, error) {
	if len(cs) == 0 {
		return 0, nil
	}
	calls := make([]scriptCall, len(cs))
	for i, c := range cs {
		calls[i] = c.call
	}
	res, err := s.evalPipe(ctx, calls)
	if err == nil && len(res) != len(cs) {
		err = fmt.Errorf("unread: %d replies for %d counts", len(res), len(cs))
	}
	total := 0
	for i, c := range cs {
		if err != nil {
			s.counts.land(c.key, c.f, 0, entryID{}, err)
			continue
		}
		n, upTo, until, perr := parseSharedCount(res[i])
		if perr != nil {
			err = perr
			s.counts.land(c.key, c.f, 0, entryID{}, err)
			continue
		}
		total += n
		s.counts.put(c.key, n, c.f.at, until, upTo)
		s.counts.land(c.key, c.f, n, upTo, nil)
	}
	if err != nil {
		return 0, err
	}
	return total, nil
}

// parseSharedCount parses a sharedUnreadScript reply.
func parseSharedCount(r any) (n int, upTo entryID, until time.Time, err error) {
	pair, _ := r.([]any)
	if len(pair) != 3 {
		return 0, entryID{}, time.Time{}, fmt.Errorf("unread: unexpected reply %T", r)
	}
	cnt, _ := pair[0].(int64)
	soonest, _ := pair[1].(int64)
	lastStr, _ := pair[2].(string)
	if upTo, err = parseEntryID(lastStr); err != nil {
		return 0, entryID{}, time.Time{}, fmt.Errorf("unread: %w", err)
	}
	if soonest > 0 {
		until = time.UnixMilli(soonest)
	}
	return int(cnt), upTo, until, nil
}

// tails returns the newest entry ID of each stream ("0-0" when empty):
// the position that means "now".
func (s *Store) tails(ctx context.Context, user string, streams []stream) (positions, error) {
	calls := make([]scriptCall, len(streams))
	for i, st := range streams {
		calls[i] = scriptCall{sc: tailScript, keys: []string{st.key, s.k.trim(st, user)}}
	}
	out, err := s.evalPipe(ctx, calls)
	if err != nil {
		return nil, err
	}
	pos := positions{}
	for i, st := range streams {
		id, _ := out[i].(string)
		e, err := parseEntryID(id)
		if err != nil {
			return nil, fmt.Errorf("tail: %w", err)
		}
		pos[st.name] = e
	}
	return pos, nil
}

// Unread returns the reader's unread count and a cursor at the current tail.
func (s *Store) Unread(ctx context.Context, r Reader) (int, string, error) {
	streams, err := s.streamsOf(r)
	if err != nil {
		return 0, "", err
	}
	pos, err := s.tails(ctx, r.User, streams)
	if err != nil {
		return 0, "", err
	}
	st, err := s.loadState(ctx, r.User)
	if err != nil {
		return 0, "", err
	}
	n, err := s.unreadCount(ctx, streams, st)
	if err != nil {
		return 0, "", err
	}
	return n, encodeCursor(streams, pos), nil
}
