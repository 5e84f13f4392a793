package poll

import (
	"context"
	"math"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"pollbox/internal/redistest"
)

// metricNames are the series /metrics must expose.
var metricNames = []string{
	"pollbox_polls_waiting", "pollbox_polls_total", "pollbox_messages_published_total",
	"pollbox_messages_delivered_total", "pollbox_publish_seconds", "pollbox_delivery_seconds",
	"pollbox_redis_errors_total", "pollbox_hub_reconnects_total",
	"pollbox_scheduled_total", "pollbox_revoked_total", "pollbox_schedule_lag_seconds",
}

// scrape reads /metrics into "name{labels}" → value, and checks that every
// series of metricNames is declared.
func scrape(t testing.TB, base string) map[string]float64 {
	t.Helper()
	r := do(t, base, request{method: "GET", path: "/metrics"})
	if r.status != http.StatusOK {
		t.Fatalf("/metrics: %d %s", r.status, r.body)
	}
	out := map[string]float64{}
	types := map[string]bool{}
	for _, l := range strings.Split(string(r.body), "\n") {
		if f := strings.Fields(l); len(f) == 4 && f[0] == "#" && f[1] == "TYPE" {
			types[f[2]] = true
		}
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		i := strings.LastIndexByte(l, ' ')
		v, err := strconv.ParseFloat(l[i+1:], 64)
		if i < 0 || err != nil {
			t.Fatalf("unparsable metrics line %q", l)
		}
		out[l[:i]] = v
	}
	for _, n := range metricNames {
		if !types[n] {
			t.Errorf("/metrics does not declare %s", n)
		}
	}
	return out
}

// delta returns after-before for each named series.
func delta(before, after map[string]float64, names ...string) map[string]float64 {
	d := map[string]float64{}
	for _, n := range names {
		d[n] = after[n] - before[n]
	}
	return d
}

// TestMetricsMove publishes and polls and checks that the series follow.
func TestMetricsMove(t *testing.T) {
	t.Parallel()
	s := newStack(t, stackOptions{})
	alice := s.token(t, "alice")
	cur := s.cursor(t, alice)
	// One poll before, so the polls_total family exists in the first scrape.
	s.doLogged(t, request{method: "GET", path: "/v1/poll?timeout=0", token: alice})
	s.waitPolls(t, 1) // that poll's signal
	before := scrape(t, s.url)

	type result struct {
		r   response
		err error
	}
	done := make(chan result, 1)
	go func() {
		r, err := doErr(context.Background(), s.url, request{method: "GET", path: "/v1/poll?timeout=30&cursor=" + cur, token: alice})
		done <- result{r, err}
	}()
	s.waitPolls(t, 1)
	during := scrape(t, s.url)
	if d := during["pollbox_polls_waiting"] - before["pollbox_polls_waiting"]; d != 1 {
		t.Errorf("polls_waiting moved by %v while one poll waits, want 1", d)
	}

	s.publish(t, `{"to":["alice","bob","carol"],"title":"count me"}`)
	res := <-done
	if res.err != nil || res.r.status != 200 {
		t.Fatalf("poll: %v %d %s", res.err, res.r.status, res.r.body)
	}
	if p := decode[pollBody](t, res.r); len(p.Messages) != 1 {
		t.Fatalf("poll got %d messages, want 1", len(p.Messages))
	}
	s.waitLogged(t, res.r)

	after := scrape(t, s.url)
	want := map[string]float64{
		"pollbox_polls_waiting":                   0,
		`pollbox_polls_total{outcome="messages"}`: 1,
		"pollbox_messages_published_total":        3,
		"pollbox_messages_delivered_total":        1,
		"pollbox_publish_seconds_count":           1,
		"pollbox_delivery_seconds_count":          1,
		"pollbox_redis_errors_total":              0,
		"pollbox_hub_reconnects_total":            0,
	}
	for name, d := range delta(before, after, keys(want)...) {
		if d != want[name] {
			t.Errorf("%s moved by %v, want %v", name, d, want[name])
		}
	}
	if after["pollbox_publish_seconds_sum"] <= before["pollbox_publish_seconds_sum"] {
		t.Error("pollbox_publish_seconds_sum did not grow")
	}
}

// waitLogged waits for the access log line of a response. It is written
// once the handler has returned, and so after its deferred bookkeeping
// (poll slot, waiting gauge).
func (s *stack) waitLogged(t testing.TB, r response) {
	t.Helper()
	s.logs.waitFor(t, `"req_id":"`+r.header.Get("X-Request-Id")+`"`)
}

func (s *stack) doLogged(t testing.TB, rq request) response {
	t.Helper()
	r := do(t, s.url, rq)
	s.waitLogged(t, r)
	return r
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

// TestMetricsRedisOutage kills a private Redis: requests fail with 503 and
// count as Redis errors; after a restart the hub resubscribes and counts a
// reconnect.
func TestMetricsRedisOutage(t *testing.T) {
	t.Parallel()
	rs := redistest.Start(t, redistest.Options{})
	s := newStack(t, stackOptions{redisURL: rs.URL()})
	alice := s.token(t, "alice")
	if r := do(t, s.url, request{method: "GET", path: "/readyz"}); r.status != 200 {
		t.Fatalf("/readyz with Redis up: %d %s", r.status, r.body)
	}
	s.doLogged(t, request{method: "GET", path: "/v1/poll?timeout=0", token: alice}) // creates polls_total
	// A channel for the hub to hold (as a waiting poll's would), so that
	// it has a subscription to lose and restore.
	w := s.store.Hub().Register("outage")
	defer s.store.Hub().Unregister(w)
	for deadline := time.Now().Add(5 * time.Second); !s.store.Hub().Confirmed("outage"); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the hub did not subscribe within 5 s")
		}
	}
	before := scrape(t, s.url)

	rs.Kill()
	r := do(t, s.url, request{method: "GET", path: "/readyz"})
	checkError(t, r, http.StatusServiceUnavailable, "unavailable")
	checkRetryAfter(t, r, 1, 60)
	r = do(t, s.url, request{method: "GET", path: "/v1/poll?timeout=0", token: alice})
	checkError(t, r, http.StatusServiceUnavailable, "unavailable")
	mid := scrape(t, s.url)
	if d := mid["pollbox_redis_errors_total"] - before["pollbox_redis_errors_total"]; d != 2 {
		t.Errorf("redis_errors_total moved by %v over two failed requests, want 2", d)
	}
	if d := mid[`pollbox_polls_total{outcome="error"}`] - before[`pollbox_polls_total{outcome="error"}`]; d != 1 {
		t.Errorf(`polls_total{outcome="error"} moved by %v, want 1`, d)
	}

	rs.Restart(t)
	deadline := time.After(20 * time.Second)
	for reconnected := false; !reconnected; {
		select {
		case e := <-s.hubEvents:
			reconnected = e == "reconnected"
		case <-deadline:
			t.Fatal("the hub did not resubscribe within 20 s of the restart")
		}
	}
	after := scrape(t, s.url)
	if d := after["pollbox_hub_reconnects_total"] - before["pollbox_hub_reconnects_total"]; d != 1 {
		t.Errorf("hub_reconnects_total moved by %v, want 1", d)
	}
	if r := do(t, s.url, request{method: "GET", path: "/readyz"}); r.status != 200 {
		t.Fatalf("/readyz after the restart: %d %s", r.status, r.body)
	}
}

// TestMetricsNotices: the inbox's publish transitions (Notice, wired to
// inbox.Options.OnNotice) move the scheduling and revoke series.
func TestMetricsNotices(t *testing.T) {
	t.Parallel()
	m := NewMetrics()
	h := New(Config{}, &fakeStore{}, mustAuthenticator(t, AuthConfig{HMACSecret: make([]byte, 32), Algorithms: []string{"HS256"}}), m, zerolog.Nop())
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	// One poll, so that every vector has a series, as on a running server.
	tok := signHS(t, jwtHS256, make([]byte, 32), userClaims("alice"))
	if r := do(t, srv.URL, request{method: "GET", path: "/v1/poll?timeout=0", token: tok}); r.status != 200 {
		t.Fatalf("poll: %d %s", r.status, r.body)
	}
	before := scrape(t, srv.URL)
	if _, ok := before[`pollbox_scheduled_total{outcome="delivered"}`]; !ok {
		t.Errorf("pollbox_scheduled_total{outcome=\"delivered\"} is not listed before the first delivery")
	}
	m.Notice("delivered", 300*time.Millisecond)
	m.Notice("delivered", 2*time.Second)
	m.Notice("cancelled", 0)
	m.Notice("revoked", 0)
	m.Notice("revoked", 0)
	names := []string{`pollbox_scheduled_total{outcome="delivered"}`, `pollbox_scheduled_total{outcome="cancelled"}`,
		"pollbox_revoked_total", "pollbox_schedule_lag_seconds_count", `pollbox_schedule_lag_seconds_bucket{le="0.5"}`,
		"pollbox_schedule_lag_seconds_sum"}
	got := delta(before, scrape(t, srv.URL), names...)
	want := map[string]float64{names[0]: 2, names[1]: 1, names[2]: 2, names[3]: 2, names[4]: 1, names[5]: 2.3}
	for _, n := range names {
		if math.Abs(got[n]-want[n]) > 1e-9 {
			t.Errorf("%s moved by %v, want %v", n, got[n], want[n])
		}
	}
}
