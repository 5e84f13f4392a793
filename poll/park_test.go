package poll

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"pollbox/internal/rawhttp"
)

// rawConn is a bare client connection (see rawhttp) whose answers read
// as this package's response.
type rawConn struct{ *rawhttp.Conn }

// dialRaw connects to the stack; the connection closes when the test ends.
func (s *stack) dialRaw(t testing.TB) rawConn {
	t.Helper()
	return rawConn{rawhttp.Dial(t, s.srv.Listener.Addr().String())}
}

// readErr reads one answer, waiting until deadline at most.
func (rc rawConn) readErr(deadline time.Time) (response, error) {
	res, b, err := rc.ReadBefore(deadline)
	if err != nil {
		return response{}, err
	}
	return response{status: res.StatusCode, header: res.Header, body: b}, nil
}

func (rc rawConn) read(t testing.TB, timeout time.Duration) response {
	t.Helper()
	r, err := rc.readErr(time.Now().Add(timeout))
	if err != nil {
		t.Fatalf("reading an answer: %v", err)
	}
	return r
}

// quiet tells whether nothing has come on the connection, neither bytes
// nor its end, without waiting and without consuming anything.
func (rc rawConn) quiet(t testing.TB) bool {
	t.Helper()
	if rc.Buffered() > 0 {
		return false
	}
	sc, err := rc.C.(syscall.Conn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	quiet := false
	var buf [1]byte
	err = sc.Read(func(fd uintptr) bool {
		_, _, e := syscall.Recvfrom(int(fd), buf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		quiet = e == syscall.EAGAIN
		return true // one look, never a wait
	})
	if err != nil {
		t.Fatal(err)
	}
	return quiet
}

// settledGoroutines is the process's goroutine count once it has stopped
// changing for a while: a parked poll's request goroutine ends only after
// its poll began (which is what waitPolls sees).
func settledGoroutines() int {
	n := runtime.NumGoroutine()
	deadline := time.Now().Add(5 * time.Second)
	for same := 0; same < 5 && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
		if m := runtime.NumGoroutine(); m != n {
			n, same = m, 0
		} else {
			same++
		}
	}
	return n
}

// TestStackParksWaitingPolls: the test stack parks waiting polls as
// production does (park "" follows POLLBOX_TEST_PARK_POLLS, on by
// default), or keeps them in their requests. Parked, a waiting poll holds
// no goroutine; in its request, it holds net/http's two. Either way a
// woken poll answers on its connection, which then serves the next
// request (keep-alive, through the Listener when parked).
func TestStackParksWaitingPolls(t *testing.T) {
	// Not parallel: it counts the process's goroutines.
	t.Logf("POLLBOX_TEST_PARK_POLLS=%q: stacks park by default: %v", os.Getenv("POLLBOX_TEST_PARK_POLLS"), parkPolls(""))
	for _, mode := range []string{"on", "off"} {
		t.Run("park="+mode, func(t *testing.T) {
			const n = 40
			s := newStack(t, stackOptions{park: mode})
			tok := s.token(t, "alice")
			cur := s.cursor(t, tok)
			client.CloseIdleConnections()
			before := settledGoroutines()
			conns := make([]rawConn, n)
			for i := range conns {
				conns[i] = s.dialRaw(t)
				conns[i].Send(t, rawhttp.Get("/v1/poll?timeout=30&cursor="+cur, tok))
			}
			s.waitPolls(t, n)
			perPoll := float64(settledGoroutines()-before) / n
			t.Logf("park=%s: %.2f goroutines per waiting poll", mode, perPoll)
			if mode == "on" && perPoll > 0.2 {
				t.Errorf("parked: %.2f goroutines per waiting poll, want none", perPoll)
			}
			if mode == "off" && perPoll < 0.9 {
				t.Errorf("not parked: %.2f goroutines per waiting poll, want net/http's", perPoll)
			}

			id := s.publish(t, `{"to":["alice"],"title":"to the waiting"}`)[0]
			var next string
			for _, rc := range conns {
				r := rc.read(t, 10*time.Second)
				var p pollBody
				if err := json.Unmarshal(r.body, &p); err != nil || r.status != http.StatusOK {
					t.Fatalf("answer %d %s: %v", r.status, r.body, err)
				}
				if len(p.Messages) != 1 || p.Messages[0].ID != id {
					t.Fatalf("answer %s, want message %s", r.body, id)
				}
				if r.header.Get("X-Request-Id") == "" || r.header.Get("Cache-Control") != "no-store" {
					t.Errorf("answer headers %v lack the request id or Cache-Control", r.header)
				}
				next = p.Cursor
			}
			// The connection serves the next request, and the next poll
			// waits (parked again) until it times out.
			rc := conns[0]
			rc.Send(t, rawhttp.Get("/v1/poll?timeout=1&cursor="+next, tok))
			if r := rc.read(t, 10*time.Second); r.status != http.StatusOK || !strings.Contains(string(r.body), `"messages":[]`) {
				t.Fatalf("next poll on the connection: %d %s", r.status, r.body)
			}
		})
	}
}

// TestPipelinedPollsOfGoneClientFreeSlot: a client that pipelined its
// polls (each one sent before the previous answered) and then left frees
// its slot under the per-user cap at once, however many of its polls were
// parked with requests behind them on that connection.
func TestPipelinedPollsOfGoneClientFreeSlot(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{"on", "off"} {
		t.Run("park="+mode, func(t *testing.T) {
			t.Parallel()
			s := newStack(t, stackOptions{park: mode, cfg: Config{MaxPollsPerUser: 1}})
			tok := s.token(t, "alice")
			cur := s.cursor(t, tok)
			rc := s.dialRaw(t)
			// Three polls in one write: the first two time out after a
			// second each, the third waits on.
			rc.Send(t, rawhttp.Get("/v1/poll?timeout=1&cursor="+cur, tok)+
				rawhttp.Get("/v1/poll?timeout=1&cursor="+cur, tok)+
				rawhttp.Get("/v1/poll?timeout=30&cursor="+cur, tok))
			for i := range 2 {
				if r := rc.read(t, 10*time.Second); r.status != http.StatusOK {
					t.Fatalf("pipelined poll %d: %d %s", i+1, r.status, r.body)
				}
			}
			s.waitPolls(t, 3)
			// The third is waiting and holds the slot.
			checkError(t, do(t, s.url, request{method: "GET", path: "/v1/poll?timeout=0&cursor=" + cur, token: tok}),
				http.StatusTooManyRequests, "too_many_polls")
			rc.C.Close()
			deadline := time.Now().Add(3 * time.Second)
			for {
				r := do(t, s.url, request{method: "GET", path: "/v1/poll?timeout=0&cursor=" + cur, token: tok})
				if r.status == http.StatusOK {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("the client left 3 s ago and its poll still holds the slot: %d %s", r.status, clipBody(r.body))
				}
				time.Sleep(50 * time.Millisecond)
			}
		})
	}
}

// metric reads one sample of /metrics, by its full name and labels.
func (s *stack) metric(t testing.TB, name string) float64 {
	t.Helper()
	r := do(t, s.url, request{method: "GET", path: "/metrics"})
	for _, l := range strings.Split(string(r.body), "\n") {
		if v, ok := strings.CutPrefix(l, name+" "); ok {
			n, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatalf("/metrics has no %s: %d %s", name, r.status, clipBody(r.body))
	return 0
}

// redisGate holds every Redis command of the stack while it is shut.
type redisGate struct {
	shut atomic.Bool
	held chan struct{} // a value per command that began waiting
	open chan struct{} // closed: let them all go
}

func newRedisGate() *redisGate {
	return &redisGate{held: make(chan struct{}, 64), open: make(chan struct{})}
}

func (g *redisGate) pass() {
	if g.shut.Load() {
		select {
		case g.held <- struct{}{}:
		default:
		}
		<-g.open
	}
}

func (g *redisGate) DialHook(next redis.DialHook) redis.DialHook { return next }

func (g *redisGate) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		g.pass()
		return next(ctx, cmd)
	}
}

func (g *redisGate) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		g.pass()
		return next(ctx, cmds)
	}
}

// TestParkedPollGoneWhileReading: a client that closes its connection
// while its parked poll is awake reading (here: the periodic re-read,
// held up in Redis) has its poll ended as soon as the read is over, not
// at the poll's next wake-up.
func TestParkedPollGoneWhileReading(t *testing.T) {
	t.Parallel()
	const trust = 3 * time.Second // the poll re-reads every 3 s, less a jitter of up to 1/8
	s := newStack(t, stackOptions{park: "on", trustFor: trust})
	gate := newRedisGate()
	s.rdb.AddHook(gate)
	tok := s.token(t, "alice")
	cur := s.cursor(t, tok)
	rc := s.dialRaw(t)
	rc.Send(t, rawhttp.Get("/v1/poll?timeout=30&cursor="+cur, tok))
	s.waitPolls(t, 1)
	time.Sleep(200 * time.Millisecond) // parked by now: its reads were quick
	gate.shut.Store(true)
	select {
	case <-gate.held:
	case <-time.After(trust + 5*time.Second):
		t.Fatal("the waiting poll did not re-read")
	}
	// The poll is awake, its read held: the client leaves meanwhile.
	rc.C.Close()
	time.Sleep(300 * time.Millisecond)
	gate.shut.Store(false)
	close(gate.open)
	released := time.Now()
	for s.metric(t, "pollbox_polls_waiting") != 0 {
		if time.Since(released) > time.Second {
			t.Fatalf("the poll of a client that left still waits %v after its read", time.Since(released).Round(time.Millisecond))
		}
		time.Sleep(20 * time.Millisecond)
	}
	if n := s.metric(t, `pollbox_polls_total{outcome="cut"}`); n != 1 {
		t.Errorf("%v polls counted as cut, want 1", n)
	}
}

// TestParkedPollOutlivesReadTimeout: a poll waits past the server's
// ReadTimeout (main.go sets one) and keeps its slot under the per-user
// cap meanwhile: the look for gone clients before a poll is refused does
// not take a poll that outlived its request's read deadline for one whose
// client left. Parked and not.
func TestParkedPollOutlivesReadTimeout(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{"on", "off"} {
		t.Run("park="+mode, func(t *testing.T) {
			t.Parallel()
			s := newStack(t, stackOptions{park: mode, readTimeout: time.Second, cfg: Config{MaxPollsPerUser: 1}})
			tok := s.token(t, "alice")
			cur := s.cursor(t, tok)
			rc := s.dialRaw(t)
			rc.Send(t, rawhttp.Get("/v1/poll?timeout=3&cursor="+cur, tok))
			s.waitPolls(t, 1)
			time.Sleep(1500 * time.Millisecond) // past the read deadline
			checkError(t, do(t, s.url, request{method: "GET", path: "/v1/poll?timeout=0&cursor=" + cur, token: tok}),
				http.StatusTooManyRequests, "too_many_polls")
			r, err := rc.readErr(time.Now().Add(5 * time.Second))
			if err != nil {
				t.Fatalf("the poll waiting past the read deadline got no answer: %v", err)
			}
			if r.status != http.StatusOK || !strings.Contains(string(r.body), `"messages":[]`) {
				t.Fatalf("the poll waiting past the read deadline: %d %s", r.status, clipBody(r.body))
			}
		})
	}
}
