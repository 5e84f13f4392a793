package main

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"pollbox/internal/redistest"
)

// pollboxConns counts the connections Redis reports under the client name
// pollbox.
func pollboxConns(t *testing.T, rdb *redis.Client) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	list, err := rdb.ClientList(ctx).Result()
	if err != nil {
		t.Fatalf("CLIENT LIST: %v", err)
	}
	n := 0
	for _, line := range strings.Split(list, "\n") {
		for _, f := range strings.Fields(line) {
			if f == "name=pollbox" {
				n++
			}
		}
	}
	return n
}

// polled is the outcome of one poll run in the background.
type polled struct {
	i   int // index into the tokens given to startPolls
	pr  pollResult
	res response
	err error
	at  time.Time
}

// startPolls starts one waiting poll per entry of tokens, from the matching
// cursor, and returns the channel their outcomes arrive on.
func startPolls(hc *http.Client, base string, tokens, cursors []string, timeout int) <-chan polled {
	out := make(chan polled, len(tokens))
	for i := range tokens {
		go func() {
			pr, res, err := pollOnce(hc, base, tokens[i], cursors[i], timeout)
			out <- polled{i, pr, res, err, time.Now()}
		}()
	}
	return out
}

// 500 polls waiting on one instance hold no Redis connections: the
// instance stays within its pool, and a publish is still quick.
func TestManyWaitingPollsFewConnections(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	secret := newSecret(t)
	in := startInstance(t, baseEnv(secret, redistest.Prefix(t), "POLLBOX_REDIS_URL", srv.URL()))
	hc := newHTTPClient(t)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	t.Cleanup(func() { rdb.Close() })
	admin := smpeToken(secret, "1", "admin")

	const users, perUser = 50, 10 // the default limit is 20 polls per user
	names := userNames("load", users)
	var tokens, cursors []string
	for _, u := range names {
		tok := smpeToken(secret, u, "user:list")
		c := mustPoll(t, hc, in.base, tok, "", 0).Cursor
		for range perUser {
			tokens, cursors = append(tokens, tok), append(cursors, c)
		}
	}
	answers := startPolls(hc, in.base, tokens, cursors, 40)
	waitWaiting(t, hc, in.base, users*perUser, 30*time.Second)

	n := pollboxConns(t, rdb)
	if n == 0 {
		t.Fatal("CLIENT LIST shows no connection named pollbox: the client name is not set")
	}
	if n > 32 {
		t.Errorf("%d Redis connections named pollbox with %d polls waiting, want at most 32", n, users*perUser)
	}

	start := time.Now()
	ids := mustPublish(t, hc, in.base, admin, names, "to everyone waiting")
	if d := time.Since(start); d > time.Second {
		t.Errorf("publish with %d polls waiting took %v", users*perUser, d)
	}
	want := map[string]bool{}
	for _, id := range ids {
		want[id] = true
	}
	deadline := time.After(20 * time.Second)
	for i := range users * perUser {
		select {
		case a := <-answers:
			if a.err != nil || a.res.Status != http.StatusOK {
				t.Fatalf("poll %d: %v %s", i, a.err, a.res)
			}
			if len(a.pr.Messages) != 1 || !want[a.pr.Messages[0].ID] {
				t.Fatalf("poll %d got %+v, want one of the published ids", i, a.pr.Messages)
			}
		case <-deadline:
			t.Fatalf("only %d of %d waiting polls received the message within 20 s", i, users*perUser)
		}
	}
	if n := pollboxConns(t, rdb); n > 32 {
		t.Errorf("%d Redis connections named pollbox after delivering to %d polls", n, users*perUser)
	}
}

// Cancelling run's context (what SIGTERM does) answers every waiting poll
// at once with a usable cursor, refuses new requests, and returns nil.
func TestGracefulShutdown(t *testing.T) {
	t.Parallel()
	secret := newSecret(t)
	const drain = time.Second
	env := baseEnv(secret, redistest.Prefix(t), "POLLBOX_REDIS_URL", redistest.URL(t), "POLLBOX_SHUTDOWN_TIMEOUT", "10s",
		"POLLBOX_SHUTDOWN_DRAIN", drain.String())
	in := startInstance(t, env)
	hc := newHTTPClient(t)

	const users, perUser = 5, 20
	names := userNames("bye", users)
	var tokens, cursors []string
	for _, u := range names {
		tok := smpeToken(secret, u, "")
		c := mustPoll(t, hc, in.base, tok, "", 0).Cursor
		for range perUser {
			tokens, cursors = append(tokens, tok), append(cursors, c)
		}
	}
	answers := startPolls(hc, in.base, tokens, cursors, 30)
	waitWaiting(t, hc, in.base, users*perUser, 20*time.Second)
	// A connection that never sends a request, as browsers open ahead of
	// need, must not hold up the shutdown.
	spare, err := net.Dial("tcp", strings.TrimPrefix(in.base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer spare.Close()
	// The accept queue is FIFO: once a later connection is served, the
	// spare one has been accepted too.
	fresh := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 5 * time.Second}
	if res, err := do(fresh, "GET", in.base+"/healthz", "", nil, 5*time.Second); err != nil || res.Status != http.StatusOK {
		t.Fatalf("healthz: %v %s", err, res)
	}

	begin := time.Now()
	in.cancel()
	last := map[string]string{} // user's token → a cursor from a shutdown answer
	deadline := time.After(time.Second)
	for i := range users * perUser {
		select {
		case a := <-answers:
			if a.err != nil || a.res.Status != http.StatusOK {
				t.Fatalf("poll %d during shutdown: %v %s", i, a.err, a.res)
			}
			if len(a.pr.Messages) != 0 || a.pr.Cursor == "" {
				t.Fatalf("poll %d during shutdown answered %+v", i, a.pr)
			}
			last[tokens[a.i]] = a.pr.Cursor // any of the user's answers will do
		case <-deadline:
			t.Fatalf("only %d of %d waiting polls answered within 1 s of shutdown", i, users*perUser)
		}
	}

	// Every poll has answered, so shutdown has begun: a new request on a
	// new connection is refused.
	res, err := do(fresh, "GET", in.base+"/v1/unread", tokens[0], nil, 5*time.Second)
	switch {
	case err == nil && res.Status == http.StatusServiceUnavailable:
		checkErrorShape(t, res, http.StatusServiceUnavailable, "unavailable")
	case err != nil && refused(err):
	default:
		t.Errorf("request after shutdown began: %v %s; want 503 or connection refused", err, res)
	}

	select {
	case <-in.done:
		if in.err != nil {
			t.Fatalf("run returned %v, want nil", in.err)
		}
		if d := time.Since(begin); d > drain+3*time.Second {
			t.Errorf("run took %v to return; the drain is %v and the shutdown deadline 10 s", d, drain)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("run did not return")
	}
	if _, err := do(fresh, "GET", in.base+"/healthz", "", nil, 2*time.Second); err == nil || !refused(err) {
		t.Errorf("after run returned, a request got %v; want connection refused", err)
	}

	// The cursors handed out at shutdown work on another instance.
	other := startInstance(t, env)
	admin := smpeToken(secret, "1", "admin")
	ids := mustPublish(t, hc, other.base, admin, names, "after the restart")
	for i, u := range names {
		tok := tokens[i*perUser]
		got := mustPoll(t, hc, other.base, tok, last[tok], 0)
		if len(got.Messages) != 1 || got.Messages[0].ID != ids[i] {
			t.Errorf("%s polled %+v from its shutdown cursor, want only %s", u, got.Messages, ids[i])
		}
	}
}

// refused reports a connection that could not be made or was cut at once.
func refused(err error) bool {
	var op *net.OpError
	return errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) ||
		(errors.As(err, &op) && op.Op == "dial")
}
