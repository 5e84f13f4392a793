package inbox

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

func TestBroadcastAndGroups(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, b backend) {
		ctx := testCtx(t)
		s := newStore(t, b.rdb, Options{})

		// Broadcast reaches a user who never got anything.
		fresh := Reader{User: "fresh"}
		c := tail(t, s, fresh)
		bid := toAll(t, s, "to everyone")
		res := poll(t, s, fresh, PollOptions{Cursor: c})
		checkIDs(t, "broadcast for a fresh user", msgIDs(res.Messages), []string{bid})
		if m := res.Messages[0]; m.Source != "broadcast" || m.Read || res.Unread != 1 {
			t.Fatalf("broadcast message %+v, unread %d", m, res.Unread)
		}

		// A user whose first poll comes after the broadcast finds it in history.
		late := Reader{User: "late"}
		first := poll(t, s, late, PollOptions{})
		if len(first.Messages) != 0 || first.Unread != 1 {
			t.Fatalf("late user's first poll: %v, unread %d; want nothing, unread 1", msgIDs(first.Messages), first.Unread)
		}
		checkIDs(t, "late user's history", msgIDs(history(t, s, late, HistoryQuery{}).Messages), []string{bid})

		// Group messages reach members only.
		member := Reader{User: "m1", Groups: []string{"user:list", "ops"}}
		outsider := Reader{User: "m2", Groups: []string{"dev"}}
		cm, co := tail(t, s, member), tail(t, s, outsider)
		waiting := goPoll(ctx, s, member, PollOptions{Cursor: cm, Wait: 10 * time.Second})
		gid := toGroup(t, s, "user:list", "to the group")
		got := await(t, waiting, 2*time.Second)
		checkIDs(t, "member's poll", msgIDs(got.Messages), []string{gid})
		if src := got.Messages[0].Source; src != "group:user:list" {
			t.Fatalf("source %q, want group:user:list", src)
		}
		if res := poll(t, s, outsider, PollOptions{Cursor: co}); len(res.Messages) != 0 {
			t.Fatalf("outsider got %v", msgIDs(res.Messages))
		}
		checkIDs(t, "outsider's history", msgIDs(history(t, s, outsider, HistoryQuery{}).Messages), []string{bid})
		checkIDs(t, "member's history", msgIDs(history(t, s, member, HistoryQuery{}).Messages), newestFirst(t, []string{gid, bid}))

		// A cursor naming a group the reader no longer has is refused.
		shrunk := Reader{User: "m1", Groups: []string{"ops"}}
		if _, err := s.Poll(ctx, shrunk, PollOptions{Cursor: got.Cursor}); !errors.Is(err, ErrBadCursor) {
			t.Fatalf("poll with a cursor of a dropped group: err = %v, want ErrBadCursor", err)
		}
		// Nor can a message of that group be named.
		if _, err := s.MarkRead(ctx, shrunk, []string{gid}, false); !errors.Is(err, ErrNotFound) {
			t.Fatalf("MarkRead of another group's message: err = %v, want ErrNotFound", err)
		}
		if err := s.Delete(ctx, shrunk, gid); !errors.Is(err, ErrNotFound) {
			t.Fatalf("Delete of another group's message: err = %v, want ErrNotFound", err)
		}

		// A group added later starts from now.
		old := toGroup(t, s, "dev", "before joining")
		joined := Reader{User: "m1", Groups: []string{"user:list", "ops", "dev"}}
		res = poll(t, s, joined, PollOptions{Cursor: got.Cursor})
		if len(res.Messages) != 0 {
			t.Fatalf("poll after joining dev returned %v, want nothing (old: %s)", msgIDs(res.Messages), old)
		}
		newer := toGroup(t, s, "dev", "after joining")
		gid2 := toGroup(t, s, "user:list", "more")
		res = poll(t, s, joined, PollOptions{Cursor: res.Cursor})
		checkIDs(t, "poll after joining", msgIDs(res.Messages), reversed(newestFirst(t, []string{newer, gid2})))
		checkIDs(t, "history after joining", msgIDs(history(t, s, joined, HistoryQuery{}).Messages),
			newestFirst(t, []string{gid2, newer, old, gid, bid}))
	})
}

// fill publishes n messages cycling over the reader's inbox, broadcast and
// the group, with types cycling over four values. It returns the ids in
// publish order and each id's type.
func fill(t *testing.T, s *Store, user, group string, n int) (ids []string, typ map[string]string) {
	t.Helper()
	types := []string{"like", "reply", "recommend", "notification"}
	typ = map[string]string{}
	for i := range n {
		var tgt Target
		switch i % 3 {
		case 0:
			tgt.Users = []string{user}
		case 1:
			tgt.Broadcast = true
		default:
			tgt.Groups = []string{group}
		}
		d := Draft{Type: types[i%len(types)], Title: fmt.Sprintf("m%d", i)}
		id := publish(t, s, tgt, d, "")[0]
		ids = append(ids, id)
		typ[id] = d.Type
	}
	return ids, typ
}

func TestHistoryPaging(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, b backend) {
		ctx := testCtx(t)
		s := newStore(t, b.rdb, Options{})
		r := Reader{User: "h", Groups: []string{"ops"}}
		ids, typ := fill(t, s, "h", "ops", 250)
		all := newestFirst(t, ids)

		got := allHistory(t, s, r, HistoryQuery{Limit: 20})
		checkIDs(t, "all pages", got, all)
		page := history(t, s, r, HistoryQuery{Limit: 20})
		for i := 1; i < len(page.Messages); i++ {
			if page.Messages[i].Created.After(page.Messages[i-1].Created) {
				t.Fatalf("page not newest first at %d: %v after %v", i, page.Messages[i].Created, page.Messages[i-1].Created)
			}
		}
		if page.Unread != 250 {
			t.Fatalf("unread = %d, want 250", page.Unread)
		}

		filter := func(keep func(id string) bool) []string {
			var out []string
			for _, id := range all {
				if keep(id) {
					out = append(out, id)
				}
			}
			return out
		}
		checkIDs(t, "type=reply", allHistory(t, s, r, HistoryQuery{Limit: 20, Types: []string{"reply"}}),
			filter(func(id string) bool { return typ[id] == "reply" }))

		// Mark every 7th message read (all three streams take part).
		read := map[string]bool{}
		var mark []string
		for i := 0; i < len(ids); i += 7 {
			mark = append(mark, ids[i])
			read[ids[i]] = true
		}
		n, err := s.MarkRead(ctx, r, mark, false)
		must(t, err, "MarkRead")
		if n != 250-len(mark) {
			t.Fatalf("unread after marking %d = %d, want %d", len(mark), n, 250-len(mark))
		}
		unreadOnly := filter(func(id string) bool { return !read[id] })
		checkIDs(t, "unread=true", allHistory(t, s, r, HistoryQuery{Limit: 20, Unread: true}), unreadOnly)
		checkIDs(t, "unread=true, type=like", allHistory(t, s, r, HistoryQuery{Limit: 7, Unread: true, Types: []string{"like"}}),
			filter(func(id string) bool { return !read[id] && typ[id] == "like" }))
		for _, m := range history(t, s, r, HistoryQuery{Limit: 100}).Messages {
			if m.Read != read[m.ID] {
				t.Fatalf("message %s read = %v, want %v", m.ID, m.Read, read[m.ID])
			}
		}

		// Since and Until are inclusive bounds on the created time.
		since := created(t, all[180])
		until := created(t, all[60])
		in := func(id string) bool { c := created(t, id); return !c.Before(since) && !c.After(until) }
		checkIDs(t, "since/until", allHistory(t, s, r, HistoryQuery{Limit: 20, Since: since, Until: until}), filter(in))
		checkIDs(t, "since", allHistory(t, s, r, HistoryQuery{Limit: 30, Since: since}),
			filter(func(id string) bool { return !created(t, id).Before(since) }))
		checkIDs(t, "until", allHistory(t, s, r, HistoryQuery{Limit: 30, Until: until}),
			filter(func(id string) bool { return !created(t, id).After(until) }))
		if got := allHistory(t, s, r, HistoryQuery{Until: created(t, all[len(all)-1]).Add(-time.Millisecond)}); len(got) != 0 {
			t.Fatalf("until before the oldest message returned %v", got)
		}

		// Polling from history's cursor misses nothing published after it.
		h := history(t, s, r, HistoryQuery{Limit: 5})
		later := []string{toUser(t, s, "h", "after"), toAll(t, s, "after"), toGroup(t, s, "ops", "after")}
		res := poll(t, s, r, PollOptions{Cursor: h.Cursor})
		checkIDs(t, "poll from history's cursor", msgIDs(res.Messages), reversed(newestFirst(t, later)))
	})
}

func created(t *testing.T, id string) time.Time {
	t.Helper()
	m, err := parseMsgRef(id)
	if err != nil {
		t.Fatalf("parse %q: %v", id, err)
	}
	return time.UnixMilli(int64(m.entry.ms)).UTC()
}

func TestHistoryRejects(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, b backend) {
		ctx := testCtx(t)
		s := newStore(t, b.rdb, Options{})
		r := Reader{User: "h", Groups: []string{"ops"}}
		for _, tc := range []struct {
			q    HistoryQuery
			want error
		}{
			{HistoryQuery{Limit: MaxHistoryLimit + 1}, ErrInvalid},
			{HistoryQuery{Limit: -1}, ErrInvalid},
			{HistoryQuery{Before: "x.1-0"}, ErrBadID},
			{HistoryQuery{Before: "g.dev.1-0"}, ErrBadID},
			{HistoryQuery{Before: "g.ops.1-0"}, nil},
		} {
			if _, err := s.History(ctx, r, tc.q); !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
				t.Errorf("History(%+v): err = %v, want %v", tc.q, err, tc.want)
			}
		}
	})
}

// TestHistoryEqualEntryIDs pages through entries of different streams that
// share one entry ID: they have a fixed order and none is lost at a page edge.
func TestHistoryEqualEntryIDs(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, b backend) {
		ctx := testCtx(t)
		s := newStore(t, b.rdb, Options{})
		r := Reader{User: "t", Groups: []string{"ops"}}
		c := tail(t, s, r)
		ms := time.Now().UnixMilli()
		add := func(key string, id string) {
			must(t, b.rdb.XAdd(ctx, &redis.XAddArgs{Stream: key, ID: id, Values: []any{"type", "x", "title", id}}).Err(), "XADD %s %s", key, id)
		}
		e0, e1 := fmt.Sprintf("%d-0", ms), fmt.Sprintf("%d-1", ms)
		add(s.k.inbox("t"), e0)
		add(s.k.broadcast(), e0)
		add(s.k.group("ops"), e0)
		add(s.k.broadcast(), e1)
		add(s.k.group("ops"), e1)
		oldestFirst := []string{"b." + e0, "g.ops." + e0, "u." + e0, "b." + e1, "g.ops." + e1}
		for _, limit := range []int{1, 2, 3, 100} {
			checkIDs(t, fmt.Sprintf("history with limit %d", limit),
				allHistory(t, s, r, HistoryQuery{Limit: limit}), reversed(oldestFirst))
			var polled []string
			cur := c
			for range 10 {
				res := poll(t, s, r, PollOptions{Cursor: cur, Limit: limit})
				polled = append(polled, msgIDs(res.Messages)...)
				cur = res.Cursor
				if !res.More {
					break
				}
			}
			checkIDs(t, fmt.Sprintf("polls with limit %d", limit), polled, oldestFirst)
		}
	})
}

// TestHistoryThenPollDuringPublishes reads history while messages are being
// published: every message is in the page or in a poll from its cursor,
// never in both.
func TestHistoryThenPollDuringPublishes(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, b backend) {
		ctx := testCtx(t)
		s := newStore(t, b.rdb, Options{})
		r := Reader{User: "p", Groups: []string{"ops"}}
		const n = 90
		var published []string
		var mu sync.Mutex
		half := make(chan struct{})
		done := make(chan error, 1)
		go func() {
			for i := range n {
				tgt := []Target{{Users: []string{"p"}}, {Broadcast: true}, {Groups: []string{"ops"}}}[i%3]
				ids, err := s.Publish(ctx, tgt, Draft{Title: "x"}, "", testMaxBody)
				if err != nil {
					done <- err
					return
				}
				mu.Lock()
				published = append(published, ids[0])
				mu.Unlock()
				if i == n/2 {
					close(half)
				}
			}
			done <- nil
		}()
		<-half
		h := history(t, s, r, HistoryQuery{Limit: MaxHistoryLimit})
		must(t, <-done, "publish")
		seen := map[string]int{}
		for _, id := range msgIDs(h.Messages) {
			seen[id]++
		}
		cur := h.Cursor
		for {
			res := poll(t, s, r, PollOptions{Cursor: cur})
			for _, id := range msgIDs(res.Messages) {
				seen[id]++
			}
			cur = res.Cursor
			if len(res.Messages) == 0 {
				break
			}
		}
		for _, id := range published {
			if seen[id] != 1 {
				t.Errorf("message %s seen %d times in history+poll", id, seen[id])
			}
		}
		if len(seen) != n {
			t.Errorf("history+poll returned %d distinct messages, want %d", len(seen), n)
		}
	})
}

// TestHistoryPastScanLimit pages with a filter that matches nothing in the
// newest historyScan entries of a stream: the page is cut short but the
// paging goes on, and no match of any stream is skipped.
func TestHistoryPastScanLimit(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, b backend) {
		ctx := testCtx(t)
		s := newStore(t, b.rdb, Options{})
		r := Reader{User: "h"}
		start := time.Now().Add(-time.Hour).UnixMilli()
		add := func(p redis.Pipeliner, key string, ms int64, typ string) string {
			id := fmt.Sprintf("%d-0", ms)
			p.XAdd(ctx, &redis.XAddArgs{Stream: key, ID: id, Values: []any{"type", typ, "title", "t"}})
			return id
		}
		var bMatch, uMatch string
		_, err := b.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			bMatch = "b." + add(p, s.k.broadcast(), start, "rare")
			uMatch = "u." + add(p, s.k.inbox("h"), start+1, "rare")
			for i := range historyScan + 100 {
				add(p, s.k.inbox("h"), start+2+int64(i), "common")
			}
			return nil
		})
		must(t, err, "XADD")
		checkIDs(t, "rare messages", allHistory(t, s, r, HistoryQuery{Types: []string{"rare"}}), []string{uMatch, bMatch})
		first := history(t, s, r, HistoryQuery{Types: []string{"rare"}})
		if first.Next == "" {
			t.Fatal("a page cut short by the scan limit has no next")
		}
		n := len(allHistory(t, s, r, HistoryQuery{Limit: MaxHistoryLimit}))
		if n != historyScan+102 {
			t.Fatalf("unfiltered history has %d messages, want %d", n, historyScan+102)
		}
	})
}
