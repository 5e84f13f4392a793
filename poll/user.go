package poll

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/julienschmidt/httprouter"

	"pollbox/inbox"
)

// pollResponse is the answer to a poll; writePoll encodes it by hand.
type pollResponse struct {
	Messages []wireMessage `json:"messages"`
	Cursor   string        `json:"cursor"`
	Unread   int           `json:"unread"`
	More     bool          `json:"more"`
	Reset    bool          `json:"reset"`
}

// rawQuery looks parameters up in a raw query string as url.Values.Get
// would after url.ParseQuery, without building the map.
type rawQuery string

// Get returns the first value of name, unescaped ("" when absent).
func (q rawQuery) Get(name string) string {
	raw := string(q)
	for raw != "" {
		var pair string
		pair, raw, _ = strings.Cut(raw, "&")
		if strings.Contains(pair, ";") { // refused by url.ParseQuery too
			continue
		}
		k, v, _ := strings.Cut(pair, "=")
		if k, err := url.QueryUnescape(k); err != nil || k != name {
			continue
		}
		if v, err := url.QueryUnescape(v); err == nil {
			return v
		}
	}
	return ""
}

// sessionEnded is the cancel cause of a poll whose login session ended.
var sessionEnded = errors.New("session ended")

// handlePoll serves GET /v1/poll: messages after the cursor, waiting up to
// `timeout` seconds for some.
func handlePoll(d *deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := principal(r)
		q := rawQuery(r.URL.RawQuery) // polls are most requests: no map of every parameter
		wait := d.cfg.PollTimeout
		if s := q.Get("timeout"); s != "" {
			n, err := strconv.Atoi(s)
			if err != nil || n < 0 {
				writeError(w, r, newErr(http.StatusBadRequest, "bad_timeout", "timeout must be a whole number of seconds ≥ 0"))
				return
			}
			// Compare in whole seconds first: n·1e9 overflows int64 for large n.
			if n > int(d.cfg.PollTimeoutMax/time.Second)+1 || time.Duration(n)*time.Second > d.cfg.PollTimeoutMax {
				writeError(w, r, newErr(http.StatusBadRequest, "bad_timeout",
					"timeout above the maximum of "+strconv.Itoa(int(d.cfg.PollTimeoutMax/time.Second))+" s"))
				return
			}
			wait = time.Duration(n) * time.Second
		}
		limit, err := intParam(q.Get("limit"), inbox.DefaultLimit, 1, inbox.MaxLimit)
		if err != nil {
			writeError(w, r, err)
			return
		}
		cursor := q.Get("cursor")
		if len(cursor) > inbox.MaxCursorLen {
			writeError(w, r, newErr(http.StatusBadRequest, "bad_cursor", "cursor too long"))
			return
		}
		release, ok := d.slots.acquire(p.User)
		if !ok {
			d.metrics.polls.WithLabelValues("rejected").Inc()
			writeError(w, r, tooManyPolls(d.cfg.MaxPollsPerUser))
			return
		}
		defer release()
		d.metrics.waiting.Inc()
		defer d.metrics.waiting.Dec()

		ctx := r.Context()
		if d.auth.cfg.Sessions != nil && wait > 0 {
			var cancel context.CancelCauseFunc
			ctx, cancel = context.WithCancelCause(ctx)
			defer cancel(nil)
			go watchSession(ctx, d, p.Token, cancel)
		}
		res, err := d.store.Poll(ctx, readerOf(p), inbox.PollOptions{Cursor: cursor, Limit: limit, Wait: wait, Stop: d.cfg.Stop})
		if err != nil {
			switch {
			case errors.Is(context.Cause(ctx), sessionEnded):
				d.metrics.polls.WithLabelValues("rejected").Inc()
				writeError(w, r, errSessionExpired)
			case r.Context().Err() != nil:
				d.metrics.polls.WithLabelValues("gone").Inc() // client left; nobody to answer
			default:
				d.metrics.polls.WithLabelValues("error").Inc()
				writeError(w, r, err)
			}
			return
		}
		outcome := "empty"
		if len(res.Messages) > 0 {
			outcome = "messages"
			now := time.Now()
			for _, m := range res.Messages {
				d.metrics.observeDelivery(m.Created, now)
			}
			d.metrics.delivered.Add(float64(len(res.Messages)))
		}
		d.metrics.polls.WithLabelValues(outcome).Inc()
		writePoll(w, res)
	})
}

// watchSession re-checks a waiting poll's login session and cancels the
// poll when the session is gone (the user logged out elsewhere).
func watchSession(ctx context.Context, d *deps, token string, cancel context.CancelCauseFunc) {
	t := time.NewTicker(d.cfg.SessionRecheck)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			cctx, c := context.WithTimeout(ctx, d.cfg.StoreTimeout)
			alive, err := d.auth.cfg.Sessions.SessionAlive(cctx, token)
			c()
			if err == nil && !alive {
				cancel(sessionEnded)
				return
			}
		}
	}
}

type historyResponse struct {
	Messages []wireMessage `json:"messages"`
	Next     *string       `json:"next"`
	Unread   int           `json:"unread"`
	Cursor   string        `json:"cursor"`
}

// handleHistory serves GET /v1/messages.
func handleHistory(d *deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		var hq inbox.HistoryQuery
		var err error
		if hq.Limit, err = intParam(q.Get("limit"), inbox.DefaultHistoryLimit, 1, inbox.MaxHistoryLimit); err != nil {
			writeError(w, r, err)
			return
		}
		hq.Before = q.Get("before")
		if hq.Before != "" {
			if err := inbox.ParseMessageID(hq.Before); err != nil {
				writeError(w, r, err)
				return
			}
		}
		hq.Type = q.Get("type")
		if len(hq.Type) > inbox.MaxTypeLen {
			writeError(w, r, badRequest("type too long"))
			return
		}
		switch q.Get("unread") {
		case "", "false", "0":
		case "true", "1":
			hq.Unread = true
		default:
			writeError(w, r, badRequest("unread must be true or false"))
			return
		}
		if hq.Since, err = timeParam("since", q.Get("since")); err != nil {
			writeError(w, r, err)
			return
		}
		if hq.Until, err = timeParam("until", q.Get("until")); err != nil {
			writeError(w, r, err)
			return
		}
		ctx, cancel := withTimeout(r.Context(), d.cfg.StoreTimeout)
		defer cancel()
		res, err := d.store.History(ctx, readerOf(principal(r)), hq)
		if err != nil {
			writeError(w, r, err)
			return
		}
		out := historyResponse{Messages: toWire(res.Messages), Unread: res.Unread, Cursor: res.Cursor}
		if res.Next != "" {
			out.Next = &res.Next
		}
		writeJSON(w, http.StatusOK, out)
	})
}

// handleUnread serves GET /v1/unread.
func handleUnread(d *deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := withTimeout(r.Context(), d.cfg.StoreTimeout)
		defer cancel()
		n, cur, err := d.store.Unread(ctx, readerOf(principal(r)))
		if err != nil {
			writeError(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"unread": n, "cursor": cur})
	})
}

type readRequest struct {
	IDs []string `json:"ids"`
	All bool     `json:"all"`
}

// handleRead serves POST /v1/read.
func handleRead(d *deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req readRequest
		if err := decodeBody(w, r, d.cfg.MaxRequestBytes, &req); err != nil {
			writeError(w, r, err)
			return
		}
		if req.All == (len(req.IDs) > 0) {
			writeError(w, r, badRequest(`send either "ids" (non-empty) or "all": true`))
			return
		}
		if len(req.IDs) > inbox.MaxReadIDs {
			writeError(w, r, tooLarge("at most "+strconv.Itoa(inbox.MaxReadIDs)+" ids per call"))
			return
		}
		for _, id := range req.IDs {
			if err := inbox.ParseMessageID(id); err != nil {
				writeError(w, r, err)
				return
			}
		}
		ctx, cancel := withTimeout(r.Context(), d.cfg.StoreTimeout)
		defer cancel()
		n, err := d.store.MarkRead(ctx, readerOf(principal(r)), req.IDs, req.All)
		if err != nil {
			writeError(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, map[string]int{"unread": n})
	})
}

// handleDelete serves DELETE /v1/messages/{id}.
func handleDelete(d *deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := httprouter.ParamsFromContext(r.Context()).ByName("id")
		if err := inbox.ParseMessageID(id); err != nil {
			writeError(w, r, err)
			return
		}
		ctx, cancel := withTimeout(r.Context(), d.cfg.StoreTimeout)
		defer cancel()
		if err := d.store.Delete(ctx, readerOf(principal(r)), id); err != nil {
			writeError(w, r, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
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

// decodeBody reads a JSON body strictly: bounded size, no unknown fields,
// nothing after the value.
func decodeBody(w http.ResponseWriter, r *http.Request, limit int64, v any) error {
	if ct := r.Header.Get("Content-Type"); ct != "" && !strings.HasPrefix(strings.ToLower(ct), "application/json") {
		return newErr(http.StatusUnsupportedMediaType, "bad_request", "Content-Type must be application/json")
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return tooLarge("request body larger than " + strconv.FormatInt(limit, 10) + " bytes")
		}
		return badRequest("could not read the request body")
	}
	return decodeJSON(body, v)
}

func decodeJSON(body []byte, v any) error {
	dec := json.NewDecoder(strings.NewReader(string(body)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return badRequest("invalid JSON: " + jsonErrText(err))
	}
	if dec.More() {
		return badRequest("invalid JSON: data after the object")
	}
	var extra json.RawMessage
	if err := dec.Decode(&extra); err != io.EOF {
		return badRequest("invalid JSON: data after the object")
	}
	return nil
}

// jsonErrText describes a decoding error without echoing large input.
func jsonErrText(err error) string {
	var te *json.UnmarshalTypeError
	var se *json.SyntaxError
	switch {
	case errors.As(err, &te):
		return "field " + strconv.Quote(te.Field) + " has the wrong type"
	case errors.As(err, &se):
		return "syntax error at byte " + strconv.FormatInt(se.Offset, 10)
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "body is empty or truncated"
	}
	msg := err.Error()
	if len(msg) > 200 {
		msg = msg[:200]
	}
	return strings.TrimPrefix(msg, "json: ")
}
