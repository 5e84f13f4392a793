package poll

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"pollbox/internal/rawhttp"
	"pollbox/internal/redistest"
)

// commandStats reads INFO commandstats: calls per command.
func (s *stack) commandStats(t testing.TB) map[string]int64 {
	t.Helper()
	info, err := s.rdb.Info(context.Background(), "commandstats").Result()
	if err != nil {
		t.Fatal(err)
	}
	calls := map[string]int64{}
	for _, l := range strings.Split(info, "\n") {
		name, rest, ok := strings.Cut(strings.TrimSpace(l), ":")
		if !ok || !strings.HasPrefix(name, "cmdstat_") {
			continue
		}
		v, _, _ := strings.Cut(strings.TrimPrefix(rest, "calls="), ",")
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			t.Fatalf("commandstats line %q: %v", l, err)
		}
		calls[strings.TrimPrefix(name, "cmdstat_")] = n
	}
	return calls
}

// commandDelta is what was sent between two readings of commandStats:
// the EXISTS calls, and the calls of every other command but INFO (the
// readings' own).
type commandDelta struct {
	exists int64
	other  map[string]int64
}

func (d commandDelta) others() int64 {
	var n int64
	for _, v := range d.other {
		n += v
	}
	return n
}

func (d commandDelta) String() string {
	names := make([]string, 0, len(d.other))
	for k := range d.other {
		names = append(names, k)
	}
	sort.Strings(names)
	var b strings.Builder
	fmt.Fprintf(&b, "exists=%d", d.exists)
	for _, k := range names {
		fmt.Fprintf(&b, " %s=%d", k, d.other[k])
	}
	return b.String()
}

func diffStats(a, b map[string]int64) commandDelta {
	d := commandDelta{exists: b["exists"] - a["exists"], other: map[string]int64{}}
	for k, v := range b {
		if k == "exists" || k == "info" || v == a[k] {
			continue
		}
		d.other[k] = v - a[k]
	}
	return d
}

// TestSessionRecheckThousandPolls: 1,000 waiting polls share 100 login
// sessions (10 polls per token) on a Redis of the test's own, so that
// INFO commandstats shows everything the instance sends. While they wait,
// each re-check interval costs one round of 100 EXISTS (one per distinct
// token) and nothing per poll. Logging one token out ends its 10 polls
// with 401 session_expired within the interval, and only those: the
// other 990 keep waiting, re-checked with 99 EXISTS a round, and answer
// a publish. Parked and not.
func TestSessionRecheckThousandPolls(t *testing.T) {
	// Not parallel: it times rounds and holds 2,000 sockets.
	for _, mode := range []string{"on", "off"} {
		t.Run("park="+mode, func(t *testing.T) { sessionRecheckThousand(t, mode) })
	}
}

func sessionRecheckThousand(t *testing.T, park string) {
	const (
		tokens   = 100
		perToken = 10
		every    = 300 * time.Millisecond
		margin   = 700 * time.Millisecond // for the round itself and the answer
		window   = 4                      // intervals measured
	)
	rs := redistest.Start(t, redistest.Options{})
	s := newStack(t, stackOptions{redisURL: rs.URL(), sessions: true, park: park,
		cfg: Config{SessionRecheck: every}})
	ctx := context.Background()
	users := make([]string, tokens)
	toks := make([]string, tokens)
	for i := range toks {
		users[i] = fmt.Sprintf("user%03d", i)
		toks[i] = s.token(t, users[i])
		if err := s.rdb.Set(ctx, s.prefix+"online-token-"+toks[i], "{}", time.Hour).Err(); err != nil {
			t.Fatal(err)
		}
	}
	// An empty inbox and no cursor: every poll waits.
	conns := make([][]rawConn, tokens)
	for i := range toks {
		for range perToken {
			rc := s.dialRaw(t)
			rc.Send(t, rawhttp.Get("/v1/poll?timeout=60", toks[i]))
			conns[i] = append(conns[i], rc)
		}
	}
	started := time.Now()
	s.waitPolls(t, tokens*perToken)
	s.waitWatched(t, tokens)
	t.Logf("park=%s: %d polls of %d tokens began within %v of the last request sent", park, tokens*perToken, tokens, time.Since(started).Round(time.Millisecond))

	// The polls' own commands (reads, subscriptions) are over once an
	// interval passes with nothing but EXISTS.
	quietBy := time.Now().Add(10 * time.Second)
	for prev := s.commandStats(t); ; {
		time.Sleep(every)
		cur := s.commandStats(t)
		d := diffStats(prev, cur)
		if d.others() == 0 {
			break
		}
		if time.Now().After(quietBy) {
			t.Fatalf("still commands other than EXISTS after 10 s: %v", d)
		}
		prev = cur
	}

	// measure reads the commands of n intervals, taken halfway between
	// two rounds so that no round straddles a reading.
	measure := func(n int) (commandDelta, time.Duration) {
		t.Helper()
		prev := s.commandStats(t)["exists"]
		for by := time.Now().Add(every + 5*time.Second); s.commandStats(t)["exists"] == prev; {
			if time.Now().After(by) {
				t.Fatal("no session round within the interval")
			}
			time.Sleep(5 * time.Millisecond)
		}
		time.Sleep(every / 2)
		a, from := s.commandStats(t), time.Now()
		time.Sleep(time.Duration(n) * every)
		b, to := s.commandStats(t), time.Now()
		return diffStats(a, b), to.Sub(from)
	}
	checkRounds := func(d commandDelta, took time.Duration, perRound int64) {
		t.Helper()
		rounds := d.exists / perRound
		intervals := took.Seconds() / every.Seconds()
		t.Logf("park=%s: %v in %v: %d rounds of %d EXISTS over %.2f intervals of %v",
			park, d, took.Round(time.Millisecond), rounds, perRound, intervals, every)
		if d.exists%perRound != 0 {
			t.Errorf("%d EXISTS in %v, not whole rounds of %d (one per distinct token)", d.exists, took, perRound)
		}
		if float64(rounds) != math.Round(intervals) {
			t.Errorf("%d rounds in %v, want one per %v: %.0f", rounds, took, every, math.Round(intervals))
		}
		if d.others() != 0 {
			t.Errorf("commands besides the rounds' EXISTS while polls waited: %v", d)
		}
	}
	d, took := measure(window)
	checkRounds(d, took, tokens)

	// Token 0 logs out: its 10 polls end with 401 session_expired within
	// the interval, nobody else's.
	type ended struct {
		r   response
		err error
		at  time.Time
	}
	loggedOut := time.Now()
	if err := s.rdb.Del(ctx, s.prefix+"online-token-"+toks[0]).Err(); err != nil {
		t.Fatal(err)
	}
	results := make(chan ended, perToken)
	for _, rc := range conns[0] {
		go func() {
			r, err := rc.readErr(loggedOut.Add(every + margin))
			results <- ended{r, err, time.Now()}
		}()
	}
	var latest time.Duration
	for range perToken {
		e := <-results
		if e.err != nil {
			t.Fatalf("a poll of the logged-out token: %v (logged out %v before)", e.err, e.at.Sub(loggedOut))
		}
		checkError(t, e.r, http.StatusUnauthorized, "session_expired")
		latest = max(latest, e.at.Sub(loggedOut))
	}
	t.Logf("park=%s: the logged-out token's %d polls all ended within %v of the logout (interval %v)",
		park, perToken, latest.Round(time.Millisecond), every)
	s.waitWatched(t, tokens-1)

	// The others wait on, re-checked with one EXISTS per remaining token.
	d, took = measure(2)
	checkRounds(d, took, tokens-1)
	for i := 1; i < tokens; i++ {
		for _, rc := range conns[i] {
			if !rc.quiet(t) {
				r, err := rc.readErr(time.Now().Add(time.Second))
				t.Fatalf("a poll of %s ended although its session lives: %d %s %v", users[i], r.status, clipBody(r.body), err)
			}
		}
	}
	for i := 1; i <= 2; i++ {
		id := s.publish(t, `{"to":["`+users[i]+`"],"title":"still here"}`)[0]
		for _, rc := range conns[i] {
			r := rc.read(t, 10*time.Second)
			if r.status != http.StatusOK {
				t.Fatalf("%s's poll: %d %s", users[i], r.status, clipBody(r.body))
			}
			if p := decode[pollBody](t, r); len(p.Messages) != 1 || p.Messages[0].ID != id {
				t.Fatalf("%s got %s, want message %s", users[i], clipBody(r.body), id)
			}
		}
	}
}
