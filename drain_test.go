package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"pollbox/internal/redistest"
)

// drainOutcome is what one publish got during the drain test.
type drainOutcome struct {
	user, title string
	status      int
	retryAfter  string
	closed      bool // the answer said Connection: close
	err         error
	start, at   time.Time // sent, answered
}

// SIGTERM while 50 keep-alive publishers hammer the real process: every
// request gets an HTTP answer, each a 201 whose message is stored or a 503
// (Retry-After, Connection: close) whose message is not; only once the
// process has stopped listening are connections refused, which is
// unambiguous. /readyz fails at once, /healthz still answers, and a waiting
// poll answers at once with its cursor.
func TestDrainOnSIGTERM(t *testing.T) {
	bin := buildPollbox(t) // before t.Parallel: the build would slow the parallel tests down
	t.Parallel()
	const drain = 2 * time.Second
	secret := newSecret(t)
	prefix := redistest.Prefix(t)
	env := baseEnv(secret, prefix, "POLLBOX_REDIS_URL", redistest.URL(t), "POLLBOX_PUBLISH_RATE", "0",
		"POLLBOX_INBOX_MAXLEN", "1000000", "POLLBOX_SHUTDOWN_DRAIN", drain.String())
	p := startProcess(t, bin, env)
	hc := newHTTPClient(t) // keeps its connections alive between requests
	fresh := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 5 * time.Second}
	admin := smpeToken(secret, "1", "admin")

	waiter := smpeToken(secret, "drain-waiter", "")
	cursor := mustPoll(t, hc, p.base, waiter, "", 0).Cursor
	type pollAnswer struct {
		pr  pollResult
		res response
		err error
		at  time.Time
	}
	polled := make(chan pollAnswer, 1)
	go func() {
		pr, res, err := pollOnce(fresh, p.base, waiter, cursor, 30)
		polled <- pollAnswer{pr, res, err, time.Now()}
	}()
	waitWaiting(t, hc, p.base, 1, 10*time.Second)

	const publishers = 50
	var mu sync.Mutex
	var outcomes []drainOutcome
	created := make(chan struct{}, 100000)
	quit := make(chan struct{})
	var wg sync.WaitGroup
	t.Cleanup(func() { close(quit); wg.Wait() }) // runs before startProcess's cleanup
	for w := range publishers {
		user := "dp" + strconv.Itoa(w)
		wg.Go(func() {
			for n := 0; ; n++ {
				o := publishOnce(hc, p.base, admin, user, fmt.Sprintf("%s-%d", user, n))
				mu.Lock()
				outcomes = append(outcomes, o)
				mu.Unlock()
				switch {
				case o.err != nil:
					return // refused once the process is gone, or a failure checked below
				case o.status == http.StatusCreated:
					select {
					case created <- struct{}{}:
					default:
					}
					continue
				case o.status != http.StatusServiceUnavailable:
					return
				}
				// A well-behaved client honours Retry-After (with some jitter).
				secs, err := strconv.Atoi(o.retryAfter)
				if err != nil || secs < 1 {
					return // checked below
				}
				select {
				case <-time.After(time.Duration(secs)*time.Second + rand.N(200*time.Millisecond)):
				case <-quit:
					return
				}
			}
		})
	}
	for range 300 { // hammering in full swing
		select {
		case <-created:
		case <-time.After(20 * time.Second):
			t.Fatal("publishers got fewer than 300 answers of 201 in 20 s")
		}
	}

	sigAt := time.Now()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case a := <-polled:
		if a.err != nil || a.res.Status != http.StatusOK || len(a.pr.Messages) != 0 || a.pr.Cursor == "" {
			t.Errorf("waiting poll at SIGTERM: %v %s", a.err, a.res)
		}
		if d := a.at.Sub(sigAt); d > time.Second {
			t.Errorf("waiting poll answered %v after SIGTERM, want at once", d)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("waiting poll not answered within 5 s of SIGTERM")
	}
	// The poll has answered, so the drain has begun.
	for path, want := range map[string]int{"/readyz": http.StatusServiceUnavailable, "/healthz": http.StatusOK} {
		res, err := do(fresh, "GET", p.base+path, "", nil, 5*time.Second)
		if err != nil || res.Status != want {
			t.Errorf("GET %s during the drain: %v %s, want %d", path, err, res, want)
		}
	}

	select {
	case <-p.exited:
	case <-time.After(drain + 15*time.Second):
		t.Fatal("pollbox did not exit within 15 s after its drain")
	}
	exitedAt := time.Now()
	if took := exitedAt.Sub(sigAt); took < drain {
		t.Errorf("pollbox exited %v after SIGTERM, before its %v drain ended", took, drain)
	}
	if code := p.cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("pollbox exited with status %d", code)
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("publishers still running 10 s after pollbox exited")
	}

	stored := storedTitles(t, prefix, publishers)
	var n201, n503, refusedN int
	for _, o := range outcomes {
		switch {
		case o.err != nil && dialRefused(o.err) && !o.at.Before(sigAt):
			refusedN++
		case o.err != nil:
			t.Errorf("publish %s sent %v after SIGTERM: no HTTP answer %v later: %v", o.title,
				o.start.Sub(sigAt).Round(time.Millisecond), o.at.Sub(o.start).Round(time.Millisecond), o.err)
		case o.status == http.StatusCreated:
			n201++
			if !stored[o.title] {
				t.Errorf("publish %s answered 201 but is not in Redis", o.title)
			}
		case o.status == http.StatusServiceUnavailable:
			n503++
			if stored[o.title] {
				t.Errorf("publish %s answered 503 but is stored", o.title)
			}
			if secs, err := strconv.Atoi(o.retryAfter); err != nil || secs < 1 {
				t.Errorf("publish %s: 503 with Retry-After %q", o.title, o.retryAfter)
			}
			if !o.closed {
				t.Errorf("publish %s: 503 without Connection: close", o.title)
			}
		default:
			t.Errorf("publish %s answered %d", o.title, o.status)
		}
	}
	t.Logf("%d publishes: %d × 201, %d × 503, %d refused at connect; exit seen %v after SIGTERM",
		len(outcomes), n201, n503, refusedN, exitedAt.Sub(sigAt).Round(time.Millisecond))
	if n503 == 0 {
		t.Error("no publish was answered 503 during the drain")
	}
}

// publishOnce sends one publish to user and reports what came back.
func publishOnce(hc *http.Client, base, token, user, title string) drainOutcome {
	o := drainOutcome{user: user, title: title, start: time.Now()}
	body, _ := json.Marshal(map[string]any{"to": []string{user}, "title": title})
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "POST", base+"/v1/publish", bytes.NewReader(body))
	if err != nil {
		o.err = err
		return o
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	res, err := hc.Do(req)
	o.at = time.Now()
	if err != nil {
		o.err = err
		return o
	}
	defer res.Body.Close()
	if _, err := io.Copy(io.Discard, res.Body); err != nil {
		o.err = fmt.Errorf("reading the answer: %w", err)
		return o
	}
	o.status, o.retryAfter, o.closed = res.StatusCode, res.Header.Get("Retry-After"), res.Close
	return o
}

// dialRefused reports a connection refused at connect: nothing was sent.
func dialRefused(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial" && errors.Is(err, syscall.ECONNREFUSED)
}

// storedTitles returns the titles in the inboxes of users dp0…dp<n-1>.
func storedTitles(t *testing.T, prefix string, n int) map[string]bool {
	t.Helper()
	opt, err := redis.ParseURL(redistest.URL(t))
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(opt)
	defer rdb.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	titles := map[string]bool{}
	for w := range n {
		entries, err := rdb.XRange(ctx, prefix+"inbox:{dp"+strconv.Itoa(w)+"}", "-", "+").Result()
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			if s, _ := e.Values["title"].(string); s != "" {
				titles[s] = true
			}
		}
	}
	return titles
}
