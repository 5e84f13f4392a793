package poll

import (
	"iter"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Query parameters. Unknown ones are ignored (proxies and old clients add
// cache-busters such as _=1732550000000), however they are spelled; a known
// one that cannot be decoded is a 400, never taken as absent.

// rawQuery reads parameters from a raw query string without building the
// map of every parameter that url.ParseQuery makes.
type rawQuery string

// pairs yields the value of every pair of q whose key unescapes to name,
// in order, with ok false when the pair cannot be decoded: a broken
// %-escape, or a ';' (url.ParseQuery refuses those). Pairs whose key
// cannot be decoded name no known parameter and are skipped.
func (q rawQuery) pairs(name string) iter.Seq2[string, bool] {
	return func(yield func(string, bool) bool) {
		for raw := string(q); raw != ""; {
			var pair string
			pair, raw, _ = strings.Cut(raw, "&")
			k, v, _ := strings.Cut(pair, "=")
			if k, err := url.QueryUnescape(k); err != nil || k != name {
				continue
			}
			v, err := url.QueryUnescape(v)
			if !yield(v, err == nil && !strings.Contains(pair, ";")) {
				return
			}
		}
	}
}

// Get returns the first value of name that decodes ("" when absent), as
// url.Values.Get does after url.ParseQuery, which drops the pairs it
// cannot decode. Handlers use value instead.
func (q rawQuery) Get(name string) string {
	for v, ok := range q.pairs(name) {
		if ok {
			return v
		}
	}
	return ""
}

// value returns the first value of the known parameter name, unescaped
// ("" when absent). A pair of that name that cannot be decoded is never
// taken as absent (a broken cursor would poll "from now" and skip
// messages): value returns "" and sets *err to a 400 with the parameter's
// error code, unless *err is set already, so a handler reads all its
// parameters and checks once.
func (q rawQuery) value(name string, err *error) string {
	first, found := "", false
	for v, ok := range q.pairs(name) {
		if !ok {
			if *err == nil {
				*err = paramError(name)
			}
			return ""
		}
		if !found {
			first, found = v, true
		}
	}
	return first
}

// paramError is the answer to a known query parameter that cannot be decoded.
func paramError(name string) error {
	code := "bad_request"
	switch name {
	case "cursor":
		code = "bad_cursor"
	case "timeout":
		code = "bad_timeout"
	}
	return newErr(http.StatusBadRequest, code, name+" cannot be decoded: a broken %-escape or a ';' in the query")
}

// intParam parses an optional integer query parameter within [lo, hi].
func intParam(s string, def, lo, hi int) (int, error) {
	if s == "" {
		return def, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < lo || n > hi {
		return 0, badRequest("limit must be a whole number from " + strconv.Itoa(lo) + " to " + strconv.Itoa(hi))
	}
	return n, nil
}

// timeParam parses RFC 3339 or unix milliseconds.
func timeParam(name, s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if n, err := strconv.ParseInt(s, 10, 64); err == nil && n >= 0 && n < 1e15 {
		return time.UnixMilli(n), nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil && t.Year() >= 1970 && t.Year() < 10000 {
		return t, nil
	}
	return time.Time{}, badRequest(name + " must be RFC 3339 or unix milliseconds")
}
