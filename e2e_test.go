package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"pollbox/internal/openapitest"
	"pollbox/internal/redistest"
	"pollbox/poll"
)

// newCheckedClient is newHTTPClient whose every answer is checked against
// the OpenAPI document that pollbox serves (poll/static/openapi.json): its
// status, headers and body. A mismatch fails the test.
func newCheckedClient(t *testing.T) *http.Client {
	return openapitest.Wrap(t, newHTTPClient(t), poll.OpenAPI())
}

// An smpe-admin login token (HS512 over the base64 secret, authorities in
// "auth", no exp) is accepted as it is: it reads its own inbox and, holding
// "admin", may publish.
func TestSmpeAdminToken(t *testing.T) {
	t.Parallel()
	secret := newSecret(t)
	in := startInstance(t, baseEnv(secret, redistest.Prefix(t), "POLLBOX_REDIS_URL", redistest.URL(t)))
	hc := newCheckedClient(t)
	tok := smpeToken(secret, "42", "admin,user:list")

	start := mustPoll(t, hc, in.base, tok, "", 0)
	if len(start.Messages) != 0 {
		t.Fatalf("fresh inbox polled %d messages", len(start.Messages))
	}

	type answer struct {
		pr  pollResult
		res response
		err error
	}
	got := make(chan answer, 1)
	go func() {
		pr, res, err := pollOnce(hc, in.base, tok, start.Cursor, 20)
		got <- answer{pr, res, err}
	}()
	waitWaiting(t, hc, in.base, 1, 10*time.Second)
	ids := mustPublish(t, hc, in.base, tok, []string{"42"}, "hello admin")

	select {
	case a := <-got:
		if a.err != nil || a.res.Status != http.StatusOK {
			t.Fatalf("poll: %v %s", a.err, a.res)
		}
		if len(a.pr.Messages) != 1 {
			t.Fatalf("poll returned %d messages, want 1: %+v", len(a.pr.Messages), a.pr.Messages)
		}
		m := a.pr.Messages[0]
		if m.ID != ids[0] || m.Title != "hello admin" || m.Sender != "42" || m.Source != "user" {
			t.Errorf("got %+v; want id %s, title %q, sender 42, source user", m, ids[0], "hello admin")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the waiting poll did not receive the published message within 5 s")
	}
}

// Two polls of one user wait at once; both get a message published
// meanwhile. Cursors move forward; timeout=0 answers at once; a timed-out
// poll answers 200 with a cursor that works.
func TestPollSemantics(t *testing.T) {
	t.Parallel()
	secret := newSecret(t)
	in := startInstance(t, baseEnv(secret, redistest.Prefix(t), "POLLBOX_REDIS_URL", redistest.URL(t)))
	hc := newCheckedClient(t)
	user := smpeToken(secret, "7", "user:list")
	admin := smpeToken(secret, "1", "admin")

	c0 := mustPoll(t, hc, in.base, user, "", 0)

	results := make([]pollResult, 2)
	errs := make([]error, 2)
	var wg sync.WaitGroup
	for i := range 2 {
		wg.Go(func() {
			pr, res, err := pollOnce(hc, in.base, user, c0.Cursor, 20)
			if err == nil && res.Status != http.StatusOK {
				err = &statusError{res}
			}
			results[i], errs[i] = pr, err
		})
	}
	waitWaiting(t, hc, in.base, 2, 10*time.Second)
	id1 := mustPublish(t, hc, in.base, admin, []string{"7"}, "first")[0]
	waitGroup(t, &wg, 5*time.Second, "both waiting polls to answer")
	for i := range 2 {
		if errs[i] != nil {
			t.Fatalf("poll %d: %v", i, errs[i])
		}
		if ms := results[i].Messages; len(ms) != 1 || ms[0].ID != id1 {
			t.Fatalf("poll %d got %+v, want only %s", i, ms, id1)
		}
	}

	id2 := mustPublish(t, hc, in.base, admin, []string{"7"}, "second")[0]
	next := mustPoll(t, hc, in.base, user, results[0].Cursor, 0)
	if len(next.Messages) != 1 || next.Messages[0].ID != id2 {
		t.Fatalf("poll after cursor got %+v, want only %s", next.Messages, id2)
	}

	begin := time.Now()
	none := mustPoll(t, hc, in.base, user, next.Cursor, 0)
	if d := time.Since(begin); d > time.Second {
		t.Errorf("timeout=0 poll with nothing new took %v", d)
	}
	if len(none.Messages) != 0 {
		t.Fatalf("poll at the tail got %+v", none.Messages)
	}

	begin = time.Now()
	timedOut := mustPoll(t, hc, in.base, user, none.Cursor, 1)
	d := time.Since(begin)
	if d < 900*time.Millisecond || d > 3*time.Second {
		t.Errorf("timeout=1 poll answered after %v, want about 1 s", d)
	}
	if len(timedOut.Messages) != 0 || timedOut.More || timedOut.Reset {
		t.Fatalf("timed-out poll answered %+v", timedOut)
	}
	id3 := mustPublish(t, hc, in.base, admin, []string{"7"}, "third")[0]
	after := mustPoll(t, hc, in.base, user, timedOut.Cursor, 0)
	if len(after.Messages) != 1 || after.Messages[0].ID != id3 {
		t.Fatalf("poll from the timed-out cursor got %+v, want only %s", after.Messages, id3)
	}
}

type statusError struct{ res response }

func (e *statusError) Error() string { return "unexpected answer " + e.res.String() }

func waitGroup(t *testing.T, wg *sync.WaitGroup, timeout time.Duration, what string) {
	t.Helper()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(timeout):
		t.Fatalf("timed out after %v waiting for %s", timeout, what)
	}
}

var (
	userTokenRE  = regexp.MustCompile(`(?m)USER_TOKEN=(\S+)`)
	adminTokenRE = regexp.MustCompile(`(?m)ADMIN_TOKEN=(\S+)`)
)

// With no Redis and no JWT key, pollbox runs on an embedded Redis, warns,
// and prints dev tokens that work.
func TestZeroConfig(t *testing.T) {
	t.Parallel()
	in, user, admin := startZeroConfig(t)
	out := in.stdout.String()
	if !strings.Contains(strings.ToLower(out), "nothing is kept") {
		t.Errorf("stdout lacks the warning that nothing is kept:\n%s", out)
	}
	for _, page := range []string{"/demo", "/admin"} {
		if !strings.Contains(out, in.base+page+"\n") {
			t.Errorf("stdout does not name the page %s%s:\n%s", in.base, page, out)
		}
	}
	hc := newCheckedClient(t)

	id := mustPublish(t, hc, in.base, admin, []string{"42"}, "dev hello")[0]
	res, err := do(hc, "GET", in.base+"/v1/messages", user, nil, 5*time.Second)
	if err != nil || res.Status != http.StatusOK {
		t.Fatalf("GET /v1/messages: %v %s", err, res)
	}
	var hist struct{ Messages []message }
	if err := json.Unmarshal(res.Body, &hist); err != nil {
		t.Fatal(err)
	}
	if len(hist.Messages) != 1 || hist.Messages[0].ID != id || hist.Messages[0].Title != "dev hello" {
		t.Fatalf("history %s, want the message %s", res.Body, id)
	}

	res, err = do(hc, "GET", in.base+"/demo", "", nil, 5*time.Second)
	if err != nil || res.Status != http.StatusOK {
		t.Fatalf("GET /demo: %v %d", err, res.Status)
	}
	for _, tok := range []string{user, admin} {
		if !bytes.Contains(res.Body, []byte(tok)) {
			t.Errorf("the demo page does not contain the dev token %.20s…", tok)
		}
	}
}

// A real Redis without a JWT key is refused with a clear message.
func TestRealRedisNeedsJWTKey(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	env := map[string]string{"POLLBOX_ADDR": "127.0.0.1:0", "POLLBOX_REDIS_URL": redistest.URL(t)}
	var stdout, stderr bytes.Buffer
	err := run(ctx, nil, mapEnv(env), &stdout, &stderr)
	if err == nil || !strings.Contains(err.Error(), "JWT key") {
		t.Fatalf("run = %v, want an error about the missing JWT key", err)
	}
	if strings.Contains(stdout.String(), "listening") {
		t.Errorf("pollbox listened although it refused to start:\n%s", stdout.String())
	}
}

// `pollbox token` prints a token the server accepts for publishing.
func TestTokenCommand(t *testing.T) {
	t.Parallel()
	secret := newSecret(t)
	env := baseEnv(secret, redistest.Prefix(t), "POLLBOX_REDIS_URL", redistest.URL(t))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var stdout, stderr bytes.Buffer
	if err := run(ctx, []string{"token", "--user", "42", "--groups", "admin", "--ttl", "1h"}, mapEnv(env), &stdout, &stderr); err != nil {
		t.Fatalf("token: %v\n%s", err, stderr.String())
	}
	tok := strings.TrimSpace(stdout.String())
	if strings.Count(tok, ".") != 2 || strings.ContainsAny(tok, " \n") {
		t.Fatalf("token printed %q", stdout.String())
	}
	parts := strings.Split(tok, ".")
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var claims struct {
		Sub  string  `json:"sub"`
		Exp  float64 `json:"exp"`
		Auth string  `json:"auth"`
	}
	if err := json.Unmarshal(payload, &claims); err != nil {
		t.Fatal(err)
	}
	if claims.Sub != "42" || claims.Auth != "admin" {
		t.Errorf("claims %s: want sub 42 and auth admin", payload)
	}
	if exp := time.Unix(int64(claims.Exp), 0); time.Until(exp) < 59*time.Minute || time.Until(exp) > 61*time.Minute {
		t.Errorf("exp %v is not an hour from now", exp)
	}

	in := startInstance(t, env)
	hc := newCheckedClient(t)
	c := mustPoll(t, hc, in.base, tok, "", 0)
	id := mustPublish(t, hc, in.base, tok, []string{"42"}, "from the token command")[0]
	got := mustPoll(t, hc, in.base, tok, c.Cursor, 0)
	if len(got.Messages) != 1 || got.Messages[0].ID != id || got.Messages[0].Sender != "42" {
		t.Fatalf("user 42 polled %+v, want %s sent by 42", got.Messages, id)
	}
}

// A poll waiting on one instance receives a message published through
// another within a second, on a single Redis and on a Redis Cluster.
func TestTwoInstances(t *testing.T) {
	t.Parallel()
	for _, tc := range redisBackends {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			k, v := tc.env(t)
			secret := newSecret(t)
			env := baseEnv(secret, redistest.Prefix(t), k, v)
			a, b := startInstance(t, env), startInstance(t, env)
			hc := newCheckedClient(t)
			user := smpeToken(secret, "alice", "ops")
			admin := smpeToken(secret, "1", "admin")

			for round := range 3 {
				c := mustPoll(t, hc, a.base, user, "", 0)
				type answer struct {
					pr  pollResult
					res response
					err error
					at  time.Time
				}
				got := make(chan answer, 1)
				go func() {
					pr, res, err := pollOnce(hc, a.base, user, c.Cursor, 20)
					got <- answer{pr, res, err, time.Now()}
				}()
				waitWaiting(t, hc, a.base, 1, 10*time.Second)
				sent := time.Now()
				id := mustPublish(t, hc, b.base, admin, []string{"alice"}, "via B")[0]
				select {
				case ans := <-got:
					if ans.err != nil || ans.res.Status != http.StatusOK {
						t.Fatalf("round %d: poll on A: %v %s", round, ans.err, ans.res)
					}
					if len(ans.pr.Messages) != 1 || ans.pr.Messages[0].ID != id {
						t.Fatalf("round %d: poll on A got %+v, want %s", round, ans.pr.Messages, id)
					}
					if d := ans.at.Sub(sent); d > time.Second {
						t.Errorf("round %d: delivery across instances took %v", round, d)
					}
				case <-time.After(5 * time.Second):
					t.Fatalf("round %d: the poll on A did not receive the message published via B", round)
				}
			}
			// A holds alice's wake-up channels (inbox, read state, group,
			// broadcast), lingering after her polls; B, where nobody
			// polled, holds none, so it hears nothing of her messages.
			for _, c := range []struct {
				in   *instance
				want float64
			}{{a, 4}, {b, 0}} {
				if n, err := metric(hc, c.in.base, "pollbox_wake_channels"); err != nil || n != c.want {
					t.Errorf("%s: pollbox_wake_channels %v (%v), want %v", c.in.base, n, err, c.want)
				}
			}
		})
	}
}
