package inbox

import (
	"errors"
	"math/rand/v2"
	"reflect"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

func TestParseWake(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		payload string
		ok      bool
		want    wake
	}{
		{"fields", "k\n5-1\n5-0\n3\n0\n5:title2:hi4:body0:", true,
			wake{key: "k", id: entryID{5, 1}, prev: entryID{5, 0}, unread: 3, typeUnread: -1, raw: []any{"5-1", []any{"title", "hi", "body", ""}}, size: 11}},
		{"newline in a value", "k\n6-0\n0-0\n-1\n99\n4:body3:a\nb", true,
			wake{key: "k", id: entryID{6, 0}, unread: -1, typeUnread: -1, expires: 99, raw: []any{"6-0", []any{"body", "a\nb"}}, size: 7}},
		{"fields left out", "k\n7-0\n6-0\n1\n0\n-", true, wake{key: "k", id: entryID{7, 0}, prev: entryID{6, 0}, unread: 1, typeUnread: -1}},
		{"count of the type", "k\n7-0\n6-0\n4,2\n0\n-", true, wake{key: "k", id: entryID{7, 0}, prev: entryID{6, 0}, unread: 4, typeUnread: 2}},
		{"bad count of the type", "k\n7-0\n6-0\n4,x\n0\n-", false, wake{}},
		{"tombstone", "k\n8-0\n7-0\n-1\n0\n6:revoke3:5-13:pid0:", true,
			wake{key: "k", id: entryID{8, 0}, prev: entryID{7, 0}, unread: -1, typeUnread: -1, revokes: entryID{5, 1}, raw: []any{"8-0", []any{"revoke", "5-1", "pid", ""}}, size: 12}},
		{"key only", "k", false, wake{}},
		{"bad id", "k\nx\n6-0\n1\n0\n-", false, wake{}},
		{"length past the end", "k\n7-0\n6-0\n1\n0\n9:abc", false, wake{}},
		{"odd field count", "k\n7-0\n6-0\n1\n0\n1:a", false, wake{}},
		{"no length", "k\n7-0\n6-0\n1\n0\nabc", false, wake{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := parseWake(tc.payload)
			if ok != tc.ok || !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("parseWake(%q) = %+v, %v; want %+v, %v", tc.payload, got, ok, tc.want, tc.ok)
			}
		})
	}
}

// TestWakeFieldsRoundTrip checks that fields encoded for a wake-up by
// Publish come back unchanged from parseWake.
func TestWakeFieldsRoundTrip(t *testing.T) {
	t.Parallel()
	tests := [][]any{
		{"type", "notification"},
		{"type", "x", "title", "通知", "body", "a\nb:3:c", "data", `{"k":[1,2]}`},
		{"type", "", "body", ""},
	}
	for _, fv := range tests {
		got, ok := parseWake("k\n2-0\n1-0\n1\n0\n" + wakeFields(fv))
		if !ok {
			t.Fatalf("parseWake refused the encoding of %q", fv)
		}
		if f, _ := got.raw[1].([]any); !reflect.DeepEqual(f, fv) {
			t.Errorf("fields %q came back as %q", fv, f)
		}
	}
}

// TestViewAfter checks the chain rule: entries come from the view only
// as an unbroken chain from the position to the known tail.
func TestViewAfter(t *testing.T) {
	t.Parallel()
	live := true
	c := newView(func(string) bool { return live }, func(string) bool { return live }, time.Minute)
	e := func(ms uint64) entryID { return entryID{ms, 0} }
	add := func(id, prev uint64, fields bool) {
		w := wake{key: "s", id: e(id), prev: e(prev), unread: -1}
		if fields {
			w.raw = []any{e(id).String(), []any{"title", "t"}}
		}
		c.apply(w, "")
	}
	if _, _, ok := after3(c, "s", e(0), 10, false); ok {
		t.Fatal("an unknown stream must be read from Redis")
	}
	add(1, 0, true)
	add(2, 1, true)
	add(3, 2, true)
	ids := func(reply []any) []string {
		var out []string
		for _, r := range reply[1].([]any) {
			out = append(out, r.([]any)[0].(string))
		}
		return out
	}
	tests := []struct {
		name     string
		pos      uint64
		count    int
		upToDate bool
		ok       bool
		want     []string
	}{
		{"from the start", 0, 10, false, true, []string{"1-0", "2-0", "3-0"}},
		{"from the middle", 2, 10, false, true, []string{"3-0"}},
		{"at the tail", 3, 10, true, true, nil},
		{"past the tail", 9, 10, true, true, nil},
		{"count caps the chain", 0, 2, false, true, []string{"1-0", "2-0"}},
		{"not a predecessor in the ring", 1, 10, false, true, []string{"2-0", "3-0"}},
	}
	for _, tc := range tests {
		reply, upToDate, ok := after3(c, "s", e(tc.pos), tc.count, false)
		if ok != tc.ok || upToDate != tc.upToDate {
			t.Fatalf("%s: ok %v upToDate %v, want %v %v", tc.name, ok, upToDate, tc.ok, tc.upToDate)
		}
		if ok && !upToDate && !reflect.DeepEqual(ids(reply), tc.want) {
			t.Fatalf("%s: got %v, want %v", tc.name, ids(reply), tc.want)
		}
	}
	// A position between known entries (say an entry since deleted, or a
	// crafted cursor) has no chain: Redis decides.
	if _, _, ok := after3(c, "s", entryID{1, 5}, 10, false); ok {
		t.Fatal("a position that is no entry's predecessor must be read from Redis")
	}
	// An entry whose fields were left out breaks the chain.
	add(4, 3, false)
	if _, _, ok := after3(c, "s", e(3), 10, false); ok {
		t.Fatal("an entry without fields must be read from Redis")
	}
	if _, upToDate, _ := after3(c, "s", e(4), 10, false); !upToDate {
		t.Fatal("an entry without fields still moves the tail")
	}
	// Past the byte budget the rings are emptied; the tails stay.
	big := wake{key: "s", id: e(5), prev: e(4), unread: -1, raw: []any{"5-0", []any{"body", "x"}}, size: maxViewBytes}
	c.apply(big, "")
	c.apply(wake{key: "s", id: e(6), prev: e(5), unread: -1, raw: []any{"6-0", []any{"body", "y"}}, size: 1}, "")
	if _, _, ok := after3(c, "s", e(4), 10, false); ok {
		t.Fatal("entries dropped for the byte budget must be read from Redis")
	}
	if reply, _, ok := after3(c, "s", e(5), 10, false); !ok || len(ids(reply)) != 1 {
		t.Fatal("the entry added after the budget was reset must be served")
	}
	if c.bytes != 1 {
		t.Fatalf("ring bytes %d, want 1", c.bytes)
	}
	live = false
	if _, _, ok := after3(c, "s", e(6), 10, false); ok {
		t.Fatal("the cache must not be used while wake-ups are not received")
	}
	live = true
	c.clear()
	if _, _, ok := after3(c, "s", e(6), 10, false); ok {
		t.Fatal("clear must forget the tails")
	}
}

// after3 is view.after without the learnt time.
func after3(c *view, key string, pos entryID, count int, inbox bool) ([]any, bool, bool) {
	reply, upToDate, _, ok := c.after(key, pos, count, inbox)
	return reply, upToDate, ok
}

// TestCachedPollsMatchRedis checks that waiting polls answered from the
// instance's caches answer exactly what a read from Redis answers, through
// publishes, read marks and deletions made on another instance — and that
// they do come from the caches.
func TestCachedPollsMatchRedis(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, b backend) {
		ctx := testCtx(t)
		s := newStore(t, b.rdb, Options{})
		other := newStore(t, b.rdb, Options{Prefix: s.opt.Prefix}) // another instance (another device)
		plain := plainStore(t, b, s.opt.Prefix)
		r := Reader{User: "cache", Groups: []string{"ops"}}

		// check answers a waiting poll from cursor c and compares it with
		// the plain path's answer from the same cursor.
		check := func(what, c string) PollResult {
			t.Helper()
			got := await(t, goPoll(ctx, s, r, PollOptions{Cursor: c, Wait: 10 * time.Second}), 5*time.Second)
			want := poll(t, plain, r, PollOptions{Cursor: c})
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("%s: waiting poll answered\n%+v\nbut Redis says\n%+v", what, got, want)
			}
			return got
		}

		c0 := tail(t, s, r)
		// Warm up: a waiting poll woken by a publish.
		w := goPoll(ctx, s, r, PollOptions{Cursor: c0, Wait: 10 * time.Second})
		waitFor(t, 5*time.Second, "a waiting poll", func() bool { return s.Hub().Waiting() == 1 })
		id1 := toUser(t, other, r.User, "one")
		first := await(t, w, 5*time.Second)
		checkIDs(t, "woken poll", msgIDs(first.Messages), []string{id1})

		// Now the instance knows the inbox's tail and the user's state: a
		// poll at the tail sleeps, and one woken by a publish answers,
		// without a single Redis call.
		w = goPoll(ctx, s, r, PollOptions{Cursor: first.Cursor, Wait: 10 * time.Second})
		waitFor(t, 5*time.Second, "a waiting poll", func() bool { return s.Hub().Waiting() == 1 })
		before := s.scripts.Load()
		id2 := toUser(t, other, r.User, "two")
		second := await(t, w, 5*time.Second)
		checkIDs(t, "woken poll", msgIDs(second.Messages), []string{id2})
		if n := s.scripts.Load() - before; n != 0 {
			t.Errorf("a poll woken by an inbox publish made %d Redis calls, want 0", n)
		}
		if second.Unread != 2 || second.Messages[0].Read {
			t.Fatalf("woken poll: unread %d, read %v; want 2, false", second.Unread, second.Messages[0].Read)
		}

		check("two inbox messages", c0)
		// A waiting poll may answer before the wake-up of a message
		// published elsewhere reaches this instance (its next poll gets
		// it); the comparison needs the wake-ups to have arrived.
		bid := toAll(t, other, "everyone")
		gid := toGroup(t, other, "ops", "ops")
		arrived(t, s, s.k.broadcast(), bid)
		arrived(t, s, s.k.group("ops"), gid)
		check("inbox, broadcast and group", c0)
		changed := stateWake(t, s, r.User)
		if _, err := other.MarkRead(ctx, r, []string{id1}, false); err != nil {
			t.Fatal(err)
		}
		changed()
		if res := check("after a read mark", c0); !res.Messages[0].Read {
			t.Fatal("the message marked read is not read")
		}
		changed = stateWake(t, s, r.User)
		if err := other.Delete(ctx, r, id2); err != nil {
			t.Fatal(err)
		}
		changed()
		res := check("after a deletion", c0)
		for _, m := range res.Messages {
			if m.ID == id2 {
				t.Fatal("a deleted message was delivered")
			}
		}
		changed = stateWake(t, s, r.User)
		if _, err := other.MarkRead(ctx, r, nil, true); err != nil {
			t.Fatal(err)
		}
		changed()
		if res := check("after mark all read", c0); res.Unread != 0 {
			t.Fatalf("unread %d after mark all read", res.Unread)
		}
	})
}

// arrived waits until s has seen the wake-up of the message with public id id in stream key.
func arrived(t *testing.T, s *Store, key, id string) {
	t.Helper()
	e, err := parseEntryID(entryOf(t, id))
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "the wake-up of "+id, func() bool {
		s.view.mu.Lock()
		defer s.view.mu.Unlock()
		st := s.view.streams[key]
		return st != nil && st.tailKnown && !st.tail.less(e)
	})
}

// stateWake returns a function that waits until s has received a
// read-state wake-up for user after stateWake was called.
func stateWake(t *testing.T, s *Store, user string) func() {
	t.Helper()
	listen(t, s, s.k.read(user))
	gen := func() uint64 {
		s.view.mu.Lock()
		defer s.view.mu.Unlock()
		return s.view.user(user).gen
	}
	before := gen()
	return func() {
		t.Helper()
		waitFor(t, 5*time.Second, "a read-state wake-up", func() bool { return gen() > before })
	}
}

// TestOwnReadMarkSeenAtOnce checks that a read mark made through an
// instance is seen by that instance's next poll even while the wake-up
// that announces it has not come back yet.
func TestOwnReadMarkSeenAtOnce(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, b backend) {
		ctx := testCtx(t)
		var hold atomic.Bool
		release := make(chan struct{})
		s := newStore(t, b.rdb, Options{}, func(s *Store) {
			next := s.hub.onNotify
			s.hub.onNotify = func(key, payload string) {
				if hold.Load() {
					<-release // a wake-up stuck on its way
				}
				next(key, payload)
			}
		})
		t.Cleanup(func() { close(release) }) // runs before the hub is stopped
		other := newStore(t, b.rdb, Options{Prefix: s.opt.Prefix})
		r := Reader{User: "own"}
		listen(t, s, s.k.inbox(r.User), s.k.read(r.User))
		c0 := tail(t, s, r)
		id := toUser(t, other, r.User, "read me")
		arrived(t, s, s.k.inbox(r.User), id)
		// The instance now holds the entry (unread) and the user's state.
		first := await(t, goPoll(ctx, s, r, PollOptions{Cursor: c0, Wait: 5 * time.Second}), 5*time.Second)
		if len(first.Messages) != 1 || first.Messages[0].Read || first.Unread != 1 {
			t.Fatalf("before the read mark: %+v", first)
		}
		hold.Store(true)
		if _, err := s.MarkRead(ctx, r, []string{id}, false); err != nil {
			t.Fatal(err)
		}
		res := await(t, goPoll(ctx, s, r, PollOptions{Cursor: c0, Wait: 5 * time.Second}), 5*time.Second)
		if len(res.Messages) != 1 || !res.Messages[0].Read || res.Unread != 0 {
			t.Fatalf("after the read mark: read %v, unread %d; want true, 0", res.Messages[0].Read, res.Unread)
		}
		hold.Store(false)
	})
}

// TestLostWakeupHeals checks that a message whose wake-up never arrived
// (written here without one) still reaches waiting polls once the cache's
// trust in the old tail runs out.
func TestLostWakeupHeals(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, b backend) {
		ctx := testCtx(t)
		s := newStore(t, b.rdb, Options{TrustFor: 300 * time.Millisecond})
		r := Reader{User: "lost"}
		c := tail(t, s, r)
		toUser(t, s, r.User, "seen") // the cache now knows the inbox's tail
		res := await(t, goPoll(ctx, s, r, PollOptions{Cursor: c, Wait: 5 * time.Second}), 5*time.Second)
		c = res.Cursor
		id, err := b.rdb.XAdd(ctx, &redis.XAddArgs{Stream: s.k.inbox(r.User), Values: []string{"type", "t", "title", "silent"}}).Result()
		if err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(5 * time.Second)
		for {
			res := await(t, goPoll(ctx, s, r, PollOptions{Cursor: c, Wait: 200 * time.Millisecond}), 5*time.Second)
			if len(res.Messages) > 0 {
				if got := entryOf(t, res.Messages[0].ID); got != id {
					t.Fatalf("got entry %s, want %s", got, id)
				}
				return
			}
			if time.Now().After(deadline) {
				t.Fatal("a message whose wake-up was lost never reached waiting polls")
			}
		}
	})
}

// TestCachedPollsMatchRedisLostWakeups compares waiting polls with polls
// that read Redis, as TestCachedPollsMatchRedis does, while the instance
// loses wake-ups at random (and now and then its subscription): once
// TrustFor has passed since the last change, the two must agree.
func TestCachedPollsMatchRedisLostWakeups(t *testing.T) {
	t.Parallel()
	const trust = 200 * time.Millisecond
	eachBackend(t, func(t *testing.T, b backend) {
		ctx := testCtx(t)
		rng := rand.New(rand.NewPCG(7, 11))
		var dropping atomic.Bool
		s := newStore(t, b.rdb, Options{TrustFor: trust}, func(s *Store) {
			s.hub.drop = func(string) bool { return dropping.Load() }
		})
		other := newStore(t, b.rdb, Options{Prefix: s.opt.Prefix, TrustFor: trust})
		plain := plainStore(t, b, s.opt.Prefix)
		r := Reader{User: "lossy", Groups: []string{"ops"}}
		c0 := tail(t, s, r)
		// Never deleted: a poll from c0 always has something to answer.
		ids := []string{toUser(t, other, r.User, "first")}
		for round := range 24 {
			dropping.Store(rng.IntN(2) == 0)
			switch rng.IntN(6) {
			case 0:
				ids = append(ids, toUser(t, other, r.User, "inbox"))
			case 1:
				ids = append(ids, toAll(t, other, "broadcast"))
			case 2:
				ids = append(ids, toGroup(t, other, "ops", "group"))
			case 3:
				if len(ids) > 0 {
					if _, err := other.MarkRead(ctx, r, []string{ids[rng.IntN(len(ids))]}, false); err != nil {
						t.Fatal(err)
					}
				}
			case 4:
				if len(ids) > 1 {
					if err := other.Delete(ctx, r, ids[1+rng.IntN(len(ids)-1)]); err != nil && !errors.Is(err, ErrNotFound) {
						t.Fatal(err)
					}
				}
			case 5:
				s.hub.kick()
				waitFor(t, 5*time.Second, "the subscription back", s.Hub().Connected)
			}
			time.Sleep(trust) // the bound this test is about: nothing to observe instead
			got := await(t, goPoll(ctx, s, r, PollOptions{Cursor: c0, Wait: 10 * time.Second}), 10*time.Second)
			want := poll(t, plain, r, PollOptions{Cursor: c0})
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("round %d: waiting poll answered\n%+v\nbut Redis says\n%+v", round, got, want)
			}
		}
	})
}

// plainStore returns a store whose hub never runs: it is never subscribed,
// so it trusts nothing and every answer is read from Redis at that moment
// (the plain path that cached answers are compared with).
func plainStore(t *testing.T, b backend, prefix string) *Store {
	t.Helper()
	s := New(b.rdb, Options{Prefix: prefix})
	t.Cleanup(s.Close)
	return s
}
