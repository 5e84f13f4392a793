package poll

import (
	"context"
	"net/http"
	"testing"
	"time"
)

// TestSessionCheck: with a session key prefix, a token works only while its
// Redis key exists, and deleting the key (logout) ends that token's waiting
// poll with 401 session_expired at the next re-check.
func TestSessionCheck(t *testing.T) {
	t.Parallel()
	const recheck = 200 * time.Millisecond
	s := newStack(t, stackOptions{cfg: Config{SessionRecheck: recheck}, sessions: true})
	ctx := context.Background()
	alice, bob := s.token(t, "alice"), s.token(t, "bob")
	for _, tok := range []string{alice, bob} {
		if err := s.rdb.Set(ctx, s.prefix+"online-token-"+tok, "{}", time.Hour).Err(); err != nil {
			t.Fatal(err)
		}
	}
	aliceCur, bobCur := s.cursor(t, alice), s.cursor(t, bob)

	type result struct {
		r   response
		err error
		at  time.Time
	}
	poll := func(tok, cur string) chan result {
		ch := make(chan result, 1)
		go func() {
			r, err := doErr(ctx, s.url, request{method: "GET", path: "/v1/poll?timeout=30&cursor=" + cur, token: tok})
			ch <- result{r, err, time.Now()}
		}()
		return ch
	}
	aliceDone := poll(alice, aliceCur)
	bobDone := poll(bob, bobCur)
	s.waitPolls(t, 2)

	// Logout: the key goes away.
	loggedOut := time.Now()
	if err := s.rdb.Del(ctx, s.prefix+"online-token-"+alice).Err(); err != nil {
		t.Fatal(err)
	}
	select {
	case res := <-aliceDone:
		if res.err != nil {
			t.Fatal(res.err)
		}
		checkError(t, res.r, http.StatusUnauthorized, "session_expired")
		if d := res.at.Sub(loggedOut); d > recheck+time.Second {
			t.Errorf("poll ended %v after logout, want within %v", d, recheck+time.Second)
		}
	case <-time.After(recheck + 5*time.Second):
		t.Fatal("alice's poll still waits after her session key was deleted")
	}

	// Bob is still logged in: his poll keeps waiting, then gets his message.
	select {
	case res := <-bobDone:
		t.Fatalf("bob's poll ended although his session lives: %d %s %v", res.r.status, res.r.body, res.err)
	default:
	}
	id := s.publish(t, `{"to":["bob"],"title":"still here"}`)[0]
	select {
	case res := <-bobDone:
		if res.err != nil || res.r.status != 200 {
			t.Fatalf("bob's poll: %v %d %s", res.err, res.r.status, res.r.body)
		}
		if p := decode[pollBody](t, res.r); len(p.Messages) != 1 || p.Messages[0].ID != id {
			t.Fatalf("bob got %+v, want %s", p.Messages, id)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("bob's poll did not answer the publish")
	}

	// Any request with a token whose key is missing is refused at once.
	for _, path := range []string{"/v1/unread", "/v1/poll?timeout=0", "/v1/messages"} {
		checkError(t, do(t, s.url, request{method: "GET", path: path, token: alice}), http.StatusUnauthorized, "session_expired")
	}
	never := s.token(t, "carol")
	checkError(t, do(t, s.url, request{method: "GET", path: "/v1/unread", token: never}), http.StatusUnauthorized, "session_expired")
	// API keys have no login session and are not checked.
	if r := do(t, s.url, request{method: "POST", path: "/v1/publish", token: apiKeySecret, body: `{"to":["bob"],"title":"x"}`}); r.status != 201 {
		t.Fatalf("API key publish with sessions on: %d %s", r.status, r.body)
	}
}
