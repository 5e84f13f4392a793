package poll

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

// publishBodies are publish bodies of every shape: the fast parser takes
// some, decodeJSON the others.
var publishBodies = []string{
	`{"to":["42"],"title":"load","body":"u1|0|1796026942549855312"}`,
	` { "to" : [ "42" , "43" ] , "title" : "héllo ✓" , "type":"like", "level":"warning", "link":"/x?a=1&b=<2>" } `,
	"{\n\t\"groups\":[\"ops\",\"user:list\"],\r\n\"body\":\"b\",\"expires_in\":3600,\"idempotency_key\":\"order-991\"}\n",
	`{"broadcast":true,"title":"t"}`, `{"broadcast":false,"to":["a"],"title":"t"}`,
	`{"to":[],"title":"t"}`, `{"to":null,"title":"t"}`, `{}`, `{"title":""}`,
	`{"to":["a"],"title":"t","expires_in":0}`, `{"to":["a"],"title":"t","expires_in":00}`,
	`{"to":["a"],"title":"t","expires_in":-1}`, `{"to":["a"],"title":"t","expires_in":1.5}`,
	`{"to":["a"],"title":"t","expires_in":1e3}`, `{"to":["a"],"title":"t","expires_in":9223372036854775807}`,
	`{"to":["a"],"title":"t","expires_in":9223372036854775808}`, `{"to":["a"],"title":"t","expires_in":"5"}`,
	`{"to":["a"],"title":"a \"quoted\" \u00e9 \n line"}`, `{"to":["a"],"title":"\ud800"}`,
	`{"to":["a"],"title":"t","data":{"k":[1,2]}}`, `{"to":["a"],"title":"t","send_at":"2026-12-01T09:00:00Z"}`,
	`{"to":["a"],"title":"t","title":"u"}`, `{"to":["a"],"Title":"t"}`, `{"to":["a"],"titel":"t"}`,
	`{"to":["a"],"title":"t"} x`, `{"to":["a"],"title":"t"}{}`, `{"to":["a"],"title":"t",}`, `{"to":["a",],"title":"t"}`,
	`{"to":["a"] "title":"t"}`, `{"to":["a"],"title":"t"`, `["to"]`, ``, `null`, `{"to":"a","title":"t"}`,
	`{"to":[1],"title":"t"}`, `{"broadcast":truex}`, `{"broadcast":1}`, `{"broadcast":null}`,
	"{\"to\":[\"a\"],\"title\":\"t\x01\"}", "{\"to\":[\"a\"],\"title\":\"\xff\"}",
	`{"to":["a"],"title":"` + strings.Repeat("x", 5000) + `"}`,
}

// TestParsePublishFastAsDecodeJSON: whatever the fast parser accepts,
// decodeJSON accepts too and decodes to the same value; and the common
// bodies do take the fast path.
func TestParsePublishFastAsDecodeJSON(t *testing.T) {
	fast := 0
	for _, b := range publishBodies {
		if checkFastAsSlow(t, []byte(b)) {
			fast++
		}
	}
	if fast < 8 {
		t.Fatalf("only %d bodies took the fast path", fast)
	}
	for _, b := range publishBodies[:4] {
		if _, ok := parsePublishFast([]byte(b)); !ok {
			t.Errorf("%q did not take the fast path", b)
		}
	}
}

// FuzzParsePublishFast checks the same for any body.
func FuzzParsePublishFast(f *testing.F) {
	for _, b := range publishBodies {
		f.Add([]byte(b))
	}
	f.Fuzz(func(t *testing.T, body []byte) { checkFastAsSlow(t, body) })
}

// checkFastAsSlow fails t if the fast parser accepts body and decodeJSON
// does not, or decodes it otherwise. It tells whether the fast path took it.
func checkFastAsSlow(t *testing.T, body []byte) bool {
	t.Helper()
	got, ok := parsePublishFast(body)
	if !ok {
		return false
	}
	var want publishBody
	if err := decodeJSON(body, &want); err != nil {
		t.Fatalf("%q: fast path accepted what decodeJSON refuses: %v", body, err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%q: fast path %+v, decodeJSON %+v", body, got, want)
	}
	return true
}

// BenchmarkParsePublish: the load generator's publish body, through
// ParsePublish (fast path) and through decodeJSON alone.
func BenchmarkParsePublish(b *testing.B) {
	body := []byte(`{"to":["u1788"],"title":"load","body":"u1788|0|1796026942549855312"}`)
	lim := PublishLimits{MaxBody: 64 << 10, MaxRecipients: 10000, Retention: time.Hour}
	b.Run("fast", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := ParsePublish(body, lim, time.Now()); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("decodeJSON", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var req publishBody
			if err := decodeJSON(body, &req); err != nil {
				b.Fatal(err)
			}
		}
	})
}
