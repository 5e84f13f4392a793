package inbox

import (
	"context"
	"fmt"
	"maps"
	"sort"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sync/singleflight"
)

// userState is one user's read state as of one read.
type userState struct {
	unreadInbox int // live unread entries of the inbox
	// unreadByType splits unreadInbox by message type (types with n > 0).
	// Shared by concurrent polls like the whole state: replace, never modify.
	unreadByType map[string]int
	inboxUnread  map[string]bool    // inbox entry id → unread (only for ids asked about)
	readUpTo     map[string]entryID // shared stream name → read up to this entry
	seen         map[string]bool    // shared public ids read one by one
	hidden       map[string]bool    // shared public ids the user deleted
	allInbox     bool               // inboxUnread lists every unread inbox id
	until        time.Time          // unreadInbox is stale from then on (zero: never)
	// newest holds, per shared stream key, the newest entry just read: a
	// cached count must cover it (its invalidation may still be on its way).
	newest map[string]entryID
}

// loadState reads a user's read state in one script call. Inbox read
// flags come with the reads themselves (see readScript), not from here.
func (s *Store) loadState(ctx context.Context, user string) (*userState, error) {
	out, err := s.evalPipe(ctx, []scriptCall{{sc: stateScript, args: []any{ms(s.opt.Now())},
		keys: []string{s.k.unread(user), s.k.expiring(user), s.k.read(user), s.k.seen(user), s.k.hidden(user),
			s.k.utype(user), s.k.tunread(user), s.k.inbox(user)}}})
	if err != nil {
		return nil, err
	}
	parts, _ := out[0].([]any)
	if len(parts) != 6 {
		return nil, fmt.Errorf("state: unexpected reply %T", out[0])
	}
	st := &userState{inboxUnread: map[string]bool{}, readUpTo: map[string]entryID{}, seen: map[string]bool{}, hidden: map[string]bool{}}
	n, _ := parts[0].(int64)
	st.unreadInbox = int(n)
	st.unreadByType = parseTypeCounts(parts[5])
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

// parseTypeCounts parses a flat {type, count, …} reply (a hash, or the
// types of sharedUnreadScript), keeping counts above 0.
func parseTypeCounts(r any) map[string]int {
	flat, _ := r.([]any)
	out := make(map[string]int, len(flat)/2)
	for i := 0; i+1 < len(flat); i += 2 {
		t, _ := flat[i].(string)
		var n int64
		switch v := flat[i+1].(type) {
		case int64:
			n = v
		case string:
			n, _ = strconv.ParseInt(v, 10, 64)
		}
		if n > 0 {
			out[t] += int(n)
		}
	}
	return out
}

// freshState reads the user's read state from Redis and gives it to the
// view.
func (s *Store) freshState(ctx context.Context, user string) (*userState, error) {
	at := s.view.userVersion(user)
	began := time.Now()
	st, err := s.loadState(ctx, user)
	if err != nil {
		return nil, err
	}
	s.view.putState(user, st, at, began)
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

// Counts is a reader's unread count, in total and per message type.
type Counts struct {
	Total int
	// ByType holds the types with n > 0; never nil. Read it, never modify
	// it: a waiting poll's counts may share it with the read state the
	// instance keeps (see unreadCounts).
	ByType map[string]int
	// shared: ByType is a read state's map, which add copies before
	// changing it.
	shared bool
}

func (c *Counts) add(n int, byType map[string]int) {
	c.Total += n
	if len(byType) == 0 {
		return
	}
	if c.shared {
		c.ByType, c.shared = maps.Clone(c.ByType), false
	}
	for t, m := range byType {
		c.ByType[t] += m
	}
}

// unreadCount is unreadCounts' total.
func (s *Store) unreadCount(ctx context.Context, streams []stream, st *userState, cached bool) (int, error) {
	c, err := s.unreadCounts(ctx, streams, st, cached)
	return c.Total, err
}

// unreadCounts returns the reader's unread counts: the inbox's kept by the
// publish script (per type in the tunread hash: one read whatever the
// inbox holds), plus for each shared stream the live entries after the
// user's read-up-to mark that were neither read one by one nor hidden (at
// most UnreadScan examined per stream, counted per type in the same scan).
// A waiting poll (cached) takes shared counts from the view when it may
// (see view), and shares the counts it must compute with the other waiting
// polls that need the same one at the same version: a broadcast wakes
// thousands of polls that all need it at once. Everything else counts from
// Redis.
func (s *Store) unreadCounts(ctx context.Context, streams []stream, st *userState, cached bool) (Counts, error) {
	out := Counts{ByType: map[string]int{}}
	if cached && st.unreadByType != nil {
		// Most answers add nothing per type to the inbox's counts (no
		// unread shared messages): they answer with the state's own map,
		// which states never modify, rather than a copy.
		out = Counts{Total: st.unreadInbox, ByType: st.unreadByType, shared: true}
	} else {
		out.add(st.unreadInbox, st.unreadByType)
	}
	now := s.opt.Now()
	var direct []countCall
	var shared []countCall
	for _, sh := range streams {
		if sh.kind == 'u' {
			continue
		}
		c := s.countCallFor(sh, st, now)
		if cached {
			if f, ok := s.view.count(c.key, now, c.seen); ok {
				out.add(f.n, f.byType)
				continue
			}
			c.at = s.view.streamVersion(sh.key) // before the count begins
			lead := c
			c.ch = s.flight.DoChan(c.flightKey(), func() (any, error) {
				// Not the caller's context: other polls wait for this count.
				return s.countShared(context.WithoutCancel(ctx), []countCall{lead}, now)
			})
			shared = append(shared, c)
			continue
		}
		c.at = s.view.streamVersion(sh.key)
		direct = append(direct, c)
	}
	for _, c := range shared {
		var r singleflight.Result
		select {
		case r = <-c.ch:
		case <-ctx.Done():
			return Counts{}, context.Cause(ctx)
		}
		// The flight may have failed (a Redis error), counted before the
		// entry this poll has just read, or counted an entry that has
		// expired since: then count here.
		if r.Err != nil {
			direct = append(direct, c)
			continue
		}
		got := r.Val.([]countFact)[0]
		if got.upTo.less(c.seen) || (!got.until.IsZero() && !now.Before(got.until)) {
			direct = append(direct, c)
			continue
		}
		out.add(got.n, got.byType)
	}
	if len(direct) > 0 {
		facts, err := s.countShared(ctx, direct, now)
		if err != nil {
			return Counts{}, err
		}
		for _, f := range facts {
			out.add(f.n, f.byType)
		}
	}
	return out, nil
}

// countCall is one shared-stream count to compute.
type countCall struct {
	key  countKey
	seen entryID // the newest entry of the stream the poll has just read
	at   version // the stream's version before counting
	call scriptCall
	ch   <-chan singleflight.Result
}

// countCallFor prepares the count of a shared stream for a user's state.
func (s *Store) countCallFor(sh stream, st *userState, now time.Time) countCall {
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
	args := []any{w.String(), s.opt.UnreadScan, ms(now)}
	for _, e := range excl {
		args = append(args, e)
	}
	return countCall{key: key, seen: st.newest[sh.key],
		call: scriptCall{sc: sharedUnreadScript, keys: []string{sh.key}, args: args}}
}

// flightKey names a count at the stream's version: a poll woken by a
// wake-up never joins a count begun before it.
func (c countCall) flightKey() string {
	return c.key.stream + "\x00" + c.key.after + "\x00" + c.key.excl + "\x00" +
		strconv.FormatUint(c.at.epoch, 10) + "." + strconv.FormatUint(c.at.gen, 10)
}

// countShared runs counts in one pipeline and gives them to the view.
func (s *Store) countShared(ctx context.Context, cs []countCall, now time.Time) ([]countFact, error) {
	calls := make([]scriptCall, len(cs))
	for i, c := range cs {
		calls[i] = c.call
	}
	began := time.Now()
	res, err := s.evalPipe(ctx, calls)
	if err != nil {
		return nil, err
	}
	if len(res) != len(cs) {
		return nil, fmt.Errorf("unread: %d replies for %d counts", len(res), len(cs))
	}
	out := make([]countFact, len(cs))
	for i, c := range cs {
		f, err := parseSharedCount(res[i])
		if err != nil {
			return nil, err
		}
		f.learnt = began
		out[i] = f
		s.view.putCount(c.key, out[i], c.at)
	}
	return out, nil
}

// parseSharedCount parses a sharedUnreadScript reply.
func parseSharedCount(r any) (countFact, error) {
	parts, _ := r.([]any)
	if len(parts) != 4 {
		return countFact{}, fmt.Errorf("unread: unexpected reply %T", r)
	}
	cnt, _ := parts[0].(int64)
	soonest, _ := parts[1].(int64)
	lastStr, _ := parts[2].(string)
	upTo, err := parseEntryID(lastStr)
	if err != nil {
		return countFact{}, fmt.Errorf("unread: %w", err)
	}
	f := countFact{n: int(cnt), upTo: upTo, byType: parseTypeCounts(parts[3])}
	if soonest > 0 {
		f.until = time.UnixMilli(soonest)
	}
	return f, nil
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
	c, cur, err := s.UnreadCounts(ctx, r)
	return c.Total, cur, err
}

// UnreadCounts returns the reader's unread counts, in total and per type,
// and a cursor at the current tail.
func (s *Store) UnreadCounts(ctx context.Context, r Reader) (Counts, string, error) {
	streams, err := s.streamsOf(r)
	if err != nil {
		return Counts{}, "", err
	}
	pos, err := s.tails(ctx, r.User, streams)
	if err != nil {
		return Counts{}, "", err
	}
	st, err := s.loadState(ctx, r.User)
	if err != nil {
		return Counts{}, "", err
	}
	c, err := s.unreadCounts(ctx, streams, st, false)
	if err != nil {
		return Counts{}, "", err
	}
	return c, encodeCursor(streams, pos), nil
}
