package poll

import (
	"context"
	"net/http"
	"strconv"
	"testing"
	"time"
)

func checkRetryAfter(t testing.TB, r response, lo, hi int) {
	t.Helper()
	ra := r.header.Get("Retry-After")
	n, err := strconv.Atoi(ra)
	if err != nil || n < lo || n > hi {
		t.Fatalf("Retry-After %q, want whole seconds in [%d, %d]", ra, lo, hi)
	}
}

// TestPollsPerUserLimit opens MaxPollsPerUser polls for one user: the next
// one is refused with 429 while the others keep waiting, and all of them
// answer when a message arrives.
func TestPollsPerUserLimit(t *testing.T) {
	t.Parallel()
	const max = 20
	s := newStack(t, stackOptions{cfg: Config{MaxPollsPerUser: max}})
	alice := s.token(t, "alice")
	cur := s.cursor(t, alice)

	type result struct {
		r   response
		err error
	}
	results := make(chan result, max)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	for range max {
		go func() {
			r, err := doErr(ctx, s.url, request{method: "GET", path: "/v1/poll?timeout=30&cursor=" + cur, token: alice})
			results <- result{r, err}
		}()
	}
	s.waitPolls(t, max)

	r := do(t, s.url, request{method: "GET", path: "/v1/poll?timeout=30&cursor=" + cur, token: alice})
	checkError(t, r, http.StatusTooManyRequests, "too_many_polls")
	checkRetryAfter(t, r, 1, 60)

	// The limit is per user: someone else still polls.
	if r := do(t, s.url, request{method: "GET", path: "/v1/poll?timeout=0", token: s.token(t, "bob")}); r.status != 200 {
		t.Fatalf("bob's poll: %d %s", r.status, r.body)
	}
	select {
	case res := <-results:
		t.Fatalf("a waiting poll answered before any message: %+v %v", res.r.status, res.err)
	default:
	}

	id := s.publish(t, `{"to":["alice"],"title":"wake up"}`)[0]
	for range max {
		select {
		case res := <-results:
			if res.err != nil {
				t.Fatal(res.err)
			}
			if res.r.status != 200 {
				t.Fatalf("waiting poll: %d %s", res.r.status, res.r.body)
			}
			p := decode[pollBody](t, res.r)
			if len(p.Messages) != 1 || p.Messages[0].ID != id {
				t.Fatalf("waiting poll got %+v, want message %s", p.Messages, id)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("waiting polls did not answer within 10 s of the publish")
		}
	}
}

// TestPublishRateLimit: a publisher over its rate gets 429 rate_limited
// with Retry-After, nothing is written, and other publishers are unaffected.
func TestPublishRateLimit(t *testing.T) {
	t.Parallel()
	// One publish per 10 s with a burst of 2: the third in a row is over.
	s := newStack(t, stackOptions{cfg: Config{PublishRate: 0.1, PublishBurst: 2}})
	body := `{"to":["alice"],"title":"x"}`
	for i := range 2 {
		if r := do(t, s.url, request{method: "POST", path: "/v1/publish", token: apiKeySecret, body: body}); r.status != 201 {
			t.Fatalf("publish %d: %d %s", i, r.status, r.body)
		}
	}
	r := do(t, s.url, request{method: "POST", path: "/v1/publish", token: apiKeySecret, body: body})
	checkError(t, r, http.StatusTooManyRequests, "rate_limited")
	checkRetryAfter(t, r, 1, 11)

	n, err := s.rdb.XLen(context.Background(), s.prefix+"inbox:{alice}").Result()
	if err != nil || n != 2 {
		t.Fatalf("inbox holds %d entries (%v), want 2: the refused publish wrote", n, err)
	}
	// Buckets are per publisher.
	boss := s.token(t, "boss", "admin")
	if r := do(t, s.url, request{method: "POST", path: "/v1/publish", token: boss, body: body}); r.status != 201 {
		t.Fatalf("another publisher: %d %s", r.status, r.body)
	}
}
