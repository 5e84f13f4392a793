package inbox

import (
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// checkUnreadSets fails the test when the user's unread or expiring set
// holds an id that is no longer in the inbox stream, or when the unread
// count disagrees with history's unread messages.
func checkUnreadSets(t *testing.T, s *Store, b backend, user, when string) {
	t.Helper()
	ctx := testCtx(t)
	xs, err := b.rdb.XRange(ctx, s.k.inbox(user), "-", "+").Result()
	must(t, err, "XRANGE")
	inStream := map[string]bool{}
	for _, x := range xs {
		inStream[x.ID] = true
	}
	for _, key := range []string{s.k.unread(user), s.k.expiring(user)} {
		ids, err := b.rdb.ZRange(ctx, key, 0, -1).Result()
		must(t, err, "ZRANGE %s", key)
		var gone []string
		for _, id := range ids {
			if !inStream[id] {
				gone = append(gone, id)
			}
		}
		if len(gone) > 0 {
			t.Fatalf("%s: %s holds %d ids trimmed from the stream (of %d; stream has %d), such as %v",
				when, key, len(gone), len(ids), len(xs), gone[:min(len(gone), 3)])
		}
	}
	r := Reader{User: user}
	listed := allHistory(t, s, r, HistoryQuery{Unread: true, Limit: MaxHistoryLimit})
	if n := unread(t, s, r); n != len(listed) {
		t.Fatalf("%s: unread count %d, history lists %d unread messages", when, n, len(listed))
	}
}

// futureSeed adds an entry one hour ahead to a stream, so that every entry
// Redis adds after it ('*') has that same millisecond: the state a burst of
// publishes within one millisecond leaves, without depending on timing.
func futureSeed(t *testing.T, b backend, key string, at time.Time) int64 {
	t.Helper()
	ms := at.UnixMilli()
	must(t, b.rdb.XAdd(testCtx(t), &redis.XAddArgs{Stream: key, ID: fmt.Sprintf("%d-0", ms),
		Values: []any{"type", "notification", "title", "seed"}}).Err(), "XADD seed")
	return ms
}

// TestTrimKeepsUnreadInStream trims an inbox whose oldest surviving entry
// shares its millisecond with trimmed ones, by length (MAXLEN) and by age
// (MINID): the unread and expiring sets must lose every trimmed id, so the
// unread count matches what history lists as unread.
func TestTrimKeepsUnreadInStream(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, b backend) {
		t.Run("maxlen", func(t *testing.T) {
			s := newStore(t, b.rdb, Options{MaxLen: 5})
			key := s.k.inbox("42")
			futureSeed(t, b, key, time.Now().Add(time.Hour))
			published := 0
			for trims := 0; trims < 2; {
				if published > 2000 {
					t.Fatalf("%d publishes trimmed nothing", published)
				}
				var exp time.Duration
				if published%2 == 0 {
					exp = 24 * time.Hour
				}
				before := xlen(t, b.rdb, key)
				publish(t, s, Target{Users: []string{"42"}}, Draft{Title: fmt.Sprint(published), ExpiresIn: exp}, "")
				published++
				if xlen(t, b.rdb, key) <= before {
					trims++
				}
			}
			checkUnreadSets(t, s, b, "42", fmt.Sprintf("after %d publishes in one millisecond", published))
		})
		t.Run("minid", func(t *testing.T) {
			ctx := testCtx(t)
			clock := &fakeClock{}
			s := newStore(t, b.rdb, Options{Retention: time.Hour, Now: clock.Now})
			key := s.k.inbox("42")
			m1 := futureSeed(t, b, key, time.Now().Add(time.Hour))
			// Publish into millisecond m1 until the stream starts its second
			// node: that node then begins with an m1 entry.
			for i := 0; ; i++ {
				if i > 2000 {
					t.Fatal("the stream never started a second node")
				}
				publish(t, s, Target{Users: []string{"42"}}, Draft{Title: fmt.Sprint(i), ExpiresIn: 48 * time.Hour}, "")
				info, err := b.rdb.XInfoStream(ctx, key).Result()
				must(t, err, "XINFO STREAM")
				if info.RadixTreeKeys >= 2 {
					break
				}
			}
			// A later millisecond in the same node, so that node outlives the trim.
			m2 := m1 + 10
			must(t, b.rdb.XAdd(ctx, &redis.XAddArgs{Stream: key, ID: fmt.Sprintf("%d-0", m2),
				Values: []any{"type", "notification", "title", "later"}}).Err(), "XADD later")
			// Entries before m1+1 are now past the retention: the next
			// publish drops the first node, all of m1, by age.
			clock.Advance(time.Until(time.UnixMilli(m1 + 1).Add(time.Hour)))
			before := xlen(t, b.rdb, key)
			toUser(t, s, "42", "trigger")
			if xlen(t, b.rdb, key) > before {
				t.Fatal("MINID ~ trimmed nothing")
			}
			first, err := b.rdb.XRangeN(ctx, key, "-", "+", 1).Result()
			must(t, err, "XRANGE")
			if e := mustEntry(t, first[0].ID); e.ms != uint64(m1) {
				t.Fatalf("oldest entry left is %s, want one of millisecond %d", first[0].ID, m1)
			}
			checkUnreadSets(t, s, b, "42", "after age trimming within one millisecond")
		})
	})
}

// TestTrimEmptiesStream publishes with a clock so far ahead of Redis's
// that age trimming removes even the new entry: the publish still
// succeeds (a retry would only repeat it), and nothing stays unread.
func TestTrimEmptiesStream(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, b backend) {
		clock := &fakeClock{}
		s := newStore(t, b.rdb, Options{Retention: time.Hour, Now: clock.Now})
		r := Reader{User: "42"}
		toUser(t, s, "42", "kept for now")
		c := tail(t, s, r)
		clock.Advance(3 * time.Hour)
		toUser(t, s, "42", "older than the retention on arrival")
		if l := xlen(t, b.rdb, s.k.inbox("42")); l != 0 {
			t.Fatalf("XLEN = %d, want 0", l)
		}
		checkUnreadSets(t, s, b, "42", "after trimming everything")
		if res := poll(t, s, r, PollOptions{Cursor: c}); !res.Reset || len(res.Messages) != 0 {
			t.Fatalf("poll from before: reset %v, %d messages; want a reset and none", res.Reset, len(res.Messages))
		}
	})
}
