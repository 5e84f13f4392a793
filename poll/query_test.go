package poll

import (
	"errors"
	"net/http"
	"strings"
	"testing"
)

// TestQueryReaderDecodesKnownParameters pins the reader the handlers use:
// the first value of a name, and a 400 with the parameter's code when any
// pair of that name cannot be decoded, where url.Values would drop the
// pair and report the parameter absent.
func TestQueryReaderDecodesKnownParameters(t *testing.T) {
	t.Parallel()
	cases := []struct {
		raw, name, want string
		code            string // "" when no error is expected
	}{
		{"", "cursor", "", ""},
		{"cursor=abc", "cursor", "abc", ""},
		{"cursor=", "cursor", "", ""},
		{"cursor", "cursor", "", ""},
		{"cursor=a+b", "cursor", "a b", ""},
		{"cursor=a%2Bb", "cursor", "a+b", ""},
		{"c%75rsor=x", "cursor", "x", ""},
		{"cursor=1&cursor=2", "cursor", "1", ""},
		{"%zz=1&cursor=c&_=%zz", "cursor", "c", ""},
		{"x=1;cursor=2", "cursor", "", ""},
		{"a;cursor=1", "cursor", "", ""},
		{"cursors=%zz&xcursor=%zz&cursor%=1", "cursor", "", ""},
		{"cursor=abc%", "cursor", "", "bad_cursor"},
		{"cursor=%zz", "cursor", "", "bad_cursor"},
		{"cursor=%2", "cursor", "", "bad_cursor"},
		{"cursor=1;x=2", "cursor", "", "bad_cursor"},
		{"cursor=ok&cursor=%zz", "cursor", "", "bad_cursor"},
		{"cursor=%zz&cursor=ok", "cursor", "", "bad_cursor"},
		{"timeout=%zz", "timeout", "", "bad_timeout"},
		{"limit=%zz", "limit", "", "bad_request"},
		{"access_token=%zz", "access_token", "", "bad_request"},
	}
	for _, c := range cases {
		var err error
		got := rawQuery(c.raw).value(c.name, &err)
		if c.code == "" {
			if err != nil || got != c.want {
				t.Errorf("rawQuery(%q).value(%q) = %q, %v; want %q", c.raw, c.name, got, err, c.want)
			}
			continue
		}
		var ae *apiError
		if !errors.As(err, &ae) || ae.status != http.StatusBadRequest || ae.code != c.code || !strings.Contains(ae.msg, c.name) {
			t.Errorf("rawQuery(%q).value(%q) = %q, %v; want a 400 %s naming the parameter", c.raw, c.name, got, err, c.code)
		}
	}

	// The first error stays: a handler reads every parameter, then checks once.
	var err error
	q := rawQuery("timeout=%zz&cursor=%zz&limit=5")
	if q.value("timeout", &err); err == nil {
		t.Fatal("no error for timeout=%zz")
	}
	first := err
	if v := q.value("cursor", &err); v != "" || err != first {
		t.Fatalf("a second bad parameter replaced the first error: %v", err)
	}
	if v := q.value("limit", &err); v != "5" || err != first {
		t.Fatalf("limit = %q, error %v", v, err)
	}
}
