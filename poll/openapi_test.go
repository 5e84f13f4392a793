package poll

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"pollbox/inbox"
	"pollbox/internal/openapitest"
)

// checkedClient is a client whose every answer is checked against the
// OpenAPI document; a mismatch fails t.
func checkedClient(t *testing.T) *http.Client {
	return openapitest.Wrap(t, &http.Client{Timeout: 30 * time.Second}, OpenAPI())
}

// send is do with a given client.
func send(t *testing.T, hc *http.Client, base string, rq request) response {
	t.Helper()
	var body io.Reader
	if rq.body != "" {
		body = strings.NewReader(rq.body)
	}
	req, err := http.NewRequestWithContext(context.Background(), rq.method, base+rq.path, body)
	if err != nil {
		t.Fatal(err)
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
	res, err := hc.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", rq.method, rq.path, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{status: res.StatusCode, header: res.Header, body: b}
}

// GET /openapi.json serves the embedded document as JSON, and it is an
// OpenAPI 3.1 document that loads and validates.
func TestOpenAPIServed(t *testing.T) {
	t.Parallel()
	h, _, _ := newHandler(t, Config{}, AuthConfig{}, &fakeStore{})
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	r := send(t, checkedClient(t), srv.URL, request{method: "GET", path: "/openapi.json"})
	if r.status != http.StatusOK {
		t.Fatalf("GET /openapi.json: %d %s", r.status, clipBody(r.body))
	}
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("Content-Type %q, want application/json", ct)
	}
	if !bytes.Equal(r.body, OpenAPI()) || len(r.body) == 0 {
		t.Errorf("served %d bytes, not the embedded document of %d bytes", len(r.body), len(OpenAPI()))
	}
	v, err := openapitest.New(r.body)
	if err != nil {
		t.Fatalf("the served document: %v", err)
	}
	if got := v.Doc().OpenAPI; got != "3.1.0" {
		t.Errorf("openapi %q, want 3.1.0", got)
	}
	head := send(t, checkedClient(t), srv.URL, request{method: "HEAD", path: "/openapi.json"})
	if head.status != http.StatusOK || len(head.body) != 0 || head.header.Get("Content-Type") != r.header.Get("Content-Type") {
		t.Errorf("HEAD /openapi.json: %d, %d bytes, Content-Type %q", head.status, len(head.body), head.header.Get("Content-Type"))
	}
}

// Every operation the document lists is served: none is invented.
func TestOpenAPIOperationsServed(t *testing.T) {
	t.Parallel()
	v, err := openapitest.New(OpenAPI())
	if err != nil {
		t.Fatal(err)
	}
	h, _, _ := newHandler(t, Config{}, AuthConfig{}, &fakeStore{})
	ids := strings.NewReplacer("{id}", "u.1-0", "{publish_id}", "p.u.x.1-0")
	n := 0
	for path, item := range v.Doc().Paths.Map() {
		for method := range item.Operations() {
			n++
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(method, ids.Replace(path), nil))
			var e struct{ Error string }
			_ = json.Unmarshal(rec.Body.Bytes(), &e)
			if e.Error == "not_found" && strings.Contains(rec.Body.String(), "no such endpoint") || e.Error == "method_not_allowed" {
				t.Errorf("%s %s is documented but not served: %d %s", method, path, rec.Code, rec.Body)
			}
		}
	}
	if n < 13 {
		t.Errorf("the document lists %d operations, want at least 13", n)
	}
}

// Real answers of every operation, and of every error the handlers give,
// match the document. The checked client fails the test on a mismatch;
// the expected statuses make sure each case reaches what it is for.
func TestOpenAPIAnswers(t *testing.T) {
	t.Parallel()
	hc := checkedClient(t)
	s := newStack(t, stackOptions{cfg: Config{MaxRecipients: 3, CORSOrigins: []string{"https://admin.example"}}})
	alice := s.token(t, "alice", "ops")
	admin := s.token(t, "root", "admin")
	expect := func(rq request, status int) response {
		t.Helper()
		r := send(t, hc, s.url, rq)
		if r.status != status {
			t.Fatalf("%s %s: %d %s, want %d", rq.method, rq.path, r.status, clipBody(r.body), status)
		}
		return r
	}
	get := func(path, token string, status int) response {
		t.Helper()
		return expect(request{method: "GET", path: path, token: token}, status)
	}

	cur := decode[struct{ Cursor string }](t, get("/v1/unread", alice, 200)).Cursor
	expect(request{method: "POST", path: "/v1/publish", token: apiKeySecret,
		body: `{"to":["alice"],"type":"like","title":"t","body":"b","link":"/x","level":"warning","data":{"k":[1,"<&>"]},"expires_in":3600,"idempotency_key":"k:1"}`}, 201)
	expect(request{method: "POST", path: "/v1/publish", token: admin, body: `{"groups":["ops"],"body":"to ops"}`}, 201)
	expect(request{method: "POST", path: "/v1/publish", token: admin, body: `{"broadcast":true,"title":"all"}`}, 201)
	polled := decode[pollBody](t, get("/v1/poll?timeout=0&limit=2&cursor="+cur, alice, 200))
	if len(polled.Messages) != 2 || !polled.More {
		t.Fatalf("poll: %+v, want 2 messages and more", polled)
	}
	get("/v1/poll?timeout=0&cursor="+polled.Cursor, alice, 200)
	get("/v1/poll?timeout=0&_=1732550000000&access_token="+url.QueryEscape(alice), "", 200)
	page := decode[struct{ Next *string }](t, get("/v1/messages?limit=1&unread=true&since=0&until=2100-01-01T00:00:00Z", alice, 200))
	if page.Next == nil {
		t.Fatal("history page without next")
	}
	get("/v1/messages?before="+url.QueryEscape(*page.Next)+"&type=notification", alice, 200)
	expect(request{method: "POST", path: "/v1/read", token: alice, body: `{"ids":["` + polled.Messages[0].ID + `"]}`}, 200)
	expect(request{method: "POST", path: "/v1/read", token: alice, body: `{"all":true}`}, 200)
	expect(request{method: "DELETE", path: "/v1/messages/" + polled.Messages[0].ID, token: alice}, 204)

	// Notice management: a scheduled send listed and cancelled, a sent one
	// inspected and revoked, which a poll then reports.
	later := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
	sched := decode[publishAnswer](t, expect(request{method: "POST", path: "/v1/publish", token: admin,
		body: `{"to":["alice"],"title":"later","send_at":"` + later + `"}`}, 201))
	now := decode[publishAnswer](t, expect(request{method: "POST", path: "/v1/publish", token: admin,
		body: `{"to":["alice","bob"],"type":"reply","title":"now"}`}, 201))
	get("/v1/sent?limit=5", admin, 200)
	expect(request{method: "HEAD", path: "/v1/sent", token: admin}, 200)
	get("/v1/sent/"+now.PublishID+"?state=unread&limit=1", admin, 200)
	get("/v1/sent/"+sched.PublishID, admin, 200)
	get("/v1/unread", alice, 200)
	tail := decode[struct{ Cursor string }](t, get("/v1/poll?timeout=0&cursor="+polled.Cursor, alice, 200)).Cursor
	expect(request{method: "DELETE", path: "/v1/publish/" + sched.PublishID, token: admin}, 200)
	expect(request{method: "DELETE", path: "/v1/publish/" + now.PublishID, token: apiKeySecret}, 404)
	expect(request{method: "DELETE", path: "/v1/publish/" + now.PublishID, token: admin}, 200)
	if rv := decode[struct{ Revoked []string }](t, get("/v1/poll?timeout=0&cursor="+tail, alice, 200)).Revoked; len(rv) != 1 || rv[0] != now.IDs[0] {
		t.Errorf("poll after the revoke: revoked %v, want [%s]", rv, now.IDs[0])
	}
	get("/v1/sent/"+now.PublishID, admin, 200)
	get("/v1/messages?type=reply,like", alice, 200)

	// Errors, each with its status and code.
	for _, c := range []struct {
		rq     request
		status int
	}{
		{request{method: "DELETE", path: "/v1/messages/u.1-0", token: alice}, 404},
		{request{method: "DELETE", path: "/v1/messages/nonsense", token: alice}, 400},
		{request{method: "POST", path: "/v1/read", token: alice, body: `{"ids":["g.other.1-0"]}`}, 404},
		{request{method: "POST", path: "/v1/read", token: alice, body: `{"IDs":["u.1-0"]}`}, 400},
		{request{method: "POST", path: "/v1/read", token: alice, body: `{"all":true}`, header: map[string]string{"Content-Type": "text/plain"}}, 415},
		{request{method: "GET", path: "/v1/poll?timeout=9999", token: alice}, 400},
		{request{method: "GET", path: "/v1/poll?timeout=0&cursor=not-a-cursor", token: alice}, 400},
		{request{method: "GET", path: "/v1/poll?limit=%zz", token: alice}, 400},
		{request{method: "GET", path: "/v1/messages?since=yesterday", token: alice}, 400},
		{request{method: "GET", path: "/v1/unread"}, 401},
		{request{method: "GET", path: "/v1/unread", token: "not.a.jwt"}, 401},
		{request{method: "GET", path: "/v1/unread", token: apiKeySecret}, 403},
		{request{method: "POST", path: "/v1/publish", token: alice, body: `{"to":["bob"],"title":"x"}`}, 403},
		{request{method: "POST", path: "/v1/publish", token: admin, body: `{"to":["a","b","c","d"],"title":"x"}`}, 413},
		{request{method: "POST", path: "/v1/publish", token: admin, body: `{"title":"x"}`}, 400},
		{request{method: "POST", path: "/v1/publish", token: admin, body: `{"to":["a"],"title":"x","send_at":"soon"}`}, 400},
		{request{method: "DELETE", path: "/v1/publish/nonsense", token: admin}, 400},
		{request{method: "DELETE", path: "/v1/publish/p.u.root.1-0", token: admin}, 404},
		{request{method: "DELETE", path: "/v1/publish/p.u.root.1-0", token: alice}, 403},
		{request{method: "GET", path: "/v1/sent", token: alice}, 403},
		{request{method: "GET", path: "/v1/sent?before=x", token: admin}, 400},
		{request{method: "GET", path: "/v1/sent/p.u.root.1-0", token: admin}, 404},
		{request{method: "GET", path: "/v1/nothing-here"}, 404},
		{request{method: "PUT", path: "/v1/poll"}, 405},
		{request{method: "OPTIONS", path: "/v1/poll", header: map[string]string{"Origin": "https://admin.example", "Access-Control-Request-Method": "GET"}}, 204},
		{request{method: "OPTIONS", path: "/v1/poll", header: map[string]string{"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"}}, 403},
	} {
		r := expect(c.rq, c.status)
		if c.status >= 400 && r.header.Get("Content-Type") == "" {
			t.Errorf("%s %s: error without Content-Type", c.rq.method, c.rq.path)
		}
	}

	// Operations, with GET and HEAD.
	for _, p := range []string{"/healthz", "/readyz", "/metrics", "/client.js", "/favicon.ico", "/", "/demo", "/admin", "/openapi.json"} {
		get(p, "", 200)
		expect(request{method: "HEAD", path: p}, 200)
	}
	expect(request{method: "HEAD", path: "/v1/unread", token: alice}, 200)
	etag := get("/client.js", "", 200).header.Get("ETag")
	expect(request{method: "GET", path: "/client.js?v=old", header: map[string]string{"If-None-Match": etag}}, 304)
	expect(request{method: "GET", path: "/client.js?v=%zz"}, 400)
	expect(request{method: "DELETE", path: "/v1/messages/%01", token: alice}, 400)
	expect(request{method: "GET", path: "/v1/messages/%01", token: alice}, 400)
}

// The answers only a failing store, a limit or a shutdown give.
func TestOpenAPIAnswersUnderStress(t *testing.T) {
	t.Parallel()
	hc := checkedClient(t)
	serve := func(cfg Config, store Store) (string, []byte) {
		h, _, secret := newHandler(t, cfg, AuthConfig{}, store)
		srv := httptest.NewServer(h)
		t.Cleanup(srv.Close)
		return srv.URL, secret
	}
	expect := func(base string, rq request, status int) {
		t.Helper()
		if r := send(t, hc, base, rq); r.status != status {
			t.Errorf("%s %s: %d %s, want %d", rq.method, rq.path, r.status, clipBody(r.body), status)
		}
	}
	publish := request{method: "POST", path: "/v1/publish", token: apiKeySecret, body: `{"broadcast":true,"title":"x"}`}

	for _, c := range []struct {
		err    error
		status int
	}{{fmt.Errorf("%w: down", inbox.ErrUnavailable), 503}, {errors.New("boom"), 500}} {
		base, secret := serve(Config{}, &fakeStore{err: c.err})
		tok := signHS(t, jwtHS256, secret, userClaims("alice"))
		expect(base, request{method: "GET", path: "/v1/unread", token: tok}, c.status)
		expect(base, request{method: "GET", path: "/v1/messages", token: tok}, c.status)
		expect(base, publish, c.status)
	}

	base, _ := serve(Config{PublishRate: 0.001, PublishBurst: 1}, &fakeStore{})
	expect(base, publish, 201)
	expect(base, publish, 429)

	polls := make(chan struct{}, 1)
	base, secret := serve(Config{MaxPollsPerUser: 1}, &signalStore{Store: &fakeStore{block: true}, polls: polls})
	tok := signHS(t, jwtHS256, secret, userClaims("alice"))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _, _ = doErr(ctx, base, request{method: "GET", path: "/v1/poll?timeout=30", token: tok}) }()
	<-polls
	expect(base, request{method: "GET", path: "/v1/poll?timeout=0", token: tok}, 429)

	stop := make(chan struct{})
	close(stop)
	base, _ = serve(Config{Stop: stop}, &fakeStore{})
	expect(base, request{method: "GET", path: "/readyz"}, 503)
	expect(base, request{method: "GET", path: "/openapi.json"}, 503)
	expect(base, publish, 503)
	expect(base, request{method: "GET", path: "/healthz"}, 200)
}
