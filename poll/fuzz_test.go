package poll

import (
	"encoding/json"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"pollbox/inbox"
)

// Small limits, so that the fuzzer reaches them.
const (
	fuzzMaxBody       = 512
	fuzzMaxRecipients = 4
	fuzzRetention     = 24 * time.Hour
)

// FuzzParsePublish: ParsePublish never panics; what it accepts is a
// publish the store can take as is; what it refuses renders as a 4xx.
func FuzzParsePublish(f *testing.F) {
	for _, s := range []string{
		`{"to":["42","43"],"title":"t","body":"b","link":"/x","level":"warning","data":{"k":[1,2]},"expires_in":3600,"idempotency_key":"order-991"}`,
		`{"groups":["ops","user:list"],"body":"b"}`,
		`{"broadcast":true,"title":"t","type":"like"}`,
		`{"to":null,"groups":["g"],"title":"t","data":null}`,
		`{"to":["a"],"broadcast":false,"title":"t"}`,
		`{"to":["a","b","c","d","e"],"title":"t"}`,
		`{"to":["a b"],"title":"t"}`,
		`{"to":["a"],"title":"\u0000"}`,
		`{"to":["a"],"title":"\ud800"}`,
		`{"to":["a"],"body":"` + strings.Repeat("x", fuzzMaxBody) + `"}`,
		`{"to":["a"],"title":"t","data":{}}`,
		`{"to":["a"],"title":"t","expires_in":315360001}`,
		`{"to":[],"title":"t"}`,
		`{"to":["a"],"title":"t","send_at":"2026-11-30T13:00:00Z"}`,
		`{"to":["a"],"title":"t","send_at":1795000000000}`,
		`{"to":["a"],"title":"t","send_at":"2026-12-30T13:00:00+08:00"}`,
		`{"to":["a"],"title":"t","send_at":1.5e12}`,
		`{"to":["a"],"title":"t","send_at":null}`,
		`{"broadcast":true,"title":"t"}{}`,
		`[]`, `null`, `{}`, ``, `{"to":`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		now := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
		req, err := ParsePublish(body, PublishLimits{MaxBody: fuzzMaxBody, MaxRecipients: fuzzMaxRecipients, Retention: fuzzRetention}, now)
		if err != nil {
			rec := httptest.NewRecorder()
			writeError(rec, httptest.NewRequest("POST", "/v1/publish", nil), err)
			if rec.Code < 400 || rec.Code > 499 {
				t.Fatalf("refusal renders as %d: %v", rec.Code, err)
			}
			var e map[string]string
			if json.Unmarshal(rec.Body.Bytes(), &e) != nil || e["error"] == "" || e["message"] == "" {
				t.Fatalf("refusal renders as %s", rec.Body)
			}
			return
		}
		checkAccepted(t, body, req.Target, req.Draft, req.IdemKey)
		if req.SendAt.After(now.Add(fuzzRetention)) {
			t.Fatalf("accepted send_at %v, more than the retention after %v", req.SendAt, now)
		}
	})
}

func checkAccepted(t *testing.T, body []byte, target inbox.Target, d inbox.Draft, key string) {
	t.Helper()
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(body, &obj); err != nil || obj == nil {
		t.Fatalf("accepted a body that is not a JSON object: %v", err)
	}
	n := 0
	if len(target.Users) > 0 {
		n++
	}
	if len(target.Groups) > 0 {
		n++
	}
	if target.Broadcast {
		n++
	}
	if n != 1 {
		t.Fatalf("accepted target %+v: want exactly one of users, groups, broadcast", target)
	}
	if len(target.Users) > fuzzMaxRecipients || len(target.Groups) > fuzzMaxRecipients {
		t.Fatalf("accepted %d users, %d groups", len(target.Users), len(target.Groups))
	}
	for _, u := range target.Users {
		if !inbox.ValidUser(u) {
			t.Fatalf("accepted user %q", u)
		}
	}
	for _, g := range target.Groups {
		if !inbox.ValidGroup(g) {
			t.Fatalf("accepted group %q", g)
		}
	}
	if d.Title == "" && d.Body == "" {
		t.Fatal("accepted a message without title and body")
	}
	if len(d.Body)+len(d.Data) > fuzzMaxBody {
		t.Fatalf("accepted body+data of %d bytes", len(d.Body)+len(d.Data))
	}
	for _, f := range []struct {
		name, v string
		max     int
	}{{"type", d.Type, inbox.MaxTypeLen}, {"title", d.Title, inbox.MaxTitleLen}, {"link", d.Link, inbox.MaxLinkLen}} {
		if len(f.v) > f.max || !utf8.ValidString(f.v) || strings.ContainsFunc(f.v, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
			t.Fatalf("accepted %s %q", f.name, f.v)
		}
	}
	if d.Type == "" || !utf8.ValidString(d.Body) {
		t.Fatalf("accepted type %q, body valid UTF-8 %v", d.Type, utf8.ValidString(d.Body))
	}
	levelOK := false
	for _, l := range inbox.Levels {
		levelOK = levelOK || d.Level == l
	}
	if !levelOK {
		t.Fatalf("accepted level %q", d.Level)
	}
	if len(d.Data) > 0 {
		var m map[string]any
		if err := json.Unmarshal(d.Data, &m); err != nil || m == nil {
			t.Fatalf("accepted data %s", d.Data)
		}
	}
	if d.ExpiresIn < 0 || d.ExpiresIn > maxExpiresIn*time.Second {
		t.Fatalf("accepted expires_in %v", d.ExpiresIn)
	}
	if key != "" && !inbox.ValidIdempotencyKey(key) {
		t.Fatalf("accepted idempotency key %q", key)
	}
	if d.Sender != "" {
		t.Fatalf("the body set the sender to %q", d.Sender)
	}
	again := d
	if err := again.Validate(fuzzMaxBody); err != nil {
		t.Fatalf("accepted draft fails the store's own check: %v", err)
	}
}
