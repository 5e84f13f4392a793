package poll

import (
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"pollbox/inbox"
)

// notices is a handler over the fake store with a publisher (boss), an
// admin (root), a user who may not publish (alice), a publisher whose name
// is also an API key's (billing) and that API key.
type notices struct {
	url                        string
	hc                         *http.Client // checks every answer against the OpenAPI document
	store                      *fakeStore
	boss, root, alice, billing string
}

func newNotices(t *testing.T, cfg Config) *notices {
	t.Helper()
	store := &fakeStore{}
	h, _, secret := newHandler(t, cfg, AuthConfig{PublisherGroups: []string{"notice", "admin"}, AdminGroups: []string{"admin"}}, store)
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	tok := func(user, groups string) string {
		return signHS(t, jwtHS256, secret, jwt.MapClaims{"sub": user, "groups": groups, "exp": time.Now().Add(time.Hour).Unix()})
	}
	return &notices{url: srv.URL, hc: checkedClient(t), store: store, boss: tok("boss", "notice"), root: tok("root", "admin,user:list"),
		alice: tok("alice", "user:list"), billing: tok("billing", "notice")}
}

func (n *notices) do(t *testing.T, rq request) response {
	t.Helper()
	return send(t, n.hc, n.url, rq)
}

func (n *notices) publish(t *testing.T, token, body string) publishAnswer {
	t.Helper()
	r := n.do(t, request{method: "POST", path: "/v1/publish", token: token, body: body})
	if r.status != http.StatusCreated {
		t.Fatalf("publish %s: %d %s", body, r.status, r.body)
	}
	return decode[publishAnswer](t, r)
}

// send_at is an RFC 3339 string or a whole number of unix milliseconds, at
// most the retention ahead; anything else is a 400 that reaches no store.
func TestPublishSendAt(t *testing.T) {
	t.Parallel()
	n := newNotices(t, Config{Retention: 48 * time.Hour})
	ahead := time.Now().Add(time.Hour).UTC().Truncate(time.Millisecond)
	far := time.Now().Add(49 * time.Hour)
	for _, bad := range []string{`"tomorrow"`, `"2026-13-01T00:00:00Z"`, `"2026-12-01 09:00:00"`, `"0000-01-01T00:00:00Z"`,
		`1.5e12`, `1795000000000.5`, `-1`, `1e15`, `"` + strconv.FormatInt(ahead.UnixMilli(), 10) + `"`, `true`, `{}`, `[]`,
		`"` + far.Format(time.RFC3339) + `"`, strconv.FormatInt(far.UnixMilli(), 10)} {
		r := n.do(t, request{method: "POST", path: "/v1/publish", token: n.boss, body: `{"to":["alice"],"title":"t","send_at":` + bad + `}`})
		checkError(t, r, http.StatusBadRequest, "bad_request")
		if !strings.Contains(string(r.body), "send_at") {
			t.Errorf("send_at %s: the message does not name send_at: %s", bad, r.body)
		}
	}
	if len(n.store.drafts()) != 0 {
		t.Fatalf("%d refused publishes reached the store", len(n.store.drafts()))
	}
	checkError(t, n.do(t, request{method: "POST", path: "/v1/publish", token: n.boss,
		body: `{"to":["alice"],"title":"t","send_at":null,"Send_at":1}`}), http.StatusBadRequest, "bad_request")

	for _, c := range []struct {
		sendAt string
		want   time.Time
	}{
		{`"` + ahead.Format(time.RFC3339Nano) + `"`, ahead},
		{`"` + ahead.In(time.FixedZone("CST", 8*3600)).Format(time.RFC3339Nano) + `"`, ahead},
		{strconv.FormatInt(ahead.UnixMilli(), 10), ahead},
		{`"2020-01-01T00:00:00Z"`, time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)}, // past: the store sends it now
		{`null`, time.Time{}},
	} {
		before := len(n.store.drafts())
		ans := n.publish(t, n.boss, `{"to":["alice","bob"],"title":"t","send_at":`+c.sendAt+`}`)
		n.store.mu.Lock()
		got := n.store.options[before].SendAt
		n.store.mu.Unlock()
		if !got.Equal(c.want) {
			t.Errorf("send_at %s reached the store as %v, want %v", c.sendAt, got, c.want)
		}
		if c.want.IsZero() {
			if ans.State != "sent" || len(ans.IDs) != 2 || ans.SendAt != nil {
				t.Errorf("send_at %s: %+v, want sent with 2 ids and no send_at", c.sendAt, ans)
			}
			continue
		}
		if ans.State != "scheduled" || ans.IDs == nil || len(ans.IDs) != 0 || ans.Count != 2 ||
			ans.SendAt == nil || *ans.SendAt != c.want.UTC().Format(timeFormat) || !strings.HasPrefix(ans.PublishID, "p.u.boss.") {
			t.Errorf("send_at %s: answer %+v", c.sendAt, ans)
		}
	}
	// The answer's shape: ids is [] (not null) until sent.
	r := n.do(t, request{method: "POST", path: "/v1/publish", token: n.boss,
		body: `{"groups":["ops"],"title":"t","send_at":` + strconv.FormatInt(ahead.UnixMilli(), 10) + `}`})
	if !strings.Contains(string(r.body), `"ids":[]`) || !strings.Contains(string(r.body), `"publish_id":"p.u.boss.`) {
		t.Errorf("scheduled publish answered %s", r.body)
	}
}

// A publish is owned by its principal: a user (u) or an API key (k), kept
// apart when their names are equal.
func TestPublishOwner(t *testing.T) {
	t.Parallel()
	n := newNotices(t, Config{})
	n.publish(t, n.boss, `{"to":["alice"],"title":"t"}`)
	n.publish(t, apiKeySecret, `{"to":["alice"],"title":"t"}`)
	n.publish(t, n.billing, `{"to":["alice"],"title":"t"}`)
	n.store.mu.Lock()
	defer n.store.mu.Unlock()
	want := []inbox.Owner{{Kind: 'u', Name: "boss"}, {Kind: 'k', Name: "billing"}, {Kind: 'u', Name: "billing"}}
	for i, o := range n.store.options {
		if o.Owner != want[i] {
			t.Errorf("publish %d: owner %c.%s, want %c.%s", i, o.Owner.Kind, o.Owner.Name, want[i].Kind, want[i].Name)
		}
	}
}

// Who may withdraw or inspect a publish: its owner and admins; another
// publisher gets 404 as for an unknown id; a user who may not publish 403.
// A malformed publish id is a 400 before any store call.
func TestPublishIDAccess(t *testing.T) {
	t.Parallel()
	n := newNotices(t, Config{})
	pid := n.publish(t, n.boss, `{"to":["alice"],"title":"t"}`).PublishID
	keyPid := n.publish(t, apiKeySecret, `{"to":["alice"],"title":"t"}`).PublishID
	del := func(token, id string) response {
		return n.do(t, request{method: "DELETE", path: "/v1/publish/" + id, token: token})
	}
	detail := func(token, id string) response {
		return n.do(t, request{method: "GET", path: "/v1/sent/" + id, token: token})
	}
	for _, c := range []struct {
		name   string
		r      response
		status int
		code   string
	}{
		{"another publisher withdraws", del(n.billing, pid), 404, "not_found"},
		{"another publisher inspects", detail(n.billing, pid), 404, "not_found"},
		{"a user of the key's name withdraws the key's", del(n.billing, keyPid), 404, "not_found"},
		{"a key withdraws a user's", del(apiKeySecret, pid), 404, "not_found"},
		{"a non-publisher withdraws", del(n.alice, pid), 403, "forbidden"},
		{"a non-publisher inspects", detail(n.alice, pid), 403, "forbidden"},
		{"a non-publisher lists", n.do(t, request{method: "GET", path: "/v1/sent", token: n.alice}), 403, "forbidden"},
		{"no token", del("", pid), 401, "unauthorized"},
		{"unknown id", del(n.boss, "p.u.boss.999-0"), 404, "not_found"},
		{"malformed id", del(n.boss, "nonsense"), 400, "bad_request"},
		{"malformed id, detail", detail(n.boss, "p.x.boss.1-0"), 400, "bad_request"},
		{"id with a brace", del(n.boss, "p.u.bo%7Bss.1-0"), 400, "bad_request"},
		{"an entry id", detail(n.boss, "u.1-0"), 400, "bad_request"},
		{"bad before", n.do(t, request{method: "GET", path: "/v1/sent?before=u.1-0", token: n.boss}), 400, "bad_request"},
		{"bad limit", n.do(t, request{method: "GET", path: "/v1/sent?limit=101", token: n.boss}), 400, "bad_request"},
		{"undecodable limit", n.do(t, request{method: "GET", path: "/v1/sent?limit=%zz", token: n.boss}), 400, "bad_request"},
		{"bad state", detail(n.boss, pid+"?state=gone"), 400, "bad_request"},
		{"bad after", detail(n.boss, pid+"?after=a%7Bb"), 400, "bad_request"},
		{"detail limit", detail(n.boss, pid+"?limit=1001"), 400, "bad_request"},
	} {
		t.Run(c.name, func(t *testing.T) { checkError(t, c.r, c.status, c.code) })
	}
	for _, c := range []struct {
		name  string
		token string
		id    string
	}{{"owner", n.boss, pid}, {"admin", n.root, pid}, {"admin, a key's publish", n.root, keyPid}, {"the key", apiKeySecret, keyPid}} {
		r := del(c.token, c.id)
		if r.status != 200 {
			t.Fatalf("%s withdraws: %d %s", c.name, r.status, r.body)
		}
		if a := decode[withdrawAnswer](t, r); a.PublishID != c.id || a.State != "revoked" {
			t.Errorf("%s withdraws: %+v", c.name, a)
		}
		if r := detail(c.token, c.id+"?state=unread&limit=5&after=a"); r.status != 200 {
			t.Errorf("%s inspects: %d %s", c.name, r.status, r.body)
		}
	}
	// /v1/sent lists the caller's own publishes only; GET routes answer HEAD.
	list := decode[sentAnswer](t, n.do(t, request{method: "GET", path: "/v1/sent?limit=5", token: n.boss}))
	if len(list.Sends) != 1 || list.Sends[0].PublishID != pid || list.Next != nil {
		t.Errorf("boss's sends: %+v", list)
	}
	for _, path := range []string{"/v1/sent", "/v1/sent/" + pid} {
		r := n.do(t, request{method: "HEAD", path: path, token: n.boss})
		if r.status != 200 || len(r.body) != 0 || !strings.HasPrefix(r.header.Get("Content-Type"), "application/json") {
			t.Errorf("HEAD %s: %d, %d bytes", path, r.status, len(r.body))
		}
	}
}

// A listed send shows at most 20 recipient names and counts the rest;
// absent times and counts are null, never a zero time or 0.
func TestWireSend(t *testing.T) {
	t.Parallel()
	to := make([]string, 25)
	for i := range to {
		to[i] = "u" + strconv.Itoa(i)
	}
	created := time.Date(2026, 11, 30, 1, 2, 3, 4e6, time.FixedZone("CST", 8*3600))
	three := 3
	w := toWireSend(inbox.SentRecord{PublishID: "p.u.a.1-0", State: "sent", Target: "users", To: to, Count: 25,
		Created: created, StateAt: created, Read: &three})
	if len(w.To) != maxSentTo || w.ToMore != 5 || w.SendAt != nil || *w.CreatedAt != "2026-11-29T17:02:03.004Z" ||
		*w.Read != 3 || w.Unread != nil {
		t.Errorf("wire send %+v", w)
	}
	if b := toWireSend(inbox.SentRecord{Target: "broadcast"}); b.To == nil || b.ToMore != 0 {
		t.Errorf("broadcast send: to %v, to_more %d", b.To, b.ToMore)
	}
}
