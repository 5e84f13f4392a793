package poll

import (
	"net/http"
	"strings"
	"unicode/utf8"
)

// errBadPath answers a path that decodes to what no route or id holds.
var errBadPath = badRequest("malformed path: its %-escapes must decode to printable UTF-8, and not to '/' or '%'")

// routing prepares a request for the router: a malformed path is a 400
// in the JSON error shape rather than a 404 or an id the store refuses,
// and HEAD is routed as GET, so every GET route answers HEAD (load
// balancers health-check with it) without a HEAD route of its own.
// net/http still sends no body, as it goes by the request it read.
//
// A path with an invalid %-escape (/v1/messages/%zz) never gets here:
// net/http answers it with a plain-text 400 before any handler runs.
func routing(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !wellFormedPath(r) {
			writeError(w, r, errBadPath)
			return
		}
		if r.Method == http.MethodHead {
			r = r.WithContext(r.Context()) // a copy: the caller's request stays HEAD
			r.Method = http.MethodGet
		}
		next.ServeHTTP(w, r)
	})
}

// wellFormedPath reports whether the decoded path is valid UTF-8 without
// control characters or '%', and no escape in it decoded to '/' (which
// would route as a separator). No route and no id of pollbox needs any of
// these, so they only ever come from broken or hostile clients.
func wellFormedPath(r *http.Request) bool {
	p := r.URL.Path
	if !utf8.ValidString(p) || strings.Contains(strings.ToLower(r.URL.RawPath), "%2f") {
		return false
	}
	for i := 0; i < len(p); i++ {
		if c := p[i]; c < 0x20 || c == 0x7f || c == '%' {
			return false
		}
	}
	return true
}
