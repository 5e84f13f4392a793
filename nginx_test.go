package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"pollbox/internal/redistest"
)

// proxied is one request sent through nginx.
type proxied struct {
	what       string // "publish" or "poll"
	start, end time.Time
	ok         bool
	detail     string
}

// Two pollbox instances behind nginx, configured as README.md shows: after
// a 2 s Redis outage, publishes and polls through nginx succeed again
// within 3 s of Redis returning; after one instance is killed, no request
// fails for longer than 1 s.
func TestNginxMultiInstance(t *testing.T) {
	nginx := requireNginx(t)
	bin := buildPollbox(t) // before t.Parallel: the build would slow the parallel tests down
	t.Parallel()
	rs := redistest.Start(t, redistest.Options{AOF: true}) // the outage loses nothing
	secret := newSecret(t)
	env := baseEnv(secret, redistest.Prefix(t), "POLLBOX_REDIS_URL", rs.URL(), "POLLBOX_PUBLISH_RATE", "0",
		"POLLBOX_REDIS_TIMEOUT", "1s", "POLLBOX_SHUTDOWN_DRAIN", "0s")
	a := startProcess(t, bin, env)
	b := startProcess(t, bin, env)
	ngx := startNginx(t, nginx, [2]string{strings.TrimPrefix(a.base, "http://"), strings.TrimPrefix(b.base, "http://")})
	hc := newHTTPClient(t)
	admin := smpeToken(secret, "1", "admin")

	var mu sync.Mutex
	var events []proxied
	record := func(e proxied) {
		mu.Lock()
		events = append(events, e)
		mu.Unlock()
	}
	quit := make(chan struct{})
	var wg sync.WaitGroup
	t.Cleanup(func() { close(quit); wg.Wait() }) // before nginx and pollbox stop
	const users = 4
	for i := range users {
		user := "ng" + strconv.Itoa(i)
		token := smpeToken(secret, user, "")
		wg.Go(func() { // a publisher, a little below full speed
			for n := 0; ; n++ {
				select {
				case <-quit:
					return
				case <-time.After(10 * time.Millisecond):
				}
				start := time.Now()
				_, res, err := publish(hc, ngx.base, admin, []string{user}, fmt.Sprintf("%s-%d", user, n))
				record(proxied{"publish", start, time.Now(), err == nil && res.Status == http.StatusCreated,
					fmt.Sprintf("%v %s", err, res)})
			}
		})
		wg.Go(func() { // a long-polling client
			cursor := ""
			for {
				select {
				case <-quit:
					return
				default:
				}
				start := time.Now()
				pr, res, err := pollOnce(hc, ngx.base, token, cursor, 2)
				ok := err == nil && res.Status == http.StatusOK
				if ok {
					cursor = pr.Cursor
				}
				record(proxied{"poll", start, time.Now(), ok, fmt.Sprintf("%v %s", err, res)})
				if !ok {
					select { // a failed poll is retried soon, as client.js does
					case <-quit:
						return
					case <-time.After(50 * time.Millisecond):
					}
				}
			}
		})
	}
	for i := range 2 { // long-polls that wait out their 5 s: nobody writes to them
		token := smpeToken(secret, "ngidle"+strconv.Itoa(i), "")
		wg.Go(func() {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			go func() { <-quit; cancel() }()
			for ctx.Err() == nil {
				start := time.Now()
				res, err := doCtx(ctx, hc, ngx.base+"/v1/poll?timeout=5", token)
				if ctx.Err() != nil {
					return
				}
				record(proxied{"poll", start, time.Now(), err == nil && res.Status == http.StatusOK,
					fmt.Sprintf("%v %s", err, res)})
				if err != nil || res.Status != http.StatusOK {
					select {
					case <-quit:
						return
					case <-time.After(50 * time.Millisecond):
					}
				}
			}
		})
	}
	// waitUntil waits until now is past until, then returns the events so far.
	waitUntil := func(until time.Time) []proxied {
		time.Sleep(time.Until(until))
		mu.Lock()
		defer mu.Unlock()
		return append([]proxied(nil), events...)
	}

	start := time.Now()
	healthy := waitUntil(start.Add(time.Second))
	checkProxied(t, "with both instances up", healthy, start, start)

	// Redis is down for 2 s: every instance answers 503 meanwhile.
	rs.Kill()
	time.Sleep(2 * time.Second) // the outage
	rs.Restart(t)
	back := time.Now()
	after := waitUntil(back.Add(4 * time.Second))
	checkProxied(t, "after the Redis outage", after, back, back.Add(3*time.Second))

	// One instance dies.
	a.kill9(t)
	killed := time.Now()
	all := waitUntil(killed.Add(3 * time.Second))
	checkProxied(t, "after an instance was killed", all, killed, killed.Add(time.Second))
}

// doCtx sends a GET with a bearer token, bounded by ctx.
func doCtx(ctx context.Context, hc *http.Client, u, token string) (response, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", u, nil)
	if err != nil {
		return response{}, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	res, err := hc.Do(req)
	if err != nil {
		return response{}, err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	return response{Status: res.StatusCode, Header: res.Header, Body: b}, err
}

// checkProxied checks the events that ended after from: each kind has
// succeeded (by okBy, when that is after from), and none that ended at or
// after okBy failed.
func checkProxied(t *testing.T, phase string, events []proxied, from, okBy time.Time) {
	t.Helper()
	succeeded := map[string]int{}
	firstOK := map[string]time.Time{}
	failed, lastFail := 0, time.Duration(0)
	for _, e := range events {
		if e.end.Before(from) {
			continue
		}
		if e.ok {
			succeeded[e.what]++
			if f, seen := firstOK[e.what]; !seen || e.end.Before(f) {
				firstOK[e.what] = e.end
			}
			continue
		}
		failed++
		lastFail = max(lastFail, e.end.Sub(from))
		if !e.end.Before(okBy) {
			t.Errorf("%s: %s started %v and failed %v after the event, later than the %v allowed: %s", phase, e.what,
				e.start.Sub(from).Round(time.Millisecond), e.end.Sub(from).Round(time.Millisecond), okBy.Sub(from), e.detail)
		}
	}
	for _, what := range []string{"publish", "poll"} {
		if succeeded[what] == 0 {
			t.Errorf("%s: no %s through nginx succeeded", phase, what)
		} else if okBy.After(from) && !firstOK[what].Before(okBy) {
			t.Errorf("%s: the first %s through nginx succeeded only %v after the event, want within %v", phase, what,
				firstOK[what].Sub(from).Round(time.Millisecond), okBy.Sub(from))
		}
	}
	t.Logf("%s: %v succeeded; %d failed, the last %v after the event", phase, succeeded, failed, lastFail.Round(time.Millisecond))
}
