package inbox

import (
	"fmt"
	"regexp"
	"strconv"
	"testing"

	"github.com/redis/go-redis/v9"
	"pollbox/internal/redistest"
)

// TestPublishCommands: a publish to a user's inbox reads back neither
// the unread count nor the type's count it has just changed (ZCARD once,
// before the entry; no HGET), and its wake-up still carries both exactly.
func TestPublishCommands(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	opt, err := redis.ParseURL(srv.URL())
	must(t, err, "parse url")
	rdb := redis.NewClient(opt)
	t.Cleanup(func() { rdb.Close() })
	ctx := testCtx(t)
	s := newStore(t, rdb, Options{})
	sub := rdb.Subscribe(ctx, s.k.wake(s.k.inbox("bob")))
	t.Cleanup(func() { sub.Close() })
	_, err = sub.Receive(ctx)
	must(t, err, "subscribe")
	must(t, rdb.ConfigResetStat(ctx).Err(), "reset stats")
	const n = 6
	for i := range n {
		typ := []string{"like", "reply"}[i%2]
		publishWith(t, s, Target{Users: []string{"bob"}}, Draft{Title: fmt.Sprint(i), Type: typ}, PublishOptions{})
		msg, err := sub.ReceiveMessage(ctx)
		must(t, err, "wake-up")
		w, ok := parseWake(msg.Payload)
		if want := fmt.Sprintf("%d,%d", i+1, i/2+1); !ok || strconv.Itoa(w.unread)+","+strconv.Itoa(w.typeUnread) != want {
			t.Fatalf("publish %d: wake-up %q, want unread %s", i, msg.Payload, want)
		}
	}
	stats, err := rdb.Info(ctx, "commandstats").Result()
	must(t, err, "info")
	calls := func(cmd string) int {
		m := regexp.MustCompile(`cmdstat_` + cmd + `:calls=(\d+)`).FindStringSubmatch(stats)
		if m == nil {
			return 0
		}
		c, _ := strconv.Atoi(m[1])
		return c
	}
	if calls("xadd") != n || calls("zcard") != n || calls("hget") != 0 {
		t.Fatalf("%d publishes: %d XADD, %d ZCARD, %d HGET; want %d, %d, 0\n%s", n, calls("xadd"), calls("zcard"), calls("hget"), n, n, stats)
	}
}
