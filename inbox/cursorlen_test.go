package inbox

import (
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// TestResetCursorFits reads MaxGroups groups, each trimmed past the
// cursor years after its entries were written, while the inbox is
// current: the reset answer moves every group to its trim mark (a
// sequence of 2^64−1, far below the newest position), and that cursor,
// like every later one, must stay within MaxCursorLen and be accepted.
func TestResetCursorFits(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, b backend) {
		ctx := testCtx(t)
		s := newStore(t, b.rdb, Options{MaxLen: 10, Retention: 20 * 365 * 24 * time.Hour})
		groups := authorities(MaxGroups)
		r := Reader{User: "42", Groups: groups}
		toUser(t, s, "42", "now")
		c := tail(t, s, r)

		const old = 150 // entries per group, more than one stream node
		yearsAgo := time.Now().AddDate(-5, 0, 0).UnixMilli()
		_, err := b.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for g, name := range groups {
				for i := range old {
					p.XAdd(ctx, &redis.XAddArgs{Stream: s.k.group(name),
						ID:     fmt.Sprintf("%d-0", yearsAgo+int64(g*10*old+i*10)),
						Values: []any{"type", "notification", "title", "old"}})
				}
			}
			return nil
		})
		must(t, err, "XADD old entries")
		publish(t, s, Target{Groups: groups}, Draft{Title: "trims"}, "")
		survivors := 0
		for _, name := range groups {
			n := xlen(t, b.rdb, s.k.group(name))
			if n > old {
				t.Fatalf("group %s: XLEN %d, MAXLEN ~ 10 trimmed nothing", name, n)
			}
			survivors += int(n)
		}

		res := poll(t, s, r, PollOptions{Cursor: c, Limit: 1})
		t.Logf("reset answer: %d-character cursor", len(res.Cursor))
		if !res.Reset {
			t.Fatal("poll from before the trims: no reset")
		}
		got := len(res.Messages)
		for polls := 0; ; polls++ {
			if len(res.Cursor) > MaxCursorLen {
				t.Fatalf("poll %d answered a %d-character cursor, limit %d", polls, len(res.Cursor), MaxCursorLen)
			}
			if !res.More {
				break
			}
			next, err := s.Poll(ctx, r, PollOptions{Cursor: res.Cursor, Limit: MaxLimit})
			if err != nil {
				t.Fatalf("poll %d with the %d-character cursor of the poll before: %v", polls+1, len(res.Cursor), err)
			}
			res = next
			got += len(res.Messages)
		}
		if got != survivors {
			t.Fatalf("delivered %d messages, the groups hold %d", got, survivors)
		}
	})
}
