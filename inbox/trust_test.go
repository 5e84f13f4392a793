package inbox

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// holdWakeups makes the store's hub sit on every wake-up until the
// returned release is called (or the test ends), as if wake-ups were slow
// to arrive.
func holdWakeups(t *testing.T, s *Store) (release func()) {
	t.Helper()
	gate := make(chan struct{})
	next := s.hub.onNotify
	s.hub.onNotify = func(key, payload string) {
		select {
		case <-gate:
		case <-t.Context().Done():
		}
		next(key, payload)
	}
	var once bool
	return func() {
		if !once {
			once = true
			close(gate)
		}
	}
}

// dropWakeups makes the store's hub lose every wake-up for streams whose
// key has the given suffix, as a refused PUBLISH or a reset cluster link
// would. It must be set before the hub runs.
func dropWakeups(suffix string) func(*Store) {
	return func(s *Store) {
		s.hub.drop = func(payload string) bool {
			key, _, _ := strings.Cut(payload, "\n")
			return strings.HasSuffix(key, suffix)
		}
	}
}

// TestNoWaitPollsReadRedis checks that a poll with timeout 0 answers what
// Redis holds, whatever the instance remembers: here its wake-ups are held
// back, so everything it learnt before the publish is out of date.
func TestNoWaitPollsReadRedis(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, b backend) {
		var release func()
		reader := newStore(t, b.rdb, Options{}, func(s *Store) { release = holdWakeups(t, s) })
		t.Cleanup(release)
		writer := newStore(t, b.rdb, Options{Prefix: reader.opt.Prefix})
		r := Reader{User: "nowait", Groups: []string{"g"}}
		c0 := tail(t, reader, r)
		for _, tc := range []struct {
			name string
			send func() string
		}{
			{"group", func() string { return toGroup(t, writer, "g", "to the group") }},
			{"broadcast", func() string { return toAll(t, writer, "to everyone") }},
			{"inbox", func() string { return toUser(t, writer, r.User, "to the user") }},
		} {
			// The reader reads the streams (and may remember what it read).
			before := poll(t, reader, r, PollOptions{Cursor: c0})
			id := tc.send()
			res := poll(t, reader, r, PollOptions{Cursor: before.Cursor})
			checkIDs(t, tc.name+": poll with timeout 0 after the publish", msgIDs(res.Messages), []string{id})
			if n := unread(t, reader, r); n != res.Unread {
				t.Fatalf("%s: poll says unread %d, Unread says %d", tc.name, res.Unread, n)
			}
			c0 = res.Cursor
		}
	})
}

// TestLostSharedWakeupHeals checks that when an instance misses the
// wake-up of a broadcast or group message, its polls still deliver it:
// polls with timeout 0 at once, waiting polls within TrustFor, whether
// they start after the message or were already waiting; and that unread
// counts catch up in the same bound.
func TestLostSharedWakeupHeals(t *testing.T) {
	t.Parallel()
	const trust = 300 * time.Millisecond
	for _, tc := range []struct {
		name   string
		suffix string
		send   func(t *testing.T, s *Store) string
	}{
		{"group", "group:{g}", func(t *testing.T, s *Store) string { return toGroup(t, s, "g", "to the group") }},
		{"broadcast", "broadcast", func(t *testing.T, s *Store) string { return toAll(t, s, "to everyone") }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			eachBackend(t, func(t *testing.T, b backend) {
				ctx := testCtx(t)
				reader := newStore(t, b.rdb, Options{TrustFor: trust}, dropWakeups(tc.suffix))
				writer := newStore(t, b.rdb, Options{Prefix: reader.opt.Prefix, TrustFor: trust})
				r := Reader{User: "healer", Groups: []string{"g"}}
				c0 := tail(t, reader, r)

				// The reader learns the stream through a woken poll of its
				// own (its inbox wake-ups still arrive).
				w := goPoll(ctx, reader, r, PollOptions{Cursor: c0, Wait: 5 * time.Second})
				waitFor(t, 5*time.Second, "a waiting poll", func() bool { return reader.Hub().Waiting() == 1 })
				first := toUser(t, writer, r.User, "first")
				res := await(t, w, 5*time.Second)
				checkIDs(t, "woken poll", msgIDs(res.Messages), []string{first})
				c1 := res.Cursor
				poll(t, reader, r, PollOptions{Cursor: c1}) // and reads it at once

				// A message whose wake-up the reader never gets.
				lost := tc.send(t, writer)
				now := poll(t, reader, r, PollOptions{Cursor: c1})
				checkIDs(t, "poll with timeout 0", msgIDs(now.Messages), []string{lost})

				start := time.Now()
				res = await(t, goPoll(ctx, reader, r, PollOptions{Cursor: c1, Wait: 10 * time.Second}), 5*time.Second)
				checkIDs(t, "waiting poll started after the message", msgIDs(res.Messages), []string{lost})
				if d := time.Since(start); d > trust+time.Second {
					t.Fatalf("waiting poll answered after %v, want within %v", d, trust+time.Second)
				}
				if want := unread(t, reader, r); res.Unread != want {
					t.Fatalf("waiting poll says unread %d, Redis says %d", res.Unread, want)
				}

				// A poll already asleep when the message comes.
				c2 := res.Cursor
				w = goPoll(ctx, reader, r, PollOptions{Cursor: c2, Wait: 10 * time.Second})
				waitFor(t, 5*time.Second, "a waiting poll", func() bool { return reader.Hub().Waiting() == 1 })
				start = time.Now()
				lost2 := tc.send(t, writer)
				res = await(t, w, 5*time.Second)
				checkIDs(t, "poll asleep when the message came", msgIDs(res.Messages), []string{lost2})
				if d := time.Since(start); d > trust+time.Second {
					t.Fatalf("sleeping poll answered after %v, want within %v", d, trust+time.Second)
				}
				if want := unread(t, reader, r); res.Unread != want {
					t.Fatalf("woken poll says unread %d, Redis says %d", res.Unread, want)
				}
			})
		})
	}
}

// TestViewTrustLapses checks the age part of the trust rule on the view
// itself: every kind of fact stops being served once TrustFor has passed
// since it was learnt, and none is served while the subscription is down.
func TestViewTrustLapses(t *testing.T) {
	t.Parallel()
	live := true
	const trust = time.Hour
	v := newView(func(string) bool { return live }, func(string) bool { return live }, trust)
	e := func(ms uint64) entryID { return entryID{ms, 0} }
	now := time.Now()
	old := now.Add(-trust - time.Second)
	rk := readKey{e(1), 10}
	ck := countKey{stream: "s", after: "0-0"}
	put := func(learnt time.Time) {
		at := v.streamVersion("s")
		v.putTail("s", e(2), at, learnt)
		v.putRead("s", rk, emptyRead, 0, at, learnt)
		v.putCount(ck, countFact{n: 3, upTo: e(2), learnt: learnt}, at)
		v.putState("u", &userState{unreadInbox: 1}, v.userVersion("u"), learnt)
	}
	served := func() (tail, read, count, state bool) {
		_, _, _, tail = v.after("s", e(2), 10, false)
		_, _, read = v.read("s", rk)
		_, count = v.count(ck, now, entryID{})
		state = v.hasState("u", now, now)
		return
	}
	tests := []struct {
		name    string
		learnt  time.Time
		live    bool
		serving bool
	}{
		{"fresh", now, true, true},
		{"lapsed", old, true, false},
		{"fresh but not subscribed", now, false, false},
	}
	for _, tc := range tests {
		live = true
		v.clear()
		put(tc.learnt)
		live = tc.live
		tail, read, count, state := served()
		if tail != tc.serving || read != tc.serving || count != tc.serving || state != tc.serving {
			t.Errorf("%s: tail %v, read %v, count %v, state %v; want all %v", tc.name, tail, read, count, state, tc.serving)
		}
	}
	// A ring entry is a fact of its own: a later wake-up that refreshes
	// the tail does not make an old entry trusted again.
	live = true
	v.clear()
	v.apply(wake{key: "s", id: e(3), prev: e(2), unread: -1, raw: []any{"3-0", []any{"title", "t"}}}, "")
	v.streams["s"].ring[0].learnt = old
	v.apply(wake{key: "s", id: e(4), prev: e(3), unread: -1, raw: []any{"4-0", []any{"title", "t"}}}, "")
	if _, _, _, ok := v.after("s", e(2), 10, false); ok {
		t.Error("a ring entry older than the bound was served")
	}
	if _, _, _, ok := v.after("s", e(3), 10, false); !ok {
		t.Error("a fresh ring entry was not served")
	}
	// A wake-up that does not move the tail (a late one) is no news of it.
	v.streams["s"].learnt = old
	v.apply(wake{key: "s", id: e(3), prev: e(2), unread: -1}, "")
	if _, _, _, ok := v.after("s", e(4), 10, false); ok {
		t.Error("a late wake-up made an old tail look freshly learnt")
	}
	// Reads count against the byte bound.
	v.clear()
	at := v.streamVersion("s")
	v.putRead("s", rk, emptyRead, maxViewBytes+1, at, now)
	if _, _, ok := v.read("s", rk); ok || v.bytes != 0 {
		t.Errorf("a read past the byte bound was kept (%d bytes held)", v.bytes)
	}

	// A wake-up for the stream drops what was derived from its content.
	live = true
	v.clear()
	put(now)
	v.apply(wake{key: "s", id: e(3), prev: e(2), unread: -1}, "")
	if _, _, ok := v.read("s", rk); ok {
		t.Error("a read survived a wake-up for its stream")
	}
	if _, ok := v.count(ck, now, entryID{}); ok {
		t.Error("a count survived a wake-up for its stream")
	}
	// A value read before that wake-up is not stored after it.
	at = v.streamVersion("s")
	v.apply(wake{key: "s", id: e(4), prev: e(3), unread: -1}, "")
	v.putRead("s", rk, emptyRead, 0, at, now)
	if _, _, ok := v.read("s", rk); ok {
		t.Error("a read begun before a wake-up was stored after it")
	}
}

// TestRevokeViewRing checks that a revoke reaches the view's ring: a
// waiting poll from a position before a revoked message is never served
// it from memory, whether the revoke came from another instance (its
// tombstone's wake-up clears the ring slot) or from this one (cleared at
// once, before the wake-up comes back). When the tombstone's wake-up is
// lost, the ring may serve the message only while it is trusted: never
// later than TrustFor after it was learnt, and a poll waiting past it is
// told of the revoke in that bound too.
func TestRevokeViewRing(t *testing.T) {
	t.Parallel()
	const trust = 600 * time.Millisecond
	for _, tc := range []struct {
		name  string
		group bool // a group message, else an inbox message
		// how the revoke reaches the reader: "other" instance, "own"
		// (its wake-up held back), or "lost" (its wake-up dropped).
		via string
	}{
		{"inbox/other", false, "other"},
		{"group/other", true, "other"},
		{"inbox/own", false, "own"},
		{"group/own", true, "own"},
		{"inbox/lost", false, "lost"},
		{"group/lost", true, "lost"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			eachBackend(t, func(t *testing.T, b backend) {
				ctx := testCtx(t)
				var losing, holding atomic.Bool
				gate := make(chan struct{})
				hold := sync.OnceFunc(func() { close(gate) })
				opt := Options{TrustFor: time.Hour}
				if tc.via == "lost" {
					opt.TrustFor = trust
				}
				reader := newStore(t, b.rdb, opt, func(s *Store) {
					s.hub.drop = func(p string) bool { return losing.Load() && strings.Contains(p, "\n6:revoke") }
					next := s.hub.onNotify
					s.hub.onNotify = func(key, payload string) {
						if holding.Load() {
							<-gate // a wake-up slow to arrive
						}
						next(key, payload)
					}
				})
				t.Cleanup(hold) // runs before the hub is stopped
				writer := newStore(t, b.rdb, Options{Prefix: reader.opt.Prefix, TrustFor: opt.TrustFor})
				r := Reader{User: "ring", Groups: []string{"g"}}
				send := func(title string) string {
					if tc.group {
						return toGroup(t, writer, "g", title)
					}
					return toUser(t, writer, r.User, title)
				}
				key := reader.k.inbox(r.User)
				if tc.group {
					key = reader.k.group("g")
				}
				listen(t, reader, key)

				// Fill the reader's ring through wake-ups, leaving one slot
				// for the tombstone; the revoked message sits in the middle.
				c0 := tail(t, reader, r)
				var ids []string
				for i := range recentRing - 1 {
					ids = append(ids, send(fmt.Sprintf("m%d", i)))
				}
				arrived(t, reader, key, ids[len(ids)-1])
				learnt := time.Now() // the ring's entries were learnt before this
				mid := len(ids) / 2
				gone := ids[mid]
				if n := ringHolds(reader, key); n != len(ids) {
					t.Fatalf("the ring holds %d entries, want %d", n, len(ids))
				}
				res := await(t, goPoll(ctx, reader, r, PollOptions{Cursor: c0, Wait: 5 * time.Second}), 5*time.Second)
				checkIDs(t, "poll from before the messages", msgIDs(res.Messages), ids)
				end := res.Cursor
				waiting := goPoll(ctx, reader, r, PollOptions{Cursor: end, Wait: 20 * time.Second})
				waitFor(t, 5*time.Second, "a waiting poll", func() bool { return reader.Hub().Waiting() == 1 })

				switch tc.via {
				case "other":
					revoke(t, writer, r.User, gone)
					// Until its wake-up arrives, the revoke is news this
					// instance has not had yet (as for any change).
					last, _ := parseEntryID(entryOf(t, ids[len(ids)-1]))
					waitFor(t, 5*time.Second, "the tombstone's wake-up", func() bool {
						reader.view.mu.Lock()
						defer reader.view.mu.Unlock()
						return last.less(reader.view.streams[key].tail)
					})
				case "own":
					holding.Store(true)
					revoke(t, reader, r.User, gone)
				case "lost":
					losing.Store(true)
					revoke(t, writer, r.User, gone)
				}
				revoked := time.Now()
				want := slices.Delete(slices.Clone(ids), mid, mid+1)
				for {
					start := time.Now()
					res := await(t, goPoll(ctx, reader, r, PollOptions{Cursor: c0, Wait: 5 * time.Second}), 5*time.Second)
					if !slices.Contains(msgIDs(res.Messages), gone) {
						checkIDs(t, "poll from before the revoked message", msgIDs(res.Messages), want)
						if !slices.Equal(res.Revoked, []string{gone}) {
							t.Fatalf("revoked %v, want [%s]", res.Revoked, gone)
						}
						break
					}
					if tc.via != "lost" {
						t.Fatalf("a waiting poll from before the revoke was served the revoked message %s (%s)", gone, tc.via)
					}
					if d := start.Sub(learnt); d > trust {
						t.Fatalf("the revoked message was served to a poll begun %v after it was learnt, past TrustFor %v", d, trust)
					}
				}
				// The waiting poll hears of the revoke through its wake-up
				// (held back until now for the own instance's), or once
				// what it knows lapses.
				hold()
				o := <-waiting
				must(t, o.err, "poll waiting past the message")
				if !slices.Equal(o.res.Revoked, []string{gone}) {
					t.Fatalf("poll waiting past the message: revoked %v", o.res.Revoked)
				}
				if d := time.Since(revoked); tc.via == "lost" && d > trust+time.Second {
					t.Fatalf("poll waiting past the message heard of the lost revoke after %v", d)
				}
			})
		})
	}
}

// ringHolds returns how many entries with fields s's view holds in the
// ring of stream key.
func ringHolds(s *Store, key string) int {
	s.view.mu.Lock()
	defer s.view.mu.Unlock()
	n := 0
	if st := s.view.streams[key]; st != nil && st.ring != nil {
		for _, e := range st.ring {
			if e.set && e.raw != nil {
				n++
			}
		}
	}
	return n
}
