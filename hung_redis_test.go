package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"pollbox/internal/redistest"
)

// hungCase is one request sent while Redis is frozen.
type hungCase struct {
	name, method, path, token, body string
	wait                            time.Duration // the poll's timeout
	may200                          bool          // a waiting poll may answer from the instance's caches
}

// TestHungRedis freezes Redis with SIGSTOP: it keeps its connections and
// the kernel still accepts new ones, but nothing is ever answered, so only
// timeouts end a call. Every request answers within its wait plus
// POLLBOX_REDIS_TIMEOUT plus a second, with 503 and Retry-After (a waiting
// poll may answer 200 instead, from what the instance knows), whether the
// time goes to the store's calls or to the login-session check, and also
// while other users' requests queue for the same pipelines and
// connections. Once Redis goes on, so does pollbox.
func TestHungRedis(t *testing.T) {
	t.Parallel()
	const redisTimeout = time.Second
	for _, sessions := range []bool{false, true} {
		t.Run(fmt.Sprintf("sessions=%v", sessions), func(t *testing.T) {
			t.Parallel()
			srv := redistest.Start(t, redistest.Options{})
			secret := newSecret(t)
			prefix := redistest.Prefix(t)
			env := baseEnv(secret, prefix, "POLLBOX_REDIS_URL", srv.URL(),
				"POLLBOX_REDIS_TIMEOUT", redisTimeout.String(), "POLLBOX_PUBLISH_RATE", "0")
			user, admin := smpeToken(secret, "h1", "user:list"), smpeToken(secret, "1", "admin")
			others := userNames("o", 24)
			otherTokens := make([]string, len(others))
			for i, u := range others {
				otherTokens[i] = smpeToken(secret, u, "user:list")
			}
			if sessions {
				env["POLLBOX_SESSION_KEY_PREFIX"] = prefix + "online-token-"
				rdb := redis.NewClient(&redis.Options{Addr: srv.Addr()})
				for _, tok := range append([]string{user, admin}, otherTokens...) {
					if err := rdb.Set(context.Background(), prefix+"online-token-"+tok, "1", 0).Err(); err != nil {
						t.Fatal(err)
					}
				}
				rdb.Close()
			}
			in := startInstance(t, env)
			hc := newHTTPClient(t)
			cursor := mustPoll(t, hc, in.base, user, "", 0).Cursor
			id := mustPublish(t, hc, in.base, admin, []string{"h1"}, "before")[0]
			// Past the message: the waiting poll below has nothing to answer at once.
			cursor = url.QueryEscape(mustPoll(t, hc, in.base, user, cursor, 0).Cursor)

			cases := []hungCase{
				{"poll timeout=0", "GET", "/v1/poll?timeout=0&cursor=" + cursor, user, "", 0, false},
				{"poll timeout=0 without cursor", "GET", "/v1/poll?timeout=0", user, "", 0, false},
				{"poll timeout=2", "GET", "/v1/poll?timeout=2&cursor=" + cursor, user, "", 2 * time.Second, true},
				{"publish", "POST", "/v1/publish", admin, `{"to":["h1"],"title":"during"}`, 0, false},
				{"history", "GET", "/v1/messages", user, "", 0, false},
				{"unread", "GET", "/v1/unread", user, "", 0, false},
				{"read ids", "POST", "/v1/read", user, `{"ids":["` + id + `"]}`, 0, false},
				{"read all", "POST", "/v1/read", user, `{"all":true}`, 0, false},
				{"delete", "DELETE", "/v1/messages/" + id, user, "", 0, false},
			}
			for i, u := range others {
				cases = append(cases, hungCase{"poll of " + u, "GET", "/v1/poll?timeout=0", otherTokens[i], "", 0, false})
			}

			srv.Pause()
			t.Cleanup(srv.Resume) // runs before the cleanup that kills the server
			type result struct {
				res  response
				err  error
				took time.Duration
			}
			results := make([]result, len(cases))
			var wg sync.WaitGroup
			for i, c := range cases {
				wg.Go(func() {
					var body []byte
					if c.body != "" {
						body = []byte(c.body)
					}
					start := time.Now()
					res, err := do(hc, c.method, in.base+c.path, c.token, body, c.wait+20*time.Second)
					results[i] = result{res, err, time.Since(start)}
				})
			}
			wg.Wait()
			var slowest time.Duration
			for i, c := range cases {
				r := results[i]
				limit := c.wait + redisTimeout + time.Second
				slowest = max(slowest, r.took-c.wait)
				switch {
				case r.err != nil:
					t.Errorf("%s: no answer after %v: %v", c.name, r.took, r.err)
					continue
				case r.took > limit:
					t.Errorf("%s: answered %d after %v, want an answer within %v", c.name, r.res.Status, r.took.Round(time.Millisecond), limit)
				}
				if c.may200 && r.res.Status == http.StatusOK {
					var pr pollResult
					if err := json.Unmarshal(r.res.Body, &pr); err != nil || pr.Cursor == "" {
						t.Errorf("%s: 200 that is no poll answer: %s", c.name, r.res)
					}
					continue
				}
				if r.res.Status != http.StatusServiceUnavailable || r.res.Header.Get("Retry-After") == "" {
					t.Errorf("%s: answered %s with Retry-After %q, want 503 with Retry-After", c.name, r.res, r.res.Header.Get("Retry-After"))
					continue
				}
				checkErrorShape(t, r.res, http.StatusServiceUnavailable, "unavailable")
			}
			t.Logf("slowest answer beyond its wait: %v", slowest.Round(time.Millisecond))

			srv.Resume()
			eventually(t, 10*time.Second, func() bool {
				res, err := do(hc, "GET", in.base+"/v1/unread", user, nil, 5*time.Second)
				return err == nil && res.Status == http.StatusOK
			}, func() string { return "GET /v1/unread to answer 200 once Redis goes on" })
		})
	}
}
