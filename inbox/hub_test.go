package inbox

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"pollbox/internal/redistest"
)

// signalled reports whether w has a pending wake-up, without waiting.
func signalled(w *Waiter) bool {
	select {
	case <-w.C:
		return true
	default:
		return false
	}
}

func TestHubWaiters(t *testing.T) {
	t.Parallel()
	h := NewHub(nil, nil)
	w1 := h.Register("a", "b")
	w2 := h.Register("b")
	if n := h.Waiting(); n != 2 {
		t.Fatalf("Waiting = %d, want 2", n)
	}

	h.Notify("a")
	if !signalled(w1) || signalled(w2) {
		t.Fatal("Notify(a) must wake the waiter of a only")
	}
	if keys, all := w1.Take(); all || len(keys) != 1 {
		t.Fatalf("Take = %v, %v; want {a}, false", keys, all)
	}

	// Wake-ups coalesce into one signal and Take reports every key.
	h.Notify("a")
	h.Notify("b")
	if !signalled(w1) || signalled(w1) {
		t.Fatal("two wake-ups must leave exactly one signal")
	}
	keys, all := w1.Take()
	if _, a := keys["a"]; !a || len(keys) != 2 || all {
		t.Fatalf("Take = %v, %v; want {a b}, false", keys, all)
	}
	if keys, all := w1.Take(); len(keys) != 0 || all {
		t.Fatalf("second Take = %v, %v; want nothing", keys, all)
	}
	if !signalled(w2) {
		t.Fatal("Notify(b) did not wake the second waiter")
	}
	w2.Take()

	h.Notify("unknown")
	if signalled(w1) || signalled(w2) {
		t.Fatal("a key nobody waits for woke someone")
	}

	h.WakeAll()
	for i, w := range []*Waiter{w1, w2} {
		if !signalled(w) {
			t.Fatalf("WakeAll did not wake waiter %d", i)
		}
		if _, all := w.Take(); !all {
			t.Fatalf("waiter %d: Take after WakeAll: all = false", i)
		}
	}

	h.Unregister(w1)
	h.Notify("a")
	h.Notify("b")
	if signalled(w1) || !signalled(w2) || h.Waiting() != 1 {
		t.Fatalf("after Unregister: w1 %v, waiting %d", signalled(w1), h.Waiting())
	}
	h.Unregister(w2)
	left := 0
	for i := range h.shards {
		left += len(h.shards[i].byKey)
	}
	if h.Waiting() != 0 || left != 0 {
		t.Fatalf("after unregistering all: waiting %d, keys %d", h.Waiting(), left)
	}
}

func TestHubRunStopsWithContext(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, b backend) {
		h := NewHub(b.rdb, keys{redistest.Prefix(t)}.wake)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- h.Run(ctx) }()
		waitFor(t, 10*time.Second, "subscription", h.Connected)
		cancel()
		select {
		case err := <-done:
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("Run returned %v, want context.Canceled", err)
			}
		case <-time.After(2 * time.Second):
			t.Fatal("Run did not return within 2s of its context ending")
		}
		if h.Connected() {
			t.Fatal("hub still connected after Run returned")
		}
	})
}

// hubEvents records a hub's events; install it before the hub runs.
func hubEvents(ch chan<- string) func(*Store) {
	return func(s *Store) {
		s.Hub().OnEvent = func(e string) {
			if e != "wake" {
				ch <- e
			}
		}
	}
}

func waitEvent(t *testing.T, events <-chan string, want string) {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case e := <-events:
			if e == want {
				return
			}
		case <-timeout:
			t.Fatalf("no %q event within 10s", want)
		}
	}
}

// wokenAll waits until w is woken and checks that it was told to re-read all.
func wokenAll(t *testing.T, w *Waiter, after string) {
	t.Helper()
	select {
	case <-w.C:
		if _, all := w.Take(); !all {
			t.Fatalf("waiter woken without all after %s", after)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("waiter not woken after %s", after)
	}
}

// TestHubSurvivesKilledSubscription kills the hub's connection on a
// private server: waiters are woken, the hub resubscribes, and a publish
// made while it was away or after it came back still wakes a poll.
func TestHubSurvivesKilledSubscription(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	srv := redistest.Start(t, redistest.Options{})
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	t.Cleanup(func() { rdb.Close() })
	events := make(chan string, 64)
	// One pub/sub connection, so that one CLIENT KILL cuts every channel.
	s := newStore(t, rdb, Options{}, hubEvents(events), func(s *Store) { s.Hub().Conns = 1 })
	r := Reader{User: "42"}
	c := tail(t, s, r)

	w := s.Hub().Register("nothing-ever-writes-here")
	defer s.Hub().Unregister(w)
	waitFor(t, 5*time.Second, "a confirmed channel", func() bool { return s.Hub().Confirmed("nothing-ever-writes-here") })
	w.Take()
	signalled(w)
	waiting := goPoll(ctx, s, r, PollOptions{Cursor: c, Wait: 30 * time.Second})
	waitFor(t, 5*time.Second, "a waiting poll", func() bool { return s.Hub().Waiting() == 2 })

	for round, during := range []bool{false, true} {
		before := s.Hub().Reconnects()
		n, err := rdb.ClientKillByFilter(ctx, "TYPE", "pubsub").Result()
		if err != nil || n != 1 {
			t.Fatalf("CLIENT KILL TYPE pubsub = %d, %v; want 1 killed", n, err)
		}
		waitEvent(t, events, "lost")
		wokenAll(t, w, "the subscription was lost")
		var id string
		if during {
			id = toUser(t, s, "42", "while the hub is away")
		}
		waitEvent(t, events, "reconnected")
		// Wake-ups sent while it was away are lost: everyone re-reads.
		wokenAll(t, w, "the subscription came back")
		if got := s.Hub().Reconnects(); got != before+1 {
			t.Fatalf("round %d: Reconnects = %d, want %d", round, got, before+1)
		}
		if !during {
			id = toUser(t, s, "42", "after the hub is back")
		}
		t0 := time.Now()
		res := await(t, waiting, 30*time.Second)
		if took := time.Since(t0); took > 2*time.Second {
			t.Fatalf("round %d: poll returned %v after the publish", round, took)
		}
		checkIDs(t, "poll across the outage", msgIDs(res.Messages), []string{id})
		waiting = goPoll(ctx, s, r, PollOptions{Cursor: res.Cursor, Wait: 30 * time.Second})
		waitFor(t, 5*time.Second, "a waiting poll", func() bool { return s.Hub().Waiting() == 2 })
	}
	id := toUser(t, s, "42", "last")
	checkIDs(t, "last poll", msgIDs(await(t, waiting, 2*time.Second).Messages), []string{id})
}

// TestHubSurvivesRestart restarts Redis: the hub subscribes again once
// the server is back, and polls are woken again.
func TestHubSurvivesRestart(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	srv := redistest.Start(t, redistest.Options{AOF: true})
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	t.Cleanup(func() { rdb.Close() })
	events := make(chan string, 64)
	s := newStore(t, rdb, Options{}, hubEvents(events))
	r := Reader{User: "42"}
	listen(t, s, s.k.inbox(r.User)) // a subscription to lose
	kept := toUser(t, s, "42", "kept")

	srv.Kill()
	waitEvent(t, events, "lost")
	srv.Restart(t)
	waitEvent(t, events, "reconnected")
	waiting := goPoll(ctx, s, r, PollOptions{Cursor: tail(t, s, r), Wait: 30 * time.Second})
	waitFor(t, 5*time.Second, "a waiting poll", func() bool { return s.Hub().Waiting() == 1 })
	id := toUser(t, s, "42", "after restart")
	checkIDs(t, "poll after a restart", msgIDs(await(t, waiting, 2*time.Second).Messages), []string{id})
	checkIDs(t, "history across a restart", msgIDs(history(t, s, r, HistoryQuery{}).Messages), []string{id, kept})
}
