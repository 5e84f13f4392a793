package poll

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
	"github.com/rs/zerolog"

	"pollbox/inbox"
	"pollbox/internal/redistest"
)

func TestMain(m *testing.M) { redistest.Main(m) }

// apiKeySecret is the API key every test stack accepts, under the name "billing".
const apiKeySecret = "k-billing-0123456789abcdef"

// syncBuffer is a log sink that handlers running on many goroutines may
// share. Tests can wait for a line to be written.
type syncBuffer struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	changed chan struct{} // closed and replaced on every write
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.changed != nil {
		close(b.changed)
		b.changed = nil
	}
	return b.buf.Write(p)
}

// waitFor waits until the log contains substr.
func (b *syncBuffer) waitFor(t testing.TB, substr string) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		b.mu.Lock()
		if strings.Contains(b.buf.String(), substr) {
			b.mu.Unlock()
			return
		}
		if b.changed == nil {
			b.changed = make(chan struct{})
		}
		ch := b.changed
		b.mu.Unlock()
		select {
		case <-ch:
		case <-deadline:
			t.Fatalf("log has no %q after 10 s", substr)
		}
	}
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// signalStore wraps a Store and reports every Poll call as it begins. The
// handler takes its poll slot and bumps the waiting gauge before calling
// Poll, so a receive from polls means both have happened.
type signalStore struct {
	Store
	polls chan struct{}
}

func (s *signalStore) Poll(ctx context.Context, r inbox.Reader, o inbox.PollOptions) (inbox.PollResult, error) {
	s.polls <- struct{}{}
	return s.Store.Poll(ctx, r, o)
}

// parkingSignalStore is signalStore for a stack that parks its waiting
// polls: it also forwards StartPoll, which a parked poll begins with, and
// reports it the same way.
type parkingSignalStore struct {
	*signalStore
	start PollStarter
}

func (s *parkingSignalStore) StartPoll(ctx context.Context, r inbox.Reader, o inbox.PollOptions) (inbox.PollResult, *inbox.PendingPoll, error) {
	s.polls <- struct{}{}
	return s.start.StartPoll(ctx, r, o)
}

// parkPolls tells whether a stack parks its waiting polls: mode "on" or
// "off" says so; "" follows POLLBOX_TEST_PARK_POLLS, so that stacks park by
// default, as production does, and POLLBOX_TEST_PARK_POLLS=off makes every
// poll wait in its request instead (scripts/test.sh runs the poll package
// both ways).
func parkPolls(mode string) bool {
	if mode == "" {
		mode = os.Getenv("POLLBOX_TEST_PARK_POLLS")
	}
	return mode != "off"
}

// stackOptions tune newStack. Zero values give a working stack.
type stackOptions struct {
	cfg      Config
	auth     AuthConfig // Algorithms, HMACSecret, PublisherGroups and APIKeys are filled in when empty
	sessions bool       // check login sessions under prefix+"online-token-"
	redisURL string     // default: the shared test Redis
	// wrapSessions, when set, wraps the session checker (to watch its calls).
	wrapSessions func(SessionChecker) SessionChecker
	// trustFor is the store's TrustFor (how long a waiting poll believes
	// what it read before it reads again); 0: the default.
	trustFor time.Duration
	// readTimeout is the http.Server's ReadTimeout (main.go sets one).
	readTimeout time.Duration
	// park is "on" or "off" to park waiting polls or not whatever
	// POLLBOX_TEST_PARK_POLLS says (see parkPolls).
	park string
}

// stack is the real pollbox HTTP stack over Redis, served by httptest.
type stack struct {
	srv       *httptest.Server
	url       string
	rdb       *redis.Client
	prefix    string
	store     *inbox.Store
	metrics   *Metrics
	logs      *syncBuffer
	secret    []byte
	polls     chan struct{} // one value per Poll call that began
	hubEvents chan string
	cfg       Config
}

func newRedisClient(t testing.TB, url string) *redis.Client {
	t.Helper()
	opt, err := redis.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	opt.Protocol = 2
	opt.MaxRetries = 1 // as main.go configures it
	opt.MaintNotificationsConfig = &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}
	rdb := redis.NewClient(opt)
	t.Cleanup(func() { rdb.Close() })
	return rdb
}

func newStack(t *testing.T, o stackOptions) *stack {
	t.Helper()
	url := o.redisURL
	if url == "" {
		url = redistest.URL(t)
	}
	s := &stack{rdb: newRedisClient(t, url), prefix: redistest.Prefix(t), logs: &syncBuffer{},
		polls: make(chan struct{}, 1024), hubEvents: make(chan string, 1024)}
	t.Cleanup(func() { // runs after the server and hub below have stopped
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if o.redisURL != "" {
			return // a private server that goes away with the test
		}
		keys, _ := s.rdb.Keys(ctx, s.prefix+"*").Result()
		if len(keys) > 0 {
			s.rdb.Del(ctx, keys...)
		}
	})
	s.store = inbox.New(s.rdb, inbox.Options{Prefix: s.prefix, TrustFor: o.trustFor})
	s.metrics = NewMetrics()
	s.store.Hub().OnEvent = func(e string) {
		s.metrics.HubEvent(e)
		select {
		case s.hubEvents <- e:
		default:
		}
	}
	hubCtx, stopHub := context.WithCancel(context.Background())
	hubDone := make(chan struct{})
	go func() { defer close(hubDone); _ = s.store.Hub().Run(hubCtx) }()
	t.Cleanup(func() { stopHub(); <-hubDone })

	ac := o.auth
	if len(ac.Algorithms) == 0 {
		ac.Algorithms = []string{"HS256", "HS512"}
	}
	if ac.HMACSecret == nil {
		ac.HMACSecret = make([]byte, 32)
		rand.Read(ac.HMACSecret)
	}
	s.secret = ac.HMACSecret
	if ac.PublisherGroups == nil {
		ac.PublisherGroups = []string{"admin"}
	}
	if ac.APIKeys == nil {
		ac.APIKeys = []APIKey{{Name: "billing", Secret: apiKeySecret}}
	}
	if o.sessions {
		ac.Sessions = inbox.NewSessions(s.rdb, s.prefix+"online-token-")
		if o.wrapSessions != nil {
			ac.Sessions = o.wrapSessions(ac.Sessions)
		}
	}
	auth, err := NewAuthenticator(ac)
	if err != nil {
		t.Fatal(err)
	}
	log := zerolog.New(s.logs).With().Timestamp().Logger()
	var store Store = &signalStore{Store: s.store, polls: s.polls}
	var ln net.Listener
	var stop chan struct{}
	if parkPolls(o.park) {
		// As main.go does: the server's listener, wrapped so that parked
		// polls' keep-alive connections come back through it.
		inner, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		pl := NewListener(inner)
		o.cfg.Listener, ln = pl, pl
		store = &parkingSignalStore{signalStore: store.(*signalStore), start: s.store}
		if o.cfg.Stop == nil {
			// http.Server.Close knows nothing of parked polls: as main.go
			// does, shutdown begins by making them answer.
			stop = make(chan struct{})
			o.cfg.Stop = stop
		}
	}
	s.cfg = o.cfg
	h := New(o.cfg, store, auth, s.metrics, log)
	s.srv = httptest.NewUnstartedServer(h)
	if ln != nil {
		s.srv.Listener.Close() // the one NewUnstartedServer opened
		s.srv.Listener = ln
	}
	s.srv.Config.MaxHeaderBytes = 16 << 10 // as main.go configures it
	s.srv.Config.ReadHeaderTimeout = 10 * time.Second
	s.srv.Config.ReadTimeout = o.readTimeout
	s.srv.Start()
	t.Cleanup(s.srv.Close)
	if stop != nil {
		t.Cleanup(func() { close(stop) }) // before s.srv.Close
	}
	s.url = s.srv.URL
	return s
}

// token returns an HS256 token of the stack for user with the given groups.
func (s *stack) token(t testing.TB, user string, groups ...string) string {
	t.Helper()
	claims := jwt.MapClaims{"sub": user, "exp": time.Now().Add(time.Hour).Unix()}
	if groups != nil {
		claims["groups"] = groups
	}
	return signHS(t, jwt.SigningMethodHS256, s.secret, claims)
}

func signHS(t testing.TB, m jwt.SigningMethod, key any, claims jwt.MapClaims) string {
	t.Helper()
	tok, err := jwt.NewWithClaims(m, claims).SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// request is one HTTP call made by a test.
type request struct {
	method string
	path   string
	token  string // sent as a Bearer token when set
	body   string
	header map[string]string
}

// response is what came back, with the body read.
type response struct {
	status int
	header http.Header
	body   []byte
}

var client = &http.Client{Timeout: 60 * time.Second}

func do(t testing.TB, base string, rq request) response {
	t.Helper()
	resp, err := doErr(context.Background(), base, rq)
	if err != nil {
		t.Fatalf("%s %s: %v", rq.method, rq.path, err)
	}
	return resp
}

// doErr is do for goroutines other than the test's, which must not call t.Fatal.
func doErr(ctx context.Context, base string, rq request) (response, error) {
	var body io.Reader
	if rq.body != "" {
		body = strings.NewReader(rq.body)
	}
	req, err := http.NewRequestWithContext(ctx, rq.method, base+rq.path, body)
	if err != nil {
		return response{}, err
	}
	if rq.token != "" {
		req.Header.Set("Authorization", "Bearer "+rq.token)
	}
	if rq.body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range rq.header {
		req.Header.Set(k, v)
	}
	resp, err := client.Do(req)
	if err != nil {
		return response{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return response{}, err
	}
	return response{status: resp.StatusCode, header: resp.Header, body: b}, nil
}

// decode unmarshals a response body, failing the test when it is not JSON.
func decode[T any](t testing.TB, r response) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(r.body, &v); err != nil {
		t.Fatalf("response %d is not the expected JSON: %v\n%s", r.status, err, r.body)
	}
	return v
}

// checkError asserts the documented error shape, status and code.
func checkError(t testing.TB, r response, status int, code string) {
	t.Helper()
	if r.status != status {
		t.Fatalf("status %d, want %d; body %s", r.status, status, clipBody(r.body))
	}
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("Content-Type %q, want application/json", ct)
	}
	if cc := r.header.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("Cache-Control %q, want no-store", cc)
	}
	var e map[string]any
	if err := json.Unmarshal(r.body, &e); err != nil {
		t.Fatalf("error body is not JSON: %v: %s", err, clipBody(r.body))
	}
	if len(e) != 2 {
		t.Errorf("error body has fields %v, want exactly error and message", e)
	}
	if got, _ := e["error"].(string); got != code {
		t.Errorf("error code %q, want %q (body %s)", got, code, clipBody(r.body))
	}
	if msg, _ := e["message"].(string); msg == "" {
		t.Errorf("error without a message: %s", clipBody(r.body))
	}
}

func clipBody(b []byte) string {
	if len(b) > 300 {
		return string(b[:300]) + "…"
	}
	return string(b)
}

// publish sends a publish request with the API key and returns the ids.
func (s *stack) publish(t testing.TB, body string) []string {
	t.Helper()
	r := do(t, s.url, request{method: "POST", path: "/v1/publish", token: apiKeySecret, body: body})
	if r.status != http.StatusCreated {
		t.Fatalf("publish %s: status %d: %s", body, r.status, r.body)
	}
	return decode[struct{ IDs []string }](t, r).IDs
}

// cursor returns a cursor at the current tail of the token's streams.
func (s *stack) cursor(t testing.TB, token string) string {
	t.Helper()
	r := do(t, s.url, request{method: "GET", path: "/v1/unread", token: token})
	if r.status != http.StatusOK {
		t.Fatalf("unread: status %d: %s", r.status, r.body)
	}
	return decode[struct{ Cursor string }](t, r).Cursor
}

// waitPolls waits until n more Poll calls have begun.
func (s *stack) waitPolls(t testing.TB, n int) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for range n {
		select {
		case <-s.polls:
		case <-deadline:
			t.Fatalf("fewer than %d polls began within 10 s", n)
		}
	}
}

type pollBody struct {
	Messages []struct {
		ID, Source, Title, Sender string
	}
	Cursor string
	Unread int
	More   bool
	Reset  bool
}
