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
		{Messages: []inbox.Message{}, Cursor: "r", Unread: 5, UnreadByType: map[string]int{"reply": 2, "like": 3, "gone": 0},
			Revoked: []string{"u.1-0", "g.ops.2-1"}},
		{Messages: []inbox.Message{{ID: "b.2-3", Source: "broadcast", Type: "t", Title: "T", Body: "B", Link: "/x",
			Level: "warning", Sender: "ops", Data: json.RawMessage(`{"a": [1, 2, "<&>"], "b": {"c": null}}`),
			Created: created, Expires: created.Add(time.Hour)}}, Cursor: "z"},
	}
	for i, s := range strs {
		m := inbox.Message{ID: s, Source: s, Type: s, Title: s, Body: s, Link: s, Level: s, Sender: s, Created: created.Add(time.Duration(i) * time.Millisecond)}
		cases = append(cases, inbox.PollResult{Messages: []inbox.Message{m, m}, Cursor: s, Unread: i,
			UnreadByType: map[string]int{s: i, s + "x": 1, strs[i/2]: 2}, Revoked: []string{s}})
	}
	for i, res := range cases {
		var want bytes.Buffer
		revoked := res.Revoked
		if revoked == nil {
			revoked = []string{}
		}
		if err := json.NewEncoder(&want).Encode(pollResponse{Messages: toWire(res.Messages), Cursor: res.Cursor,
			Unread: res.Unread, UnreadByType: typeCounts(res.UnreadByType), More: res.More, Reset: res.Reset,
			Revoked: revoked}); err != nil {
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

// TestAppendPollResponseAllocations: encoding a poll answer into a buffer
// with room allocates nothing, also with unread counts by type and
// revoked ids (the types are sorted on the stack).
func TestAppendPollResponseAllocations(t *testing.T) {
	created := time.Date(2026, 11, 29, 8, 0, 0, 0, time.UTC)
	res := inbox.PollResult{Messages: []inbox.Message{{ID: "u.1-0", Source: "user", Type: "reply", Title: "t", Created: created}},
		Cursor: "AQ", Unread: 9, UnreadByType: map[string]int{"like": 2, "reply": 3, "recommend": 1, "notification": 3},
		Revoked: []string{"u.1-0", "b.3-0"}}
	buf := make([]byte, 0, 4096)
	if n := testing.AllocsPerRun(100, func() { buf = appendPollResponse(buf[:0], res) }); n != 0 {
		t.Fatalf("appendPollResponse allocates %v times per answer, want 0", n)
	}
	var got map[string]any
	if err := json.Unmarshal(buf, &got); err != nil {
		t.Fatal(err)
	}
	if by, _ := got["unread_by_type"].(map[string]any); len(by) != 4 || by["like"] != 2.0 {
		t.Fatalf("unread_by_type %v", got["unread_by_type"])
	}
	if rv, _ := got["revoked"].([]any); len(rv) != 2 {
		t.Fatalf("revoked %v", got["revoked"])
	}
}
