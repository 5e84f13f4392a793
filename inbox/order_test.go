package inbox

import (
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// TestOrderAcrossStreams pins the order the README states for an answer
// that merges streams: by entry ID (millisecond, then sequence number),
// and for equal IDs by stream: broadcast, groups by name in byte order,
// then the inbox. Polls list it oldest first whatever their limit; history
// lists the exact reverse whatever its page size.
func TestOrderAcrossStreams(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, b backend) {
		ctx := testCtx(t)
		s := newStore(t, b.rdb, Options{})
		// Byte order puts "Ab" before "a:x" before "ops".
		r := Reader{User: "42", Groups: []string{"ops", "a:x", "Ab"}}
		c := tail(t, s, r)
		m := time.Now().UnixMilli()
		id := func(dms, seq int) string { return fmt.Sprintf("%d-%d", m+int64(dms), seq) }
		// Each stream's entries in the order they are added.
		for _, add := range []struct {
			key string
			ids []string
		}{
			{s.k.inbox("42"), []string{id(0, 0), id(0, 3), id(1, 0)}},
			{s.k.broadcast(), []string{id(0, 0), id(0, 1), id(2, 0)}},
			{s.k.group("Ab"), []string{id(0, 1), id(1, 0)}},
			{s.k.group("a:x"), []string{id(0, 0), id(1, 5)}},
			{s.k.group("ops"), []string{id(0, 2), id(1, 0), id(1, 1)}},
		} {
			for _, e := range add.ids {
				must(t, b.rdb.XAdd(ctx, &redis.XAddArgs{Stream: add.key, ID: e,
					Values: []any{"type", "notification", "title", e}}).Err(), "XADD %s %s", add.key, e)
			}
		}
		oldestFirst := []string{
			"b." + id(0, 0), "g.a:x." + id(0, 0), "u." + id(0, 0),
			"b." + id(0, 1), "g.Ab." + id(0, 1),
			"g.ops." + id(0, 2),
			"u." + id(0, 3),
			"g.Ab." + id(1, 0), "g.ops." + id(1, 0), "u." + id(1, 0),
			"g.ops." + id(1, 1),
			"g.a:x." + id(1, 5),
			"b." + id(2, 0),
		}
		for _, limit := range []int{1, 2, 3, 5, 100} {
			var polled []string
			cur := c
			for range len(oldestFirst) + 1 {
				res := poll(t, s, r, PollOptions{Cursor: cur, Limit: limit})
				polled = append(polled, msgIDs(res.Messages)...)
				cur = res.Cursor
				if !res.More {
					break
				}
			}
			checkIDs(t, fmt.Sprintf("polls of %d", limit), polled, oldestFirst)
			checkIDs(t, fmt.Sprintf("history pages of %d", limit),
				allHistory(t, s, r, HistoryQuery{Limit: min(limit, MaxHistoryLimit)}), reversed(oldestFirst))
		}
	})
}
