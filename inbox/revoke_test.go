package inbox

import (
	"maps"
	"reflect"
	"slices"
	"testing"
	"time"
)

// revokeTargets returns the revoke targets of public ids as user sees them.
func revokeTargets(t *testing.T, s *Store, user string, ids ...string) []revokeTarget {
	t.Helper()
	var rs []revokeTarget
	for _, id := range ids {
		m, err := parseMsgRef(id)
		if err != nil {
			t.Fatalf("parse %q: %v", id, err)
		}
		r := revokeTarget{entry: m.entry.String(), pid: "p.u.test.1-0", sender: "test"}
		switch m.kind {
		case 'u':
			r.st, r.user = s.k.userStream(user), user
		case 'g':
			r.st = s.k.groupStream(m.group)
		default:
			r.st = s.k.broadcastStream()
		}
		rs = append(rs, r)
	}
	return rs
}

// revoke revokes the messages with public ids ids (as user sees them) and
// returns whether each got a tombstone.
func revoke(t *testing.T, s *Store, user string, ids ...string) []bool {
	t.Helper()
	out, err := s.revokeStreams(t.Context(), revokeTargets(t, s, user, ids...))
	if err != nil {
		t.Fatalf("revoke %v: %v", ids, err)
	}
	return out
}

// TestRevokeEndsWaitingPolls checks that revoking a message ends every
// waiting poll that may show it, on every instance, within a second, with
// its id in Revoked; that devices whose cursor is before it never get it;
// that history and the unread count lose it; and that revoking again
// writes nothing.
func TestRevokeEndsWaitingPolls(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		key  func(s *Store) string
		send func(t *testing.T, s *Store, title string) string
	}{
		{"inbox", func(s *Store) string { return s.k.inbox("rv") }, func(t *testing.T, s *Store, title string) string { return toUser(t, s, "rv", title) }},
		{"group", func(s *Store) string { return s.k.group("g") }, func(t *testing.T, s *Store, title string) string { return toGroup(t, s, "g", title) }},
		{"broadcast", func(s *Store) string { return s.k.broadcast() }, func(t *testing.T, s *Store, title string) string { return toAll(t, s, title) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			eachBackend(t, func(t *testing.T, b backend) {
				ctx := testCtx(t)
				a := newStore(t, b.rdb, Options{})
				other := newStore(t, b.rdb, Options{Prefix: a.opt.Prefix})
				r := Reader{User: "rv", Groups: []string{"g"}}

				// Three devices: before the message, at it, and past it
				// (past a later message the user then deleted, so that
				// nothing visible follows either of the last two).
				before := tail(t, a, r)
				id := tc.send(t, a, "revoke me")
				at := poll(t, a, r, PollOptions{Cursor: before})
				checkIDs(t, "device at the message", msgIDs(at.Messages), []string{id})
				later := tc.send(t, a, "later")
				past := poll(t, a, r, PollOptions{Cursor: at.Cursor})
				checkIDs(t, "device past the message", msgIDs(past.Messages), []string{later})
				// The deletion's read-state wake-up would end the waits below.
				changedA, changedO := stateWake(t, a, r.User), stateWake(t, other, r.User)
				must(t, a.Delete(ctx, r, later), "delete %s", later)
				changedA()
				changedO()
				unread0 := unread(t, a, r)
				counts0, _, err := a.UnreadCounts(ctx, r)
				must(t, err, "UnreadCounts")
				byType1 := maps.Clone(counts0.ByType) // after the revoke
				if byType1["notification"]--; byType1["notification"] == 0 {
					delete(byType1, "notification")
				}
				xlen0 := xlen(t, b.rdb, tc.key(a))

				// Polls waiting on both instances.
				var waits []<-chan pollOutcome
				for _, s := range []*Store{a, other} {
					for _, c := range []string{at.Cursor, past.Cursor} {
						waits = append(waits, goPoll(ctx, s, r, PollOptions{Cursor: c, Wait: 20 * time.Second}))
					}
				}
				for _, s := range []*Store{a, other} {
					waitFor(t, 5*time.Second, "waiting polls", func() bool { return s.Hub().Waiting() == 2 })
				}
				start := time.Now()
				if got := revoke(t, a, r.User, id); !got[0] {
					t.Fatal("revoke wrote no tombstone")
				}
				for i, w := range waits {
					select {
					case o := <-w:
						must(t, o.err, "waiting poll %d", i)
						if len(o.res.Messages) != 0 || !slices.Equal(o.res.Revoked, []string{id}) {
							t.Fatalf("waiting poll %d: messages %v, revoked %v; want none, [%s]", i, msgIDs(o.res.Messages), o.res.Revoked, id)
						}
						if o.res.Unread != unread0-1 || !maps.Equal(o.res.UnreadByType, byType1) {
							t.Errorf("waiting poll %d: unread %d %v, want %d %v", i, o.res.Unread, o.res.UnreadByType, unread0-1, byType1)
						}
					case <-time.After(time.Second - time.Since(start)):
						t.Fatalf("waiting poll %d did not answer within 1 s of the revoke", i)
					}
				}

				// The device before the message never gets it, waiting or not.
				for _, wait := range []time.Duration{0, 10 * time.Second} {
					res := await(t, goPoll(ctx, other, r, PollOptions{Cursor: before, Wait: wait}), time.Second)
					if len(res.Messages) != 0 || !slices.Equal(res.Revoked, []string{id}) {
						t.Fatalf("device before the message (wait %v): messages %v, revoked %v", wait, msgIDs(res.Messages), res.Revoked)
					}
				}
				if h := allHistory(t, other, r, HistoryQuery{}); len(h) != 0 {
					t.Fatalf("history after the revoke: %v, want nothing", h)
				}
				counts1, _, err := other.UnreadCounts(ctx, r)
				must(t, err, "UnreadCounts")
				if counts1.Total != unread0-1 || !maps.Equal(counts1.ByType, byType1) {
					t.Fatalf("unread %d %v after the revoke, want %d %v", counts1.Total, counts1.ByType, unread0-1, byType1)
				}

				// Again, from either instance: nothing more is written.
				xlen1 := xlen(t, b.rdb, tc.key(a))
				if xlen1 != xlen0 {
					t.Fatalf("XLEN %d after the revoke, want %d (one entry out, one tombstone in)", xlen1, xlen0)
				}
				for _, s := range []*Store{a, other} {
					if got := revoke(t, s, r.User, id); got[0] {
						t.Fatal("a second revoke wrote a tombstone")
					}
				}
				if n := xlen(t, b.rdb, tc.key(a)); n != xlen1 {
					t.Fatalf("XLEN %d after revoking again, want %d", n, xlen1)
				}
				res := poll(t, a, r, PollOptions{Cursor: past.Cursor})
				if !slices.Equal(res.Revoked, []string{id}) || len(res.Messages) != 0 {
					t.Fatalf("after revoking again: messages %v, revoked %v", msgIDs(res.Messages), res.Revoked)
				}
				if res2 := poll(t, a, r, PollOptions{Cursor: res.Cursor}); len(res2.Revoked) != 0 {
					t.Fatalf("a revoke was reported again past its tombstone: %v", res2.Revoked)
				}
			})
		})
	}
}

// TestCachedPollsMatchRedisRevokes checks that waiting polls answered from
// the instance's caches answer exactly what a read from Redis answers
// (messages, revoked ids, unread counts by type) from cursors before,
// between and past messages revoked by another instance and by this one.
func TestCachedPollsMatchRedisRevokes(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, b backend) {
		ctx := testCtx(t)
		s := newStore(t, b.rdb, Options{})
		other := newStore(t, b.rdb, Options{Prefix: s.opt.Prefix})
		plain := plainStore(t, b, s.opt.Prefix)
		r := Reader{User: "crv", Groups: []string{"ops"}}
		keys := []string{s.k.inbox(r.User), s.k.broadcast(), s.k.group("ops")}
		listen(t, s, keys...)

		// caughtUp waits until s has had the wake-up of each stream's newest entry.
		caughtUp := func() {
			t.Helper()
			for _, key := range keys {
				xs, err := b.rdb.XRevRangeN(ctx, key, "+", "-", 1).Result()
				must(t, err, "XREVRANGE %s", key)
				if len(xs) == 0 {
					continue
				}
				e, err := parseEntryID(xs[0].ID)
				must(t, err, "entry id")
				waitFor(t, 5*time.Second, "the wake-up of "+key+" "+xs[0].ID, func() bool {
					s.view.mu.Lock()
					defer s.view.mu.Unlock()
					st := s.view.streams[key]
					return st != nil && st.tailKnown && !st.tail.less(e)
				})
			}
		}
		var cursors []string
		check := func(what string) {
			t.Helper()
			caughtUp()
			for i, c := range cursors {
				got := await(t, goPoll(ctx, s, r, PollOptions{Cursor: c, Wait: 300 * time.Millisecond}), 5*time.Second)
				want := poll(t, plain, r, PollOptions{Cursor: c})
				if len(want.Messages) == 0 && len(want.Revoked) == 0 {
					continue // the waiting poll timed out: its answer may be a wait late
				}
				if !reflect.DeepEqual(got, want) {
					t.Fatalf("%s, cursor %d: waiting poll answered\n%+v\nbut Redis says\n%+v", what, i, got, want)
				}
			}
		}
		d := func(typ, title string) Draft { return Draft{Type: typ, Title: title} }
		cursors = append(cursors, tail(t, s, r))
		var ids []string
		for i, send := range []func() string{
			func() string { return publish(t, other, Target{Users: []string{r.User}}, d("like", "u1"), "")[0] },
			func() string { return publish(t, other, Target{Broadcast: true}, d("notification", "b1"), "")[0] },
			func() string { return publish(t, other, Target{Users: []string{r.User}}, d("reply", "u2"), "")[0] },
			func() string { return publish(t, other, Target{Groups: []string{"ops"}}, d("like", "g1"), "")[0] },
			func() string { return publish(t, other, Target{Users: []string{r.User}}, d("like", "u3"), "")[0] },
		} {
			ids = append(ids, send())
			// A cursor past each message, from a poll that reads Redis.
			res := poll(t, plain, r, PollOptions{Cursor: cursors[i]})
			cursors = append(cursors, res.Cursor)
		}
		check("before any revoke")
		revoke(t, other, r.User, ids[2], ids[1])
		check("after revokes on another instance")
		revoke(t, s, r.User, ids[3], ids[0])
		check("after revokes on this instance")
		if got := revoke(t, other, r.User, ids[:4]...); slices.Contains(got, true) {
			t.Fatalf("revoking again wrote tombstones: %v", got)
		}
		check("after revoking again")
		if n := unread(t, plain, r); n != 1 {
			t.Fatalf("unread %d after revoking all but one message, want 1", n)
		}
	})
}
