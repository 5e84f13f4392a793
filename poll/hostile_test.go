package poll

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// jsonStr encodes s as a JSON string literal.
func jsonStr(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// idList is a JSON array of n copies of id.
func idList(id string, n int) string {
	return "[" + strings.TrimSuffix(strings.Repeat(jsonStr(id)+",", n), ",") + "]"
}

// hostileCase is one request that must be refused without touching Redis.
type hostileCase struct {
	name   string
	rq     request
	status int
	code   string // "" for answers that net/http gives before the handler (not JSON)
}

// TestHostileRequestsAreRefusedAndChangeNothing sends requests a careless or
// malicious client might send. Each gets the documented JSON error, and
// the Redis keyspace is exactly the same after all of them.
func TestHostileRequestsAreRefusedAndChangeNothing(t *testing.T) {
	t.Parallel()
	s := newStack(t, stackOptions{})
	alice := s.token(t, "alice", "ops")
	boss := s.token(t, "boss", "admin")

	// Some state of every kind, so the snapshot has something to guard.
	inboxID := s.publish(t, `{"to":["alice"],"title":"hello","idempotency_key":"seed-1"}`)[0]
	opsID := s.publish(t, `{"groups":["ops"],"title":"ops news","expires_in":3600}`)[0]
	secretID := s.publish(t, `{"groups":["secret"],"title":"not for alice"}`)[0]
	bcastID := s.publish(t, `{"broadcast":true,"body":"everyone"}`)[0]
	if r := do(t, s.url, request{method: "POST", path: "/v1/read", token: alice, body: `{"ids":[` + jsonStr(opsID) + `]}`}); r.status != 200 {
		t.Fatalf("seed read: %d %s", r.status, r.body)
	}
	if r := do(t, s.url, request{method: "DELETE", path: "/v1/messages/" + bcastID, token: alice}); r.status != 204 {
		t.Fatalf("seed delete: %d %s", r.status, r.body)
	}
	// A genuine cursor of a reader who may read "secret", which alice may not.
	bobCursor := s.cursor(t, s.token(t, "bob", "ops", "secret"))
	forged := sha256.Sum256([]byte("forged cursor"))
	forged[0] = 1 // the current cursor version, so parsing goes past the first byte

	mint := func(claims jwt.MapClaims) string {
		if _, ok := claims["exp"]; !ok {
			claims["exp"] = time.Now().Add(time.Hour).Unix()
		}
		return signHS(t, jwt.SigningMethodHS256, s.secret, claims)
	}
	pub := func(name, body string, status int, code string) hostileCase {
		return hostileCase{name, request{method: "POST", path: "/v1/publish", token: boss, body: body}, status, code}
	}
	read := func(name, body string, status int, code string) hostileCase {
		return hostileCase{name, request{method: "POST", path: "/v1/read", token: alice, body: body}, status, code}
	}
	get := func(name, path, token string, status int, code string) hostileCase {
		return hostileCase{name, request{method: "GET", path: path, token: token}, status, code}
	}
	del := func(name, id string, status int, code string) hostileCase {
		return hostileCase{name, request{method: "DELETE", path: "/v1/messages/" + id, token: alice}, status, code}
	}
	long := strings.Repeat("a", 129)

	cases := []hostileCase{
		// Wrong methods.
		{"PUT poll", request{method: "PUT", path: "/v1/poll", token: alice}, 405, "method_not_allowed"},
		{"POST poll", request{method: "POST", path: "/v1/poll", token: alice, body: `{}`}, 405, "method_not_allowed"},
		{"GET publish", request{method: "GET", path: "/v1/publish", token: boss}, 405, "method_not_allowed"},
		{"DELETE read", request{method: "DELETE", path: "/v1/read", token: alice}, 405, "method_not_allowed"},
		{"PATCH message", request{method: "PATCH", path: "/v1/messages/" + inboxID, token: alice}, 405, "method_not_allowed"},
		{"POST metrics", request{method: "POST", path: "/metrics"}, 405, "method_not_allowed"},
		{"unknown path", request{method: "GET", path: "/v1/pol", token: alice}, 404, "not_found"},

		// Who may call.
		get("no token", "/v1/unread", "", 401, "unauthorized"),
		get("garbage token", "/v1/unread", "abc.def.ghi", 401, "unauthorized"),
		get("10 KiB token", "/v1/unread", strings.Repeat("x", 10<<10), 401, "unauthorized"),
		get("token without sub", "/v1/unread", mint(jwt.MapClaims{"groups": []string{"ops"}}), 401, "unauthorized"),
		get("expired token", "/v1/unread", mint(jwt.MapClaims{"sub": "alice", "exp": time.Now().Add(-time.Hour).Unix()}), 401, "unauthorized"),
		{"alice publishes", request{method: "POST", path: "/v1/publish", token: alice, body: `{"to":["alice"],"title":"x"}`}, 403, "forbidden"},
		get("API key reads", "/v1/poll?timeout=0", apiKeySecret, 403, "forbidden"),

		// Bodies: size, shape and syntax.
		pub("body over request limit", `{"to":["alice"],"title":"x","body":"`+strings.Repeat("a", 2<<20)+`"}`, 413, "too_large"),
		pub("message body over 64 KiB", `{"to":["alice"],"title":"x","body":"`+strings.Repeat("a", 65<<10)+`"}`, 413, "too_large"),
		pub("10,001 recipients", `{"title":"x","to":`+idList("u", 10001)+`}`, 413, "too_large"),
		pub("deeply nested data", `{"to":["alice"],"title":"x","data":`+strings.Repeat(`{"a":`, 20000)+"1"+strings.Repeat("}", 20000)+"}", 400, "bad_request"),
		pub("deeply nested array", strings.Repeat("[", 50000)+strings.Repeat("]", 50000), 400, "bad_request"),
		pub("truncated publish", `{"to":["alice"],"title":"x"`, 400, "bad_request"),
		pub("truncated in a string", `{"to":["ali`, 400, "bad_request"),
		pub("empty publish body", ``, 400, "bad_request"),
		pub("data after the object", `{"to":["alice"],"title":"x"} {}`, 400, "bad_request"),
		{"text/plain publish", request{method: "POST", path: "/v1/publish", token: boss, body: `{"to":["alice"],"title":"x"}`,
			header: map[string]string{"Content-Type": "text/plain"}}, 415, "bad_request"},

		// Publish: types and fields.
		pub(`"to" is a string`, `{"to":"42","title":"x"}`, 400, "bad_request"),
		pub(`"to" holds a number`, `{"to":[42],"title":"x"}`, 400, "bad_request"),
		pub(`"title" is a number`, `{"to":["alice"],"title":5}`, 400, "bad_request"),
		pub(`"broadcast" is a string`, `{"broadcast":"yes","title":"x"}`, 400, "bad_request"),
		pub("unknown publish field", `{"to":["alice"],"title":"x","colour":"red"}`, 400, "bad_request"),
		pub("control character in title", `{"to":["alice"],"title":"ding\u0007"}`, 400, "bad_request"),
		pub("newline in title", `{"to":["alice"],"title":"a\nb"}`, 400, "bad_request"),
		pub("no target", `{"title":"x"}`, 400, "bad_request"),
		pub("to and broadcast", `{"to":["alice"],"broadcast":true,"title":"x"}`, 400, "bad_request"),
		pub("to and groups", `{"to":["alice"],"groups":["ops"],"title":"x"}`, 400, "bad_request"),
		pub("empty to", `{"to":[],"title":"x"}`, 400, "bad_request"),
		pub("neither title nor body", `{"to":["alice"],"link":"/x"}`, 400, "bad_request"),
		pub("level fatal", `{"to":["alice"],"title":"x","level":"fatal"}`, 400, "bad_request"),
		pub("data is an array", `{"to":["alice"],"title":"x","data":[1]}`, 400, "bad_request"),
		pub("data is a string", `{"to":["alice"],"title":"x","data":"x"}`, 400, "bad_request"),
		pub("data is a number", `{"to":["alice"],"title":"x","data":5}`, 400, "bad_request"),
		pub("negative expires_in", `{"to":["alice"],"title":"x","expires_in":-1}`, 400, "bad_request"),
		pub("fractional expires_in", `{"to":["alice"],"title":"x","expires_in":1.5}`, 400, "bad_request"),
		pub("idempotency key with spaces", `{"to":["alice"],"title":"x","idempotency_key":"order 991"}`, 400, "bad_request"),

		// Read.
		read("unknown read field", `{"ids":[`+jsonStr(inboxID)+`],"mark":true}`, 400, "bad_request"),
		read("ids and all", `{"ids":[`+jsonStr(inboxID)+`],"all":true}`, 400, "bad_request"),
		read("neither ids nor all", `{}`, 400, "bad_request"),
		read("empty read body", ``, 400, "bad_request"),
		read("truncated read", `{"ids":["u.1-0"`, 400, "bad_request"),
		read("ids is a string", `{"ids":"u.1-0"}`, 400, "bad_request"),
		read("all is a string", `{"all":"yes"}`, 400, "bad_request"),
		read("10,000 ids", `{"ids":`+idList(inboxID, 10000)+`}`, 413, "too_large"),
		read("id of a group alice lacks", `{"ids":[`+jsonStr(secretID)+`]}`, 404, "not_found"),
		read("id with a leading zero", `{"ids":["u.01-0"]}`, 400, "bad_request"),
		read("id without sequence", `{"ids":["u.1"]}`, 400, "bad_request"),
		read("id of an unknown stream kind", `{"ids":["x.1-0"]}`, 400, "bad_request"),
		read("id with a brace group", `{"ids":["g.{ops}.1-0"]}`, 400, "bad_request"),
		read("id with an empty group", `{"ids":["g..1-0"]}`, 400, "bad_request"),

		// Delete.
		del("delete in a group alice lacks", secretID, 404, "not_found"),
		del("delete a missing inbox entry", "u.1-0", 404, "not_found"),
		del("delete a missing group entry", "g.ops.1-0", 404, "not_found"),
		del("delete an already hidden message", bcastID, 404, "not_found"),
		del("delete a malformed id", "u.abc", 400, "bad_request"),
		del("delete a negative id", "u.-1-0", 400, "bad_request"),

		// Query parameters.
		get("negative limit", "/v1/poll?timeout=0&limit=-1", alice, 400, "bad_request"),
		get("zero limit", "/v1/poll?timeout=0&limit=0", alice, 400, "bad_request"),
		get("huge limit", "/v1/poll?timeout=0&limit=99999999999999999999", alice, 400, "bad_request"),
		get("limit above max", "/v1/poll?timeout=0&limit=1001", alice, 400, "bad_request"),
		get("word limit", "/v1/poll?timeout=0&limit=ten", alice, 400, "bad_request"),
		get("history limit above max", "/v1/messages?limit=101", alice, 400, "bad_request"),
		get("negative timeout", "/v1/poll?timeout=-1", alice, 400, "bad_timeout"),
		get("timeout above max", "/v1/poll?timeout=61", alice, 400, "bad_timeout"),
		get("word timeout", "/v1/poll?timeout=soon", alice, 400, "bad_timeout"),
		get("fractional timeout", "/v1/poll?timeout=1.5", alice, 400, "bad_timeout"),
		// n·1e9 overflows int64 to a small or negative Duration.
		get("timeout overflowing to 0.3 s", "/v1/poll?timeout=18446744074", alice, 400, "bad_timeout"),
		get("timeout overflowing to negative", "/v1/poll?timeout=9223372037", alice, 400, "bad_timeout"),
		get("history before in a group alice lacks", "/v1/messages?before="+secretID, alice, 400, "bad_request"),
		get("history before malformed", "/v1/messages?before=u.x", alice, 400, "bad_request"),
		get("history unread=maybe", "/v1/messages?unread=maybe", alice, 400, "bad_request"),
		get("history since=yesterday", "/v1/messages?since=yesterday", alice, 400, "bad_request"),
		get("history type too long", "/v1/messages?type="+strings.Repeat("t", 65), alice, 400, "bad_request"),

		// Cursors.
		get("forged cursor", "/v1/poll?timeout=0&cursor="+base64.RawURLEncoding.EncodeToString(forged[:]), alice, 400, "bad_cursor"),
		get("cursor naming a group alice lacks", "/v1/poll?timeout=0&cursor="+bobCursor, alice, 400, "bad_cursor"),
		get("cursor not base64url", "/v1/poll?timeout=0&cursor=%21%21%21%21", alice, 400, "bad_cursor"),
		get("cursor with padding", "/v1/poll?timeout=0&cursor="+base64.URLEncoding.EncodeToString([]byte{1, 0, 0, 0, 0}), alice, 400, "bad_cursor"),
		get("cursor over 1 KiB", "/v1/poll?timeout=0&cursor="+strings.Repeat("A", 1025), alice, 400, "bad_cursor"),

		// Headers.
		{"64 KiB header", request{method: "GET", path: "/v1/unread", token: alice,
			header: map[string]string{"X-Padding": strings.Repeat("p", 64<<10)}}, 431, ""},
	}

	// Names: in a publish body and in a token.
	badNames := []struct{ name, v string }{
		{"open brace", "{x"}, {"close brace", "x}"}, {"hash tag", "{x}"}, {"star", "a*"},
		{"space", "a b"}, {"newline", "a\nb"}, {"129 chars", long}, {"empty", ""},
	}
	for _, n := range badNames {
		cases = append(cases,
			pub("to: "+n.name, `{"title":"x","to":[`+jsonStr(n.v)+`]}`, 400, "bad_request"),
			pub("groups: "+n.name, `{"title":"x","groups":[`+jsonStr(n.v)+`]}`, 400, "bad_request"),
		)
		if n.v != "" { // an empty sub is a missing user (401 above); empty groups are skipped
			cases = append(cases,
				get("token sub: "+n.name, "/v1/unread", mint(jwt.MapClaims{"sub": n.v}), 400, "bad_request"),
				get("token groups: "+n.name, "/v1/unread", mint(jwt.MapClaims{"sub": "alice", "groups": []string{"ops", n.v}}), 400, "bad_request"),
			)
		}
	}
	cases = append(cases,
		get("token groups as a string with a star", "/v1/unread", mint(jwt.MapClaims{"sub": "alice", "groups": "ops,a*"}), 400, "bad_request"),
		hostileCase{"publisher token with a bad group", request{method: "POST", path: "/v1/publish",
			token: mint(jwt.MapClaims{"sub": "boss", "groups": "admin,{x}"}), body: `{"to":["alice"],"title":"x"}`}, 400, "bad_request"},
	)

	before := snapshot(t, s.rdb, s.prefix)
	if len(before) < 6 {
		t.Fatalf("seeded keyspace too small to guard anything: %v", before)
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := do(t, s.url, c.rq)
			if c.code == "" {
				if r.status != c.status {
					t.Fatalf("status %d, want %d", r.status, c.status)
				}
				return
			}
			checkError(t, r, c.status, c.code)
			if r.status == http.StatusMethodNotAllowed && r.header.Get("Allow") == "" {
				t.Errorf("405 without an Allow header")
			}
		})
	}
	if d := before.diff(snapshot(t, s.rdb, s.prefix)); d != "" {
		t.Fatalf("hostile requests changed Redis:\n%s", d)
	}
	if len(cases) < 30 {
		t.Fatalf("only %d cases", len(cases))
	}

	// The snapshot does see a change: a legitimate request alters it.
	if r := do(t, s.url, request{method: "POST", path: "/v1/read", token: alice, body: `{"all":true}`}); r.status != 200 {
		t.Fatalf("read all: %d %s", r.status, r.body)
	}
	if before.diff(snapshot(t, s.rdb, s.prefix)) == "" {
		t.Fatal("snapshot did not notice a read-all")
	}
}

// TestColonInGroupNameIsLegal is the positive control for the name rules:
// smpe-admin authorities like "user:list" are valid group names.
func TestColonInGroupNameIsLegal(t *testing.T) {
	t.Parallel()
	s := newStack(t, stackOptions{})
	// The groups claim as smpe-admin writes it: one comma-joined string.
	tok := signHS(t, jwt.SigningMethodHS256, s.secret, jwt.MapClaims{"sub": "42", "groups": "admin, user:list"})
	cur := s.cursor(t, tok)

	r := do(t, s.url, request{method: "POST", path: "/v1/publish", token: tok,
		body: `{"groups":["user:list"],"title":"colon ok","idempotency_key":"k:1"}`})
	if r.status != http.StatusCreated {
		t.Fatalf("publish to user:list: %d %s", r.status, r.body)
	}
	ids := decode[struct{ IDs []string }](t, r).IDs
	if len(ids) != 1 || !strings.HasPrefix(ids[0], "g.user:list.") {
		t.Fatalf("ids %v, want one g.user:list.* id", ids)
	}

	r = do(t, s.url, request{method: "GET", path: "/v1/poll?timeout=5&cursor=" + cur, token: tok})
	if r.status != 200 {
		t.Fatalf("poll: %d %s", r.status, r.body)
	}
	p := decode[pollBody](t, r)
	if len(p.Messages) != 1 || p.Messages[0].ID != ids[0] || p.Messages[0].Source != "group:user:list" || p.Messages[0].Sender != "42" {
		t.Fatalf("poll got %+v, want the user:list message from 42", p.Messages)
	}
	if r := do(t, s.url, request{method: "POST", path: "/v1/read", token: tok, body: `{"ids":[` + jsonStr(ids[0]) + `]}`}); r.status != 200 {
		t.Fatalf("read: %d %s", r.status, r.body)
	}
	if r := do(t, s.url, request{method: "DELETE", path: "/v1/messages/" + ids[0], token: tok}); r.status != 204 {
		t.Fatalf("delete: %d %s", r.status, r.body)
	}
}
