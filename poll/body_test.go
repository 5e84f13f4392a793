package poll

import (
	"encoding/json"
	"testing"
)

// TestLoneSurrogate: escapes of half a UTF-16 surrogate pair are found
// wherever they are in the JSON text, and nothing else is.
func TestLoneSurrogate(t *testing.T) {
	t.Parallel()
	cases := []struct {
		json string
		lone bool
	}{
		{`{}`, false},
		{`{"k":"plain \u00e9 \u2028"}`, false},
		{`{"k":"\ud83d\ude00"}`, false},
		{`{"k":"\uD83D\uDE00"}`, false},
		{`{"k":"\\ud800"}`, false},   // a backslash, then text
		{`{"k":"\\\\ud800"}`, false}, // two backslashes, then text
		{`{"k":"\"\\ud800"}`, false}, // an escaped quote does not end the string
		{`{"\ud83d\ude00":[1,"\u0041"]}`, false},
		{`{"k":"\ud800"}`, true},
		{`{"k":"\uDBFF"}`, true},
		{`{"k":"\udc00"}`, true},
		{`{"k":"\uDFFF"}`, true},
		{`{"k":"\ud800x"}`, true},
		{`{"k":"\ud800\u0041"}`, true},
		{`{"k":"\ud800\ud800"}`, true},
		{`{"k":"\ude00\ud83d"}`, true},
		{`{"k":"\ud83d\ude00\udc00"}`, true},
		{`{"\ud800":1}`, true},
		{`{"k":["a","\\\ud800"]}`, true},
		{`{"k":"\"\ud800"}`, true},
	}
	for _, c := range cases {
		if !json.Valid([]byte(c.json)) {
			t.Fatalf("case %s is not valid JSON", c.json)
		}
		if got := loneSurrogate([]byte(c.json)); got != c.lone {
			t.Errorf("loneSurrogate(%s) = %v, want %v", c.json, got, c.lone)
		}
	}
}
