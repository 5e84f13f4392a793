package main

import (
	"net"
	"net/http"
	"net/url"
	"runtime"
	"testing"
	"time"

	"pollbox/internal/redistest"
)

// TestWaitingPollStackWithoutRace checks that waiting polls keep small goroutine
// stacks. A stack grows for the deepest moment of its goroutine and stays
// grown while the poll waits; if a poll's deepest path (a Redis read from
// inside Poll) outgrows the initial 8 KiB, every waiting poll holds twice
// that. Not parallel: it measures the whole process's stack memory. The
// race detector enlarges frames, so scripts/test.sh runs this test again
// without it ("WithoutRace" in the name).
func TestWaitingPollStackWithoutRace(t *testing.T) {
	if raceEnabled {
		t.Skip("stack sizes under the race detector are not those of a normal build")
	}
	secret := newSecret(t)
	in := startInstance(t, baseEnv(secret, redistest.Prefix(t), "POLLBOX_REDIS_URL", redistest.URL(t),
		"POLLBOX_MAX_POLLS_PER_USER", "0"))
	hc := newHTTPClient(t)
	token := smpeToken(secret, "stack", "user:list")
	c := mustPoll(t, hc, in.base, token, "", 0) // token verified and cached, scripts loaded
	u, err := url.Parse(in.base)
	if err != nil {
		t.Fatal(err)
	}
	req := []byte("GET /v1/poll?timeout=60&cursor=" + url.QueryEscape(c.Cursor) + " HTTP/1.1\r\nHost: " + u.Host +
		"\r\nAuthorization: Bearer " + token + "\r\n\r\n")

	const n = 400
	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	before := ms.StackInuse
	// Raw connections: the client side holds no goroutines of its own.
	conns := make([]net.Conn, 0, n)
	t.Cleanup(func() {
		for _, c := range conns {
			c.Close()
		}
	})
	for range n {
		c, err := net.DialTimeout("tcp", u.Host, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		if _, err := c.Write(req); err != nil {
			t.Fatal(err)
		}
	}
	waitWaiting(t, hc, in.base, n, 20*time.Second)
	// No GC here: a collection would shrink grown stacks and hide them.
	runtime.ReadMemStats(&ms)
	per := float64(ms.StackInuse-before) / n / 1024
	t.Logf("stack per waiting poll: %.1f KiB", per)
	// A poll is two goroutines (the connection's, at 8 KiB, and net/http's
	// background reader, smaller); grown to 16 KiB the first alone exceeds this.
	if per > 14 {
		t.Errorf("stack per waiting poll %.1f KiB, want at most 14 KiB", per)
	}
}

// TestPprofOnlyWhereAsked checks that pprof is served on its own address
// when POLLBOX_PPROF_ADDR is set, and never on the API's.
func TestPprofOnlyWhereAsked(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // a free port for pollbox to take
	secret := newSecret(t)
	in := startInstance(t, baseEnv(secret, redistest.Prefix(t), "POLLBOX_REDIS_URL", redistest.URL(t),
		"POLLBOX_PPROF_ADDR", addr))
	hc := newHTTPClient(t)
	for _, tc := range []struct {
		base string
		want int
	}{{"http://" + addr, http.StatusOK}, {in.base, http.StatusNotFound}} {
		res, err := do(hc, "GET", tc.base+"/debug/pprof/", "", nil, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if res.Status != tc.want {
			t.Errorf("GET %s/debug/pprof/: status %d, want %d", tc.base, res.Status, tc.want)
		}
	}
}
