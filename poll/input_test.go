package poll

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/golang-jwt/jwt/v5"
)

// TestMalformedQueryParameters: a known parameter whose %-escape is broken
// is a 400 on every route that reads it, never a parameter taken as absent
// (a poll "from now", the default wait or limit, an unfiltered history).
// Unknown parameters are ignored however they are spelled.
func TestMalformedQueryParameters(t *testing.T) {
	t.Parallel()
	// A short default wait: a poll that wrongly ignores its timeout answers
	// 200 after a second instead of hanging the test.
	s := newStack(t, stackOptions{cfg: Config{PollTimeout: time.Second}})
	alice := s.token(t, "alice", "ops")
	cur := s.cursor(t, alice)
	id := s.publish(t, `{"to":["alice"],"title":"hello"}`)[0]

	cases := []struct {
		name, path, token string
		status            int
		code              string
	}{
		{"cursor with a trailing %", "/v1/poll?timeout=0&cursor=" + cur + "%", alice, 400, "bad_cursor"},
		{"cursor %zz", "/v1/poll?timeout=0&cursor=%zz", alice, 400, "bad_cursor"},
		{"cursor with a semicolon", "/v1/poll?timeout=0&cursor=" + cur + ";x=1", alice, 400, "bad_cursor"},
		{"second cursor broken", "/v1/poll?timeout=0&cursor=" + cur + "&cursor=%zz", alice, 400, "bad_cursor"},
		{"escaped key, broken value", "/v1/poll?timeout=0&c%75rsor=%zz", alice, 400, "bad_cursor"},
		{"timeout %zz", "/v1/poll?timeout=%zz", alice, 400, "bad_timeout"},
		{"timeout with a trailing %", "/v1/poll?timeout=0%", alice, 400, "bad_timeout"},
		{"limit %zz", "/v1/poll?timeout=0&limit=%zz", alice, 400, "bad_request"},
		{"history limit %zz", "/v1/messages?limit=%zz", alice, 400, "bad_request"},
		{"history before %zz", "/v1/messages?before=%zz", alice, 400, "bad_request"},
		{"history since %zz", "/v1/messages?since=%zz", alice, 400, "bad_request"},
		{"history until %zz", "/v1/messages?until=%zz", alice, 400, "bad_request"},
		{"history unread %zz", "/v1/messages?unread=%zz", alice, 400, "bad_request"},
		{"history type %zz", "/v1/messages?type=%zz", alice, 400, "bad_request"},
		{"history type with a trailing %", "/v1/messages?type=notification%", alice, 400, "bad_request"},
		{"access_token %zz", "/v1/unread?access_token=%zz", "", 400, "bad_request"},
		{"access_token broken on poll", "/v1/poll?timeout=0&access_token=" + alice + "%", "", 400, "bad_request"},

		// Unknown parameters stay ignored, also when they cannot be decoded.
		{"poll cache-buster", "/v1/poll?timeout=0&cursor=" + cur + "&_=1732550000000", alice, 200, ""},
		{"poll unknown broken", "/v1/poll?timeout=0&cursor=" + cur + "&_=%zz&%zz=1&x=1;y", alice, 200, ""},
		{"history unknown broken", "/v1/messages?_=%zz&%zz&limit=5", alice, 200, ""},
		{"unread unknown broken", "/v1/unread?_=%zz", alice, 200, ""},
		{"access_token escaped well", "/v1/unread?_=%zz&access_token=" + url.QueryEscape(alice), "", 200, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := do(t, s.url, request{method: "GET", path: c.path, token: c.token})
			if c.code == "" {
				if r.status != c.status {
					t.Fatalf("status %d, want %d: %s", r.status, c.status, clipBody(r.body))
				}
				return
			}
			checkError(t, r, c.status, c.code)
		})
	}

	// Positive control: the same cursor, intact, returns what came after it.
	r := do(t, s.url, request{method: "GET", path: "/v1/poll?timeout=0&cursor=" + cur, token: alice})
	if p := decode[pollBody](t, r); r.status != 200 || len(p.Messages) != 1 || p.Messages[0].ID != id {
		t.Fatalf("poll from the intact cursor: %d %s", r.status, r.body)
	}
	// A known parameter with an escaped name is still that parameter.
	r = do(t, s.url, request{method: "GET", path: "/v1/poll?time%6Fut=0&%63ursor=" + cur, token: alice})
	if p := decode[pollBody](t, r); r.status != 200 || len(p.Messages) != 1 {
		t.Fatalf("poll with escaped parameter names: %d %s", r.status, r.body)
	}
}

// TestJSONKeysMatchExactly: encoding/json matches keys without regard to
// case and keeps the last of repeated keys; pollbox refuses both, so what
// a client meant is never silently changed. Keys inside data are the
// publisher's own and pass untouched.
func TestJSONKeysMatchExactly(t *testing.T) {
	t.Parallel()
	s := newStack(t, stackOptions{})
	alice := s.token(t, "alice")
	aliceID := s.publish(t, `{"to":["alice"],"title":"seed"}`)[0]

	pub := func(body string) request {
		return request{method: "POST", path: "/v1/publish", token: apiKeySecret, body: body}
	}
	read := func(body string) request {
		return request{method: "POST", path: "/v1/read", token: alice, body: body}
	}
	cases := []struct {
		name string
		rq   request
	}{
		{"to and TO", pub(`{"to":["alice"],"TO":["bob"],"title":"x"}`)},
		{"To", pub(`{"To":["alice"],"title":"x"}`)},
		{"Title", pub(`{"to":["alice"],"Title":"x"}`)},
		{"BROADCAST", pub(`{"BROADCAST":true,"title":"x"}`)},
		{"IDEMPOTENCY_KEY", pub(`{"to":["alice"],"title":"x","IDEMPOTENCY_KEY":"k-1"}`)},
		{"Data", pub(`{"to":["alice"],"title":"x","Data":{}}`)},
		{"escaped key differing in case", pub(`{"to":["alice"],"\u0054itle":"x"}`)},
		{"title twice", pub(`{"to":["alice"],"title":"x","title":"y"}`)},
		{"to twice", pub(`{"to":["alice"],"to":["bob"],"title":"x"}`)},
		{"data twice", pub(`{"to":["alice"],"title":"x","data":{"a":1},"data":{"b":2}}`)},
		{"null key twice", pub(`{"to":["alice"],"title":"x","link":null,"link":null}`)},
		{"duplicate spelled with an escape", pub(`{"to":["alice"],"title":"x","\u0074itle":"y"}`)},
		{"body is an array", pub(`[{"to":["alice"],"title":"x"}]`)},
		{"body is null", pub(`null`)},
		{"body is a string", pub(`"x"`)},
		{"ALL", read(`{"ALL":true}`)},
		{"Ids", read(`{"Ids":[` + jsonStr(aliceID) + `]}`)},
		{"all twice", read(`{"all":false,"all":true}`)},
		{"ids twice", read(`{"ids":[` + jsonStr(aliceID) + `],"ids":[` + jsonStr(aliceID) + `]}`)},
		{"read body null", read(`null`)},
	}
	before := snapshot(t, s.rdb, s.prefix)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			checkError(t, do(t, s.url, c.rq), http.StatusBadRequest, "bad_request")
		})
	}
	if d := before.diff(snapshot(t, s.rdb, s.prefix)); d != "" {
		t.Fatalf("refused bodies changed Redis:\n%s", d)
	}

	// Exact keys pass, spelled with escapes too, and data keeps any keys,
	// in any case, even ones that look like top-level fields.
	cur := s.cursor(t, alice)
	id := s.publish(t, `{"to":["alice"],"\u0074itle":"exact","data":{"TO":["bob"],"Title":"t","k":1,"K":2}}`)[0]
	r := do(t, s.url, request{method: "GET", path: "/v1/poll?timeout=5&cursor=" + cur, token: alice})
	var p struct {
		Messages []struct {
			ID, Title string
			Data      map[string]any
		}
	}
	if err := json.Unmarshal(r.body, &p); err != nil || r.status != 200 {
		t.Fatalf("poll: %d %s", r.status, r.body)
	}
	if len(p.Messages) != 1 || p.Messages[0].ID != id || p.Messages[0].Title != "exact" || len(p.Messages[0].Data) != 4 || p.Messages[0].Data["K"] != 2.0 {
		t.Fatalf("poll got %s, want the exact message with its data intact", r.body)
	}
	if r := do(t, s.url, read(`{"all":true}`)); r.status != 200 {
		t.Fatalf("read all: %d %s", r.status, r.body)
	}
}

// TestInvalidUTF8BodiesAreRefused: a body that is not valid UTF-8, or that
// escapes a lone UTF-16 surrogate, is a 400 and stores nothing, so no poll
// or history answer can carry text a strict JSON parser rejects.
func TestInvalidUTF8BodiesAreRefused(t *testing.T) {
	t.Parallel()
	s := newStack(t, stackOptions{})
	alice := s.token(t, "alice")
	s.publish(t, `{"to":["alice"],"title":"seed"}`)

	pub := func(fields string) request {
		return request{method: "POST", path: "/v1/publish", token: apiKeySecret, body: `{"to":["alice"],` + fields + `}`}
	}
	cases := []struct {
		name string
		rq   request
	}{
		{"0xFF in a data value", pub("\"title\":\"ok\",\"data\":{\"k\":\"\xff\"}")},
		{"0xFF in a data key", pub("\"title\":\"ok\",\"data\":{\"\xff\":1}")},
		{"0xFF in a nested data value", pub("\"title\":\"ok\",\"data\":{\"a\":[{\"b\":\"x\xffy\"}]}")},
		{"0xFF in title", pub("\"title\":\"a\xffb\"")},
		{"0xFF in body", pub("\"body\":\"\xff\"")},
		{"0xFF in type", pub("\"title\":\"ok\",\"type\":\"\xff\"")},
		{"0xFF in link", pub("\"title\":\"ok\",\"link\":\"/\xff\"")},
		{"overlong encoding in data", pub("\"title\":\"ok\",\"data\":{\"k\":\"\xc0\xaf\"}")},
		{"UTF-8 encoded surrogate in data", pub("\"title\":\"ok\",\"data\":{\"k\":\"\xed\xa0\x80\"}")},
		{"truncated sequence in body", pub("\"body\":\"\xe9\x80\"")},
		{`\ud800 in data`, pub(`"title":"ok","data":{"k":"\ud800"}`)},
		{`\udc00 in data`, pub(`"title":"ok","data":{"k":"\udc00"}`)},
		{`\uDBFF then text in data`, pub(`"title":"ok","data":{"k":"\uDBFFx"}`)},
		{`\ud800 then an escape in data`, pub(`"title":"ok","data":{"k":"\ud800\u0041"}`)},
		{`two high surrogates in data`, pub(`"title":"ok","data":{"k":"\ud800\ud800"}`)},
		{`pair reversed in data`, pub(`"title":"ok","data":{"k":"\ude00\ud83d"}`)},
		{`\ud800 in a data key`, pub(`"title":"ok","data":{"\ud800":1}`)},
		{`\ud800 after an escaped backslash`, pub(`"title":"ok","data":{"k":"\\\ud800"}`)},
		{`\ud800 in title`, pub(`"title":"\ud800"`)},
		{`\udfff in body`, pub(`"body":"x\udfff"`)},
		{"0xFF in a read body", request{method: "POST", path: "/v1/read", token: alice, body: "{\"ids\":[\"u.1-0\xff\"]}"}},
		{`\ud800 in a read body`, request{method: "POST", path: "/v1/read", token: alice, body: `{"ids":["\ud800"]}`}},
	}
	before := snapshot(t, s.rdb, s.prefix)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			checkError(t, do(t, s.url, c.rq), http.StatusBadRequest, "bad_request")
		})
	}
	if d := before.diff(snapshot(t, s.rdb, s.prefix)); d != "" {
		t.Fatalf("refused bodies changed Redis:\n%s", d)
	}

	// Valid text passes: non-ASCII, a proper surrogate pair, and a
	// backslash followed by "ud800" (text, not an escape).
	cur := s.cursor(t, alice)
	s.publish(t, `{"to":["alice"],"title":"通知 é \ud83d\ude00","data":{"k":"\ud83d\ude00","lit":"\\ud800","ü":"通知"}}`)
	r := do(t, s.url, request{method: "GET", path: "/v1/poll?timeout=5&cursor=" + cur, token: alice})
	var p struct {
		Messages []struct {
			Title string
			Data  map[string]string
		}
	}
	if err := json.Unmarshal(r.body, &p); err != nil || r.status != 200 || len(p.Messages) != 1 {
		t.Fatalf("poll: %d %s", r.status, r.body)
	}
	if m := p.Messages[0]; m.Title != "通知 é 😀" || m.Data["k"] != "😀" || m.Data["lit"] != `\ud800` || m.Data["ü"] != "通知" {
		t.Fatalf("message came back as %+v", m)
	}
	for _, path := range []string{"/v1/poll?timeout=0&cursor=" + cur, "/v1/messages", "/v1/unread"} {
		if r := do(t, s.url, request{method: "GET", path: path, token: alice}); r.status != 200 || !utf8.Valid(r.body) {
			t.Fatalf("%s: %d, valid UTF-8 %v", path, r.status, utf8.Valid(r.body))
		}
	}
}

// TestTokenGroupCapCountsDistinctGroups: the cap on a token's groups counts
// distinct groups, so a token that repeats some of its 64 groups (smpe-admin
// authorities can repeat) is accepted and reads each group once.
func TestTokenGroupCapCountsDistinctGroups(t *testing.T) {
	t.Parallel()
	s := newStack(t, stackOptions{})
	var groups []string
	for i := range 64 {
		groups = append(groups, "g"+strconv.Itoa(i))
	}
	mint := func(g any) string {
		return signHS(t, jwt.SigningMethodHS256, s.secret, jwt.MapClaims{"sub": "alice", "groups": g, "exp": time.Now().Add(time.Hour).Unix()})
	}
	repeated := mint(append(append([]string{}, groups...), groups[:10]...)) // 74 entries, 64 groups
	commas := mint(strings.Repeat("ops,", 100) + " ops")                    // 101 entries, 1 group
	tooMany := mint(append(append([]string{}, groups...), "g64"))           // 65 groups

	cur := s.cursor(t, repeated)
	s.cursor(t, commas)
	checkError(t, do(t, s.url, request{method: "GET", path: "/v1/unread", token: tooMany}), http.StatusBadRequest, "bad_request")

	id := s.publish(t, `{"groups":["g0"],"title":"to g0"}`)[0]
	r := do(t, s.url, request{method: "GET", path: "/v1/poll?timeout=5&cursor=" + cur, token: repeated})
	if p := decode[pollBody](t, r); r.status != 200 || len(p.Messages) != 1 || p.Messages[0].ID != id {
		t.Fatalf("poll with repeated groups: %d %s", r.status, r.body)
	}
}
