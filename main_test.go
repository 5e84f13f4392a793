package main

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash"
	"io"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"pollbox/internal/redistest"
)

func TestMain(m *testing.M) { redistest.Main(m) }

// syncBuffer is an io.Writer safe for concurrent use whose contents can be
// waited on.
type syncBuffer struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	changed chan struct{}
}

func newSyncBuffer() *syncBuffer { return &syncBuffer{changed: make(chan struct{})} }

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n, err := s.buf.Write(p)
	close(s.changed)
	s.changed = make(chan struct{})
	return n, err
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.String()
}

// waitMatch waits until re matches the contents and returns the submatches,
// or returns nil when stop is closed or the timeout passes first.
func (s *syncBuffer) waitMatch(re *regexp.Regexp, timeout time.Duration, stop <-chan struct{}) []string {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		s.mu.Lock()
		m := re.FindStringSubmatch(s.buf.String())
		ch := s.changed
		s.mu.Unlock()
		if m != nil {
			return m
		}
		select {
		case <-ch:
		case <-stop:
			return nil
		case <-deadline.C:
			return nil
		}
	}
}

// tail returns the last n bytes, for failure reports.
func (s *syncBuffer) tail(n int) string {
	str := s.String()
	if len(str) > n {
		str = "…" + str[len(str)-n:]
	}
	return str
}

var listenRE = regexp.MustCompile(`(?m)^pollbox listening on (http://\S+)$`)

// instance is a pollbox started in-process by run.
type instance struct {
	base           string
	stdout, stderr *syncBuffer
	cancel         context.CancelFunc
	done           chan struct{}
	err            error // run's result, valid once done is closed
}

// startInstance runs pollbox in-process with exactly the given environment
// and waits until it listens. The test's end stops it.
func startInstance(t *testing.T, env map[string]string, args ...string) *instance {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	in := &instance{stdout: newSyncBuffer(), stderr: newSyncBuffer(), cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(in.done)
		in.err = run(ctx, args, mapEnv(env), in.stdout, in.stderr)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-in.done:
		case <-time.After(20 * time.Second):
			t.Errorf("run did not return within 20 s of its context ending")
		}
		if t.Failed() {
			t.Logf("pollbox %s stderr:\n%s", in.base, in.stderr.tail(4000))
		}
	})
	m := in.stdout.waitMatch(listenRE, 15*time.Second, in.done)
	if m == nil {
		select {
		case <-in.done:
			t.Fatalf("run returned before listening: %v\nstdout:\n%s\nstderr:\n%s", in.err, in.stdout, in.stderr.tail(4000))
		default:
			t.Fatalf("no listening line within 15 s; stdout:\n%s", in.stdout)
		}
	}
	if first, _, _ := strings.Cut(in.stdout.String(), "\n"); !strings.HasPrefix(first, "pollbox listening on ") {
		t.Fatalf("first stdout line is %q, want the listening line", first)
	}
	in.base = m[1]
	return in
}

// stop cancels run's context and waits for run to return.
func (in *instance) stop(t *testing.T, within time.Duration) error {
	t.Helper()
	in.cancel()
	select {
	case <-in.done:
		return in.err
	case <-time.After(within):
		t.Fatalf("run did not return within %v of its context ending", within)
		return nil
	}
}

// mapEnv is a getenv over env.
//
// POLLBOX_PARK_POLLS, when the test does not set it, comes from
// POLLBOX_TEST_PARK_POLLS: scripts/test.sh runs the end-to-end tests once
// more with waiting polls kept in their requests.
func mapEnv(env map[string]string) func(string) string {
	return func(k string) string {
		if v, ok := env[k]; ok || k != "POLLBOX_PARK_POLLS" {
			return v
		}
		return os.Getenv("POLLBOX_TEST_PARK_POLLS")
	}
}

// newSecret returns 64 random bytes, the size of smpe-admin's HS512 key.
func newSecret(t *testing.T) []byte {
	t.Helper()
	b := make([]byte, 64)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// baseEnv is the environment of a pollbox configured like smpe-admin's
// deployment: base64 secret, groups in the "auth" claim.
func baseEnv(secret []byte, prefix string, kv ...string) map[string]string {
	env := map[string]string{
		"POLLBOX_ADDR":              "127.0.0.1:0",
		"POLLBOX_KEY_PREFIX":        prefix,
		"POLLBOX_JWT_SECRET_BASE64": base64.StdEncoding.EncodeToString(secret),
		"POLLBOX_JWT_GROUPS_CLAIM":  "auth",
		"POLLBOX_LOG_LEVEL":         "warn",
		// Tests that are not about shutdown need no drain when they stop.
		"POLLBOX_SHUTDOWN_DRAIN": "0s",
	}
	for i := 0; i+1 < len(kv); i += 2 {
		env[kv[i]] = kv[i+1]
	}
	return env
}

// signJWT builds a compact JWT with the given header and claims, signed
// with HMAC for HS256/384/512 and unsigned for "none".
func signJWT(header, claims map[string]any, key []byte) string {
	enc := func(v any) string {
		b, _ := json.Marshal(v)
		return base64.RawURLEncoding.EncodeToString(b)
	}
	input := enc(header) + "." + enc(claims)
	var h func() hash.Hash
	switch header["alg"] {
	case "HS256":
		h = sha256.New
	case "HS384":
		h = sha512.New384
	case "HS512":
		h = sha512.New
	default:
		return input + "."
	}
	mac := hmac.New(h, key)
	mac.Write([]byte(input))
	return input + "." + base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
}

// smpeToken mints a token exactly as smpe-admin does: header {"alg":"HS512"},
// claims jti, auth (comma-joined authorities) and sub, no iat and no exp.
func smpeToken(secret []byte, user, auth string) string {
	jti := make([]byte, 16)
	_, _ = rand.Read(jti)
	return signJWT(map[string]any{"alg": "HS512"},
		map[string]any{"jti": hex.EncodeToString(jti), "auth": auth, "sub": user}, secret)
}

// newHTTPClient returns a client that never uses a proxy and keeps enough
// idle connections for many parallel polls.
func newHTTPClient(t *testing.T) *http.Client {
	tr := &http.Transport{MaxIdleConns: 2000, MaxIdleConnsPerHost: 2000, IdleConnTimeout: 30 * time.Second}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 90 * time.Second}
}

type response struct {
	Status int
	Header http.Header
	Body   []byte
}

func (r response) String() string {
	return fmt.Sprintf("%d %s", r.Status, bytes.TrimSpace(r.Body))
}

// do sends one request with a bearer token (when given) and a JSON body
// (when not nil), bounded by timeout.
func do(hc *http.Client, method, u, token string, body []byte, timeout time.Duration) (response, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return response{}, err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := hc.Do(req)
	if err != nil {
		return response{}, err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		return response{}, err
	}
	return response{Status: res.StatusCode, Header: res.Header, Body: b}, nil
}

type message struct {
	ID        string `json:"id"`
	Source    string `json:"source"`
	Type      string `json:"type"`
	Title     string `json:"title"`
	Body      string `json:"body"`
	Sender    string `json:"sender"`
	CreatedAt string `json:"created_at"`
	Read      bool   `json:"read"`
}

type pollResult struct {
	Messages []message `json:"messages"`
	Cursor   string    `json:"cursor"`
	Unread   int       `json:"unread"`
	More     bool      `json:"more"`
	Reset    bool      `json:"reset"`
}

// pollOnce sends GET /v1/poll. A non-200 answer is returned with a nil error
// and a zero result; only transport failures are errors.
func pollOnce(hc *http.Client, base, token, cursor string, timeout int) (pollResult, response, error) {
	q := url.Values{"timeout": {strconv.Itoa(timeout)}}
	if cursor != "" {
		q.Set("cursor", cursor)
	}
	res, err := do(hc, "GET", base+"/v1/poll?"+q.Encode(), token, nil, time.Duration(timeout)*time.Second+15*time.Second)
	if err != nil || res.Status != http.StatusOK {
		return pollResult{}, res, err
	}
	var pr pollResult
	if err := json.Unmarshal(res.Body, &pr); err != nil {
		return pr, res, fmt.Errorf("poll answer %s: %w", res, err)
	}
	if pr.Messages == nil || pr.Cursor == "" {
		return pr, res, fmt.Errorf("poll answer lacks messages or cursor: %s", res)
	}
	return pr, res, nil
}

// mustPoll polls and fails the test unless the answer is 200.
func mustPoll(t *testing.T, hc *http.Client, base, token, cursor string, timeout int) pollResult {
	t.Helper()
	pr, res, err := pollOnce(hc, base, token, cursor, timeout)
	if err != nil {
		t.Fatalf("poll: %v", err)
	}
	if res.Status != http.StatusOK {
		t.Fatalf("poll: got %s, want 200", res)
	}
	return pr
}

// publish sends POST /v1/publish to the given users. ids is set on 201 only.
func publish(hc *http.Client, base, token string, to []string, title string) ([]string, response, error) {
	body, _ := json.Marshal(map[string]any{"to": to, "title": title, "body": "body of " + title})
	res, err := do(hc, "POST", base+"/v1/publish", token, body, 15*time.Second)
	if err != nil || res.Status != http.StatusCreated {
		return nil, res, err
	}
	var out struct {
		Count int      `json:"count"`
		IDs   []string `json:"ids"`
	}
	if err := json.Unmarshal(res.Body, &out); err != nil {
		return nil, res, fmt.Errorf("publish answer %s: %w", res, err)
	}
	if out.Count != len(to) || len(out.IDs) != len(to) {
		return nil, res, fmt.Errorf("publish to %d users answered %s", len(to), res)
	}
	return out.IDs, res, nil
}

func mustPublish(t *testing.T, hc *http.Client, base, token string, to []string, title string) []string {
	t.Helper()
	ids, res, err := publish(hc, base, token, to, title)
	if err != nil {
		t.Fatalf("publish: %v", err)
	}
	if res.Status != http.StatusCreated {
		t.Fatalf("publish: got %s, want 201", res)
	}
	return ids
}

// metric returns the value of an unlabelled series from /metrics.
func metric(hc *http.Client, base, name string) (float64, error) {
	res, err := do(hc, "GET", base+"/metrics", "", nil, 5*time.Second)
	if err != nil {
		return 0, err
	}
	if res.Status != http.StatusOK {
		return 0, fmt.Errorf("/metrics: %s", res)
	}
	for _, line := range strings.Split(string(res.Body), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			return strconv.ParseFloat(strings.TrimSpace(v), 64)
		}
	}
	return 0, fmt.Errorf("/metrics has no series %s", name)
}

// waitWaiting waits until exactly n polls wait on the instance at base.
func waitWaiting(t *testing.T, hc *http.Client, base string, n int, timeout time.Duration) {
	t.Helper()
	var last float64
	var err error
	eventually(t, timeout, func() bool {
		last, err = metric(hc, base, "pollbox_polls_waiting")
		return err == nil && last == float64(n)
	}, func() string { return fmt.Sprintf("%d polls waiting on %s (last: %v, %v)", n, base, last, err) })
}

// eventually checks cond every few milliseconds until it holds, and fails
// the test if it does not within timeout.
func eventually(t *testing.T, timeout time.Duration, cond func() bool, what func() string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// userNames returns n user ids with the given stem.
func userNames(stem string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = stem + strconv.Itoa(i)
	}
	return out
}

// checkErrorShape checks the SPEC error body and headers of an error answer.
func checkErrorShape(t *testing.T, res response, status int, code string) {
	t.Helper()
	if res.Status != status {
		t.Errorf("status %d, want %d (body %s)", res.Status, status, bytes.TrimSpace(res.Body))
	}
	if cc := res.Header.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("Cache-Control %q, want no-store", cc)
	}
	if ct := res.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("Content-Type %q, want JSON", ct)
	}
	var body map[string]any
	if err := json.Unmarshal(res.Body, &body); err != nil {
		t.Fatalf("error body is not JSON: %v: %s", err, res.Body)
	}
	if len(body) != 2 {
		t.Errorf("error body %s: want exactly the keys error and message", res.Body)
	}
	if got, _ := body["error"].(string); got != code {
		t.Errorf("error code %q, want %q (body %s)", got, code, res.Body)
	}
	if msg, _ := body["message"].(string); msg == "" {
		t.Errorf("error body %s has no message", res.Body)
	}
}

// redisBackends are the Redis set-ups an end-to-end test runs on: env
// returns the variable and value that point pollbox at the test's Redis.
var redisBackends = []struct {
	name string
	env  func(t *testing.T) (string, string)
}{
	{"single", func(t *testing.T) (string, string) { return "POLLBOX_REDIS_URL", redistest.URL(t) }},
	{"cluster", func(t *testing.T) (string, string) {
		return "POLLBOX_REDIS_CLUSTER_ADDRS", strings.Join(redistest.ClusterAddrs(t), ",")
	}},
}

// startZeroConfig starts pollbox with neither Redis nor a JWT key (the
// embedded Redis and dev tokens) and returns it with the dev user's and the
// dev admin's tokens from its banner.
func startZeroConfig(t *testing.T) (in *instance, user, admin string) {
	t.Helper()
	in = startInstance(t, map[string]string{"POLLBOX_ADDR": "127.0.0.1:0", "POLLBOX_LOG_LEVEL": "warn"})
	u := in.stdout.waitMatch(userTokenRE, 5*time.Second, nil)
	a := in.stdout.waitMatch(adminTokenRE, 5*time.Second, nil)
	if u == nil || a == nil {
		t.Fatalf("no USER_TOKEN=/ADMIN_TOKEN= lines on stdout:\n%s", in.stdout)
	}
	return in, u[1], a[1]
}
