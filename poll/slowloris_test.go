package poll

import (
	"bytes"
	"crypto/rand"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// newHandler builds the HTTP layer over a store without Redis. Missing auth
// settings get an HS256 secret, the "admin" publisher group and the
// "billing" API key.
func newHandler(t testing.TB, cfg Config, ac AuthConfig, store Store) (http.Handler, *syncBuffer, []byte) {
	t.Helper()
	if len(ac.Algorithms) == 0 {
		ac.Algorithms = []string{"HS256"}
	}
	if ac.HMACSecret == nil && ac.PublicKey == nil {
		ac.HMACSecret = make([]byte, 32)
		rand.Read(ac.HMACSecret)
	}
	if ac.PublisherGroups == nil {
		ac.PublisherGroups = []string{"admin"}
	}
	if ac.APIKeys == nil {
		ac.APIKeys = []APIKey{{Name: "billing", Secret: apiKeySecret}}
	}
	auth, err := NewAuthenticator(ac)
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	return New(cfg, store, auth, NewMetrics(), zerolog.New(logs)), logs, ac.HMACSecret
}

// TestSlowHeadersAreCutOff: a client that trickles its request headers is
// disconnected by ReadHeaderTimeout, while normal requests are served.
func TestSlowHeadersAreCutOff(t *testing.T) {
	t.Parallel()
	const headerTimeout = 500 * time.Millisecond
	h, _, _ := newHandler(t, Config{}, AuthConfig{}, &fakeStore{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	// Configured like main.go, with a shorter header timeout.
	srv := &http.Server{Handler: h, ReadHeaderTimeout: headerTimeout, ReadTimeout: 60 * time.Second,
		WriteTimeout: 75 * time.Second, IdleTimeout: 120 * time.Second, MaxHeaderBytes: 16 << 10}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	base := "http://" + ln.Addr().String()

	conn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	start := time.Now()
	if _, err := io.WriteString(conn, "GET /healthz HTTP/1.1\r\nHost: pollbox\r\nX-Slow: "); err != nil {
		t.Fatal(err)
	}
	// One byte every 200 ms: the headers would be complete only after 20 s.
	stopDrip := make(chan struct{})
	dripDone := make(chan int, 1)
	go func() {
		sent := 0
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		defer func() { dripDone <- sent }()
		for _, b := range []byte(strings.Repeat("z", 100) + "\r\n\r\n") {
			select {
			case <-stopDrip:
				return
			case <-tick.C:
			}
			if _, err := conn.Write([]byte{b}); err != nil {
				return
			}
			sent++
		}
	}()
	type readResult struct {
		data []byte
		at   time.Duration
	}
	closed := make(chan readResult, 1)
	go func() {
		data, _ := io.ReadAll(conn) // returns when the server closes the connection
		closed <- readResult{data, time.Since(start)}
	}()

	// Meanwhile, ordinary requests go through.
	for i := range 5 {
		r := do(t, base, request{method: "GET", path: "/healthz"})
		if r.status != http.StatusOK {
			t.Fatalf("normal request %d: %d %s", i, r.status, r.body)
		}
	}
	select {
	case res := <-closed:
		t.Fatalf("slow connection closed after %v, before the normal requests were done", res.at)
	default:
	}

	var res readResult
	select {
	case res = <-closed:
	case <-time.After(headerTimeout + 5*time.Second):
		t.Fatal("slow connection still open 5 s after ReadHeaderTimeout")
	}
	close(stopDrip)
	sent := <-dripDone
	if res.at < headerTimeout-50*time.Millisecond || res.at > headerTimeout+2*time.Second {
		t.Errorf("slow connection closed after %v, want about %v", res.at, headerTimeout)
	}
	if len(res.data) > 0 && !bytes.HasPrefix(res.data, []byte("HTTP/1.1 408")) {
		t.Errorf("slow connection got %q, want nothing or a 408", clipBody(res.data))
	}
	if sent >= 100 {
		t.Errorf("the slow client sent all %d header bytes", sent)
	}
	// And the server still serves afterwards.
	if r := do(t, base, request{method: "GET", path: "/healthz"}); r.status != http.StatusOK {
		t.Fatalf("after the cut: %d %s", r.status, r.body)
	}
}
