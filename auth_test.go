package main

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"pollbox/internal/redistest"
)

// keyspace describes every key under prefix (name, type and length) and
// the size of the whole database.
func keyspace(t *testing.T, rdb *redis.Client, prefix string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var keys []string
	iter := rdb.Scan(ctx, 0, prefix+"*", 1000).Iterator()
	for iter.Next(ctx) {
		keys = append(keys, iter.Val())
	}
	if err := iter.Err(); err != nil {
		t.Fatalf("SCAN: %v", err)
	}
	slices.Sort(keys)
	var b strings.Builder
	for _, k := range keys {
		typ := rdb.Type(ctx, k).Val()
		var n int64
		switch typ {
		case "stream":
			n = rdb.XLen(ctx, k).Val()
		case "zset":
			n = rdb.ZCard(ctx, k).Val()
		case "hash":
			n = rdb.HLen(ctx, k).Val()
		case "string":
			n = rdb.StrLen(ctx, k).Val()
		}
		fmt.Fprintf(&b, "%s %s %d\n", k, typ, n)
	}
	size, err := rdb.DBSize(ctx).Result()
	if err != nil {
		t.Fatalf("DBSIZE: %v", err)
	}
	fmt.Fprintf(&b, "dbsize %d\n", size)
	return b.String()
}

// Requests refused for auth or validation answer the SPEC error shape with
// Cache-Control: no-store, and leave Redis exactly as it was.
func TestRefusedRequests(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t, redistest.Options{})
	secret := newSecret(t)
	prefix := redistest.Prefix(t)
	in := startInstance(t, baseEnv(secret, prefix, "POLLBOX_REDIS_URL", srv.URL(),
		"POLLBOX_MAX_BODY", "1024", "POLLBOX_MAX_RECIPIENTS", "10", "POLLBOX_POLL_TIMEOUT_MAX", "30s"))
	hc := newHTTPClient(t)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	t.Cleanup(func() { rdb.Close() })

	user := smpeToken(secret, "42", "user:list")
	admin := smpeToken(secret, "1", "admin")
	// Some state exists, so "no change" is about more than absent keys.
	mustPublish(t, hc, in.base, admin, []string{"42"}, "seed")
	cursor := mustPoll(t, hc, in.base, user, "", 0).Cursor

	now := time.Now().Unix()
	expired := signJWT(map[string]any{"alg": "HS512"},
		map[string]any{"sub": "42", "auth": "user:list", "jti": "x1", "iat": now - 7200, "exp": now - 3600}, secret)
	badSig := smpeToken(newSecret(t), "42", "admin")
	algNone := signJWT(map[string]any{"alg": "none", "typ": "JWT"},
		map[string]any{"sub": "42", "auth": "admin", "jti": "x2"}, nil)
	// The right signature with the header switched to "none" must not pass either.
	parts := strings.Split(admin, ".")
	noneHeader := strings.Split(algNone, ".")[0] + "." + parts[1] + "." + parts[2]
	badUser := smpeToken(secret, "bad user!", "user:list")

	okBody := `{"to":["42"],"title":"t"}`
	cases := []struct {
		name, method, path, token, body string
		status                          int
		code                            string
	}{
		{"no token", "GET", "/v1/poll?timeout=0", "", "", 401, "unauthorized"},
		{"no token publish", "POST", "/v1/publish", "", okBody, 401, "unauthorized"},
		{"bad signature", "GET", "/v1/poll?timeout=0", badSig, "", 401, "unauthorized"},
		{"bad signature publish", "POST", "/v1/publish", badSig, okBody, 401, "unauthorized"},
		{"alg none", "POST", "/v1/publish", algNone, okBody, 401, "unauthorized"},
		{"alg none with signature", "GET", "/v1/poll?timeout=0", noneHeader, "", 401, "unauthorized"},
		{"expired", "GET", "/v1/poll?timeout=0", expired, "", 401, "unauthorized"},
		{"garbage token", "GET", "/v1/unread", "not.a.jwt", "", 401, "unauthorized"},
		{"user token publishes", "POST", "/v1/publish", user, okBody, 403, "forbidden"},
		{"malformed cursor", "GET", "/v1/poll?timeout=0&cursor=%21%21%21", user, "", 400, "bad_cursor"},
		{"cursor not base64", "GET", "/v1/poll?timeout=0&cursor=AAAA" + strings.Repeat("A", 30), user, "", 400, "bad_cursor"},
		{"timeout above max", "GET", "/v1/poll?timeout=31&cursor=" + cursor, user, "", 400, "bad_timeout"},
		{"negative timeout", "GET", "/v1/poll?timeout=-1", user, "", 400, "bad_timeout"},
		{"invalid JSON", "POST", "/v1/publish", admin, `{"to":["42"],"title":`, 400, "bad_request"},
		{"unknown field", "POST", "/v1/publish", admin, `{"to":["42"],"title":"t","colour":"red"}`, 400, "bad_request"},
		{"body over the limit", "POST", "/v1/publish", admin,
			`{"to":["42"],"title":"t","body":"` + strings.Repeat("x", 1025) + `"}`, 413, "too_large"},
		{"request over the limit", "POST", "/v1/publish", admin,
			`{"to":["42"],"title":"t","body":"` + strings.Repeat("x", 2<<20) + `"}`, 413, "too_large"},
		{"too many recipients", "POST", "/v1/publish", admin,
			`{"to":["1","2","3","4","5","6","7","8","9","10","11"],"title":"t"}`, 413, "too_large"},
		{"invalid user id in token", "GET", "/v1/poll?timeout=0", badUser, "", 400, "bad_request"},
		{"invalid recipient", "POST", "/v1/publish", admin, `{"to":["42","bad user!"],"title":"t"}`, 400, "bad_request"},
		{"invalid group", "POST", "/v1/publish", admin, `{"groups":["ops","a{b}"],"title":"t"}`, 400, "bad_request"},
		{"two targets", "POST", "/v1/publish", admin, `{"to":["42"],"broadcast":true,"title":"t"}`, 400, "bad_request"},
		{"no title or body", "POST", "/v1/publish", admin, `{"to":["42"]}`, 400, "bad_request"},
		{"read nothing", "POST", "/v1/read", user, `{}`, 400, "bad_request"},
		{"delete bad id", "DELETE", "/v1/messages/%7Bnope%7D", user, "", 400, "bad_request"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := keyspace(t, rdb, prefix)
			var body []byte
			if tc.body != "" {
				body = []byte(tc.body)
			}
			res, err := do(hc, tc.method, in.base+tc.path, tc.token, body, 10*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			checkErrorShape(t, res, tc.status, tc.code)
			if tc.status == http.StatusUnauthorized && strings.Contains(string(res.Body), "eyJ") {
				t.Errorf("the answer echoes a token: %s", res.Body)
			}
			if after := keyspace(t, rdb, prefix); after != before {
				t.Errorf("Redis changed:\nbefore:\n%safter:\n%s", before, after)
			}
		})
	}
}
