package poll

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/julienschmidt/httprouter"

	"pollbox/inbox"
)

// pollResponse is the answer to a poll; writePoll encodes it by hand.
type pollResponse struct {
	Messages     []wireMessage  `json:"messages"`
	Cursor       string         `json:"cursor"`
	Unread       int            `json:"unread"`
	UnreadByType map[string]int `json:"unread_by_type"` // types with n > 0; {} when none
	More         bool           `json:"more"`
	Reset        bool           `json:"reset"`
	Revoked      []string       `json:"revoked"` // [] when none
}

// sessionEnded is the cancel cause of a poll whose login session ended.
var sessionEnded = errors.New("session ended")

// handlePoll serves GET /v1/poll: messages after the cursor, waiting up to
// `timeout` seconds for some. A poll runs in phases: options, a slot
// under the per-user cap, then the wait — in this goroutine, or parked
// without one (see parking) — and the answer.
func handlePoll(d *deps) http.Handler {
	return handlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		p := principal(r)
		opts, err := d.pollOptions(r)
		if err != nil {
			return err
		}
		release, ok := d.slots.acquire(p.User)
		if !ok && d.park != nil && d.park.reap(p.User) {
			// Some of the user's parked polls had lost their clients.
			release, ok = d.slots.acquire(p.User)
		}
		if !ok {
			d.metrics.polls.WithLabelValues("rejected").Inc()
			return tooManyPolls(d.cfg.MaxPollsPerUser)
		}
		d.metrics.waiting.Inc()
		done := func() {
			release()
			d.metrics.waiting.Dec()
		}
		// One deadline for the whole poll: its wait, then the store's share
		// for the answer. A hung Redis makes the poll answer 503 by then,
		// however many calls it had left; a wait that ends normally leaves
		// the whole share to the final read.
		deadline := requestDeadline(r.Context(), opts.Wait, d.cfg.StoreTimeout)
		if d.park != nil && d.park.can(w, r, opts) {
			return d.park.poll(w, r, p, opts, deadline, done)
		}
		defer done()
		return d.pollHere(w, r, p, opts, deadline)
	})
}

// pollOptions reads a poll's query parameters.
func (d *deps) pollOptions(r *http.Request) (inbox.PollOptions, error) {
	q := rawQuery(r.URL.RawQuery) // polls are most requests: no map of every parameter
	var qerr error
	timeout, limitS, cursor := q.value("timeout", &qerr), q.value("limit", &qerr), q.value("cursor", &qerr)
	if qerr != nil {
		return inbox.PollOptions{}, qerr
	}
	wait := d.cfg.PollTimeout
	if timeout != "" {
		n, err := strconv.Atoi(timeout)
		if err != nil || n < 0 {
			return inbox.PollOptions{}, newErr(http.StatusBadRequest, "bad_timeout", "timeout must be a whole number of seconds ≥ 0")
		}
		// Compare in whole seconds first: n·1e9 overflows int64 for large n.
		if n > int(d.cfg.PollTimeoutMax/time.Second)+1 || time.Duration(n)*time.Second > d.cfg.PollTimeoutMax {
			return inbox.PollOptions{}, newErr(http.StatusBadRequest, "bad_timeout",
				"timeout above the maximum of "+strconv.Itoa(int(d.cfg.PollTimeoutMax/time.Second))+" s")
		}
		wait = time.Duration(n) * time.Second
	}
	limit, err := intParam(limitS, inbox.DefaultLimit, 1, inbox.MaxLimit)
	if err != nil {
		return inbox.PollOptions{}, err
	}
	if len(cursor) > inbox.MaxCursorLen {
		return inbox.PollOptions{}, newErr(http.StatusBadRequest, "bad_cursor", "cursor too long")
	}
	return inbox.PollOptions{Cursor: cursor, Limit: limit, Wait: wait, Stop: d.cfg.Stop}, nil
}

// pollHere runs a poll in the request's goroutine, which waits with it.
func (d *deps) pollHere(w http.ResponseWriter, r *http.Request, p Principal, opts inbox.PollOptions, deadline time.Time) error {
	ctx, cancelDeadline := context.WithDeadline(r.Context(), deadline)
	defer cancelDeadline()
	if d.sessions != nil && opts.Wait > 0 {
		var cancel context.CancelCauseFunc
		ctx, cancel = context.WithCancelCause(ctx)
		defer cancel(nil)
		defer d.sessions.watch(p.Token, cancel)()
	}
	res, err := d.store.Poll(ctx, readerOf(p), opts)
	if err != nil && errors.Is(context.Cause(ctx), sessionEnded) {
		d.metrics.polls.WithLabelValues("rejected").Inc()
		return errSessionExpired
	}
	return d.pollAnswered(w, r, res, err)
}

// pollAnswered writes the answer of a poll that ended in its request, or
// returns its error; a poll whose client left gets no answer at all.
func (d *deps) pollAnswered(w http.ResponseWriter, r *http.Request, res inbox.PollResult, err error) error {
	if err != nil {
		if r.Context().Err() != nil {
			// The client left mid-wait: a proxy's timeout or a closed tab
			// cut the poll. No answer, not even an empty one.
			d.metrics.cutPoll(time.Since(scopeOf(r).start))
			abortGone(r, "cut")
		}
		d.metrics.polls.WithLabelValues("error").Inc()
		return err
	}
	d.writePollAnswer(w, res)
	return nil
}

// writePollAnswer counts a poll's answer and writes it.
func (d *deps) writePollAnswer(w http.ResponseWriter, res inbox.PollResult) {
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
}

type historyResponse struct {
	Messages     []wireMessage  `json:"messages"`
	Next         *string        `json:"next"`
	Unread       int            `json:"unread"`
	UnreadByType map[string]int `json:"unread_by_type"`
	Cursor       string         `json:"cursor"`
}

// handleHistory serves GET /v1/messages.
func handleHistory(d *deps) http.Handler {
	return handlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		q := rawQuery(r.URL.RawQuery)
		var err error
		limit, before, typ, unread, since, until := q.value("limit", &err), q.value("before", &err),
			q.value("type", &err), q.value("unread", &err), q.value("since", &err), q.value("until", &err)
		if err != nil {
			return err
		}
		var hq inbox.HistoryQuery
		if hq.Limit, err = intParam(limit, inbox.DefaultHistoryLimit, 1, inbox.MaxHistoryLimit); err != nil {
			return err
		}
		hq.Before = before
		if hq.Before != "" {
			if err := inbox.ParseMessageID(hq.Before); err != nil {
				return err
			}
		}
		if typ != "" {
			// A comma-separated list: messages of any of these types. (So a
			// type that contains a comma cannot be filtered on.)
			hq.Types = strings.Split(typ, ",")
			if len(hq.Types) > inbox.MaxHistoryTypes {
				return badRequest("type names more than " + strconv.Itoa(inbox.MaxHistoryTypes) + " types")
			}
			for _, t := range hq.Types {
				if t == "" || len(t) > inbox.MaxTypeLen {
					return badRequest("type must be a comma-separated list of types of 1-" + strconv.Itoa(inbox.MaxTypeLen) + " bytes")
				}
			}
		}
		switch unread {
		case "", "false", "0":
		case "true", "1":
			hq.Unread = true
		default:
			return badRequest("unread must be true or false")
		}
		if hq.Since, err = timeParam("since", since); err != nil {
			return err
		}
		if hq.Until, err = timeParam("until", until); err != nil {
			return err
		}
		ctx, cancel := withTimeout(r.Context(), d.cfg.StoreTimeout)
		defer cancel()
		res, err := d.store.History(ctx, readerOf(principal(r)), hq)
		if err != nil {
			return err
		}
		out := historyResponse{Messages: toWire(res.Messages), Unread: res.Unread,
			UnreadByType: typeCounts(res.UnreadByType), Cursor: res.Cursor}
		if res.Next != "" {
			out.Next = &res.Next
		}
		writeJSON(w, http.StatusOK, out)
		return nil
	})
}

// unreadAnswer is the answer to GET /v1/unread and, without the cursor, to POST /v1/read.
type unreadAnswer struct {
	Unread       int            `json:"unread"`
	UnreadByType map[string]int `json:"unread_by_type"`
	Cursor       string         `json:"cursor,omitempty"`
}

// handleUnread serves GET /v1/unread.
func handleUnread(d *deps) http.Handler {
	return handlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		ctx, cancel := withTimeout(r.Context(), d.cfg.StoreTimeout)
		defer cancel()
		c, cur, err := d.store.UnreadCounts(ctx, readerOf(principal(r)))
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, unreadAnswer{Unread: c.Total, UnreadByType: typeCounts(c.ByType), Cursor: cur})
		return nil
	})
}

type readRequest struct {
	IDs []string `json:"ids"`
	All bool     `json:"all"`
}

// handleRead serves POST /v1/read.
func handleRead(d *deps) http.Handler {
	return handlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		var req readRequest
		if err := decodeBody(w, r, d.cfg.MaxRequestBytes, &req); err != nil {
			return err
		}
		if req.All == (len(req.IDs) > 0) {
			return badRequest(`send either "ids" (non-empty) or "all": true`)
		}
		if len(req.IDs) > inbox.MaxReadIDs {
			return tooLarge("at most " + strconv.Itoa(inbox.MaxReadIDs) + " ids per call")
		}
		for _, id := range req.IDs {
			if err := inbox.ParseMessageID(id); err != nil {
				return err
			}
		}
		ctx, cancel := withTimeout(r.Context(), d.cfg.StoreTimeout)
		defer cancel()
		c, err := d.store.MarkReadCounts(ctx, readerOf(principal(r)), req.IDs, req.All)
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, unreadAnswer{Unread: c.Total, UnreadByType: typeCounts(c.ByType)})
		return nil
	})
}

// handleDelete serves DELETE /v1/messages/{id}.
func handleDelete(d *deps) http.Handler {
	return handlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		id := httprouter.ParamsFromContext(r.Context()).ByName("id")
		if err := inbox.ParseMessageID(id); err != nil {
			return err
		}
		ctx, cancel := withTimeout(r.Context(), d.cfg.StoreTimeout)
		defer cancel()
		if err := d.store.Delete(ctx, readerOf(principal(r)), id); err != nil {
			return err
		}
		w.WriteHeader(http.StatusNoContent)
		return nil
	})
}
