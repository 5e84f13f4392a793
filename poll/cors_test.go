package poll

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestCORS(t *testing.T) {
	t.Parallel()
	h, _, secret := newHandler(t, Config{CORSOrigins: []string{"https://admin.example/"}}, AuthConfig{}, &fakeStore{})
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	tok := signHS(t, jwtHS256, secret, userClaims("alice"))

	preflight := func(origin string) response {
		return do(t, srv.URL, request{method: "OPTIONS", path: "/v1/poll", header: map[string]string{
			"Origin": origin, "Access-Control-Request-Method": "GET", "Access-Control-Request-Headers": "authorization"}})
	}

	t.Run("preflight from an allowed origin", func(t *testing.T) {
		r := preflight("https://admin.example")
		if r.status != http.StatusNoContent {
			t.Fatalf("status %d, want 204: %s", r.status, r.body)
		}
		if got := r.header.Get("Access-Control-Allow-Origin"); got != "https://admin.example" {
			t.Errorf("Allow-Origin %q", got)
		}
		if !headerListHas(r.header.Get("Access-Control-Allow-Headers"), "Authorization") {
			t.Errorf("Allow-Headers %q lacks Authorization", r.header.Get("Access-Control-Allow-Headers"))
		}
		if !headerListHas(r.header.Get("Access-Control-Allow-Methods"), "GET") {
			t.Errorf("Allow-Methods %q lacks GET", r.header.Get("Access-Control-Allow-Methods"))
		}
		if !headerListHas(r.header.Get("Vary"), "Origin") {
			t.Errorf("Vary %q lacks Origin", r.header.Get("Vary"))
		}
	})

	t.Run("preflight from another origin", func(t *testing.T) {
		for _, origin := range []string{"https://evil.example", "https://admin.example.evil.example", "http://admin.example", "null"} {
			r := preflight(origin)
			checkError(t, r, http.StatusForbidden, "forbidden")
			if got := r.header.Get("Access-Control-Allow-Origin"); got != "" {
				t.Errorf("%s: Allow-Origin %q on a refused preflight", origin, got)
			}
		}
	})

	t.Run("simple requests", func(t *testing.T) {
		r := do(t, srv.URL, request{method: "GET", path: "/v1/unread", token: tok, header: map[string]string{"Origin": "https://admin.example"}})
		if r.status != 200 || r.header.Get("Access-Control-Allow-Origin") != "https://admin.example" {
			t.Fatalf("allowed origin: %d, Allow-Origin %q", r.status, r.header.Get("Access-Control-Allow-Origin"))
		}
		if !headerListHas(r.header.Get("Access-Control-Expose-Headers"), "Retry-After") {
			t.Errorf("Expose-Headers %q lacks Retry-After", r.header.Get("Access-Control-Expose-Headers"))
		}
		r = do(t, srv.URL, request{method: "GET", path: "/v1/unread", token: tok, header: map[string]string{"Origin": "https://evil.example"}})
		if got := r.header.Get("Access-Control-Allow-Origin"); got != "" {
			t.Fatalf("other origin got Allow-Origin %q", got)
		}
		// Without Origin (curl, same origin) nothing CORS-related is added.
		r = do(t, srv.URL, request{method: "GET", path: "/v1/unread", token: tok})
		if r.status != 200 || r.header.Get("Access-Control-Allow-Origin") != "" {
			t.Fatalf("no origin: %d, Allow-Origin %q", r.status, r.header.Get("Access-Control-Allow-Origin"))
		}
	})
}

func headerListHas(list, want string) bool {
	for _, v := range strings.Split(list, ",") {
		if strings.EqualFold(strings.TrimSpace(v), want) {
			return true
		}
	}
	return false
}
