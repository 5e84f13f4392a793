package poll

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"net/url"
	"testing"
	"time"

	"pollbox/inbox"
)

// TestAppendPollResponseMatchesEncodingJSON checks the hand-written poll
// encoder against encoding/json, byte for byte.
func TestAppendPollResponseMatchesEncodingJSON(t *testing.T) {
	t.Parallel()
	created := time.Date(2026, 11, 29, 8, 0, 0, 123e6, time.UTC)
	strs := []string{"", "plain", `quote " and \ backslash`, "<b>&amp;</b>", "tab\tnl\nret\r\b\f\x00\x1f\x7f",
		"通知 ✓ emoji 🎉", "\u2028\u2029", "bad \xff\xfe utf8 \xc3", "\xe2\x80"}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 300 {
		b := make([]byte, rng.IntN(24))
		for i := range b {
			b[i] = byte(rng.IntN(256))
		}
		strs = append(strs, string(b))
	}
	cases := []inbox.PollResult{
		{Messages: []inbox.Message{}, Cursor: "abc"},
		{Messages: []inbox.Message{{ID: "u.1-0", Source: "user", Type: "notice", Created: created, Read: true}},
			Cursor: "c", Unread: 7, More: true, Reset: true},
		{Messages: []inbox.Message{{ID: "b.2-3", Source: "broadcast", Type: "t", Title: "T", Body: "B", Link: "/x",
			Level: "warning", Sender: "ops", Data: json.RawMessage(`{"a": [1, 2, "<&>"], "b": {"c": null}}`),
			Created: created, Expires: created.Add(time.Hour)}}, Cursor: "z"},
	}
	for i, s := range strs {
		m := inbox.Message{ID: s, Source: s, Type: s, Title: s, Body: s, Link: s, Level: s, Sender: s, Created: created.Add(time.Duration(i) * time.Millisecond)}
		cases = append(cases, inbox.PollResult{Messages: []inbox.Message{m, m}, Cursor: s, Unread: i})
	}
	for i, res := range cases {
		var want bytes.Buffer
		if err := json.NewEncoder(&want).Encode(pollResponse{Messages: toWire(res.Messages), Cursor: res.Cursor,
			Unread: res.Unread, More: res.More, Reset: res.Reset}); err != nil {
			t.Fatal(err)
		}
		if got := appendPollResponse(nil, res); !bytes.Equal(got, want.Bytes()) {
			t.Fatalf("case %d:\n got %s\nwant %s", i, got, want.Bytes())
		}
	}
}

func TestRawQueryMatchesURLValues(t *testing.T) {
	t.Parallel()
	raws := []string{"", "timeout=5", "timeout=5&timeout=6", "a=1&timeout=%35", "timeout", "timeout=",
		"timeout=%zz&timeout=7", "time%6Fut=8", "timeout=1;x=2&timeout=9", "x=1&&timeout=+3+", "=5&timeout=a%20b",
		"cursor=AQ-_x&limit=10", "%zz=1&cursor=c", "cursor=a%2Bb", "cursor=a+b"}
	for _, raw := range raws {
		vals, _ := url.ParseQuery(raw)
		for _, name := range []string{"timeout", "cursor", "limit", "x", ""} {
			if got, want := rawQuery(raw).Get(name), vals.Get(name); got != want {
				t.Errorf("rawQuery(%q).Get(%q) = %q, url.Values says %q", raw, name, got, want)
			}
		}
	}
}
