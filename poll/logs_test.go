package poll

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// TestLogsNeverContainTokens sends tokens in the header and in
// ?access_token=, valid and invalid, and checks the log for every token and
// every part of one; it also checks what the access log does record.
func TestLogsNeverContainTokens(t *testing.T) {
	t.Parallel()
	s := newStack(t, stackOptions{})
	good := s.token(t, "alice", "ops")
	other := s.token(t, "bob")
	forged := signHS(t, jwt.SigningMethodHS256, []byte("not the secret"), jwt.MapClaims{"sub": "mallory", "exp": time.Now().Add(time.Hour).Unix()})
	expired := signHS(t, jwt.SigningMethodHS256, s.secret, jwt.MapClaims{"sub": "alice", "exp": time.Now().Add(-time.Hour).Unix()})
	q := url.QueryEscape

	cases := []struct {
		name   string
		rq     request
		status int
		route  string
		user   string // "" when the request did not authenticate
		query  string // expected redacted query in the log, "" for none
	}{
		{"header token", request{method: "GET", path: "/v1/unread", token: good}, 200, "/v1/unread", "alice", ""},
		{"query without a token", request{method: "GET", path: "/v1/poll?timeout=0&_=17", token: good}, 200, "/v1/poll", "alice", "timeout=0&_=17"},
		{"escaped token name", request{method: "GET", path: "/v1/unread?%61ccess_token=" + q(good)}, 200, "/v1/unread", "alice", "access_token=REDACTED"},
		{"query token", request{method: "GET", path: "/v1/unread?_=1732550000000&access_token=" + q(other)}, 200, "/v1/unread", "bob", "_=1732550000000&access_token=REDACTED"},
		{"query token on poll", request{method: "GET", path: "/v1/poll?timeout=0&access_token=" + q(good)}, 200, "/v1/poll", "alice", "access_token=REDACTED&timeout=0"},
		{"forged query token", request{method: "GET", path: "/v1/poll?access_token=" + q(forged)}, 401, "/v1/poll", "", "access_token=REDACTED"},
		{"expired query token", request{method: "GET", path: "/v1/unread?access_token=" + q(expired)}, 401, "/v1/unread", "", "access_token=REDACTED"},
		{"forged header token", request{method: "GET", path: "/v1/unread", token: forged}, 401, "/v1/unread", "", ""},
		{"query token twice", request{method: "GET", path: "/v1/unread?access_token=" + q(good) + "&access_token=" + q(forged)}, 200, "/v1/unread", "alice", "access_token=REDACTED"},
		{"query token, unparsable query", request{method: "GET", path: "/v1/unread?x=%zz&access_token=" + q(good)}, 200, "/v1/unread", "alice", "(unparsable)"},
		{"query token on an unknown path", request{method: "GET", path: "/v1/nothing?access_token=" + q(good)}, 404, "other", "", "access_token=REDACTED"},
		{"API key publishes", request{method: "POST", path: "/v1/publish", token: apiKeySecret, body: `{"to":["alice"],"title":"x"}`}, 201, "/v1/publish", "key:billing", ""},
		{"API key in the query", request{method: "GET", path: "/v1/unread?access_token=" + q(apiKeySecret)}, 403, "/v1/unread", "key:billing", "access_token=REDACTED"},
	}
	ids := make([]string, len(cases))
	for i, c := range cases {
		r := do(t, s.url, c.rq)
		if r.status != c.status {
			t.Fatalf("%s: status %d, want %d: %s", c.name, r.status, c.status, r.body)
		}
		if ids[i] = r.header.Get("X-Request-Id"); ids[i] == "" {
			t.Fatalf("%s: no X-Request-Id", c.name)
		}
	}

	// The access log line of a request is written after its response, so
	// wait for the server to finish everything before reading the log.
	s.srv.Close()
	logs := s.logs.String()
	for _, tok := range []string{good, other, forged, expired} {
		parts := strings.Split(tok, ".")
		for _, secret := range []string{tok, q(tok), parts[1], parts[2], parts[2][:16]} {
			if strings.Contains(logs, secret) {
				t.Errorf("log contains token material %q", secret)
			}
		}
	}
	if strings.Contains(logs, apiKeySecret) {
		t.Error("log contains the API key")
	}

	lines := map[string]map[string]any{}
	for _, l := range strings.Split(strings.TrimSpace(logs), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("log line is not JSON: %v: %s", err, l)
		}
		if m["message"] == "request" {
			id, _ := m["req_id"].(string)
			lines[id] = m
		}
	}
	for i, c := range cases {
		m, ok := lines[ids[i]]
		if !ok {
			t.Errorf("%s: no access log line with req_id %s", c.name, ids[i])
			continue
		}
		if m["route"] != c.route || m["status"] != float64(c.status) || m["method"] != c.rq.method {
			t.Errorf("%s: logged route=%v status=%v method=%v, want %s %d %s", c.name, m["route"], m["status"], m["method"], c.route, c.status, c.rq.method)
		}
		if d, ok := m["duration"].(float64); !ok || d < 0 {
			t.Errorf("%s: duration %v", c.name, m["duration"])
		}
		if got, _ := m["user"].(string); got != c.user {
			t.Errorf("%s: logged user %q, want %q", c.name, got, c.user)
		}
		if got, _ := m["query"].(string); got != c.query {
			t.Errorf("%s: logged query %q, want %q", c.name, got, c.query)
		}
	}
}

// TestLogOfAbandonedPoll: a poll whose client goes away mid-wait (a proxy
// cutting the connection, a closed tab) was never answered, and the access
// log says so, as /metrics does: no status 200, the outcome "cut", at info
// level (it is no server fault), with how long it waited; the cut-wait
// histogram records the wait, so an operator can read off a proxy's timeout.
func TestLogOfAbandonedPoll(t *testing.T) {
	t.Parallel()
	s := newStack(t, stackOptions{})
	alice := s.token(t, "alice")
	cur := s.cursor(t, alice)
	// One poll before, so the polls_total family exists in the first scrape.
	s.doLogged(t, request{method: "GET", path: "/v1/poll?timeout=0", token: alice})
	s.waitPolls(t, 1)
	before := scrape(t, s.url)

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := doErr(ctx, s.url, request{method: "GET", path: "/v1/poll?timeout=30&_=abandoned&cursor=" + cur, token: alice})
		done <- err
	}()
	s.waitPolls(t, 1)
	start := time.Now()
	time.Sleep(100 * time.Millisecond) // a wait the log line must account for
	cancel()
	if err := <-done; err == nil {
		t.Fatal("the cancelled poll got an answer")
	}
	s.logs.waitFor(t, "_=abandoned")
	waited := time.Since(start)

	var line map[string]any
	for _, l := range strings.Split(strings.TrimSpace(s.logs.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("log line is not JSON: %v: %s", err, l)
		}
		if q, _ := m["query"].(string); m["message"] == "request" && strings.Contains(q, "_=abandoned") {
			line = m
		}
	}
	if line == nil {
		t.Fatalf("no access log line for the abandoned poll:\n%s", s.logs)
	}
	if strings.Contains(s.logs.String(), "panic") {
		t.Errorf("the abandoned poll is logged as a panic:\n%s", s.logs)
	}
	if line["status"] == float64(http.StatusOK) {
		t.Errorf("the abandoned poll is logged with status 200: %v", line)
	}
	if line["outcome"] != "cut" || line["level"] != "info" || line["route"] != "/v1/poll" || line["user"] != "alice" {
		t.Errorf("logged outcome=%v level=%v route=%v user=%v, want cut, info, /v1/poll, alice",
			line["outcome"], line["level"], line["route"], line["user"])
	}
	// zerolog writes durations in milliseconds.
	if d, _ := line["duration"].(float64); d < 100 || time.Duration(d*float64(time.Millisecond)) > waited+time.Second {
		t.Errorf("logged duration %v ms, want at least the 100 ms it waited", line["duration"])
	}

	// /metrics counts the request as the log line does.
	after := scrape(t, s.url)
	st, _ := line["status"].(float64)
	status := strconv.FormatFloat(st, 'f', -1, 64)
	cut := `pollbox_polls_total{outcome="cut"}`
	logged := `pollbox_http_requests_total{route="/v1/poll",status="` + status + `"}`
	cuts := `pollbox_poll_cut_wait_seconds_count`
	under1, over1 := `pollbox_poll_cut_wait_seconds_bucket{le="1"}`, `pollbox_poll_cut_wait_seconds_bucket{le="+Inf"}`
	for name, d := range delta(before, after, cut, logged, cuts, under1, over1) {
		if d != 1 {
			t.Errorf("%s moved by %v, want 1", name, d)
		}
	}
}
