package main

import (
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// refusing answers the requests match selects with status and body, the
// way an overloaded server refuses a subscriber (status 0: the connection
// is closed without an answer), and passes the others to h.
func refusing(h http.Handler, status int, body string, match func(*http.Request) bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !match(r) {
			h.ServeHTTP(w, r)
			return
		}
		if status == 0 {
			conn, _, err := w.(http.Hijacker).Hijack()
			if err == nil {
				_ = conn.Close()
			}
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = w.Write([]byte(body))
	})
}

func runFake(t *testing.T, cfg *config) *result {
	t.Helper()
	if err := cfg.validate(); err != nil {
		t.Fatal(err)
	}
	r, err := newRunner(cfg)
	if err != nil {
		t.Fatal(err)
	}
	res, err := r.run()
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func fakeConfig(protocol, base string, users int) *config {
	return &config{baseURL: base, secret: "s", pubToken: "bench:benchkey", users: users, clients: 2,
		rate: 40, duration: time.Second, drain: time.Second, mode: "users", timeout: 2,
		protocol: protocol, nchanSub: base + "/sub/%s", nchanPub: base + "/pub/%s",
		publishers: 2, setupTimeout: 2 * time.Second, settle: 200 * time.Millisecond, dialers: 8}
}

// TestRefusedSubscribersLoseMessages: a subscriber the server refuses (an
// error status, a closed connection) is a poll error of its kind, and the
// messages it was owed are lost, also when it was refused before
// publishing began and so never subscribed.
func TestRefusedSubscribersLoseMessages(t *testing.T) {
	if testing.Short() {
		t.Skip("runs for several seconds")
	}
	const users = 4
	const perUser = 40 / users // rate 40/s for 1 s, round-robin
	for _, tc := range []struct {
		name, protocol, user string
		status               int
		body, kind           string
		notReady             int
	}{
		{"pollbox 503 before publishing", "pollbox", "u0", 503, `{"error":"unavailable","message":"x"}`, "http_503:unavailable", 2},
		{"nchan 507", "nchan", "u1", 507, "Insufficient Storage", "http_507", 0},
		{"nchan connection closed", "nchan", "u2", 0, "", "net_", -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var h http.Handler
			var match func(*http.Request) bool
			if tc.protocol == "pollbox" {
				h = fakePollboxHandler(users)
				match = func(r *http.Request) bool {
					return r.URL.Path == "/v1/poll" && jwtSubject(r.Header.Get("Authorization")) == tc.user
				}
			} else {
				h = fakeNchanHandler()
				match = func(r *http.Request) bool { return r.URL.Path == "/sub/"+tc.user }
			}
			ts := httptest.NewServer(refusing(h, tc.status, tc.body, match))
			defer ts.Close()
			res := runFake(t, fakeConfig(tc.protocol, ts.URL, users))

			if res.Published != 40 || res.Expected != 2*40 || res.Delivered != 2*(40-perUser) ||
				res.Lost != 2*perUser || res.Duplicated != 0 {
				t.Errorf("published %d, expected %d, delivered %d, lost %d, duplicated %d; want 40, 80, %d, %d, 0",
					res.Published, res.Expected, res.Delivered, res.Lost, res.Duplicated, 2*(40-perUser), 2*perUser)
			}
			if tc.notReady >= 0 && (res.NotReady != tc.notReady || res.LostNotReady != int64(tc.notReady*perUser)) {
				t.Errorf("not ready %d (lost %d), want %d (lost %d)", res.NotReady, res.LostNotReady, tc.notReady, tc.notReady*perUser)
			}
			var n int64
			for k, v := range res.PollErrorsByKind {
				if !strings.HasPrefix(k, tc.kind) {
					t.Errorf("poll error kind %q (%d), want only %s…", k, v, tc.kind)
				}
				n += v
			}
			if n == 0 || n != res.PollErrors {
				t.Errorf("poll errors %d by kind %v, want some of kind %s…", res.PollErrors, res.PollErrorsByKind, tc.kind)
			}
		})
	}
}

// TestSubscriberConnectionRefused: when nothing listens, every subscriber
// fails with kind net_refused and the run says so.
func TestSubscriberConnectionRefused(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + ln.Addr().String()
	_ = ln.Close()
	cfg := fakeConfig("nchan", base, 2)
	cfg.setupTimeout = 12 * time.Second
	if testing.Short() {
		t.Skip("waits 10 s for the first connection")
	}
	if err := cfg.validate(); err != nil {
		t.Fatal(err)
	}
	r, err := newRunner(cfg)
	if err != nil {
		t.Fatal(err)
	}
	_, err = r.run()
	if err == nil || !strings.Contains(err.Error(), "net_refused=") {
		t.Fatalf("run: %v, want an error listing net_refused poll errors", err)
	}
}

func TestCPUPerDelivery(t *testing.T) {
	for _, tc := range []struct {
		server, redis float64
		delivered     int64
		want          float64
	}{
		{1.5, 0.5, 100000, 20},
		{1.5, -1, 100000, 15}, // Redis not sampled: the server alone
		{-1, 0.5, 100000, -1},
		{1.5, 0.5, 0, -1},
	} {
		if got := cpuPerDelivery(tc.server, tc.redis, tc.delivered); got != tc.want {
			t.Errorf("cpuPerDelivery(%v, %v, %d) = %v, want %v", tc.server, tc.redis, tc.delivered, got, tc.want)
		}
	}
}
