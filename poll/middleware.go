package poll

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/rs/xid"
	"github.com/rs/zerolog"
)

type ctxKey int

const scopeKey ctxKey = 0

// scope is one request's bookkeeping: created by requestScope, the
// outermost middleware, and filled in by the handlers inside it (route,
// user, principal), which it cannot otherwise see. One context value per
// request keeps the per-request allocations down: every poll answer is a
// request, so this path runs thousands of times a second.
type scope struct {
	id        string // request id (an xid)
	base      *zerolog.Logger
	start     time.Time // when the request began: its deadline counts from here
	route     string
	user      string
	outcome   string // why a request ended without an answer (see abortGone)
	parked    bool   // a parked poll: its line is logged when it answers
	redisErr  bool   // the request failed because Redis was unavailable
	principal Principal
}

var nopLogger = zerolog.Nop()

func scopeOf(r *http.Request) *scope {
	sc, _ := r.Context().Value(scopeKey).(*scope)
	if sc == nil {
		return &scope{base: &nopLogger}
	}
	return sc
}

// logOf returns the request's logger, which tags every line with the
// request id. It is built only when something is about to be logged.
func logOf(r *http.Request) *zerolog.Logger {
	sc := scopeOf(r)
	l := sc.base.With().Str("req_id", sc.id).Logger()
	return &l
}

func routeLabel(route string, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		scopeOf(r).route = route
		next.ServeHTTP(w, r)
	})
}

// requestScope gives each request its id (X-Request-Id) and scope, and
// writes one access-log line per request: id, method, route, user,
// status, size and duration. It logs the path and a redacted query —
// never a token, whether it came in the Authorization header or
// access_token.
//
// A request that ended without an answer (the handler panicked with
// http.ErrAbortHandler, see abortGone) is logged and counted with status 0
// and its outcome, not with the 200 that nobody was sent.
func requestScope(log zerolog.Logger, m *Metrics, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sc := &scope{id: xid.New().String(), base: &log, start: time.Now()}
		w.Header()["X-Request-Id"] = []string{sc.id}
		r = r.WithContext(context.WithValue(r.Context(), scopeKey, sc))
		rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
		answered := false
		// Deferred, so that it runs while an aborting panic goes by too
		// (without recovering it: net/http must see it to drop the connection).
		defer func() {
			if !sc.parked {
				logRequest(log, m, sc, r, rec, answered)
			}
		}()
		next.ServeHTTP(rec, r)
		answered = true
	})
}

// logRequest counts a request and writes its access-log line.
func logRequest(log zerolog.Logger, m *Metrics, sc *scope, r *http.Request, rec *statusRecorder, answered bool) {
	route := sc.route
	if route == "" {
		route = "other"
	}
	status, outcome := rec.status, ""
	if !answered {
		status, outcome = 0, sc.outcome
		if outcome == "" {
			outcome = "aborted"
		}
	}
	m.requests.WithLabelValues(route, strconv.Itoa(status)).Inc()
	if sc.redisErr {
		m.redisErrors.Inc()
	}
	lvl := zerolog.InfoLevel
	if status >= 500 || outcome == "aborted" {
		lvl = zerolog.WarnLevel
	}
	ev := log.WithLevel(lvl)
	if ev == nil { // level disabled: skip building the line
		return
	}
	ev = ev.Str("req_id", sc.id).Str("method", r.Method).Str("path", r.URL.Path).Str("route", route).
		Int("status", status)
	if outcome != "" {
		ev = ev.Str("outcome", outcome)
	}
	ev = ev.Int("size", rec.size).Dur("duration", time.Since(sc.start))
	if q := redactQuery(r.URL.RawQuery); q != "" {
		ev = ev.Str("query", q)
	}
	if sc.user != "" {
		ev = ev.Str("user", sc.user)
	}
	ev.Msg("request")
}

// abortGone ends a request whose client has gone without answering it:
// net/http drops the connection instead of writing the empty 200 that a
// handler returning without a word would send. A client that only shut
// down its sending side, or a proxy still reading, would take that for a
// real answer. The access log records the request with the outcome given
// ("cut" for a waiting poll, "gone" for anything else), as the polls
// metric does.
func abortGone(r *http.Request, outcome string) {
	scopeOf(r).outcome = outcome
	panic(http.ErrAbortHandler)
}

// redactQuery keeps query parameters for the log but blanks access_token.
func redactQuery(raw string) string {
	if raw == "" {
		return ""
	}
	// Most queries (every poll's) hold no token: with no "access_token"
	// and no escapes that could spell one, log them as they came.
	if !strings.Contains(raw, "access_token") && !strings.Contains(raw, "%") {
		return raw
	}
	q, err := url.ParseQuery(raw)
	if err != nil {
		return "(unparsable)"
	}
	if _, ok := q["access_token"]; ok {
		q.Set("access_token", "REDACTED")
	}
	return q.Encode()
}

type statusRecorder struct {
	http.ResponseWriter
	status int
	size   int
	wrote  bool
}

func (s *statusRecorder) WriteHeader(code int) {
	if !s.wrote {
		s.status, s.wrote = code, true
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	s.wrote = true
	n, err := s.ResponseWriter.Write(b)
	s.size += n
	return n, err
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// authenticate runs the authenticator and stores the principal in the request's scope.
func authenticate(d *deps, r *http.Request) (Principal, error) {
	ar := r
	if d.auth.cfg.Sessions != nil {
		// The session check is a store call like the handler's: it counts
		// against the request's deadline, so that a hung Redis costs the
		// request one timeout in all.
		ctx, cancel := withTimeout(r.Context(), d.cfg.StoreTimeout)
		defer cancel()
		ar = r.WithContext(ctx)
	}
	p, err := d.auth.Authenticate(ar)
	if err != nil {
		return p, err
	}
	sc := scopeOf(r)
	sc.principal = p
	if p.User != "" {
		sc.user = p.User
	} else {
		sc.user = "key:" + p.Sender
	}
	return p, nil
}

// requireUser admits user tokens only (API keys cannot read inboxes).
func requireUser(d *deps, next http.Handler) http.Handler {
	return handlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		p, err := authenticate(d, r)
		if err != nil {
			return err
		}
		if p.User == "" {
			return errNotUser
		}
		next.ServeHTTP(w, r)
		return nil
	})
}

// requirePublisher admits tokens with a publisher group, and API keys.
func requirePublisher(d *deps, next http.Handler) http.Handler {
	return handlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		p, err := authenticate(d, r)
		if err != nil {
			return err
		}
		if !p.Publisher {
			return errNotPublisher
		}
		next.ServeHTTP(w, r)
		return nil
	})
}

func principal(r *http.Request) Principal { return scopeOf(r).principal }
