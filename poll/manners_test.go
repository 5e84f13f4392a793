package poll

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"image/png"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// TestHeadAnswersLikeGet: every GET route answers HEAD with GET's status
// and headers and no body (load balancers health-check with HEAD).
func TestHeadAnswersLikeGet(t *testing.T) {
	t.Parallel()
	h, _, secret := newHandler(t, Config{}, AuthConfig{}, &fakeStore{})
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	alice := signHS(t, jwtHS256, secret, userClaims("alice"))
	for _, rq := range []request{
		{path: "/healthz"}, {path: "/readyz"}, {path: "/metrics"}, {path: "/client.js"},
		{path: "/client.js?v=1"}, {path: "/favicon.ico"},
		{path: "/"}, {path: "/demo"}, {path: "/openapi.json"},
		{path: "/v1/poll?timeout=0", token: alice}, {path: "/v1/messages", token: alice},
		{path: "/v1/unread", token: alice}, {path: "/v1/unread"}, // the 401 too
	} {
		// The same encoding for both (Go's client asks for gzip on its own for GET only).
		rq.header = map[string]string{"Accept-Encoding": "gzip"}
		rq.method = "GET"
		get := do(t, srv.URL, rq)
		rq.method = "HEAD"
		head := do(t, srv.URL, rq)
		if head.status != get.status || head.status == http.StatusMethodNotAllowed {
			t.Errorf("HEAD %s: status %d, GET gives %d", rq.path, head.status, get.status)
			continue
		}
		if len(head.body) != 0 {
			t.Errorf("HEAD %s: %d bytes of body", rq.path, len(head.body))
		}
		for _, k := range []string{"Content-Type", "Cache-Control", "ETag"} {
			if head.header.Get(k) != get.header.Get(k) {
				t.Errorf("HEAD %s: %s %q, GET gives %q", rq.path, k, head.header.Get(k), get.header.Get(k))
			}
		}
	}
	// A route with no GET still has no HEAD.
	if r := do(t, srv.URL, request{method: "HEAD", path: "/v1/read"}); r.status != http.StatusMethodNotAllowed {
		t.Errorf("HEAD /v1/read: %d, want 405", r.status)
	}
}

// rawRequest sends one request line as it is (no client escapes or
// refuses it) and returns the answer.
func rawRequest(t *testing.T, addr, line string, header map[string]string) response {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	var b strings.Builder
	fmt.Fprintf(&b, "%s HTTP/1.1\r\nHost: pollbox\r\nConnection: close\r\n", line)
	for k, v := range header {
		fmt.Fprintf(&b, "%s: %s\r\n", k, v)
	}
	b.WriteString("\r\n")
	if _, err := io.WriteString(c, b.String()); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("%s: %v", line, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return response{status: resp.StatusCode, header: resp.Header, body: body}
}

// TestMalformedPathIsBadRequest: a path that decodes to what no route or
// id can hold (invalid UTF-8, control characters, an escaped slash, a
// stray '%') is a 400 bad_request in the JSON error shape, whatever the
// route would have been.
func TestMalformedPathIsBadRequest(t *testing.T) {
	t.Parallel()
	h, _, secret := newHandler(t, Config{}, AuthConfig{}, &fakeStore{})
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	addr := srv.Listener.Addr().String()
	auth := map[string]string{"Authorization": "Bearer " + signHS(t, jwtHS256, secret, userClaims("alice"))}
	for _, line := range []string{
		"DELETE /v1/messages/%ff",
		"DELETE /v1/messages/u.1-0%2F..%2Fx",
		"DELETE /v1/messages/%25zz",
		"GET /v1/messages/%00",
		"GET /v1/poll%0A",
		"GET /healthz%ff",
		"GET /readyz%2f",
		"GET /v1/unread%25",
	} {
		checkError(t, rawRequest(t, addr, line, auth), http.StatusBadRequest, "bad_request")
	}
	// net/http refuses a request line whose path has an invalid %-escape
	// before any handler runs: its answer is a plain-text 400. Should it
	// ever pass such a path on, it must get the JSON shape like the rest.
	for _, line := range []string{"DELETE /v1/messages/%zz", "GET /v1/poll%", "GET /%zz?timeout=0"} {
		r := rawRequest(t, addr, line, auth)
		if r.status != http.StatusBadRequest {
			t.Errorf("%s: status %d, want 400", line, r.status)
		}
		if strings.HasPrefix(r.header.Get("Content-Type"), "application/json") {
			checkError(t, r, http.StatusBadRequest, "bad_request")
		}
	}
	// Well-formed paths keep their answers.
	if r := rawRequest(t, addr, "GET /healthz", nil); r.status != 200 {
		t.Errorf("/healthz: %d %s", r.status, r.body)
	}
	checkError(t, rawRequest(t, addr, "GET /v1/messages/b.1-0", auth), http.StatusMethodNotAllowed, "method_not_allowed")
	if r := rawRequest(t, addr, "DELETE /v1/messages/g.user:list.9-0", auth); r.status != http.StatusNoContent {
		t.Errorf("DELETE of a well-formed id: %d %s", r.status, r.body)
	}
	checkError(t, rawRequest(t, addr, "GET /nowhere", nil), http.StatusNotFound, "not_found")
}

// TestFavicon: browsers ask for /favicon.ico on every demo load; it is a
// small icon, cacheable, not a 404.
func TestFavicon(t *testing.T) {
	t.Parallel()
	h, _, _ := newHandler(t, Config{}, AuthConfig{}, &fakeStore{})
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	r := do(t, srv.URL, request{method: "GET", path: "/favicon.ico"})
	if r.status != 200 || r.header.Get("Content-Type") != "image/x-icon" {
		t.Fatalf("favicon: %d %q", r.status, r.header.Get("Content-Type"))
	}
	if cc := r.header.Get("Cache-Control"); !strings.HasPrefix(cc, "public, max-age=") {
		t.Errorf("favicon Cache-Control %q, want public with a max-age", cc)
	}
	// An ICO directory of one image, which is a PNG (browsers read those).
	b := r.body
	if len(b) < 22 || !bytes.Equal(b[:6], []byte{0, 0, 1, 0, 1, 0}) {
		t.Fatalf("not an ICO file: % x", b[:min(len(b), 22)])
	}
	size, off := binary.LittleEndian.Uint32(b[14:]), binary.LittleEndian.Uint32(b[18:])
	if int(off)+int(size) != len(b) {
		t.Fatalf("ICO entry at %d+%d, file is %d bytes", off, size, len(b))
	}
	img, err := png.Decode(bytes.NewReader(b[off:]))
	if err != nil || img.Bounds().Dx() != int(b[6]) || img.Bounds().Dy() != int(b[7]) {
		t.Fatalf("ICO image: %v, bounds %v, entry says %dx%d", err, img, b[6], b[7])
	}
	if len(b) > 1024 {
		t.Errorf("favicon is %d bytes, want a tiny one", len(b))
	}
	etag := r.header.Get("ETag")
	if r := do(t, srv.URL, request{method: "GET", path: "/favicon.ico", header: map[string]string{"If-None-Match": etag}}); etag == "" || r.status != http.StatusNotModified {
		t.Errorf("favicon with If-None-Match %q: %d", etag, r.status)
	}
}
