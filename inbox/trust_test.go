package inbox

import (
	"strings"
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
	v := newView(func() bool { return live }, trust)
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
