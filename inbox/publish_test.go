package inbox

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

func TestIdempotentPublish(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, b backend) {
		s := newStore(t, b.rdb, Options{})
		p := s.opt.Prefix
		for _, tc := range []struct {
			name          string
			first, second Target
			keys          []string // stream of each target of second
		}{
			{"users", Target{Users: []string{"a"}}, Target{Users: []string{"a", "b"}},
				[]string{p + "inbox:{a}", p + "inbox:{b}"}},
			{"groups", Target{Groups: []string{"user:list"}}, Target{Groups: []string{"user:list", "ops"}},
				[]string{p + "group:{user:list}", p + "group:{ops}"}},
			{"broadcast", Target{Broadcast: true}, Target{Broadcast: true},
				[]string{p + "broadcast"}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				key := "order-991-shipped:" + tc.name
				// A first attempt reached only the first recipient…
				first := publish(t, s, tc.first, Draft{Title: "shipped"}, key)
				// …the retry reaches all, creating no second copy.
				second := publish(t, s, tc.second, Draft{Title: "shipped"}, key)
				if second[0] != first[0] {
					t.Fatalf("retry id %s, first attempt's %s", second[0], first[0])
				}
				third := publish(t, s, tc.second, Draft{Title: "shipped"}, key)
				checkIDs(t, "second retry", third, second)
				for _, k := range tc.keys {
					if n := xlen(t, b.rdb, k); n != 1 {
						t.Fatalf("XLEN %s = %d, want 1", k, n)
					}
				}
				other := publish(t, s, tc.second, Draft{Title: "other"}, key+"-2")
				for i := range other {
					if other[i] == second[i] {
						t.Fatalf("another key reused id %s", other[i])
					}
				}
				for _, k := range tc.keys {
					if n := xlen(t, b.rdb, k); n != 2 {
						t.Fatalf("XLEN %s = %d after a second key, want 2", k, n)
					}
				}
			})
		}
		// a holds one copy of each of its two messages, and two broadcasts.
		wantUnread(t, s, Reader{User: "a"}, 4, "after idempotent retries")

		// Without a key, a user listed twice still gets one copy.
		ids := publish(t, s, Target{Users: []string{"c", "d", "c"}}, Draft{Title: "dup"}, "")
		if ids[0] != ids[2] {
			t.Fatalf("ids %v: want the duplicate recipient to get one id", ids)
		}
		for _, u := range []string{"c", "d"} {
			if n := xlen(t, b.rdb, s.k.inbox(u)); n != 1 {
				t.Fatalf("XLEN inbox:{%s} = %d, want 1", u, n)
			}
		}
	})
}

func TestPublishRejects(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, b backend) {
		ctx := testCtx(t)
		s := newStore(t, b.rdb, Options{})
		ok := Draft{Title: "t"}
		for _, tc := range []struct {
			name string
			tgt  Target
			d    Draft
			key  string
			want error
		}{
			{"no target", Target{}, ok, "", ErrInvalid},
			{"two targets", Target{Users: []string{"a"}, Broadcast: true}, ok, "", ErrInvalid},
			{"bad user", Target{Users: []string{"a}b"}}, ok, "", ErrBadName},
			{"bad group", Target{Groups: []string{"a b"}}, ok, "", ErrBadName},
			{"empty message", Target{Broadcast: true}, Draft{}, "", ErrInvalid},
			{"bad level", Target{Broadcast: true}, Draft{Title: "t", Level: "fatal"}, "", ErrInvalid},
			{"data not an object", Target{Broadcast: true}, Draft{Title: "t", Data: []byte(`[1]`)}, "", ErrInvalid},
			{"body too large", Target{Broadcast: true}, Draft{Body: strings.Repeat("x", testMaxBody+1)}, "", ErrInvalid},
			{"bad key", Target{Broadcast: true}, ok, "no spaces", ErrInvalid},
			{"key too long", Target{Broadcast: true}, ok, strings.Repeat("k", MaxKeyLen+1), ErrInvalid},
		} {
			if _, err := s.Publish(ctx, tc.tgt, tc.d, tc.key, testMaxBody); !errors.Is(err, tc.want) {
				t.Errorf("%s: err = %v, want %v", tc.name, err, tc.want)
			}
		}
		if n := xlen(t, b.rdb, s.k.broadcast()); n != 0 {
			t.Fatalf("rejected publishes wrote %d entries", n)
		}
	})
}

func TestTrimmedCursorResets(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, b backend) {
		s := newStore(t, b.rdb, Options{MaxLen: 10})
		r := Reader{User: "42", Groups: []string{"ops"}}
		for _, tc := range []struct {
			name string
			tgt  Target
			key  string
		}{
			{"inbox", Target{Users: []string{"42"}}, s.k.inbox("42")},
			{"broadcast", Target{Broadcast: true}, s.k.broadcast()},
			{"group", Target{Groups: []string{"ops"}}, s.k.group("ops")},
		} {
			t.Run(tc.name, func(t *testing.T) {
				publish(t, s, tc.tgt, Draft{Title: "first"}, "")
				old := tail(t, s, r) // just after the first entry
				const n = 300
				for i := range n {
					publish(t, s, tc.tgt, Draft{Title: fmt.Sprint(i)}, "")
				}
				if l := xlen(t, b.rdb, tc.key); l >= n {
					t.Fatalf("XLEN %s = %d: MAXLEN ~ 10 trimmed nothing", tc.key, l)
				}
				res := poll(t, s, r, PollOptions{Cursor: old, Limit: MaxLimit})
				if !res.Reset {
					t.Fatalf("poll from a trimmed position: reset = false")
				}
				if len(res.Messages) == 0 || res.Messages[len(res.Messages)-1].Title != fmt.Sprint(n-1) {
					t.Fatalf("reset poll did not deliver the surviving messages: %d", len(res.Messages))
				}
				next := poll(t, s, r, PollOptions{Cursor: res.Cursor})
				if next.Reset || len(next.Messages) != 0 {
					t.Fatalf("poll after the reset: reset %v, %d messages", next.Reset, len(next.Messages))
				}
				after := poll(t, s, r, PollOptions{Cursor: tail(t, s, r)})
				if after.Reset {
					t.Fatal("a current cursor reported a reset")
				}
			})
		}
	})
}

// TestDeleteIsNotReset deletes the message a cursor points at (the newest
// one, and then every one): the next message must arrive without a reset,
// since a user's deletion loses nothing. Trimming afterwards still resets.
func TestDeleteIsNotReset(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, b backend) {
		ctx := testCtx(t)
		s := newStore(t, b.rdb, Options{MaxLen: 10})
		r := Reader{User: "42"}
		first := toUser(t, s, "42", "first")
		second := toUser(t, s, "42", "second")
		c := poll(t, s, r, PollOptions{Cursor: tail(t, s, r)}).Cursor
		for _, id := range []string{second, first} {
			must(t, s.Delete(ctx, r, id), "Delete %s", id)
		}
		third := toUser(t, s, "42", "third")
		res := poll(t, s, r, PollOptions{Cursor: c})
		if res.Reset {
			t.Fatal("deleting messages made the next poll report a reset")
		}
		checkIDs(t, "after deleting", msgIDs(res.Messages), []string{third})

		// Trimming past the cursor is still a reset.
		for i := range 300 {
			toUser(t, s, "42", fmt.Sprint(i))
		}
		if res := poll(t, s, r, PollOptions{Cursor: res.Cursor, Limit: MaxLimit}); !res.Reset {
			t.Fatal("trimmed past the cursor, but no reset")
		}
	})
}

// TestRetentionTrimsByAge puts entries two hours in the past and checks
// that the next publish trims them by age (MINID) and that a cursor among
// them resets.
func TestRetentionTrimsByAge(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, b backend) {
		ctx := testCtx(t)
		s := newStore(t, b.rdb, Options{Retention: time.Hour})
		r := Reader{User: "42"}
		key := s.k.inbox("42")
		start := time.Now().Add(-2 * time.Hour).UnixMilli()
		const n = 250
		_, err := b.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i := range n {
				p.XAdd(ctx, &redis.XAddArgs{Stream: key, ID: fmt.Sprintf("%d-0", start+int64(i)),
					Values: []any{"type", "notification", "title", "old"}})
			}
			return nil
		})
		must(t, err, "XADD old entries")
		first, err := b.rdb.XRangeN(ctx, key, "-", "+", 1).Result()
		must(t, err, "XRANGE")
		// A cursor just after the oldest entry.
		old := encodeCursor(streamsFor(s.opt.Prefix, "42", nil), positions{"u": mustEntry(t, first[0].ID)})
		last := toUser(t, s, "42", "new") // trims by MINID
		if l := xlen(t, b.rdb, key); l > n-100+1 {
			t.Fatalf("XLEN = %d: MINID ~ trimmed no whole node", l)
		}
		res := poll(t, s, r, PollOptions{Cursor: old, Limit: MaxLimit})
		if !res.Reset || len(res.Messages) == 0 || res.Messages[len(res.Messages)-1].ID != last {
			t.Fatalf("poll after age trimming: reset %v, %v", res.Reset, msgIDs(res.Messages))
		}
	})
}

// TestQuietStreamIsNotReset: a stream quiet for longer than the
// retention loses all its old entries to age trimming when the next
// message arrives. A client that had read everything missed nothing, so
// it must get the new message without a reset; one that had not, must
// get a reset.
func TestQuietStreamIsNotReset(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, b backend) {
		ctx := testCtx(t)
		s := newStore(t, b.rdb, Options{Retention: time.Hour})
		r := Reader{User: "42"}
		key := s.k.inbox("42")
		start := time.Now().Add(-2 * time.Hour).UnixMilli()
		const n = 200 // two whole stream nodes (100 entries each), so MINID ~ removes them all
		_, err := b.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i := range n {
				p.XAdd(ctx, &redis.XAddArgs{Stream: key, ID: fmt.Sprintf("%d-0", start+int64(i)),
					Values: []any{"type", "notification", "title", "old"}})
			}
			return nil
		})
		must(t, err, "XADD old entries")
		streams := streamsFor(s.opt.Prefix, "42", nil)
		upToDate := encodeCursor(streams, positions{"u": {uint64(start + n - 1), 0}})
		behind := encodeCursor(streams, positions{"u": {uint64(start + n - 2), 0}})
		last := toUser(t, s, "42", "new")
		if l := xlen(t, b.rdb, key); l != 1 {
			t.Fatalf("XLEN = %d after age trimming, want only the new entry", l)
		}
		res := poll(t, s, r, PollOptions{Cursor: upToDate})
		if res.Reset {
			t.Fatal("a client that had read the whole quiet stream got a reset")
		}
		checkIDs(t, "after the quiet period", msgIDs(res.Messages), []string{last})
		if res := poll(t, s, r, PollOptions{Cursor: behind}); !res.Reset {
			t.Fatal("a client behind the trimmed entries got no reset")
		}
	})
}

func mustEntry(t *testing.T, id string) entryID {
	t.Helper()
	e, err := parseEntryID(id)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func TestPollLimit(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, b backend) {
		s := newStore(t, b.rdb, Options{})
		for _, r := range []Reader{{User: "one"}, {User: "spread", Groups: []string{"ops"}}} {
			c := tail(t, s, r)
			var want []string
			for i := range 12 {
				switch {
				case len(r.Groups) == 0 || i%3 == 0:
					want = append(want, toUser(t, s, r.User, fmt.Sprint(i)))
				case i%3 == 1:
					want = append(want, toAll(t, s, fmt.Sprint(i)))
				default:
					want = append(want, toGroup(t, s, "ops", fmt.Sprint(i)))
				}
			}
			want = reversed(newestFirst(t, want))
			var got []string
			for i, size := range []int{5, 5, 2} {
				res := poll(t, s, r, PollOptions{Cursor: c, Limit: 5})
				if len(res.Messages) != size || res.More != (i < 2) {
					t.Fatalf("%s page %d: %d messages, more %v; want %d, %v", r.User, i, len(res.Messages), res.More, size, i < 2)
				}
				got = append(got, msgIDs(res.Messages)...)
				c = res.Cursor
			}
			checkIDs(t, r.User+": pages of 5", got, want)
		}
	})
}

// TestKeysShareSlots checks on the cluster that every key of one user is
// in one slot (so one script may touch them all), and that each
// idempotency record is in the slot of its stream.
func TestKeysShareSlots(t *testing.T) {
	t.Parallel()
	for _, b := range backends(t) {
		if b.name != "cluster" {
			continue
		}
		t.Run(b.name, func(t *testing.T) {
			ctx := testCtx(t)
			s := newStore(t, b.rdb, Options{})
			k := s.k
			slot := func(key string) int64 {
				t.Helper()
				n, err := b.rdb.ClusterKeySlot(ctx, key).Result()
				must(t, err, "CLUSTER KEYSLOT %s", key)
				return n
			}
			for _, u := range []string{"42", "a.b@c-d_e", "x"} {
				r := Reader{User: u}
				// Bring every per-user key into existence.
				publish(t, s, Target{Users: []string{u}}, Draft{Title: "x"}, "k1")
				toAll(t, s, "b1")
				_, err := s.MarkRead(ctx, r, nil, true)
				must(t, err, "MarkRead all")
				publish(t, s, Target{Users: []string{u}}, Draft{Title: "x", ExpiresIn: time.Hour}, "")
				bc2, bc3 := toAll(t, s, "b2"), toAll(t, s, "b3")
				_, err = s.MarkRead(ctx, r, []string{bc2}, false)
				must(t, err, "MarkRead")
				must(t, s.Delete(ctx, r, bc3), "Delete")
				userKeys := []string{k.inbox(u), k.unread(u), k.expiring(u), k.read(u), k.seen(u), k.hidden(u),
					k.idem(k.userStream(u), u, ":k1")}
				if slot(k.trim(k.userStream(u), u)) != slot(k.inbox(u)) {
					t.Fatalf("trim mark of %s is in another slot", u)
				}
				for _, key := range userKeys {
					if n, err := b.rdb.Exists(ctx, key).Result(); err != nil || n != 1 {
						t.Fatalf("key %s: exists %d, %v", key, n, err)
					}
					if slot(key) != slot(userKeys[0]) {
						t.Fatalf("%s is in slot %d, %s in %d", key, slot(key), userKeys[0], slot(userKeys[0]))
					}
				}
			}
			for _, g := range []string{"ops", "user:list"} {
				publish(t, s, Target{Groups: []string{g}}, Draft{Title: "x"}, "gk")
				idem := k.idem(k.groupStream(g), "", ":gk")
				if n, err := b.rdb.Exists(ctx, idem).Result(); err != nil || n != 1 {
					t.Fatalf("key %s: exists %d, %v", idem, n, err)
				}
				if slot(idem) != slot(k.group(g)) || slot(k.trim(k.groupStream(g), "")) != slot(k.group(g)) {
					t.Fatalf("%s, its trim mark and %s in different slots", idem, k.group(g))
				}
			}
			publish(t, s, Target{Broadcast: true}, Draft{Title: "x"}, "bk")
			idem := k.idem(k.broadcastStream(), "", ":bk")
			if n, err := b.rdb.Exists(ctx, idem).Result(); err != nil || n != 1 {
				t.Fatalf("key %s: exists %d, %v", idem, n, err)
			}
			if slot(idem) != slot(k.broadcast()) || slot(k.trim(k.broadcastStream(), "")) != slot(k.broadcast()) {
				t.Fatalf("%s, the trim mark and %s in different slots", idem, k.broadcast())
			}
			if slot(k.inbox("42")) == slot(k.inbox("43")) && slot(k.inbox("43")) == slot(k.inbox("44")) {
				t.Fatal("users' keys do not spread over slots")
			}
		})
	}
}
