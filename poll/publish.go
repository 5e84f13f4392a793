package poll

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"time"

	"pollbox/inbox"
)

type publishRequest struct {
	To             []string        `json:"to"`
	Groups         []string        `json:"groups"`
	Broadcast      bool            `json:"broadcast"`
	Type           string          `json:"type"`
	Title          string          `json:"title"`
	Body           string          `json:"body"`
	Link           string          `json:"link"`
	Level          string          `json:"level"`
	Data           json.RawMessage `json:"data"`
	ExpiresIn      int64           `json:"expires_in"`
	IdempotencyKey string          `json:"idempotency_key"`
}

// maxExpiresIn bounds expires_in (seconds) to something a time.Duration holds.
const maxExpiresIn = 10 * 365 * 24 * 3600

// ParsePublish decodes and validates a publish request body. It returns
// an error for anything the store would refuse, so an invalid request never
// reaches Redis, and for any body decodeJSON refuses (keys not exactly the
// documented ones or repeated, text that is not valid UTF-8), so that what
// is stored is what the publisher meant and valid in every answer.
func ParsePublish(body []byte, maxBody, maxRecipients int) (inbox.Target, inbox.Draft, string, error) {
	var req publishRequest
	if err := decodeJSON(body, &req); err != nil {
		return inbox.Target{}, inbox.Draft{}, "", err
	}
	n := 0
	if req.To != nil {
		n++
	}
	if req.Groups != nil {
		n++
	}
	if req.Broadcast {
		n++
	}
	if n != 1 {
		return inbox.Target{}, inbox.Draft{}, "", badRequest(`exactly one of "to", "groups" or "broadcast": true is required`)
	}
	t := inbox.Target{Users: req.To, Groups: req.Groups, Broadcast: req.Broadcast}
	if req.To != nil && len(req.To) == 0 || req.Groups != nil && len(req.Groups) == 0 {
		return t, inbox.Draft{}, "", badRequest("the recipient list is empty")
	}
	if len(req.To) > maxRecipients || len(req.Groups) > maxRecipients {
		return t, inbox.Draft{}, "", tooLarge("at most " + strconv.Itoa(maxRecipients) + " recipients")
	}
	for _, u := range req.To {
		if !inbox.ValidUser(u) {
			return t, inbox.Draft{}, "", badRequest("invalid user id " + strconv.Quote(clip(u)) + ": use 1-128 of [A-Za-z0-9_.@-]")
		}
	}
	for _, g := range req.Groups {
		if !inbox.ValidGroup(g) {
			return t, inbox.Draft{}, "", badRequest("invalid group " + strconv.Quote(clip(g)) + ": use 1-128 of [A-Za-z0-9_.@:-]")
		}
	}
	if len(req.Body)+len(req.Data) > maxBody {
		return t, inbox.Draft{}, "", tooLarge("body and data exceed " + strconv.Itoa(maxBody) + " bytes")
	}
	if req.ExpiresIn < 0 || req.ExpiresIn > maxExpiresIn {
		return t, inbox.Draft{}, "", badRequest("expires_in must be 0 to " + strconv.Itoa(maxExpiresIn) + " seconds")
	}
	if string(req.Data) == "null" {
		req.Data = nil
	}
	d := inbox.Draft{Type: req.Type, Title: req.Title, Body: req.Body, Link: req.Link, Level: req.Level,
		Data: req.Data, ExpiresIn: time.Duration(req.ExpiresIn) * time.Second}
	if err := d.Validate(maxBody); err != nil {
		return t, d, "", err
	}
	if req.IdempotencyKey != "" && !inbox.ValidIdempotencyKey(req.IdempotencyKey) {
		return t, d, "", badRequest("idempotency_key must be 1-128 of [A-Za-z0-9_.:@-]")
	}
	return t, d, req.IdempotencyKey, nil
}

func clip(s string) string {
	if len(s) > 40 {
		return s[:40] + "…"
	}
	return s
}

// handlePublish serves POST /v1/publish.
func handlePublish(d *deps) http.Handler {
	return handlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		start := time.Now()
		p := principal(r)
		if ok, after := d.pubRate.allow(p.Sender); !ok {
			return rateLimited(after)
		}
		body, err := readBody(w, r, d.cfg.MaxRequestBytes)
		if err != nil {
			return err
		}
		t, draft, key, err := ParsePublish(body, d.cfg.MaxBody, d.cfg.MaxRecipients)
		if err != nil {
			return err
		}
		draft.Sender = p.Sender
		// Detached from the client's connection: a client that hangs up
		// mid-publish must not cut the pipeline half-way. The timeout still
		// bounds it, and a retry with the idempotency key completes it.
		ctx, cancel := withTimeout(context.WithoutCancel(r.Context()), d.cfg.StoreTimeout)
		defer cancel()
		ids, err := d.store.Publish(ctx, t, draft, key, d.cfg.MaxBody)
		if err != nil {
			return err
		}
		d.metrics.published.Add(float64(len(ids)))
		d.metrics.publishLatency.Observe(time.Since(start).Seconds())
		writeJSON(w, http.StatusCreated, map[string]any{"count": len(ids), "ids": ids})
		return nil
	})
}
