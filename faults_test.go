package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"pollbox/internal/redistest"
)

// received is what one simulated client has received, counted by message id.
type received struct {
	mu   sync.Mutex
	seen map[string]int
}

func (b *received) add(ms []message) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, m := range ms {
		b.seen[m.ID]++
	}
}

// hasAll reports whether every id in want has arrived.
func (b *received) hasAll(want []string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, id := range want {
		if b.seen[id] == 0 {
			return false
		}
	}
	return true
}

// check reports ids received more than once or never published to this client.
func (b *received) check(want []string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	ok := map[string]bool{}
	for _, id := range want {
		ok[id] = true
		if b.seen[id] != 1 {
			return fmt.Errorf("message %s received %d times", id, b.seen[id])
		}
	}
	for id, n := range b.seen {
		if !ok[id] {
			return fmt.Errorf("message %s (%d times) was never published to this client", id, n)
		}
	}
	return nil
}

// pollbox killed with SIGKILL: its clients re-poll another instance with
// their cursors and still get every message exactly once.
func TestKilledInstance(t *testing.T) {
	bin := buildPollbox(t) // before t.Parallel: the build would slow the parallel tests down
	t.Parallel()
	secret := newSecret(t)
	env := baseEnv(secret, redistest.Prefix(t), "POLLBOX_REDIS_URL", redistest.URL(t), "POLLBOX_PUBLISH_RATE", "0")
	stop := make(chan struct{})
	var wg sync.WaitGroup
	// Registered first so it runs last: stopping B ends the clients' polls.
	t.Cleanup(func() { close(stop); wg.Wait() })
	a := startProcess(t, bin, env)
	b := startProcess(t, bin, env)
	hc := newHTTPClient(t)
	admin := smpeToken(secret, "1", "admin")

	const clients = 50
	names := userNames("k", clients)
	boxes := make([]*received, clients)
	var onB atomic.Int32
	errs := make(chan error, clients)
	for i, u := range names {
		tok := smpeToken(secret, u, "user:list")
		cursor := mustPoll(t, hc, a.base, tok, "", 0).Cursor
		boxes[i] = &received{seen: map[string]int{}}
		wg.Go(func() {
			base, switched := a.base, false
			for {
				select {
				case <-stop:
					return
				default:
				}
				pr, res, err := pollOnce(hc, base, tok, cursor, 20)
				if err == nil && res.Status == http.StatusOK {
					boxes[i].add(pr.Messages)
					cursor = pr.Cursor
					continue
				}
				if !switched {
					// A died: carry on at B with the same cursor.
					base, switched = b.base, true
					onB.Add(1)
					continue
				}
				select {
				case <-stop:
				case errs <- fmt.Errorf("client %s on B: %v %s", u, err, res):
				default:
				}
				return
			}
		})
	}

	// Before the kill: one message through A reaches everyone.
	want := mustPublish(t, hc, a.base, admin, names, "before")
	eventually(t, 10*time.Second, func() bool {
		for i := range boxes {
			if !boxes[i].hasAll(want[i : i+1]) {
				return false
			}
		}
		return true
	}, func() string { return "every client to receive the first message through A" })
	waitWaiting(t, hc, a.base, clients, 10*time.Second)
	if n := onB.Load(); n != 0 {
		t.Fatalf("%d clients left A before it was killed", n)
	}
	a.kill9(t)

	perClient := make([][]string, clients)
	for i := range perClient {
		perClient[i] = []string{want[i]}
	}
	var pubWG sync.WaitGroup
	var mu sync.Mutex
	pubErrs := make(chan error, 4)
	for w := range 4 {
		pubWG.Go(func() {
			for n := w; n < 200; n += 4 {
				ids, res, err := publish(hc, b.base, admin, names, "after "+strconv.Itoa(n))
				if err != nil || res.Status != http.StatusCreated {
					pubErrs <- fmt.Errorf("publish %d through B: %v %s", n, err, res)
					return
				}
				mu.Lock()
				for i, id := range ids {
					perClient[i] = append(perClient[i], id)
				}
				mu.Unlock()
			}
		})
	}
	pubWG.Wait()
	close(pubErrs)
	for err := range pubErrs {
		t.Fatal(err)
	}

	eventually(t, 30*time.Second, func() bool {
		select {
		case err := <-errs:
			t.Fatal(err)
		default:
		}
		for i := range boxes {
			if !boxes[i].hasAll(perClient[i]) {
				return false
			}
		}
		return true
	}, func() string { return "every client to receive all 201 messages" })
	if n := onB.Load(); n != clients {
		t.Errorf("%d of %d clients moved to B", n, clients)
	}
	for i := range boxes {
		if err := boxes[i].check(perClient[i]); err != nil {
			t.Errorf("client %s: %v", names[i], err)
		}
	}
}

// event is one request's outcome in the Redis restart test.
type event struct {
	status     int
	code       string // "error" of an error answer
	retryAfter string
	took       time.Duration
	end        time.Time
	err        error
}

// Redis stopped and restarted under load: publishes fail fast with 503 and
// Retry-After, waiting polls answer 503 or an empty 200 in time, every
// acknowledged publish is delivered afterwards, and delivery resumes within a
// second without restarting pollbox.
func TestRedisRestart(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t, redistest.Options{AOF: true})
	secret := newSecret(t)
	const redisTimeout = time.Second
	in := startInstance(t, baseEnv(secret, redistest.Prefix(t), "POLLBOX_REDIS_URL", srv.URL(),
		"POLLBOX_PUBLISH_RATE", "0", "POLLBOX_REDIS_TIMEOUT", redisTimeout.String()))
	hc := newHTTPClient(t)
	admin := smpeToken(secret, "1", "admin")

	const users, pollTimeout = 5, 2
	names := userNames("r", users)
	tokens := make([]string, users)
	startCursors := make([]string, users)
	boxes := make([]*received, users)
	for i, u := range names {
		tokens[i] = smpeToken(secret, u, "user:list")
		startCursors[i] = mustPoll(t, hc, in.base, tokens[i], "", 0).Cursor
		boxes[i] = &received{seen: map[string]int{}}
	}

	var mu sync.Mutex
	var pollEvents, pubEvents []event
	acked := make([][]string, users)
	ackedAt := map[string]time.Time{}
	gotAt := map[string]time.Time{}
	record := func(list *[]event, e event) {
		mu.Lock()
		*list = append(*list, e)
		mu.Unlock()
	}
	eventFrom := func(res response, err error, start time.Time) event {
		now := time.Now()
		var body struct{ Error string }
		_ = json.Unmarshal(res.Body, &body)
		return event{status: res.Status, code: body.Error, retryAfter: res.Header.Get("Retry-After"),
			took: now.Sub(start), end: now, err: err}
	}

	stopPolls, stopPub := make(chan struct{}), make(chan struct{})
	var polls, pub sync.WaitGroup
	for i := range users {
		polls.Go(func() {
			cursor := startCursors[i]
			for {
				select {
				case <-stopPolls:
					return
				default:
				}
				start := time.Now()
				pr, res, err := pollOnce(hc, in.base, tokens[i], cursor, pollTimeout)
				record(&pollEvents, eventFrom(res, err, start))
				if err == nil && res.Status == http.StatusOK {
					boxes[i].add(pr.Messages)
					mu.Lock()
					for _, m := range pr.Messages {
						gotAt[m.ID] = time.Now()
					}
					mu.Unlock()
					cursor = pr.Cursor
					continue
				}
				time.Sleep(20 * time.Millisecond) // client back-off after a failure
			}
		})
	}
	pub.Go(func() {
		for n := 0; ; n++ {
			select {
			case <-stopPub:
				return
			default:
			}
			start := time.Now()
			ids, res, err := publish(hc, in.base, admin, names[n%users:n%users+1], "m"+strconv.Itoa(n))
			record(&pubEvents, eventFrom(res, err, start))
			if err == nil && res.Status == http.StatusCreated {
				mu.Lock()
				acked[n%users] = append(acked[n%users], ids[0])
				ackedAt[ids[0]] = time.Now()
				mu.Unlock()
			}
			time.Sleep(10 * time.Millisecond) // a steady trickle of publishes
		}
	})
	stopPublisher := sync.OnceFunc(func() { close(stopPub); pub.Wait() })
	stopPollers := sync.OnceFunc(func() { close(stopPolls); polls.Wait() })
	t.Cleanup(func() { stopPublisher(); stopPollers() })

	count := func(list *[]event, status int) int {
		mu.Lock()
		defer mu.Unlock()
		n := 0
		for _, e := range *list {
			if e.status == status {
				n++
			}
		}
		return n
	}
	eventually(t, 10*time.Second, func() bool { return count(&pubEvents, http.StatusCreated) >= 20 },
		func() string { return "20 publishes before the outage" })

	srv.Kill()
	down := time.Now()
	eventually(t, 5*time.Second, func() bool { return count(&pubEvents, http.StatusServiceUnavailable) >= 3 },
		func() string { return "publishes to fail with 503 while Redis is down" })
	time.Sleep(time.Until(down.Add(1500 * time.Millisecond))) // keep Redis down for 1.5 s
	srv.Restart(t)
	up := time.Now()
	created := count(&pubEvents, http.StatusCreated)
	eventually(t, 5*time.Second, func() bool { return count(&pubEvents, http.StatusCreated) >= created+20 },
		func() string { return "20 publishes after Redis is back" })
	stopPublisher()
	eventually(t, 5*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		for i := range users {
			if !boxes[i].hasAll(acked[i]) {
				return false
			}
		}
		return true
	}, func() string { return "the pollers to receive every acknowledged message" })
	stopPollers()

	mu.Lock()
	defer mu.Unlock()
	firstAfter := time.Time{}
	for _, e := range pubEvents {
		switch {
		case e.err != nil:
			t.Errorf("publish failed without an answer after %v: %v", e.took, e.err)
		case e.status == http.StatusServiceUnavailable && (e.retryAfter == "" || e.code != "unavailable"):
			t.Errorf("publish answered 503 with error %q and Retry-After %q", e.code, e.retryAfter)
		case e.status != http.StatusCreated && e.status != http.StatusServiceUnavailable:
			t.Errorf("publish answered %d, want 201 or 503", e.status)
		case e.status == http.StatusCreated && e.end.After(up) && firstAfter.IsZero():
			firstAfter = e.end
		}
		if e.took > redisTimeout+time.Second { // SPEC: the Redis timeout plus a second
			t.Errorf("publish answered %d after %v (started %v after Redis went down)", e.status, e.took, e.end.Add(-e.took).Sub(down))
		}
	}
	// go-redis, once dials have failed PoolSize times, lets new connections
	// through only after its once-a-second probe succeeds: the first publish
	// after the restart can take up to a second and a round trip. Allow that.
	if firstAfter.IsZero() || firstAfter.Sub(up) > 1500*time.Millisecond {
		t.Errorf("the first publish accepted after Redis was back came %v after the restart", firstAfter.Sub(up))
	}
	duringOutage := 0
	for _, e := range pollEvents {
		switch {
		case e.err != nil:
			t.Errorf("poll failed without an answer after %v: %v", e.took, e.err)
		case e.status == http.StatusServiceUnavailable && (e.retryAfter == "" || e.code != "unavailable"):
			t.Errorf("poll answered 503 with error %q and Retry-After %q", e.code, e.retryAfter)
		case e.status != http.StatusOK && e.status != http.StatusServiceUnavailable:
			t.Errorf("poll answered %d, want 200 or 503", e.status)
		}
		// SPEC: within the wait plus the Redis timeout plus a second, also
		// for a poll whose wait ended as Redis went away.
		if e.took > pollTimeout*time.Second+redisTimeout+time.Second {
			t.Errorf("poll with timeout=%d answered %d after %v (started %v after Redis went down, %v before it was back)",
				pollTimeout, e.status, e.took, e.end.Add(-e.took).Sub(down), up.Sub(e.end.Add(-e.took)))
		}
		if e.end.After(down) && e.end.Before(up) {
			duringOutage++
		}
	}
	if duringOutage == 0 {
		t.Error("no poll answered while Redis was down")
	}
	// After the restart every accepted message reaches its (waiting) poll
	// within a second, also while the wake-up subscription is still down.
	var worst time.Duration
	for id, at := range ackedAt {
		if !at.After(up) {
			continue
		}
		got, ok := gotAt[id]
		if !ok {
			continue // reported below as not received
		}
		worst = max(worst, got.Sub(at))
		if got.Sub(at) > time.Second {
			t.Errorf("message %s, accepted %v after the restart, reached its poll %v later",
				id, at.Sub(up), got.Sub(at))
		}
	}
	t.Logf("%d publishes (%d answered 503), %d polls (%d answered while Redis was down); "+
		"first publish accepted %v after the restart; slowest delivery after it %v",
		len(pubEvents), count503(pubEvents), len(pollEvents), duringOutage, firstAfter.Sub(up), worst)

	// Every acknowledged publish reached its poller exactly once, and is
	// there for a client that polls again from before the outage.
	for i, u := range names {
		for id, n := range boxes[i].seen {
			if n > 1 {
				t.Errorf("%s: the poller received %s %d times", u, id, n)
			}
		}
		var missing []string
		for _, id := range acked[i] {
			if boxes[i].seen[id] != 1 {
				missing = append(missing, fmt.Sprintf("%s×%d", id, boxes[i].seen[id]))
			}
		}
		if len(missing) > 0 {
			t.Errorf("%s: acknowledged messages not received exactly once by the poller: %v", u, missing)
		}
		replay := map[string]int{}
		cursor := startCursors[i]
		for range 100 {
			pr := mustPoll(t, hc, in.base, tokens[i], cursor, 0)
			if pr.Reset {
				t.Fatalf("%s: replay from the pre-outage cursor says reset", u)
			}
			for _, m := range pr.Messages {
				replay[m.ID]++
			}
			cursor = pr.Cursor
			if len(pr.Messages) == 0 {
				break
			}
		}
		for _, id := range acked[i] {
			if replay[id] != 1 {
				t.Errorf("%s: acknowledged message %s replayed %d times from the pre-outage cursor", u, id, replay[id])
			}
		}
	}
}

func count503(es []event) int {
	n := 0
	for _, e := range es {
		if e.status == http.StatusServiceUnavailable {
			n++
		}
	}
	return n
}
