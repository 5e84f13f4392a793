package poll

import (
	"context"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// countingSessions wraps a session checker and records its calls: how
// many single checks (one per request) and the tokens of every batch.
type countingSessions struct {
	SessionChecker
	single atomic.Int64
	rounds chan []string
}

func (c *countingSessions) SessionAlive(ctx context.Context, token string) (bool, error) {
	c.single.Add(1)
	return c.SessionChecker.SessionAlive(ctx, token)
}

func (c *countingSessions) SessionsAlive(ctx context.Context, tokens []string) ([]bool, error) {
	select {
	case c.rounds <- slices.Sorted(slices.Values(tokens)):
	default:
	}
	return c.SessionChecker.SessionsAlive(ctx, tokens)
}

// watched reads how many sessions the stack's session watch holds.
func (s *stack) watched(t testing.TB) float64 {
	t.Helper()
	r := do(t, s.url, request{method: "GET", path: "/metrics"})
	for _, l := range strings.Split(string(r.body), "\n") {
		if v, ok := strings.CutPrefix(l, "pollbox_sessions_watched "); ok {
			n, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatalf("/metrics has no pollbox_sessions_watched: %d %s", r.status, clipBody(r.body))
	return 0
}

// waitWatched waits until the session watch holds want sessions: a poll
// leaves it when its handler returns, just after its answer went out.
func (s *stack) waitWatched(t testing.TB, want float64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for s.watched(t) != want {
		if time.Now().After(deadline) {
			t.Fatalf("%v sessions watched after 10 s, want %v", s.watched(t), want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// pollGroup is a set of waiting polls of one token.
type pollGroup struct {
	results chan pollResult
	cancel  context.CancelFunc
	wg      sync.WaitGroup
}

type pollResult struct {
	r   response
	err error
	at  time.Time
}

// startPolls starts n polls of tok from cursor cur, each waiting 30 s.
func startPolls(s *stack, tok, cur string, n int) *pollGroup {
	ctx, cancel := context.WithCancel(context.Background())
	g := &pollGroup{results: make(chan pollResult, n), cancel: cancel}
	for range n {
		g.wg.Go(func() {
			r, err := doErr(ctx, s.url, request{method: "GET", path: "/v1/poll?timeout=30&cursor=" + cur, token: tok})
			g.results <- pollResult{r, err, time.Now()}
		})
	}
	return g
}

// TestSessionWatchSharesOneRound: the waiting polls of an instance share
// one re-check round per interval, with one key per distinct token however
// many polls wait with it, and no per-request check beyond the one at the
// start. Logging a user out ends all of that token's polls with 401
// session_expired within an interval, while other tokens' polls wait on;
// polls that end in any way (logged out, answered, cut) leave the watch.
func TestSessionWatchSharesOneRound(t *testing.T) {
	t.Parallel()
	const recheck = 200 * time.Millisecond
	const perToken = 8
	cs := &countingSessions{rounds: make(chan []string, 1024)}
	s := newStack(t, stackOptions{cfg: Config{SessionRecheck: recheck}, sessions: true,
		wrapSessions: func(c SessionChecker) SessionChecker { cs.SessionChecker = c; return cs }})
	ctx := context.Background()
	users := []string{"alice", "bob", "carol"}
	toks := map[string]string{}
	for _, u := range users {
		toks[u] = s.token(t, u)
		if err := s.rdb.Set(ctx, s.prefix+"online-token-"+toks[u], "{}", time.Hour).Err(); err != nil {
			t.Fatal(err)
		}
	}
	groups := map[string]*pollGroup{}
	for _, u := range users {
		groups[u] = startPolls(s, toks[u], s.cursor(t, toks[u]), perToken)
	}
	t.Cleanup(func() {
		for _, g := range groups {
			g.cancel()
		}
	})
	s.waitPolls(t, len(users)*perToken)
	singles := cs.single.Load() // one per request so far: 3 cursors, 24 polls
	if want := int64(len(users) * (perToken + 1)); singles != want {
		t.Errorf("%d single session checks, want %d (one per request)", singles, want)
	}

	// A round may have taken its tokens before the last poll registered:
	// drop the rounds so far and the next one, then watch three.
	nextRound := func() []string {
		t.Helper()
		select {
		case r := <-cs.rounds:
			return r
		case <-time.After(recheck + 5*time.Second):
			t.Fatal("no session round within the interval")
			return nil
		}
	}
	for len(cs.rounds) > 0 {
		<-cs.rounds
	}
	nextRound()
	want := slices.Sorted(slices.Values([]string{toks["alice"], toks["bob"], toks["carol"]}))
	start := time.Now()
	for range 3 {
		if r := nextRound(); !slices.Equal(r, want) {
			t.Fatalf("a round checked %d tokens, want the %d distinct tokens once each", len(r), len(want))
		}
	}
	// Three rounds take two intervals at least: no more than one per interval.
	if took := time.Since(start); took < 2*recheck*9/10 {
		t.Errorf("three rounds within %v, want one per %v", took, recheck)
	}
	if n := cs.single.Load(); n != singles {
		t.Errorf("%d single session checks while polls waited, want none", n-singles)
	}
	if n := s.watched(t); n != 3 {
		t.Errorf("%v sessions watched, want 3", n)
	}

	// Alice logs out: all her polls end, nobody else's.
	loggedOut := time.Now()
	if err := s.rdb.Del(ctx, s.prefix+"online-token-"+toks["alice"]).Err(); err != nil {
		t.Fatal(err)
	}
	for range perToken {
		select {
		case res := <-groups["alice"].results:
			if res.err != nil {
				t.Fatal(res.err)
			}
			checkError(t, res.r, http.StatusUnauthorized, "session_expired")
			if d := res.at.Sub(loggedOut); d > recheck+time.Second {
				t.Errorf("a poll ended %v after logout, want within %v", d, recheck+time.Second)
			}
		case <-time.After(recheck + 5*time.Second):
			t.Fatal("alice's polls still wait after her session key was deleted")
		}
	}
	s.waitWatched(t, 2)
	for len(cs.rounds) > 0 {
		<-cs.rounds
	}
	nextRound()
	if r := nextRound(); !slices.Equal(r, slices.Sorted(slices.Values([]string{toks["bob"], toks["carol"]}))) {
		t.Errorf("after alice's logout a round checked %d tokens, want bob's and carol's", len(r))
	}
	for _, u := range []string{"bob", "carol"} {
		select {
		case res := <-groups[u].results:
			t.Fatalf("%s's poll ended although the session lives: %d %s %v", u, res.r.status, res.r.body, res.err)
		default:
		}
	}

	// Bob's polls are answered, carol's are cut by the client: both leave.
	id := s.publish(t, `{"to":["bob"],"title":"still here"}`)[0]
	for range perToken {
		select {
		case res := <-groups["bob"].results:
			if res.err != nil || res.r.status != 200 {
				t.Fatalf("bob's poll: %v %d %s", res.err, res.r.status, res.r.body)
			}
			if p := decode[pollBody](t, res.r); len(p.Messages) != 1 || p.Messages[0].ID != id {
				t.Fatalf("bob got %+v, want %s", p.Messages, id)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("bob's polls did not answer the publish")
		}
	}
	groups["carol"].cancel()
	groups["carol"].wg.Wait()
	s.waitWatched(t, 0)
}

// TestSessionWatchNoGoroutinePerPoll: a waiting poll with the session check
// on runs no goroutine of its own: n polls add no more goroutines than n
// polls with the check off (the connections' own), give or take the
// watch's one.
func TestSessionWatchNoGoroutinePerPoll(t *testing.T) {
	// Not parallel: it counts the process's goroutines.
	const n = 40
	extra := func(sessions bool) int {
		t.Helper()
		s := newStack(t, stackOptions{cfg: Config{SessionRecheck: time.Hour}, sessions: sessions})
		users := []string{"alice", "bob", "carol", "dave"}
		var curs, toks []string
		for _, u := range users {
			tok := s.token(t, u)
			if err := s.rdb.Set(context.Background(), s.prefix+"online-token-"+tok, "{}", time.Hour).Err(); err != nil {
				t.Fatal(err)
			}
			toks = append(toks, tok)
			curs = append(curs, s.cursor(t, tok))
		}
		before := settledGoroutines()
		var gs []*pollGroup
		for i := range users {
			gs = append(gs, startPolls(s, toks[i], curs[i], n/len(users)))
		}
		s.waitPolls(t, n)
		after := settledGoroutines()
		for _, g := range gs {
			g.cancel()
			g.wg.Wait()
		}
		return after - before
	}
	off := extra(false)
	on := extra(true)
	t.Logf("goroutines for %d waiting polls: %d with the session check off, %d with it on", n, off, on)
	if on-off > n/4 {
		t.Errorf("%d waiting polls with the session check on run %d more goroutines than with it off, want about 1",
			n, on-off)
	}
}
