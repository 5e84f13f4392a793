package inbox

import (
	"errors"
	"strconv"
	"testing"
	"time"

	"pollbox/internal/redistest"
)

// readFlags returns id → Read of every message in the reader's history.
func readFlags(t *testing.T, s *Store, r Reader) map[string]bool {
	t.Helper()
	out := map[string]bool{}
	for _, m := range history(t, s, r, HistoryQuery{Limit: MaxHistoryLimit}).Messages {
		out[m.ID] = m.Read
	}
	return out
}

func wantUnread(t *testing.T, s *Store, r Reader, want int, when string) {
	t.Helper()
	if got := unread(t, s, r); got != want {
		t.Fatalf("%s: unread of %s = %d, want %d", when, r.User, got, want)
	}
}

func TestReadStateAcrossDevices(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, b backend) {
		ctx := testCtx(t)
		s := newStore(t, b.rdb, Options{})
		r := Reader{User: "42", Groups: []string{"ops"}}
		other := Reader{User: "43", Groups: []string{"ops"}}
		u1, u2 := toUser(t, s, "42", "u1"), toUser(t, s, "42", "u2")
		bc, g := toAll(t, s, "bc"), toGroup(t, s, "ops", "g")
		wantUnread(t, s, r, 4, "after publishing")
		wantUnread(t, s, other, 2, "after publishing")

		// Device A marks two messages read; device B's waiting poll ends
		// with the new count.
		c := tail(t, s, r)
		devA := goPoll(ctx, s, r, PollOptions{Cursor: c, Wait: 10 * time.Second})
		devB := goPoll(ctx, s, r, PollOptions{Cursor: c, Wait: 10 * time.Second})
		waitFor(t, 5*time.Second, "two waiting devices", func() bool { return s.Hub().Waiting() == 2 })
		n, err := s.MarkRead(ctx, r, []string{u1, bc}, false)
		must(t, err, "MarkRead")
		if n != 2 {
			t.Fatalf("MarkRead returned unread %d, want 2", n)
		}
		for name, ch := range map[string]<-chan pollOutcome{"A": devA, "B": devB} {
			res := await(t, ch, time.Second)
			if len(res.Messages) != 0 || res.Unread != 2 {
				t.Fatalf("device %s: %v unread %d, want no messages and unread 2", name, msgIDs(res.Messages), res.Unread)
			}
		}
		flags := readFlags(t, s, r)
		if !flags[u1] || !flags[bc] || flags[u2] || flags[g] {
			t.Fatalf("read flags %v: want %s and %s read only", flags, u1, bc)
		}
		wantUnread(t, s, other, 2, "another user after 42 read")
		if f := readFlags(t, s, other); f[bc] || f[g] {
			t.Fatalf("another user's flags %v: shared messages read for everyone", f)
		}

		n, err = s.MarkRead(ctx, r, nil, true)
		must(t, err, "MarkRead all")
		if n != 0 {
			t.Fatalf("MarkRead all returned unread %d", n)
		}
		for id, read := range readFlags(t, s, r) {
			if !read {
				t.Fatalf("%s unread after MarkRead all", id)
			}
		}

		u3, bc2, g2 := toUser(t, s, "42", "u3"), toAll(t, s, "bc2"), toGroup(t, s, "ops", "g2")
		wantUnread(t, s, r, 3, "new messages after read all")
		if n, err = s.MarkRead(ctx, r, []string{g2}, false); err != nil || n != 2 {
			t.Fatalf("MarkRead g2 = %d, %v; want 2", n, err)
		}
		if n, err = s.MarkRead(ctx, r, []string{u3, bc2}, false); err != nil || n != 0 {
			t.Fatalf("MarkRead u3, bc2 = %d, %v; want 0", n, err)
		}
		toUser(t, s, "42", "u4")
		wantUnread(t, s, r, 1, "one more")
		if n, err = s.MarkRead(ctx, r, nil, true); err != nil || n != 0 {
			t.Fatalf("MarkRead all = %d, %v; want 0", n, err)
		}

		// Delete: an inbox entry leaves the stream; a shared one is hidden
		// for this user only.
		du, db, dg := toUser(t, s, "42", "du"), toAll(t, s, "db"), toGroup(t, s, "ops", "dg")
		wantUnread(t, s, r, 3, "before deleting")
		must(t, s.Delete(ctx, r, du), "Delete %s", du)
		xs, err := b.rdb.XRange(ctx, s.k.inbox("42"), "-", "+").Result()
		must(t, err, "XRANGE")
		for _, x := range xs {
			if "u."+x.ID == du {
				t.Fatalf("deleted entry %s still in the inbox stream", du)
			}
		}
		wantUnread(t, s, r, 2, "after deleting an inbox message")
		must(t, s.Delete(ctx, r, db), "Delete %s", db)
		wantUnread(t, s, r, 1, "after deleting a broadcast")
		must(t, s.Delete(ctx, r, dg), "Delete %s", dg)
		wantUnread(t, s, r, 0, "after deleting a group message")
		hist := readFlags(t, s, r)
		for _, id := range []string{du, db, dg} {
			if _, ok := hist[id]; ok {
				t.Fatalf("deleted %s still in history", id)
			}
		}
		seen := readFlags(t, s, other)
		if _, ok := seen[db]; !ok {
			t.Fatalf("broadcast %s hidden for another user too", db)
		}
		if _, ok := seen[dg]; !ok {
			t.Fatalf("group message %s hidden for another user too", dg)
		}
		wantUnread(t, s, other, 6, "another user after 42 deleted")
		res := poll(t, s, r, PollOptions{Cursor: c})
		for _, m := range res.Messages {
			if m.ID == du || m.ID == db || m.ID == dg {
				t.Fatalf("poll returned deleted %s", m.ID)
			}
		}

		for _, tc := range []struct {
			id   string
			want error
		}{
			{du, ErrNotFound}, {db, ErrNotFound}, {dg, ErrNotFound},
			{"u.1-0", ErrNotFound}, {"g.dev.1-0", ErrNotFound},
			{"nonsense", ErrBadID}, {"u.01-0", ErrBadID},
		} {
			if err := s.Delete(ctx, r, tc.id); !errors.Is(err, tc.want) {
				t.Errorf("Delete(%q) = %v, want %v", tc.id, err, tc.want)
			}
		}
		for _, tc := range []struct {
			ids  []string
			want error
		}{
			{nil, ErrInvalid}, {[]string{"bad"}, ErrBadID}, {[]string{"g.dev.1-0"}, ErrNotFound},
		} {
			if _, err := s.MarkRead(ctx, r, tc.ids, false); !errors.Is(err, tc.want) {
				t.Errorf("MarkRead(%q) = %v, want %v", tc.ids, err, tc.want)
			}
		}
	})
}

func TestExpiry(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, b backend) {
		ctx := testCtx(t)
		clock := &fakeClock{}
		s := newStore(t, b.rdb, Options{Now: clock.Now})
		r := Reader{User: "42", Groups: []string{"ops"}}
		c := tail(t, s, r)
		keep := toUser(t, s, "42", "stays")
		short := Draft{Title: "short-lived", ExpiresIn: time.Second}
		eu := publish(t, s, Target{Users: []string{"42"}}, short, "")[0]
		eb := publish(t, s, Target{Broadcast: true}, short, "")[0]
		eg := publish(t, s, Target{Groups: []string{"ops"}}, short, "")[0]
		wantUnread(t, s, r, 4, "before expiry")

		xs, err := b.rdb.XRange(ctx, s.k.inbox("42"), entryOf(t, eu), entryOf(t, eu)).Result()
		must(t, err, "XRANGE")
		if len(xs) != 1 {
			t.Fatalf("entry %s not found", eu)
		}
		exp, err := strconv.ParseInt(xs[0].Values["expires"].(string), 10, 64)
		if err != nil || exp-clock.Now().UnixMilli() > 1000 || exp-clock.Now().UnixMilli() < 500 {
			t.Fatalf("expires field %v is not about a second from now", xs[0].Values["expires"])
		}

		res := poll(t, s, r, PollOptions{Cursor: c})
		checkIDs(t, "poll before expiry", msgIDs(res.Messages), reversed(newestFirst(t, []string{keep, eu, eb, eg})))
		for _, m := range res.Messages {
			if (m.ID == keep) != m.Expires.IsZero() {
				t.Fatalf("%s expires %v", m.ID, m.Expires)
			}
			if m.ID == eu && m.Expires.UnixMilli() != exp {
				t.Fatalf("%s expires at %d, want %d", eu, m.Expires.UnixMilli(), exp)
			}
		}

		clock.Advance(2 * time.Second)
		wantUnread(t, s, r, 1, "after expiry")
		checkIDs(t, "history after expiry", msgIDs(history(t, s, r, HistoryQuery{}).Messages), []string{keep})
		checkIDs(t, "poll after expiry", msgIDs(poll(t, s, r, PollOptions{Cursor: c}).Messages), []string{keep})
		// Nothing came back: the count stays right after further reads.
		wantUnread(t, s, r, 1, "after reading")
	})
}

// delayInvalidation holds the store's hub in its first wake-up until the
// test ends, as if the wake-up were slow to arrive: only the store's own
// bookkeeping can keep cached counts honest meanwhile.
func delayInvalidation(t *testing.T) func(*Store) {
	return func(s *Store) {
		next := s.hub.onNotify
		s.hub.onNotify = func(key, payload string) {
			<-t.Context().Done()
			if next != nil {
				next(key, payload)
			}
		}
	}
}

// TestUnreadCountNotStale checks that unread counts include messages that
// were just published or just delivered, also when the wake-ups that
// invalidate cached counts have not been processed yet.
func TestUnreadCountNotStale(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, b backend) {
		prefix := redistest.Prefix(t)
		publisher := newStore(t, b.rdb, Options{Prefix: prefix})
		reader := newStore(t, b.rdb, Options{Prefix: prefix}, delayInvalidation(t))
		r := Reader{User: "u", Groups: []string{"ops"}}
		for round := 1; round <= 3; round++ {
			c := tail(t, reader, r) // counts are cached now
			bid := toAll(t, publisher, "bc")
			gid := toGroup(t, publisher, "ops", "g")
			res := poll(t, reader, r, PollOptions{Cursor: c})
			checkIDs(t, "poll", msgIDs(res.Messages), []string{bid, gid})
			if res.Unread != 2*round {
				t.Fatalf("round %d: poll delivered %v with unread %d, want %d", round, msgIDs(res.Messages), res.Unread, 2*round)
			}
		}
		// A store counts what it published itself at once.
		wantUnread(t, reader, r, 6, "before publishing")
		toAll(t, reader, "own")
		toGroup(t, reader, "ops", "own")
		wantUnread(t, reader, r, 8, "after publishing through the same store")
	})
}

// TestStateChangeWithOtherWakeups delivers a read-state wake-up together
// with a stream wake-up that brings nothing new: the waiting poll must
// still answer with the new unread count.
func TestStateChangeWithOtherWakeups(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, b backend) {
		ctx := testCtx(t)
		s := newStore(t, b.rdb, Options{})
		r := Reader{User: "42"}
		id := toUser(t, s, "42", "unread")
		c := tail(t, s, r)
		waiting := goPoll(ctx, s, r, PollOptions{Cursor: c, Wait: 10 * time.Second})
		waitFor(t, 5*time.Second, "a waiting poll", func() bool { return s.Hub().Waiting() == 1 })

		// Another device reads the message; its wake-up arrives together
		// with one for the inbox, as if both came in one burst.
		must(t, b.rdb.ZRem(ctx, s.k.unread("42"), entryOf(t, id)).Err(), "ZREM")
		h := s.Hub()
		// As Notify would, let the store's caches see both wake-ups first.
		h.onNotify(s.k.inbox("42"), s.k.inbox("42"))
		h.onNotify(s.k.read("42"), s.k.read("42"))
		sh := h.shard(s.k.read("42"))
		sh.mu.Lock()
		for w := range sh.byKey[s.k.read("42")] {
			w.mu.Lock()
			if w.fired == nil {
				w.fired = map[string]struct{}{}
			}
			w.fired[s.k.inbox("42")] = struct{}{}
			w.fired[s.k.read("42")] = struct{}{}
			w.mu.Unlock()
			select {
			case w.C <- struct{}{}:
			default:
			}
			if w.notify != nil {
				w.notify()
			}
		}
		sh.mu.Unlock()
		res := await(t, waiting, time.Second)
		if len(res.Messages) != 0 || res.Unread != 0 {
			t.Fatalf("poll answered %v with unread %d, want nothing and unread 0", msgIDs(res.Messages), res.Unread)
		}
	})
}
