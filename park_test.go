package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"runtime"
	"strings"
	"testing"
	"time"

	"pollbox/internal/rawhttp"
	"pollbox/internal/redistest"
)

// dialRaw connects to the instance at base with a bare connection.
func dialRaw(t *testing.T, base string) *rawhttp.Conn {
	t.Helper()
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	return rawhttp.Dial(t, u.Host)
}

// TestWaitingPollsHoldNoGoroutine holds 400 polls on one instance and
// counts its goroutines: parked, a waiting poll holds none (net/http's
// connection goroutine and background read are gone); in its request it
// holds two. A woken parked poll answers on its connection, which then
// serves the next request (keep-alive).
func TestWaitingPollsHoldNoGoroutine(t *testing.T) {
	for _, tc := range []struct {
		park       string
		minPerPoll float64 // goroutines per waiting poll, at least
		maxPerPoll float64 // and at most
	}{
		{"on", 0, 0.05},
		{"off", 1.9, 3},
	} {
		t.Run("park="+tc.park, func(t *testing.T) {
			secret := newSecret(t)
			in := startInstance(t, baseEnv(secret, redistest.Prefix(t), "POLLBOX_REDIS_URL", redistest.URL(t),
				"POLLBOX_PARK_POLLS", tc.park))
			hc := newHTTPClient(t)
			admin := smpeToken(secret, "1", "admin")
			const users, perUser = 20, 20
			names := userNames("parked", users)
			tokens := make([]string, users)
			cursors := make([]string, users)
			for i, u := range names {
				tokens[i] = smpeToken(secret, u, "user:list")
				cursors[i] = mustPoll(t, hc, in.base, tokens[i], "", 0).Cursor
			}
			hc.Transport.(*http.Transport).CloseIdleConnections()
			waitWaiting(t, hc, in.base, 0, 10*time.Second)
			before := runtime.NumGoroutine()
			conns := make([][]*rawhttp.Conn, users)
			for i := range names {
				for range perUser {
					rc := dialRaw(t, in.base)
					rc.Send(t, rawhttp.Get("/v1/poll?timeout=60&cursor="+cursors[i], tokens[i]))
					conns[i] = append(conns[i], rc)
				}
			}
			waitWaiting(t, hc, in.base, users*perUser, 30*time.Second)
			// A poll counts as waiting just before its request's goroutine
			// parks it and ends: let the count settle.
			var grew float64
			eventually(t, 5*time.Second, func() bool {
				grew = float64(runtime.NumGoroutine()-before) / (users * perUser)
				return grew >= tc.minPerPoll && grew <= tc.maxPerPoll
			}, func() string {
				return fmt.Sprintf("park=%s: %.2f goroutines per waiting poll, want %.2f to %.2f",
					tc.park, grew, tc.minPerPoll, tc.maxPerPoll)
			})

			ids := mustPublish(t, hc, in.base, admin, []string{names[0]}, "to the parked")
			var cursor string
			for _, rc := range conns[0] {
				res, body := rc.Read(t, 10*time.Second)
				var pr pollResult
				if err := json.Unmarshal(body, &pr); err != nil || res.StatusCode != http.StatusOK {
					t.Fatalf("answer %d %s: %v", res.StatusCode, body, err)
				}
				if len(pr.Messages) != 1 || pr.Messages[0].ID != ids[0] {
					t.Fatalf("answer %s, want message %s", body, ids[0])
				}
				if got := res.Header.Get("X-Request-Id"); got == "" || res.Header.Get("Cache-Control") != "no-store" {
					t.Errorf("answer headers %v lack the request id or Cache-Control", res.Header)
				}
				cursor = pr.Cursor
			}
			// The connection serves the next request.
			rc := conns[0][0]
			rc.Send(t, rawhttp.Get("/v1/poll?timeout=0&cursor="+cursor, tokens[0]))
			if res, body := rc.Read(t, 10*time.Second); res.StatusCode != http.StatusOK || !strings.Contains(string(body), `"messages":[]`) {
				t.Fatalf("next request on the connection: %d %s", res.StatusCode, body)
			}
		})
	}
}

// TestParkedPollOfGoneClientFreesSlot: polls whose clients closed their
// connections do not count against the per-user cap, even before the
// sweep finds them.
func TestParkedPollOfGoneClientFreesSlot(t *testing.T) {
	secret := newSecret(t)
	in := startInstance(t, baseEnv(secret, redistest.Prefix(t), "POLLBOX_REDIS_URL", redistest.URL(t),
		"POLLBOX_PARK_POLLS", "on", "POLLBOX_MAX_POLLS_PER_USER", "2"))
	hc := newHTTPClient(t)
	tok := smpeToken(secret, "gone", "user:list")
	c := mustPoll(t, hc, in.base, tok, "", 0).Cursor
	var conns []*rawhttp.Conn
	for range 2 {
		rc := dialRaw(t, in.base)
		rc.Send(t, rawhttp.Get("/v1/poll?timeout=60&cursor="+c, tok))
		conns = append(conns, rc)
	}
	waitWaiting(t, hc, in.base, 2, 10*time.Second)
	// A third poll is over the cap while both clients are there.
	if _, res, _ := pollOnce(hc, in.base, tok, c, 0); res.Status != http.StatusTooManyRequests {
		t.Fatalf("third poll with two waiting: %v, want 429", res)
	}
	// The clients leave; their slots are free as soon as the server's
	// kernel has their FINs (the next poll may race them on a busy machine).
	for _, rc := range conns {
		rc.C.Close()
	}
	var res response
	eventually(t, 2*time.Second, func() bool {
		_, res, _ = pollOnce(hc, in.base, tok, c, 0)
		return res.Status == http.StatusOK
	}, func() string { return fmt.Sprintf("a poll answered 200 after both clients left (last: %v)", res) })
	// Both are counted as cut (the second maybe after the poll above).
	var n float64
	var err error
	eventually(t, 5*time.Second, func() bool {
		n, err = metric(hc, in.base, `pollbox_polls_total{outcome="cut"}`)
		return err == nil && n == 2
	}, func() string { return fmt.Sprintf("2 cut polls (now %v, %v)", n, err) })
}

// TestParkedPollPipelined: a request the client sent behind its poll
// (pipelining) is served after the poll's answer, on the same connection.
func TestParkedPollPipelined(t *testing.T) {
	secret := newSecret(t)
	in := startInstance(t, baseEnv(secret, redistest.Prefix(t), "POLLBOX_REDIS_URL", redistest.URL(t),
		"POLLBOX_PARK_POLLS", "on"))
	hc := newHTTPClient(t)
	admin := smpeToken(secret, "1", "admin")
	tok := smpeToken(secret, "piped", "user:list")
	c := mustPoll(t, hc, in.base, tok, "", 0).Cursor
	rc := dialRaw(t, in.base)
	rc.Send(t, rawhttp.Get("/v1/poll?timeout=60&cursor="+c, tok)+rawhttp.Get("/v1/unread", tok))
	waitWaiting(t, hc, in.base, 1, 10*time.Second)
	id := mustPublish(t, hc, in.base, admin, []string{"piped"}, "behind a pipeline")[0]
	res, body := rc.Read(t, 10*time.Second)
	if res.StatusCode != http.StatusOK || !strings.Contains(string(body), id) {
		t.Fatalf("poll answer %d %s, want message %s", res.StatusCode, body, id)
	}
	res, body = rc.Read(t, 10*time.Second)
	if res.StatusCode != http.StatusOK || !strings.Contains(string(body), `"unread":1`) {
		t.Fatalf("pipelined request's answer %d %s, want unread 1", res.StatusCode, body)
	}
}
