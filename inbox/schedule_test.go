package inbox

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"pollbox/internal/redistest"
)

// runScheduler runs s's scheduler until the returned stop is called (or
// the test ends); stop waits for it to return.
func runScheduler(t *testing.T, s *Store) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := s.RunScheduler(ctx); err != nil {
			t.Errorf("RunScheduler: %v", err)
		}
	}()
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); <-done }) }
	t.Cleanup(stop)
	return stop
}

// entriesOf returns how many entries of each publish id a stream holds.
func entriesOf(t *testing.T, rdb redis.UniversalClient, key string) map[string]int {
	t.Helper()
	xs, err := rdb.XRange(testCtx(t), key, "-", "+").Result()
	must(t, err, "xrange %s", key)
	n := map[string]int{}
	for _, x := range xs {
		pid, _ := x.Values["pid"].(string)
		n[pid]++
	}
	return n
}

// dueLeft is the size of the due queue.
func dueLeft(t *testing.T, s *Store, rdb redis.UniversalClient) int64 {
	t.Helper()
	n, err := rdb.ZCard(testCtx(t), s.k.due()).Result()
	must(t, err, "zcard due")
	return n
}

// checkOnce fails unless each of pids has exactly one entry in each stream.
func checkOnce(t *testing.T, rdb redis.UniversalClient, keys []string, pids []string) {
	t.Helper()
	for _, k := range keys {
		got := entriesOf(t, rdb, k)
		for _, pid := range pids {
			if got[pid] != 1 {
				t.Fatalf("%s holds %d entries of %s, want 1", k, got[pid], pid)
			}
		}
		if len(got) != len(pids) {
			t.Fatalf("%s holds entries of %d publishes, want %d", k, len(got), len(pids))
		}
	}
}

// TestSchedulerRace: two instances' schedulers racing for 200 publishes
// due in the same millisecond deliver each exactly once; so do schedulers
// that crash after claiming or after writing, once the lease has passed.
func TestSchedulerRace(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		clock := &fakeClock{}
		opt := Options{Prefix: redistest.Prefix(t), Now: clock.Now, ScheduleLease: 200 * time.Millisecond}
		var delivered atomic.Int64
		opt.OnNotice = func(e string, _ time.Duration) {
			if e == "delivered" {
				delivered.Add(1)
			}
		}
		s1, s2 := newStore(t, b.rdb, opt), newStore(t, b.rdb, opt)
		sendAt := clock.Now().Add(time.Hour)
		const n = 200
		pids := make([]string, n)
		for i := range n {
			r := publishWith(t, []*Store{s1, s2}[i%2], Target{Users: []string{"bob", "carol"}}, Draft{}, PublishOptions{SendAt: sendAt})
			if r.State != "scheduled" || len(r.IDs) != 0 || !r.SendAt.Equal(sendAt.Truncate(time.Millisecond)) {
				t.Fatalf("scheduled publish answered %+v", r)
			}
			pids[i] = r.PublishID
		}
		if got := dueLeft(t, s1, b.rdb); got != n {
			t.Fatalf("due queue holds %d, want %d", got, n)
		}
		stop1, stop2 := runScheduler(t, s1), runScheduler(t, s2)
		if xlen(t, b.rdb, s1.k.inbox("bob")) != 0 {
			t.Fatal("delivered before its time")
		}
		clock.Advance(time.Hour)
		keys := []string{s1.k.inbox("bob"), s1.k.inbox("carol")}
		waitFor(t, 20*time.Second, "every publish delivered", func() bool { return dueLeft(t, s1, b.rdb) == 0 })
		checkOnce(t, b.rdb, keys, pids)
		for _, pid := range pids {
			if st := recordState(t, s1, b.rdb, pid); st != "sent" {
				t.Fatalf("%s is %q, want sent", pid, st)
			}
		}
		if delivered.Load() != n {
			t.Fatalf("%d deliveries noticed, want %d", delivered.Load(), n)
		}

		stop1()
		stop2()

		// Crashes: one instance stops right after claiming, the other after
		// writing the entries, before recording them; both stay down
		// until the lease has passed.
		var crashed atomic.Int64
		crash := func(step string) func(*Store) {
			return func(s *Store) {
				s.testHook = func(st, _ string) bool {
					if st == step {
						crashed.Add(1)
						return true
					}
					return false
				}
			}
		}
		more := make([]string, 0, 2*n)
		for i := range 20 {
			r := publishWith(t, s1, Target{Users: []string{"bob", "carol"}}, Draft{}, PublishOptions{SendAt: clock.Now().Add(time.Hour + time.Duration(i%2)*time.Millisecond)})
			more = append(more, r.PublishID)
		}
		clock.Advance(time.Hour + time.Second)
		for _, step := range []string{"claimed", "written"} {
			c := newStore(t, b.rdb, opt, crash(step))
			crashed.Store(0)
			ctx := testCtx(t)
			if step == "written" {
				clock.Advance(time.Second) // past the first crash's lease
			}
			for crashed.Load() < 20 {
				if _, err := c.schedulerRound(ctx); err != nil {
					t.Fatalf("round: %v", err)
				}
			}
			if got := dueLeft(t, s1, b.rdb); got != 20 {
				t.Fatalf("after crashes at %s, %d due, want 20", step, got)
			}
			// Within the lease nobody claims them again.
			if _, err := s1.schedulerRound(ctx); err != nil {
				t.Fatalf("round: %v", err)
			}
			if got := dueLeft(t, s1, b.rdb); got != 20 {
				t.Fatalf("claimed again within the lease: %d left", got)
			}
		}
		for _, k := range keys {
			if got := entriesOf(t, b.rdb, k); got[more[0]] != 1 {
				t.Fatalf("the writing crash wrote %d entries of %s to %s, want 1", got[more[0]], more[0], k)
			}
		}
		clock.Advance(time.Second)
		runScheduler(t, s1)
		runScheduler(t, s2)
		waitFor(t, 20*time.Second, "re-claimed publishes delivered", func() bool { return dueLeft(t, s1, b.rdb) == 0 })
		checkOnce(t, b.rdb, keys, append(pids, more...))
	})
}

// TestScheduledSurvivesRestart: a publish scheduled while instances ran
// whose schedulers all stopped before it was due is delivered once by the
// instances started after, at its time.
func TestScheduledSurvivesRestart(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		opt := Options{Prefix: redistest.Prefix(t)}
		old1, old2 := newStore(t, b.rdb, opt), newStore(t, b.rdb, opt)
		stop1, stop2 := runScheduler(t, old1), runScheduler(t, old2)
		sendAt := time.Now().Add(700 * time.Millisecond)
		r := publishWith(t, old1, Target{Users: []string{"bob"}}, Draft{}, PublishOptions{SendAt: sendAt})
		g := publishWith(t, old2, Target{Groups: []string{"staff"}}, Draft{}, PublishOptions{SendAt: sendAt})
		stop1()
		stop2()
		old1.Close()
		old2.Close()
		if time.Now().After(sendAt) {
			t.Skip("the machine took longer than the schedule's margin to publish")
		}
		if xlen(t, b.rdb, old1.k.inbox("bob")) != 0 {
			t.Fatal("delivered early")
		}
		new1, new2 := newStore(t, b.rdb, opt), newStore(t, b.rdb, opt)
		runScheduler(t, new1)
		runScheduler(t, new2)
		waitFor(t, 10*time.Second, "delivery", func() bool { return dueLeft(t, new1, b.rdb) == 0 })
		checkOnce(t, b.rdb, []string{new1.k.inbox("bob")}, []string{r.PublishID})
		checkOnce(t, b.rdb, []string{new1.k.group("staff")}, []string{g.PublishID})
		h := history(t, new1, Reader{User: "bob"}, HistoryQuery{})
		if len(h.Messages) != 1 {
			t.Fatalf("bob's history %+v", h.Messages)
		}
		if lag := h.Messages[0].Created.Sub(sendAt.Truncate(time.Millisecond)); lag < 0 || lag > time.Second {
			t.Fatalf("delivered %v after send_at, want within [0, 1 s]", lag)
		}
		d, err := new2.SentDetail(testCtx(t), alice, false, r.PublishID, SentDetailQuery{})
		must(t, err, "SentDetail")
		if d.Send.State != "sent" || len(d.Recipients) != 1 || d.Recipients[0].ID != h.Messages[0].ID || d.Recipients[0].State != "unread" {
			t.Fatalf("detail after delivery %+v", d)
		}
	})
}

// TestScheduledCancel: a publish cancelled before it is due is never
// delivered; cancelling again answers the same; a retry of the publish
// under its idempotency key answers cancelled.
func TestScheduledCancel(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		clock := &fakeClock{}
		var notices []string
		var mu sync.Mutex
		s := newStore(t, b.rdb, Options{Now: clock.Now, OnNotice: func(e string, _ time.Duration) {
			mu.Lock()
			notices = append(notices, e)
			mu.Unlock()
		}})
		ctx := testCtx(t)
		o := PublishOptions{SendAt: clock.Now().Add(time.Hour), IdemKey: "c1"}
		r := publishWith(t, s, Target{Users: []string{"bob"}}, Draft{}, o)
		keep := publishWith(t, s, Target{Users: []string{"bob"}}, Draft{}, PublishOptions{SendAt: o.SendAt})
		for range 2 {
			st, err := s.Withdraw(ctx, alice, false, r.PublishID)
			if err != nil || st != "cancelled" {
				t.Fatalf("Withdraw = %q, %v", st, err)
			}
		}
		if again := publishWith(t, s, Target{Users: []string{"bob"}}, Draft{}, o); again.PublishID != r.PublishID || again.State != "cancelled" {
			t.Fatalf("retry after cancel answered %+v", again)
		}
		clock.Advance(2 * time.Hour)
		if _, err := s.schedulerRound(ctx); err != nil {
			t.Fatalf("round: %v", err)
		}
		checkOnce(t, b.rdb, []string{s.k.inbox("bob")}, []string{keep.PublishID})
		page, err := s.Sent(ctx, alice, SentQuery{})
		must(t, err, "Sent")
		if len(page.Sends) != 2 || page.Sends[0].State != "sent" || page.Sends[1].State != "cancelled" || page.Sends[1].Read != nil {
			t.Fatalf("sends %+v", page.Sends)
		}
		mu.Lock()
		defer mu.Unlock()
		if len(notices) != 2 || notices[0] != "cancelled" || notices[1] != "delivered" {
			t.Fatalf("notices %v", notices)
		}
	})
}

// TestScheduledIdempotentRetry: retrying a scheduled publish under its
// idempotency key schedules nothing more, before and after delivery, and
// after delivery answers the delivered ids.
func TestScheduledIdempotentRetry(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		clock := &fakeClock{}
		s := newStore(t, b.rdb, Options{Now: clock.Now})
		ctx := testCtx(t)
		o := PublishOptions{SendAt: clock.Now().Add(time.Minute), IdemKey: "once"}
		tgt := Target{Users: []string{"bob", "carol"}}
		first := publishWith(t, s, tgt, Draft{}, o)
		for range 3 {
			r := publishWith(t, s, tgt, Draft{}, o)
			if r.PublishID != first.PublishID || r.State != "scheduled" || len(r.IDs) != 0 {
				t.Fatalf("retry answered %+v, first %+v", r, first)
			}
		}
		if got := dueLeft(t, s, b.rdb); got != 1 {
			t.Fatalf("due holds %d, want 1", got)
		}
		clock.Advance(time.Minute)
		if _, err := s.schedulerRound(ctx); err != nil {
			t.Fatalf("round: %v", err)
		}
		r := publishWith(t, s, tgt, Draft{}, o)
		if r.State != "sent" || len(r.IDs) != 2 || r.PublishID != first.PublishID {
			t.Fatalf("retry after delivery answered %+v", r)
		}
		if h := history(t, s, Reader{User: "bob"}, HistoryQuery{}); len(h.Messages) != 1 || r.IDs[0] != h.Messages[0].ID {
			t.Fatalf("retry's id %s is not bob's message", r.IDs[0])
		}
		keys := []string{s.k.inbox("bob"), s.k.inbox("carol")}
		checkOnce(t, b.rdb, keys, []string{first.PublishID})
		// Too far ahead is refused.
		_, err := s.PublishWith(ctx, tgt, Draft{Title: "x"}, PublishOptions{Owner: alice, MaxBody: testMaxBody, SendAt: clock.Now().Add(s.opt.Retention + time.Minute)})
		if err == nil {
			t.Fatal("a send_at beyond retention was accepted")
		}
	})
}
