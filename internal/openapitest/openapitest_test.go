package openapitest

import (
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
)

func loadDoc(t *testing.T) []byte {
	t.Helper()
	doc, err := os.ReadFile("../../poll/static/openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	return doc
}

func newValidator(t *testing.T) *Validator {
	t.Helper()
	v, err := New(loadDoc(t))
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// The document loads, validates as OpenAPI 3.1 and names its version.
func TestDocumentLoads(t *testing.T) {
	v := newValidator(t)
	if v.Doc().OpenAPI != "3.1.0" {
		t.Errorf("openapi %q, want 3.1.0", v.Doc().OpenAPI)
	}
	for _, name := range []string{"bearerAuth", "accessToken", "apiKey"} {
		if v.Doc().Components.SecuritySchemes[name] == nil {
			t.Errorf("no security scheme %s", name)
		}
	}
}

const (
	pollOK   = `{"messages":[],"cursor":"AQ","unread":0,"more":false,"reset":false,"unread_by_type":{},"revoked":[]}`
	message  = `{"id":"g.user:list.1764400000000-0","source":"group:user:list","type":"like","title":"t","body":"b","link":"/x","level":"info","data":{"k":[1]},"sender":"42","created_at":"2026-11-25T17:40:00.123Z","expires_at":null,"read":false}`
	errShape = `{"error":"%s","message":"m"}`
)

func errBody(code string) string { return strings.Replace(errShape, "%s", code, 1) }

// answer is a response for Check, with the headers every pollbox answer
// carries unless the case says otherwise.
type answer struct {
	method, path string
	status       int
	header       map[string]string // "" removes the header
	body         string
}

func (a answer) check(v *Validator) error {
	req := httptest.NewRequest(a.method, a.path, nil)
	h := http.Header{
		"Cache-Control":          {"no-store"},
		"X-Content-Type-Options": {"nosniff"},
		"X-Request-Id":           {"d4k3n0o0p5ml5j1f2qlg"},
		"Content-Type":           {"application/json; charset=utf-8"},
	}
	for k, val := range a.header {
		if val == "" {
			h.Del(k)
		} else {
			h.Set(k, val)
		}
	}
	return v.Check(req, a.status, h, []byte(a.body))
}

// Answers as pollbox gives them pass.
func TestCheckAccepts(t *testing.T) {
	v := newValidator(t)
	for _, a := range []answer{
		{"GET", "/v1/poll?timeout=0", 200, nil, pollOK},
		{"GET", "/v1/poll", 200, nil, `{"messages":[` + message + `],"cursor":"AQ-_x","unread":1,"more":true,"reset":true,"unread_by_type":{},"revoked":[]}`},
		{"GET", "/v1/poll", 400, nil, errBody("bad_timeout")},
		{"GET", "/v1/poll", 401, nil, errBody("session_expired")},
		{"GET", "/v1/poll", 429, map[string]string{"Retry-After": "5"}, errBody("too_many_polls")},
		{"GET", "/v1/poll", 503, map[string]string{"Retry-After": "2"}, errBody("unavailable")},
		{"GET", "/v1/messages?limit=5", 200, nil, `{"messages":[` + message + `],"next":"u.1-0","unread":0,"unread_by_type":{},"cursor":"AQ"}`},
		{"GET", "/v1/messages", 200, nil, `{"messages":[],"next":null,"unread":0,"unread_by_type":{},"cursor":"AQ"}`},
		{"GET", "/v1/unread", 200, nil, `{"unread":3,"unread_by_type":{"notification":3},"cursor":"AQ"}`},
		{"POST", "/v1/read", 200, nil, `{"unread":0,"unread_by_type":{}}`},
		{"POST", "/v1/read", 415, nil, errBody("bad_request")},
		{"DELETE", "/v1/messages/g.ops.1-2", 204, map[string]string{"Content-Type": ""}, ""},
		{"DELETE", "/v1/messages/u.1-2", 404, nil, errBody("not_found")},
		{"POST", "/v1/publish", 201, nil, `{"publish_id":"p.u.1.1764400000000-0","state":"sent","count":2,"ids":["u.1-0","u.1-1"]}`},
		{"POST", "/v1/publish", 429, map[string]string{"Retry-After": "1"}, errBody("rate_limited")},
		{"POST", "/v1/publish", 413, nil, errBody("too_large")},
		{"GET", "/healthz", 200, nil, `{"status":"ok"}`},
		{"GET", "/readyz", 200, nil, `{"status":"ready"}`},
		{"GET", "/metrics", 200, map[string]string{"Content-Type": "text/plain; version=0.0.4; charset=utf-8; escaping=underscores"}, "# HELP x\n"},
		{"GET", "/client.js", 200, map[string]string{"Content-Type": "application/javascript; charset=utf-8", "Cache-Control": "public, max-age=300", "ETag": `"0a1b"`}, "var x"},
		{"GET", "/client.js?v=0a1b", 304, map[string]string{"Content-Type": "", "Cache-Control": "public, max-age=31536000, immutable", "ETag": `"0a1b"`}, ""},
		{"HEAD", "/favicon.ico", 200, map[string]string{"Content-Type": "image/x-icon", "Cache-Control": "public, max-age=86400", "ETag": `"0a1b"`}, ""},
		{"GET", "/v1/%01", 400, nil, errBody("bad_request")},
		{"GET", "/demo", 200, map[string]string{"Content-Type": "text/html; charset=utf-8"}, "<!doctype html>"},
		{"GET", "/openapi.json", 200, nil, `{"openapi":"3.1.0","info":{},"paths":{}}`},
		{"HEAD", "/openapi.json", 200, nil, ""},
		{"GET", "/nope", 404, nil, errBody("not_found")},
		{"PUT", "/v1/poll", 405, nil, errBody("method_not_allowed")},
		{"OPTIONS", "/v1/poll", 204, map[string]string{"Content-Type": ""}, ""},
		{"OPTIONS", "/v1/poll", 403, nil, errBody("forbidden")},
	} {
		if err := a.check(v); err != nil {
			t.Errorf("%s %s %d: %v", a.method, a.path, a.status, err)
		}
	}
}

// Wrong answers fail: the document is strict enough to catch a drift.
func TestCheckRejects(t *testing.T) {
	v := newValidator(t)
	for _, c := range []struct {
		why string
		a   answer
	}{
		{"poll without cursor", answer{"GET", "/v1/poll", 200, nil, `{"messages":[],"unread":0,"more":false,"reset":false,"unread_by_type":{},"revoked":[]}`}},
		{"poll with an undocumented field", answer{"GET", "/v1/poll", 200, nil, `{"messages":[],"cursor":"AQ","unread":0,"more":false,"reset":false,"unread_by_type":{},"revoked":[],"extra":1}`}},
		{"negative unread", answer{"GET", "/v1/poll", 200, nil, `{"messages":[],"cursor":"AQ","unread":-1,"more":false,"reset":false,"unread_by_type":{},"revoked":[]}`}},
		{"cursor not base64url", answer{"GET", "/v1/poll", 200, nil, `{"messages":[],"cursor":"A+/=","unread":0,"more":false,"reset":false,"unread_by_type":{},"revoked":[]}`}},
		{"created_at without milliseconds", answer{"GET", "/v1/poll", 200, nil,
			`{"messages":[` + strings.Replace(message, ".123Z", "Z", 1) + `],"cursor":"AQ","unread":0,"more":false,"reset":false,"unread_by_type":{},"revoked":[]}`}},
		{"unknown level", answer{"GET", "/v1/poll", 200, nil,
			`{"messages":[` + strings.Replace(message, `"info"`, `"debug"`, 1) + `],"cursor":"AQ","unread":0,"more":false,"reset":false,"unread_by_type":{},"revoked":[]}`}},
		{"message without read", answer{"GET", "/v1/poll", 200, nil,
			`{"messages":[` + strings.Replace(message, `,"read":false`, "", 1) + `],"cursor":"AQ","unread":0,"more":false,"reset":false,"unread_by_type":{},"revoked":[]}`}},
		{"malformed message id", answer{"GET", "/v1/poll", 200, nil,
			`{"messages":[` + strings.Replace(message, `"g.user:list.1764400000000-0"`, `"x.1"`, 1) + `],"cursor":"AQ","unread":0,"more":false,"reset":false,"unread_by_type":{},"revoked":[]}`}},
		{"no Cache-Control", answer{"GET", "/v1/poll", 200, map[string]string{"Cache-Control": ""}, pollOK}},
		{"cacheable", answer{"GET", "/v1/poll", 200, map[string]string{"Cache-Control": "max-age=60"}, pollOK}},
		{"no request id", answer{"GET", "/v1/poll", 200, map[string]string{"X-Request-Id": ""}, pollOK}},
		{"not JSON", answer{"GET", "/v1/poll", 200, map[string]string{"Content-Type": "text/plain"}, pollOK}},
		{"undocumented status", answer{"GET", "/v1/poll", 418, nil, errBody("bad_request")}},
		{"error code of another status", answer{"GET", "/v1/poll", 400, nil, errBody("too_large")}},
		{"unknown error code", answer{"GET", "/v1/unread", 401, nil, errBody("expired")}},
		{"error with an extra key", answer{"GET", "/v1/poll", 400, nil, `{"error":"bad_request","message":"m","detail":"x"}`}},
		{"error without message", answer{"GET", "/v1/poll", 400, nil, `{"error":"bad_request"}`}},
		{"429 without Retry-After", answer{"GET", "/v1/poll", 429, nil, errBody("too_many_polls")}},
		{"503 without Retry-After", answer{"GET", "/v1/unread", 503, nil, errBody("unavailable")}},
		{"Retry-After not a number", answer{"GET", "/v1/unread", 503, map[string]string{"Retry-After": "soon"}, errBody("unavailable")}},
		{"rate_limited on a poll", answer{"GET", "/v1/poll", 429, map[string]string{"Retry-After": "1"}, errBody("rate_limited")}},
		{"publish without ids", answer{"POST", "/v1/publish", 201, nil, `{"publish_id":"p.u.1.1764400000000-0","state":"sent","count":1}`}},
		{"publish answered 200", answer{"POST", "/v1/publish", 200, nil, `{"publish_id":"p.u.1.1764400000000-0","state":"sent","count":1,"ids":["u.1-0"]}`}},
		{"history next not an id", answer{"GET", "/v1/messages", 200, nil, `{"messages":[],"next":"","unread":0,"unread_by_type":{},"cursor":"AQ"}`}},
		{"delete answered 200", answer{"DELETE", "/v1/messages/u.1-0", 200, nil, `{}`}},
		{"readyz says ok", answer{"GET", "/readyz", 200, nil, `{"status":"ok"}`}},
		{"unknown path answered 200", answer{"GET", "/nope", 200, nil, `{}`}},
		{"unknown path in another shape", answer{"GET", "/nope", 404, nil, `{"error":"not_found"}`}},
		{"wrong method answered 404", answer{"PUT", "/v1/poll", 404, nil, errBody("not_found")}},
		{"client.js without ETag", answer{"GET", "/client.js", 200, map[string]string{"Content-Type": "application/javascript", "Cache-Control": "no-cache"}, "x"}},
		{"client.js cached privately", answer{"GET", "/client.js", 200, map[string]string{"Content-Type": "application/javascript", "Cache-Control": "private", "ETag": `"0a"`}, "x"}},
		{"304 where none is documented", answer{"GET", "/openapi.json", 304, nil, ""}},
		{"HEAD with a body", answer{"HEAD", "/openapi.json", 200, nil, `{}`}},
		{"HEAD without Cache-Control", answer{"HEAD", "/healthz", 200, map[string]string{"Cache-Control": ""}, ""}},
	} {
		err := c.a.check(v)
		t.Logf("%s: %v", c.why, err)
		if err == nil {
			t.Errorf("%s: %s %s %d passed", c.why, c.a.method, c.a.path, c.a.status)
		}
	}
}

// The transport reports a wrong answer and still hands it on unchanged;
// right answers are not reported.
func TestTransport(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Header().Set("X-Request-Id", "d4k3n0o0p5ml5j1f2qlg")
		w.Header().Set("Content-Type", "application/json")
		if r.URL.Query().Get("wrong") != "" {
			_, _ = io.WriteString(w, `{"unread":"3"}`)
			return
		}
		_, _ = io.WriteString(w, `{"unread":3,"unread_by_type":{"notification":3},"cursor":"AQ"}`)
	}))
	defer srv.Close()
	var mu sync.Mutex
	var reports []error
	hc := &http.Client{Transport: &Transport{Validator: newValidator(t), Report: func(err error) {
		mu.Lock()
		reports = append(reports, err)
		mu.Unlock()
	}}}
	get := func(q string) string {
		res, err := hc.Get(srv.URL + "/v1/unread" + q)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, err := io.ReadAll(res.Body)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	if b := get(""); b != `{"unread":3,"unread_by_type":{"notification":3},"cursor":"AQ"}` || len(reports) != 0 {
		t.Fatalf("right answer: body %s, reports %v", b, reports)
	}
	if b := get("?wrong=1"); b != `{"unread":"3"}` {
		t.Errorf("wrong answer reached the caller as %s", b)
	}
	if len(reports) != 1 || !strings.Contains(reports[0].Error(), "/v1/unread") {
		t.Fatalf("reports %v, want one about /v1/unread", reports)
	}
}
