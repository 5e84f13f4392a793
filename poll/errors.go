package poll

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"

	"pollbox/inbox"
)

// apiError is an error with its HTTP rendering. Handlers return them for
// conditions that are theirs (auth, limits, bad parameters); errors from
// the store are mapped by storeErrors.
type apiError struct {
	status     int
	code       string
	msg        string
	retryAfter int // seconds; 0 = no header
}

func (e *apiError) Error() string { return e.code + ": " + e.msg }

func newErr(status int, code, msg string) *apiError {
	return &apiError{status: status, code: code, msg: msg}
}

var (
	errNoToken        = newErr(http.StatusUnauthorized, "unauthorized", "a bearer token is required")
	errBadToken       = newErr(http.StatusUnauthorized, "unauthorized", "the token is invalid or expired")
	errSessionExpired = newErr(http.StatusUnauthorized, "session_expired", "the login session has ended")
	errNotPublisher   = newErr(http.StatusForbidden, "forbidden", "publishing needs a publisher group or an API key")
	errNotUser        = newErr(http.StatusForbidden, "forbidden", "this endpoint needs a user token")
	errNotFound       = newErr(http.StatusNotFound, "not_found", "no such endpoint")
	errMethod         = newErr(http.StatusMethodNotAllowed, "method_not_allowed", "method not allowed")
	errBadOrigin      = newErr(http.StatusForbidden, "forbidden", "origin not allowed")
	errShuttingDown   = &apiError{status: http.StatusServiceUnavailable, code: "unavailable", msg: "server is shutting down", retryAfter: 1}
)

func badRequest(msg string) *apiError { return newErr(http.StatusBadRequest, "bad_request", msg) }
func tooLarge(msg string) *apiError {
	return newErr(http.StatusRequestEntityTooLarge, "too_large", msg)
}

// writeJSON writes v as the JSON body with the given status.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// handlerFunc is a handler that returns its error instead of writing it.
// Every handler is one, so the JSON error shape is written in one place:
// ServeHTTP passes a non-nil error to writeError. A handler that returns
// an error must not have written anything.
type handlerFunc func(w http.ResponseWriter, r *http.Request) error

func (h handlerFunc) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if err := h(w, r); err != nil {
		writeError(w, r, err)
	}
}

// errUnavailable is the answer while the store cannot be reached.
var errUnavailable = &apiError{status: http.StatusServiceUnavailable, code: "unavailable",
	msg: "storage is unavailable, retry later", retryAfter: 2}

// storeErrors maps each error the store returns to its one answer; the
// first entry that matches (errors.Is) wins, so ErrTooLarge comes before
// ErrInvalid, which it wraps. An entry without a message sends the error's
// own text, which names the refused input and nothing internal.
var storeErrors = []struct {
	err error
	ans *apiError
}{
	{inbox.ErrBadCursor, newErr(http.StatusBadRequest, "bad_cursor", "")},
	{inbox.ErrTooLarge, newErr(http.StatusRequestEntityTooLarge, "too_large", "")},
	{inbox.ErrBadID, newErr(http.StatusBadRequest, "bad_request", "")},
	{inbox.ErrBadName, newErr(http.StatusBadRequest, "bad_request", "")},
	{inbox.ErrInvalid, newErr(http.StatusBadRequest, "bad_request", "")},
	{inbox.ErrNotFound, newErr(http.StatusNotFound, "not_found", "no such message or publish")},
	{inbox.ErrUnavailable, errUnavailable},
	{context.DeadlineExceeded, errUnavailable}, // the request's deadline for its store work passed
}

// writeError is the one place that turns an error into the JSON error
// shape. Errors it does not recognise become 500 "internal error"; their
// text goes to the log (with the request id), never to the client.
func writeError(w http.ResponseWriter, r *http.Request, err error) {
	var ae *apiError
	if !errors.As(err, &ae) {
		if errors.Is(err, context.Canceled) && r.Context().Err() != nil {
			// The client left: nobody reads an answer, and a client that only
			// shut down its sending side would take one for real.
			abortGone(r, "gone")
		}
		for _, e := range storeErrors {
			if errors.Is(err, e.err) {
				ae = e.ans
				break
			}
		}
		switch {
		case ae == nil:
			logOf(r).Error().Err(err).Msg("internal error")
			ae = newErr(http.StatusInternalServerError, "internal", "internal error")
		case ae == errUnavailable:
			scopeOf(r).redisErr = true
			logOf(r).Warn().Err(err).Msg("storage unavailable")
		case ae.msg == "":
			ae = &apiError{status: ae.status, code: ae.code, msg: err.Error()}
		}
	}
	if ae.retryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(ae.retryAfter))
	}
	writeJSON(w, ae.status, map[string]string{"error": ae.code, "message": ae.msg})
}
