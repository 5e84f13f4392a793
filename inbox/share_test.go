package inbox

import (
	"fmt"
	"testing"
	"time"
)

// TestWokenPollsShareOneCount checks that the waiting polls a broadcast
// wakes, which all need the same shared unread count at the same moment,
// share one count from Redis rather than each asking for it.
func TestWokenPollsShareOneCount(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, b backend) {
		ctx := testCtx(t)
		s := newStore(t, b.rdb, Options{})
		other := newStore(t, b.rdb, Options{Prefix: s.opt.Prefix})
		const n = 40
		outs := make([]<-chan pollOutcome, n)
		for i := range outs {
			r := Reader{User: fmt.Sprintf("share%d", i)}
			outs[i] = goPoll(ctx, s, r, PollOptions{Cursor: tail(t, s, r), Wait: 10 * time.Second})
		}
		waitFor(t, 5*time.Second, "the waiting polls", func() bool { return s.Hub().Waiting() == n })
		before := s.scripts.Load()
		id := toAll(t, other, "everyone")
		for _, o := range outs {
			res := await(t, o, 5*time.Second)
			checkIDs(t, "woken poll", msgIDs(res.Messages), []string{id})
			if res.Unread != 1 {
				t.Fatalf("unread %d, want 1", res.Unread)
			}
		}
		// One count, and a few more for polls woken after the view had
		// dropped it (more of them on a busy machine, where the woken polls
		// run late); never one per poll.
		if calls := s.scripts.Load() - before; calls > n/5 {
			t.Fatalf("%d polls woken by one broadcast made %d Redis calls, want at most %d", n, calls, n/5)
		}
	})
}
