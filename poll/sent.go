package poll

import (
	"context"
	"net/http"
	"slices"

	"github.com/julienschmidt/httprouter"

	"pollbox/inbox"
)

// A publisher manages its own publishes (an admin anyone's) by publish id:
// DELETE cancels or revokes one, GET /v1/sent lists them with read counts,
// GET /v1/sent/{publish_id} pages one direct send's recipients. Another
// publisher's id answers 404, as an unknown one does, so ids are not
// confirmed to those who may not touch them.

// withdrawAnswer is the answer to DELETE /v1/publish/{publish_id}.
type withdrawAnswer struct {
	PublishID string `json:"publish_id"`
	State     string `json:"state"` // cancelled or revoked
}

// handleWithdraw serves DELETE /v1/publish/{publish_id}: before its
// send_at a publish is cancelled, after it revoked. Repeating it answers
// the same.
func handleWithdraw(d *deps) http.Handler {
	return handlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		id := httprouter.ParamsFromContext(r.Context()).ByName("id")
		if err := inbox.ParsePublishID(id); err != nil {
			return err
		}
		p := principal(r)
		// Detached like a publish: a revoke cut half-way by a client that
		// left would stay half done until someone repeats it.
		ctx, cancel := withTimeout(context.WithoutCancel(r.Context()), d.cfg.StoreTimeout)
		defer cancel()
		state, err := d.store.Withdraw(ctx, ownerOf(p), p.Admin, id)
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, withdrawAnswer{PublishID: id, State: state})
		return nil
	})
}

// wireSend is one publish as /v1/sent shows it.
type wireSend struct {
	PublishID string   `json:"publish_id"`
	State     string   `json:"state"`
	Target    string   `json:"target"` // users, groups or broadcast
	To        []string `json:"to"`     // at most maxSentTo names; [] for broadcast
	ToMore    int      `json:"to_more,omitempty"`
	Count     int      `json:"count"`
	Type      string   `json:"type"`
	Title     string   `json:"title,omitempty"`
	Level     string   `json:"level,omitempty"`
	Link      string   `json:"link,omitempty"`
	CreatedAt *string  `json:"created_at"`
	SendAt    *string  `json:"send_at"`
	StateAt   *string  `json:"state_at"`
	// Recipients of a sent direct publish by status; null when not
	// reported (group and broadcast sends, unsent or withdrawn ones).
	Read    *int `json:"read"`
	Unread  *int `json:"unread"`
	Deleted *int `json:"deleted"`
	Expired *int `json:"expired"`
}

// maxSentTo is how many recipient names a listed send shows; to_more
// counts the rest.
const maxSentTo = 20

func toWireSend(rec inbox.SentRecord) wireSend {
	ws := wireSend{PublishID: rec.PublishID, State: rec.State, Target: rec.Target, To: rec.To, Count: rec.Count,
		Type: rec.Type, Title: rec.Title, Level: rec.Level, Link: rec.Link,
		CreatedAt: wireTime(rec.Created), SendAt: wireTime(rec.SendAt), StateAt: wireTime(rec.StateAt),
		Read: rec.Read, Unread: rec.Unread, Deleted: rec.Deleted, Expired: rec.Expired}
	if len(ws.To) > maxSentTo {
		ws.To, ws.ToMore = ws.To[:maxSentTo], len(ws.To)-maxSentTo
	}
	if ws.To == nil {
		ws.To = []string{}
	}
	return ws
}

// Page sizes of /v1/sent and /v1/sent/{publish_id}.
const (
	defaultSentLimit       = 20
	maxSentLimit           = 100
	defaultRecipientsLimit = 100
	maxRecipientsLimit     = 1000
)

type sentAnswer struct {
	Sends []wireSend `json:"sends"`
	Next  *string    `json:"next"`
}

// handleSent serves GET /v1/sent: the caller's publishes, newest first.
func handleSent(d *deps) http.Handler {
	return handlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		q := rawQuery(r.URL.RawQuery)
		var err error
		limitS, before := q.value("limit", &err), q.value("before", &err)
		if err != nil {
			return err
		}
		sq := inbox.SentQuery{Before: before}
		if sq.Limit, err = intParam(limitS, defaultSentLimit, 1, maxSentLimit); err != nil {
			return err
		}
		if before != "" {
			if err := inbox.ParsePublishID(before); err != nil {
				return err
			}
		}
		ctx, cancel := withTimeout(r.Context(), d.cfg.StoreTimeout)
		defer cancel()
		res, err := d.store.Sent(ctx, ownerOf(principal(r)), sq)
		if err != nil {
			return err
		}
		out := sentAnswer{Sends: make([]wireSend, len(res.Sends)), Next: optString(res.Next)}
		for i, rec := range res.Sends {
			out.Sends[i] = toWireSend(rec)
		}
		writeJSON(w, http.StatusOK, out)
		return nil
	})
}

type wireRecipient struct {
	User  string `json:"user"`
	ID    string `json:"id"`    // the recipient's message id
	State string `json:"state"` // read, unread, deleted or expired
}

type sentDetailAnswer struct {
	Send       wireSend        `json:"send"`
	Recipients []wireRecipient `json:"recipients"` // null for group and broadcast sends
	Next       *string         `json:"next"`
}

// recipientStates are the values of /v1/sent/{publish_id}?state=.
var recipientStates = []string{"read", "unread", "deleted", "expired"}

// handleSentDetail serves GET /v1/sent/{publish_id}: one publish and a
// page of its recipients, sorted by user id.
func handleSentDetail(d *deps) http.Handler {
	return handlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		id := httprouter.ParamsFromContext(r.Context()).ByName("id")
		if err := inbox.ParsePublishID(id); err != nil {
			return err
		}
		q := rawQuery(r.URL.RawQuery)
		var err error
		state, limitS, after := q.value("state", &err), q.value("limit", &err), q.value("after", &err)
		if err != nil {
			return err
		}
		dq := inbox.SentDetailQuery{State: state, After: after}
		if dq.Limit, err = intParam(limitS, defaultRecipientsLimit, 1, maxRecipientsLimit); err != nil {
			return err
		}
		if state != "" && !slices.Contains(recipientStates, state) {
			return badRequest("state must be read, unread, deleted or expired")
		}
		if after != "" && !inbox.ValidUser(after) {
			return badRequest("after must be a user id: 1-128 of [A-Za-z0-9_.@-]")
		}
		p := principal(r)
		ctx, cancel := withTimeout(r.Context(), d.cfg.StoreTimeout)
		defer cancel()
		res, err := d.store.SentDetail(ctx, ownerOf(p), p.Admin, id, dq)
		if err != nil {
			return err
		}
		out := sentDetailAnswer{Send: toWireSend(res.Send), Next: optString(res.Next)}
		if res.Recipients != nil {
			out.Recipients = make([]wireRecipient, len(res.Recipients))
			for i, rc := range res.Recipients {
				out.Recipients[i] = wireRecipient{User: rc.User, ID: rc.ID, State: rc.State}
			}
		}
		writeJSON(w, http.StatusOK, out)
		return nil
	})
}

// optString is s, or nil (JSON null) when empty.
func optString(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}
