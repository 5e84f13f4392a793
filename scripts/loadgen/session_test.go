package main

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"pollbox/internal/redistest"
)

func TestMain(m *testing.M) { redistest.Main(m) }

// sessionChecked answers 401 session_expired to a request whose bearer
// token has no "<prefix><token>" key in rdb, as pollbox does with
// POLLBOX_SESSION_KEY_PREFIX, and passes the others to h.
func sessionChecked(h http.Handler, rdb *redis.Client, prefix string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tok := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
		if strings.Count(tok, ".") == 2 {
			n, err := rdb.Exists(r.Context(), prefix+tok).Result()
			if err != nil || n == 0 {
				w.WriteHeader(http.StatusUnauthorized)
				_, _ = w.Write([]byte(`{"error":"session_expired","message":"logged out"}`))
				return
			}
		}
		h.ServeHTTP(w, r)
	})
}

// TestSessionPrefix: with -session-prefix every client's login session
// exists before it connects, so a server with the session check accepts
// all of them; the publisher's session exists when it publishes with a JWT.
func TestSessionPrefix(t *testing.T) {
	if testing.Short() {
		t.Skip("runs for several seconds")
	}
	url := redistest.URL(t)
	prefix := redistest.Prefix(t) + "online-token-"
	opt, err := redis.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(opt)
	defer rdb.Close()
	t.Cleanup(func() {
		keys, _ := rdb.Keys(context.Background(), prefix+"*").Result()
		if len(keys) > 0 {
			rdb.Del(context.Background(), keys...)
		}
	})
	const users = 5
	ts := httptest.NewServer(sessionChecked(fakePollboxHandler(users), rdb, prefix))
	defer ts.Close()

	cfg := fakeConfig("pollbox", ts.URL, users)
	cfg.redisURL = url
	cfg.sessionKey = prefix
	cfg.setupTimeout = 5 * time.Second
	res := runFake(t, cfg)
	if res.Sessions != users || res.Connected != 2*users || res.PollErrors != 0 || res.Lost != 0 || res.Delivered != 2*40 {
		t.Fatalf("sessions %d, connected %d, poll errors %v, lost %d, delivered %d; want %d, %d, none, 0, 80",
			res.Sessions, res.Connected, res.PollErrorsByKind, res.Lost, res.Delivered, users, 2*users)
	}
	keys, err := rdb.Keys(context.Background(), prefix+"*").Result()
	if err != nil || len(keys) != users {
		t.Fatalf("session keys: %d (%v), want %d", len(keys), err, users)
	}
	if ttl := rdb.TTL(context.Background(), keys[0]).Val(); ttl < 3*time.Hour || ttl > sessionTTL {
		t.Errorf("session key TTL %v, want the tokens' lifetime (3h) at least", ttl)
	}

	// Without the flag the same server refuses every poll.
	cfg = fakeConfig("pollbox", ts.URL, users)
	cfg.setupTimeout = 5 * time.Second
	if err := cfg.validate(); err != nil {
		t.Fatal(err)
	}
	r, err := newRunner(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.run(); err == nil || !strings.Contains(err.Error(), "http_401:session_expired") {
		t.Fatalf("run without sessions: %v, want session_expired poll errors", err)
	}
}

func TestSessionTokens(t *testing.T) {
	for _, tc := range []struct {
		pubToken string
		want     int
	}{
		{"bench:key", 3}, // API key: no session
		{"", 4},          // minted publisher JWT: its session too
		{"a.b.c", 4},     // a given JWT
	} {
		cfg := &config{baseURL: "http://127.0.0.1:1", secret: "s", pubToken: tc.pubToken, users: 3, clients: 1,
			rate: 1, duration: time.Second, mode: "waiters", protocol: "pollbox"}
		r, err := newRunner(cfg)
		if err != nil {
			t.Fatal(err)
		}
		toks := r.sessionTokens()
		if len(toks) != tc.want {
			t.Errorf("pub-token %q: %d session tokens, want %d", tc.pubToken, len(toks), tc.want)
		}
		for _, tok := range toks {
			if strings.HasPrefix(tok, "Bearer") || strings.Count(tok, ".") != 2 {
				t.Errorf("session token %q is not a bare JWT", tok)
			}
		}
	}
	bad := &config{baseURL: "http://127.0.0.1:1", secret: "s", users: 1, clients: 1, rate: 1, duration: time.Second,
		mode: "users", protocol: "pollbox", sessionKey: "online-token-"}
	if err := bad.validate(); err == nil {
		t.Error("-session-prefix without -redis accepted")
	}
}
