package poll

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/rs/zerolog"
	"github.com/rs/zerolog/hlog"
)

type ctxKey int

const (
	principalKey ctxKey = iota
	logInfoKey
)

// logInfo is filled in by inner handlers and read by the access log,
// which wraps them and so cannot see their context values directly.
type logInfo struct {
	route    string
	user     string
	redisErr bool // the request failed because Redis was unavailable
}

func infoOf(r *http.Request) *logInfo {
	li, _ := r.Context().Value(logInfoKey).(*logInfo)
	if li == nil {
		return &logInfo{}
	}
	return li
}

func routeLabel(route string, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		infoOf(r).route = route
		next.ServeHTTP(w, r)
	})
}

// accessLog writes one line per request: id, method, route, user, status,
// size and duration. It logs the path and a redacted query — never a
// token, whether it came in the Authorization header or access_token.
func accessLog(m *Metrics, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		li := &logInfo{}
		r = r.WithContext(context.WithValue(r.Context(), logInfoKey, li))
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
		next.ServeHTTP(rec, r)
		route := li.route
		if route == "" {
			route = "other"
		}
		m.requests.WithLabelValues(route, strconv.Itoa(rec.status)).Inc()
		if li.redisErr {
			m.redisErrors.Inc()
		}
		lvl := zerolog.InfoLevel
		if rec.status >= 500 {
			lvl = zerolog.WarnLevel
		}
		ev := hlog.FromRequest(r).WithLevel(lvl).
			Str("method", r.Method).Str("path", r.URL.Path).Str("route", route).
			Int("status", rec.status).Int("size", rec.size).Dur("duration", time.Since(start))
		if ev == nil { // level disabled: skip building the rest of the line
			return
		}
		if q := redactQuery(r.URL.RawQuery); q != "" {
			ev = ev.Str("query", q)
		}
		if li.user != "" {
			ev = ev.Str("user", li.user)
		}
		ev.Msg("request")
	})
}

// redactQuery keeps query parameters for the log but blanks access_token.
func redactQuery(raw string) string {
	if raw == "" {
		return ""
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

// authenticate runs the authenticator and stores the principal.
func authenticate(d *deps, w http.ResponseWriter, r *http.Request) (*http.Request, Principal, bool) {
	p, err := d.auth.Authenticate(r)
	if err != nil {
		writeError(w, r, err)
		return r, p, false
	}
	if p.User != "" {
		infoOf(r).user = p.User
	} else {
		infoOf(r).user = "key:" + p.Sender
	}
	return r.WithContext(context.WithValue(r.Context(), principalKey, p)), p, true
}

// requireUser admits user tokens only (API keys cannot read inboxes).
func requireUser(d *deps, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r, p, ok := authenticate(d, w, r)
		if !ok {
			return
		}
		if p.User == "" {
			writeError(w, r, errNotUser)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// requirePublisher admits tokens with a publisher group, and API keys.
func requirePublisher(d *deps, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r, p, ok := authenticate(d, w, r)
		if !ok {
			return
		}
		if !p.Publisher {
			writeError(w, r, errNotPublisher)
			return
		}
		next.ServeHTTP(w, r)
	})
}

func principal(r *http.Request) Principal {
	p, _ := r.Context().Value(principalKey).(Principal)
	return p
}
