package poll

import (
	"bytes"
	"compress/gzip"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"strings"
	"testing"
)

// TestClientJSIsMinifiedGzippedAndCached: /client.js is served minified,
// gzipped for clients that accept it, with a strong ETag that answers 304,
// cacheable; its versioned URL, which the demo page uses, is immutable.
//
// With POLLBOX_CLIENT_JS_OUT set it also writes the script as served
// (uncompressed) to that file, for the ES5 check in scripts/test.sh.
func TestClientJSIsMinifiedGzippedAndCached(t *testing.T) {
	t.Parallel()
	h, _, _ := newHandler(t, Config{}, AuthConfig{}, &fakeStore{})
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	source, err := static.ReadFile("static/client.js")
	if err != nil {
		t.Fatal(err)
	}
	get := func(path string, header map[string]string) response {
		t.Helper()
		if header == nil {
			header = map[string]string{}
		}
		if _, ok := header["Accept-Encoding"]; !ok {
			header["Accept-Encoding"] = "identity" // else Go's client asks for gzip and unpacks it
		}
		return do(t, srv.URL, request{method: "GET", path: path, header: header})
	}

	plain := get("/client.js", nil)
	if plain.status != 200 || plain.header.Get("Content-Encoding") != "" {
		t.Fatalf("client.js: %d, Content-Encoding %q", plain.status, plain.header.Get("Content-Encoding"))
	}
	if ct := plain.header.Get("Content-Type"); ct != "application/javascript; charset=utf-8" {
		t.Errorf("Content-Type %q", ct)
	}
	if out := os.Getenv("POLLBOX_CLIENT_JS_OUT"); out != "" {
		if err := os.WriteFile(out, plain.body, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("client.js: source %d bytes, served %d bytes", len(source), len(plain.body))
	if len(plain.body) >= len(source)*3/4 {
		t.Errorf("served client.js is %d bytes, source %d: not minified", len(plain.body), len(source))
	}
	if !bytes.Contains(plain.body, []byte("Pollbox")) {
		t.Errorf("served client.js lost its global Pollbox")
	}
	// The ES5 checks proper are es-check's (syntax, in scripts/test.sh) and
	// TestClientJSRunsInES5Engine's (built-ins); this catches the one ES2016
	// rewrite the minifier makes whatever its version.
	if i := bytes.Index(plain.body, []byte("**")); i >= 0 {
		t.Errorf("served client.js has the ES2016 operator **: %q", plain.body[max(0, i-40):min(len(plain.body), i+40)])
	}
	if v := plain.header.Values("Vary"); !containsToken(v, "Accept-Encoding") {
		t.Errorf("Vary %q, want Accept-Encoding", v)
	}
	cc := plain.header.Get("Cache-Control")
	if !strings.HasPrefix(cc, "public, max-age=") || strings.Contains(cc, "immutable") {
		t.Errorf("client.js Cache-Control %q, want public with a max-age, not immutable", cc)
	}
	etag := plain.header.Get("ETag")
	if !regexp.MustCompile(`^"[0-9a-f]{16,}"$`).MatchString(etag) {
		t.Fatalf("ETag %q, want a strong hash", etag)
	}

	// gzip when accepted, the same script inside, its own ETag.
	for _, ae := range []string{"gzip", "gzip, deflate, br", "br;q=1.0, gzip;q=0.8", "*"} {
		gz := get("/client.js", map[string]string{"Accept-Encoding": ae})
		if gz.header.Get("Content-Encoding") != "gzip" {
			t.Errorf("Accept-Encoding %q: Content-Encoding %q, want gzip", ae, gz.header.Get("Content-Encoding"))
			continue
		}
		zr, err := gzip.NewReader(bytes.NewReader(gz.body))
		if err != nil {
			t.Fatal(err)
		}
		unpacked, err := io.ReadAll(zr)
		if err != nil || !bytes.Equal(unpacked, plain.body) {
			t.Fatalf("gzipped client.js does not unpack to the plain one: %v", err)
		}
		if ae == "gzip" {
			t.Logf("client.js gzipped: %d bytes", len(gz.body))
			// The size README promises: an app loads it on every page.
			if len(gz.body) > clientJSGzipMax {
				t.Errorf("client.js gzipped is %d bytes, more than %d", len(gz.body), clientJSGzipMax)
			}
		}
		if gt := gz.header.Get("ETag"); gt == etag || gt == "" {
			t.Errorf("gzipped ETag %q, plain %q: a strong ETag differs per encoding", gt, etag)
		}
		if cl := gz.header.Get("Content-Length"); cl == "" {
			t.Errorf("gzipped answer without Content-Length")
		}
	}
	for _, ae := range []string{"identity", "gzip;q=0", "br", "gzip;q=0, *", "x-gzip;q=0.5, gzip;q=0"} {
		r := get("/client.js", map[string]string{"Accept-Encoding": ae})
		if r.header.Get("Content-Encoding") != "" || !bytes.Equal(r.body, plain.body) {
			t.Errorf("Accept-Encoding %q: Content-Encoding %q, want the plain script", ae, r.header.Get("Content-Encoding"))
		}
	}

	// 304 on a matching If-None-Match, for either encoding.
	for _, inm := range []string{etag, `"other", ` + etag, "W/" + etag, "*"} {
		r := get("/client.js", map[string]string{"If-None-Match": inm})
		if r.status != http.StatusNotModified || len(r.body) != 0 {
			t.Errorf("If-None-Match %s: %d with %d bytes, want 304", inm, r.status, len(r.body))
		}
		if r.header.Get("ETag") != etag || r.header.Get("Cache-Control") != cc {
			t.Errorf("304 without ETag/Cache-Control: %v", r.header)
		}
	}
	gzTag := get("/client.js", map[string]string{"Accept-Encoding": "gzip"}).header.Get("ETag")
	if r := get("/client.js", map[string]string{"Accept-Encoding": "gzip", "If-None-Match": gzTag}); r.status != http.StatusNotModified {
		t.Errorf("gzip If-None-Match: %d, want 304", r.status)
	}
	if r := get("/client.js", map[string]string{"If-None-Match": `"0123456789abcdef0123"`}); r.status != 200 {
		t.Errorf("stale If-None-Match: %d, want 200", r.status)
	}

	// The demo page loads the versioned URL, which is immutable.
	demo := get("/demo", nil)
	m := regexp.MustCompile(`src="client\.js\?v=([^"]*)"`).FindSubmatch(demo.body)
	if m == nil {
		t.Fatalf("the demo page does not load client.js?v=…")
	}
	version := string(m[1])
	if `"`+version+`"` != etag {
		t.Errorf("demo page loads client.js?v=%s, the ETag is %s: the version is the plain ETag", version, etag)
	}
	v := get("/client.js?v="+version, nil)
	if v.status != 200 || !bytes.Equal(v.body, plain.body) {
		t.Fatalf("versioned client.js: %d", v.status)
	}
	if cc := v.header.Get("Cache-Control"); cc != "public, max-age=31536000, immutable" {
		t.Errorf("versioned client.js Cache-Control %q, want immutable for a year", cc)
	}
	// Another version (a page of another release, during a rolling
	// deploy) gets this one's script, but must not keep it for a year.
	other := get("/client.js?v=0000000000000000", nil)
	if other.status != 200 || strings.Contains(other.header.Get("Cache-Control"), "immutable") {
		t.Errorf("client.js?v=<another version>: %d, Cache-Control %q", other.status, other.header.Get("Cache-Control"))
	}
}

// clientJSGzipMax bounds /client.js as served gzipped.
const clientJSGzipMax = 6 * 1024

func containsToken(values []string, token string) bool {
	for _, v := range values {
		for _, f := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(f), token) {
				return true
			}
		}
	}
	return false
}

// TestMinifyStaysES5: the two rewrites the minifier makes whatever its
// version (shorthand properties, **) are undone, and nothing else is
// touched: a block's last expression and text in strings look like
// shorthand properties but are none.
func TestMinifyStaysES5(t *testing.T) {
	t.Parallel()
	src := `function f(err, status) {
  if (status) { g(), status }
  relay({t: 'e', e: err, s: status, n: "{a,b}"});
  return {status: status, d: Math.pow(2, Math.min(status, 10))};
}`
	out, err := minifyES5([]byte(src))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s", out)
	for _, bad := range []string{"**", "{status}", ",status}", "{e,", ",e,", ",e}"} {
		if bytes.Contains(out, []byte(bad)) {
			t.Errorf("minified %q has the ES2015+ %q", out, bad)
		}
	}
	for _, keep := range []string{`"{a,b}"`, "status:"} {
		if !bytes.Contains(out, []byte(keep)) {
			t.Errorf("minified %q lost %q", out, keep)
		}
	}
}

// TestAdminPage: /admin's page, like the demo page, loads the versioned
// client.js and carries the dev tokens for loopback clients only; it is
// built on client.js's publisher.
func TestAdminPage(t *testing.T) {
	t.Parallel()
	const tok = "eyJhbGciOiJIUzI1NiJ9.e30.dev-admin"
	h := handleAdmin(map[string]string{"user": "u", "admin": tok})
	get := func(remote string) string {
		r := httptest.NewRequest("GET", "/admin", nil)
		r.RemoteAddr = remote
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != 200 || w.Header().Get("Content-Type") != "text/html; charset=utf-8" {
			t.Fatalf("GET /admin from %s: %d %q", remote, w.Code, w.Header().Get("Content-Type"))
		}
		return w.Body.String()
	}
	local, remote := get("127.0.0.1:5000"), get("192.0.2.7:5000")
	if !strings.Contains(local, tok) || strings.Contains(local, devTokensMarker) {
		t.Errorf("a loopback client's admin page lacks the dev admin token")
	}
	if strings.Contains(remote, tok) || !strings.Contains(remote, devTokensMarker) {
		t.Errorf("a client beyond loopback got the dev tokens")
	}
	for _, page := range []string{local, remote} {
		if !strings.Contains(page, `src="client.js?v=`+clientJS().version+`"`) {
			t.Errorf("the admin page does not load client.js?v=%s", clientJS().version)
		}
		if !strings.Contains(page, "Pollbox.publisher(") || !strings.Contains(page, "<title>pollbox notices</title>") {
			t.Errorf("the admin page is not the notice page built on Pollbox.publisher")
		}
	}
}
