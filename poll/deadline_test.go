package poll

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"pollbox/inbox"
)

// hungStore is a store whose every call hangs until its context ends, as
// calls to a frozen Redis do when nothing bounds them but the caller's
// deadline. A poll's wait passes normally first.
type hungStore struct{}

// errHungTooLong ends a hung call that no deadline ended, so that the test
// fails rather than hangs.
var errHungTooLong = errors.New("store call still hanging after 10 s")

func hang(ctx context.Context) error {
	select {
	case <-ctx.Done():
		return context.Cause(ctx)
	case <-time.After(10 * time.Second):
		return errHungTooLong
	}
}

func (hungStore) Poll(ctx context.Context, r inbox.Reader, o inbox.PollOptions) (inbox.PollResult, error) {
	select {
	case <-time.After(o.Wait):
	case <-ctx.Done():
		return inbox.PollResult{}, context.Cause(ctx)
	}
	return inbox.PollResult{}, hang(ctx)
}

func (hungStore) PublishWith(ctx context.Context, t inbox.Target, d inbox.Draft, o inbox.PublishOptions) (inbox.PublishResult, error) {
	return inbox.PublishResult{}, hang(ctx)
}

func (hungStore) Withdraw(ctx context.Context, by inbox.Owner, admin bool, id string) (string, error) {
	return "", hang(ctx)
}

func (hungStore) Sent(ctx context.Context, o inbox.Owner, q inbox.SentQuery) (inbox.SentResult, error) {
	return inbox.SentResult{}, hang(ctx)
}

func (hungStore) SentDetail(ctx context.Context, by inbox.Owner, admin bool, id string, q inbox.SentDetailQuery) (inbox.SentDetailResult, error) {
	return inbox.SentDetailResult{}, hang(ctx)
}

func (hungStore) History(ctx context.Context, r inbox.Reader, q inbox.HistoryQuery) (inbox.HistoryResult, error) {
	return inbox.HistoryResult{}, hang(ctx)
}

func (hungStore) UnreadCounts(ctx context.Context, r inbox.Reader) (inbox.Counts, string, error) {
	return inbox.Counts{}, "", hang(ctx)
}

func (hungStore) MarkReadCounts(ctx context.Context, r inbox.Reader, ids []string, all bool) (inbox.Counts, error) {
	return inbox.Counts{}, hang(ctx)
}

func (hungStore) Delete(ctx context.Context, r inbox.Reader, id string) error { return hang(ctx) }

func (hungStore) Ping(ctx context.Context) error { return hang(ctx) }

// hungSessions is a session check against a frozen Redis.
type hungSessions struct{}

func (hungSessions) SessionAlive(ctx context.Context, token string) (bool, error) {
	return false, hang(ctx)
}

func (hungSessions) SessionsAlive(ctx context.Context, tokens []string) ([]bool, error) {
	return nil, hang(ctx)
}

// TestRequestsAnswerByTheirDeadline: whatever the store does, every
// request answers 503 with Retry-After within its wait plus StoreTimeout,
// the session check included (which fails a poll before it waits), and a
// poll is not cut short before its wait is over.
func TestRequestsAnswerByTheirDeadline(t *testing.T) {
	t.Parallel()
	const budget = time.Second
	for _, sessions := range []bool{false, true} {
		ac := AuthConfig{}
		if sessions {
			ac.Sessions = hungSessions{}
		}
		h, _, secret := newHandler(t, Config{StoreTimeout: budget}, ac, hungStore{})
		srv := httptest.NewServer(h)
		t.Cleanup(srv.Close)
		alice := signHS(t, jwtHS256, secret, userClaims("alice"))
		cases := []struct {
			rq   request
			wait time.Duration
		}{
			{request{method: "GET", path: "/v1/poll?timeout=0", token: alice}, 0},
			{request{method: "GET", path: "/v1/poll?timeout=1", token: alice}, time.Second},
			{request{method: "GET", path: "/v1/messages", token: alice}, 0},
			{request{method: "GET", path: "/v1/unread", token: alice}, 0},
			{request{method: "POST", path: "/v1/read", token: alice, body: `{"all":true}`}, 0},
			{request{method: "DELETE", path: "/v1/messages/u.1-0", token: alice}, 0},
			{request{method: "POST", path: "/v1/publish", token: apiKeySecret, body: `{"to":["bob"],"title":"x"}`}, 0},
			{request{method: "DELETE", path: "/v1/publish/p.k.billing.1-0", token: apiKeySecret}, 0},
			{request{method: "GET", path: "/v1/sent", token: apiKeySecret}, 0},
			{request{method: "GET", path: "/v1/sent/p.k.billing.1-0", token: apiKeySecret}, 0},
			{request{method: "GET", path: "/readyz"}, 0},
		}
		var wg sync.WaitGroup
		for _, c := range cases {
			wg.Go(func() {
				ctx, cancel := context.WithTimeout(context.Background(), c.wait+budget+15*time.Second)
				defer cancel()
				start := time.Now()
				r, err := doErr(ctx, srv.URL, c.rq)
				took := time.Since(start)
				switch {
				case err != nil:
					t.Errorf("sessions=%v: %s %s: no answer after %v: %v", sessions, c.rq.method, c.rq.path, took, err)
				case r.status != http.StatusServiceUnavailable || r.header.Get("Retry-After") == "":
					t.Errorf("sessions=%v: %s %s: %d %s with Retry-After %q, want 503 with Retry-After",
						sessions, c.rq.method, c.rq.path, r.status, r.body, r.header.Get("Retry-After"))
				case took > c.wait+budget || took < c.wait && !sessions:
					t.Errorf("sessions=%v: %s %s: answered after %v, want from %v to %v",
						sessions, c.rq.method, c.rq.path, took, c.wait, c.wait+budget)
				}
			})
		}
		wg.Wait()
	}
}
