package poll

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"pollbox/inbox"
	"pollbox/internal/redistest"
)

// TestSizeLimitsAreTooLarge: a size limit is 413 too_large whichever layer
// finds it. The store checks the limits the HTTP layer checks first
// (recipients, body and data, ids per call) and may be configured lower;
// its refusals get the same answer as the HTTP layer's own.
func TestSizeLimitsAreTooLarge(t *testing.T) {
	t.Parallel()
	rdb := newRedisClient(t, redistest.URL(t))
	store := inbox.New(rdb, inbox.Options{Prefix: redistest.Prefix(t), MaxRecipients: 2})
	ctx := context.Background()
	three := []string{"a", "b", "c"}
	ids := make([]string, inbox.MaxReadIDs+1)
	for i := range ids {
		ids[i] = "u." + strconv.Itoa(i+1) + "-0"
	}
	big := inbox.Draft{Body: strings.Repeat("x", 65)}
	_, users := store.Publish(ctx, inbox.Target{Users: three}, inbox.Draft{Title: "t"}, "", 64)
	_, groups := store.Publish(ctx, inbox.Target{Groups: three}, inbox.Draft{Title: "t"}, "", 64)
	_, body := store.Publish(ctx, inbox.Target{Broadcast: true}, big, "", 64)
	_, marks := store.MarkRead(ctx, inbox.Reader{User: "alice"}, ids, false)
	for _, c := range []struct {
		name string
		err  error
	}{{"recipients", users}, {"groups", groups}, {"body", body}, {"ids per call", marks}, {"draft", big.Validate(64)}} {
		if c.err == nil {
			t.Fatalf("%s: the store took it", c.name)
		}
		rec := httptest.NewRecorder()
		err := c.err
		common(handlerFunc(func(http.ResponseWriter, *http.Request) error { return err })).
			ServeHTTP(rec, httptest.NewRequest("POST", "/v1/publish", nil))
		r := response{status: rec.Code, header: rec.Header(), body: rec.Body.Bytes()}
		if r.status != http.StatusRequestEntityTooLarge {
			t.Errorf("%s (%v): status %d, want 413", c.name, c.err, r.status)
			continue
		}
		checkError(t, r, http.StatusRequestEntityTooLarge, "too_large")
	}

	// Over HTTP: the store's recipient cap is below the HTTP layer's.
	h, _, _ := newHandler(t, Config{}, AuthConfig{}, store)
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	checkError(t, do(t, srv.URL, request{method: "POST", path: "/v1/publish", token: apiKeySecret,
		body: `{"to":["a","b","c"],"title":"t"}`}), http.StatusRequestEntityTooLarge, "too_large")

	// The HTTP layer's own limits give the same answer.
	h, _, secret := newHandler(t, Config{MaxRecipients: 2, MaxBody: 64}, AuthConfig{}, &fakeStore{})
	srv = httptest.NewServer(h)
	t.Cleanup(srv.Close)
	alice := signHS(t, jwtHS256, secret, userClaims("alice"))
	for _, rq := range []request{
		{method: "POST", path: "/v1/publish", token: apiKeySecret, body: `{"to":["a","b","c"],"title":"t"}`},
		{method: "POST", path: "/v1/publish", token: apiKeySecret, body: `{"groups":["a","b","c"],"title":"t"}`},
		{method: "POST", path: "/v1/publish", token: apiKeySecret, body: `{"broadcast":true,"body":"` + strings.Repeat("x", 65) + `"}`},
		{method: "POST", path: "/v1/read", token: alice, body: `{"ids":` + idList("u.1-0", inbox.MaxReadIDs+1) + `}`},
	} {
		checkError(t, do(t, srv.URL, rq), http.StatusRequestEntityTooLarge, "too_large")
	}
}
