package poll

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"pollbox/inbox"
)

// TestStopAnswersWaitingPolls: once shutdown begins, a waiting poll answers
// at once with a cursor that still works, and new requests get 503.
func TestStopAnswersWaitingPolls(t *testing.T) {
	t.Parallel()
	stop := make(chan struct{})
	s := newStack(t, stackOptions{cfg: Config{Stop: stop}})
	alice := s.token(t, "alice", "ops")
	cur := s.cursor(t, alice)
	done := make(chan response, 1)
	go func() {
		r, _ := doErr(context.Background(), s.url, request{method: "GET", path: "/v1/poll?timeout=30&cursor=" + cur, token: alice})
		done <- r
	}()
	s.waitPolls(t, 1)
	close(stop)
	var r response
	select {
	case r = <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("waiting poll did not answer within 5 s of the stop")
	}
	if r.status != 200 {
		t.Fatalf("waiting poll: %d %s", r.status, r.body)
	}
	p := decode[pollBody](t, r)
	if len(p.Messages) != 0 || p.Cursor == "" {
		t.Fatalf("poll answered %+v, want no messages and a cursor", p)
	}
	if err := inbox.DecodeCursorCheck(p.Cursor, inbox.Reader{User: "alice", Groups: []string{"ops"}}); err != nil {
		t.Fatalf("cursor from the stopped poll: %v", err)
	}

	r = do(t, s.url, request{method: "GET", path: "/v1/unread", token: alice})
	checkError(t, r, http.StatusServiceUnavailable, "unavailable")
	checkRetryAfter(t, r, 1, 60)
	if r := do(t, s.url, request{method: "GET", path: "/healthz"}); r.status != 200 {
		t.Fatalf("/healthz while stopping: %d", r.status)
	}
}

// TestStoreErrorsAreMapped: store failures become the documented errors
// and internal error text stays in the log.
func TestStoreErrorsAreMapped(t *testing.T) {
	t.Parallel()
	const detail = "dial tcp 10.1.2.3:6379: secret-internal-detail"
	cases := []struct {
		err    error
		status int
		code   string
		retry  bool
	}{
		{errors.New(detail), 500, "internal", false},
		{fmt.Errorf("%w: %s", inbox.ErrUnavailable, detail), 503, "unavailable", true},
		{fmt.Errorf("poll: %w", context.DeadlineExceeded), 503, "unavailable", true},
		{fmt.Errorf("%w: %s", inbox.ErrInvalid, "limit"), 400, "bad_request", false},
		{fmt.Errorf("%w: x", inbox.ErrNotFound), 404, "not_found", false},
	}
	for _, c := range cases {
		store := &fakeStore{err: c.err}
		h, logs, secret := newHandler(t, Config{}, AuthConfig{}, store)
		tok := signHS(t, jwtHS256, secret, userClaims("alice"))
		for _, rq := range []request{
			{method: "GET", path: "/v1/unread", token: tok},
			{method: "GET", path: "/v1/messages", token: tok},
			{method: "POST", path: "/v1/publish", token: apiKeySecret, body: `{"to":["a"],"title":"x"}`},
		} {
			rec := httptest.NewRecorder()
			req := httptest.NewRequest(rq.method, rq.path, strings.NewReader(rq.body))
			req.Header.Set("Authorization", "Bearer "+rq.token)
			h.ServeHTTP(rec, req)
			r := response{status: rec.Code, header: rec.Header(), body: rec.Body.Bytes()}
			checkError(t, r, c.status, c.code)
			if c.status >= 500 && strings.Contains(string(r.body), "secret-internal-detail") {
				t.Errorf("%v: internal text reached the client: %s", c.err, r.body)
			}
			if got := r.header.Get("Retry-After") != ""; got != c.retry {
				t.Errorf("%v: Retry-After present %v, want %v", c.err, got, c.retry)
			}
		}
		if c.status == 500 && !strings.Contains(logs.String(), "secret-internal-detail") {
			t.Errorf("internal error not logged: %s", logs.String())
		}
	}
}

// TestHistoryParameters: since/until as RFC 3339 or unix ms, and unknown
// query parameters are ignored.
func TestHistoryParameters(t *testing.T) {
	t.Parallel()
	store := &fakeStore{}
	h, _, secret := newHandler(t, Config{}, AuthConfig{}, store)
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	tok := signHS(t, jwtHS256, secret, userClaims("alice"))
	r := do(t, srv.URL, request{method: "GET", token: tok,
		path: "/v1/messages?limit=5&before=b.5-1&type=like&unread=true&since=1732550000000&until=2026-11-25T17:40:00.123Z&_=1732550000000"})
	if r.status != 200 {
		t.Fatalf("history: %d %s", r.status, r.body)
	}
	want := inbox.HistoryQuery{Limit: 5, Before: "b.5-1", Types: []string{"like"}, Unread: true,
		Since: time.UnixMilli(1732550000000), Until: time.Date(2026, 11, 25, 17, 40, 0, 123e6, time.UTC)}
	got := store.history[0]
	if got.Limit != want.Limit || got.Before != want.Before || !slices.Equal(got.Types, want.Types) ||
		got.Unread != want.Unread || !got.Since.Equal(want.Since) || !got.Until.Equal(want.Until) {
		t.Fatalf("query %+v, want %+v", got, want)
	}
	// type=a,b: messages of any of the types; the list is bounded.
	if r := do(t, srv.URL, request{method: "GET", token: tok, path: "/v1/messages?type=like,reply%2Crecommend"}); r.status != 200 {
		t.Fatalf("history of three types: %d %s", r.status, r.body)
	}
	if got := store.history[1].Types; !slices.Equal(got, []string{"like", "reply", "recommend"}) {
		t.Fatalf("type=like,reply,recommend reached the store as %q", got)
	}
	for _, bad := range []string{"since=-1", "until=1e15", "since=0001-01-01T00:00:00Z", "until=2026-11-25",
		"type=like,", "type=,like", "type=a,,b", "type=" + strings.Repeat("t,", 16) + "t", "type=a," + strings.Repeat("t", 65)} {
		checkError(t, do(t, srv.URL, request{method: "GET", path: "/v1/messages?" + bad, token: tok}), 400, "bad_request")
	}
}

// TestEveryResponseIsNoStore covers the routes outside the JSON API too.
// The static assets /client.js and /favicon.ico are the documented
// exception (TestClientJSIsMinifiedGzippedAndCached, TestFavicon).
func TestEveryResponseIsNoStore(t *testing.T) {
	t.Parallel()
	h, _, _ := newHandler(t, Config{}, AuthConfig{}, &fakeStore{})
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	for _, rq := range []request{
		{method: "GET", path: "/healthz"}, {method: "GET", path: "/readyz"}, {method: "GET", path: "/metrics"},
		{method: "GET", path: "/"}, {method: "GET", path: "/demo"},
		{method: "GET", path: "/v1/poll"}, {method: "GET", path: "/nowhere"}, {method: "OPTIONS", path: "/v1/poll"},
	} {
		r := do(t, srv.URL, rq)
		if r.status >= 500 || r.header.Get("Cache-Control") != "no-store" {
			t.Errorf("%s %s: status %d, Cache-Control %q", rq.method, rq.path, r.status, r.header.Get("Cache-Control"))
		}
	}
}
