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
// the store are mapped in writeError.
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

// writeError is the one place that turns an error into the JSON error
// shape. Errors it does not recognise become 500 "internal error"; their
// text goes to the log (with the request id), never to the client.
func writeError(w http.ResponseWriter, r *http.Request, err error) {
	var ae *apiError
	switch {
	case errors.As(err, &ae):
	case errors.Is(err, inbox.ErrBadCursor):
		ae = newErr(http.StatusBadRequest, "bad_cursor", err.Error())
	case errors.Is(err, inbox.ErrBadID), errors.Is(err, inbox.ErrBadName), errors.Is(err, inbox.ErrInvalid):
		ae = badRequest(err.Error())
	case errors.Is(err, inbox.ErrNotFound):
		ae = newErr(http.StatusNotFound, "not_found", "no such message")
	case errors.Is(err, context.Canceled) && r.Context().Err() != nil:
		// The client left: nobody reads an answer, and a client that only
		// shut down its sending side would take one for real.
		abortGone(r)
	case errors.Is(err, inbox.ErrUnavailable), errors.Is(err, context.DeadlineExceeded):
		scopeOf(r).redisErr = true
		logOf(r).Warn().Err(err).Msg("storage unavailable")
		ae = &apiError{status: http.StatusServiceUnavailable, code: "unavailable", msg: "storage is unavailable, retry later", retryAfter: 2}
	default:
		logOf(r).Error().Err(err).Msg("internal error")
		ae = newErr(http.StatusInternalServerError, "internal", "internal error")
	}
	if ae.retryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(ae.retryAfter))
	}
	writeJSON(w, ae.status, map[string]string{"error": ae.code, "message": ae.msg})
}
