package poll

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"time"

	"pollbox/inbox"
)

// publishBody is the JSON of a publish request.
type publishBody struct {
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
	SendAt         json.RawMessage `json:"send_at"` // RFC 3339 string or unix ms number
}

// maxExpiresIn bounds expires_in (seconds) to something a time.Duration holds.
const maxExpiresIn = 10 * 365 * 24 * 3600

// PublishLimits are the bounds ParsePublish checks.
type PublishLimits struct {
	MaxBody       int           // bytes of body plus data
	MaxRecipients int           // users or groups
	Retention     time.Duration // how far ahead send_at may lie
}

// PublishRequest is a decoded, valid publish request.
type PublishRequest struct {
	Target  inbox.Target
	Draft   inbox.Draft // without its sender, which is the caller's
	IdemKey string      // "" = none
	SendAt  time.Time   // zero = now
}

// ParsePublish decodes and validates a publish request body. It returns
// an error for anything the store would refuse, so an invalid request never
// reaches Redis, and for any body decodeJSON refuses (keys not exactly the
// documented ones or repeated, text that is not valid UTF-8), so that what
// is stored is what the publisher meant and valid in every answer. now is
// the time send_at is measured from.
func ParsePublish(body []byte, lim PublishLimits, now time.Time) (PublishRequest, error) {
	req, ok := parsePublishFast(body)
	if !ok {
		req = publishBody{}
		if err := decodeJSON(body, &req); err != nil {
			return PublishRequest{}, err
		}
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
		return PublishRequest{}, badRequest(`exactly one of "to", "groups" or "broadcast": true is required`)
	}
	t := inbox.Target{Users: req.To, Groups: req.Groups, Broadcast: req.Broadcast}
	if req.To != nil && len(req.To) == 0 || req.Groups != nil && len(req.Groups) == 0 {
		return PublishRequest{}, badRequest("the recipient list is empty")
	}
	if len(req.To) > lim.MaxRecipients || len(req.Groups) > lim.MaxRecipients {
		return PublishRequest{}, tooLarge("at most " + strconv.Itoa(lim.MaxRecipients) + " recipients")
	}
	for _, u := range req.To {
		if !inbox.ValidUser(u) {
			return PublishRequest{}, badRequest("invalid user id " + strconv.Quote(clip(u)) + ": use 1-128 of [A-Za-z0-9_.@-]")
		}
	}
	for _, g := range req.Groups {
		if !inbox.ValidGroup(g) {
			return PublishRequest{}, badRequest("invalid group " + strconv.Quote(clip(g)) + ": use 1-128 of [A-Za-z0-9_.@:-]")
		}
	}
	if len(req.Body)+len(req.Data) > lim.MaxBody {
		return PublishRequest{}, tooLarge("body and data exceed " + strconv.Itoa(lim.MaxBody) + " bytes")
	}
	if req.ExpiresIn < 0 || req.ExpiresIn > maxExpiresIn {
		return PublishRequest{}, badRequest("expires_in must be 0 to " + strconv.Itoa(maxExpiresIn) + " seconds")
	}
	if string(req.Data) == "null" {
		req.Data = nil
	}
	d := inbox.Draft{Type: req.Type, Title: req.Title, Body: req.Body, Link: req.Link, Level: req.Level,
		Data: req.Data, ExpiresIn: time.Duration(req.ExpiresIn) * time.Second}
	if err := d.Validate(lim.MaxBody); err != nil {
		return PublishRequest{}, err
	}
	if req.IdempotencyKey != "" && !inbox.ValidIdempotencyKey(req.IdempotencyKey) {
		return PublishRequest{}, badRequest("idempotency_key must be 1-128 of [A-Za-z0-9_.:@-]")
	}
	at, err := parseSendAt(req.SendAt, now, lim.Retention)
	if err != nil {
		return PublishRequest{}, err
	}
	return PublishRequest{Target: t, Draft: d, IdemKey: req.IdempotencyKey, SendAt: at}, nil
}

// parseSendAt reads send_at: absent or null is zero (send now), a JSON
// string is RFC 3339, a JSON number whole unix milliseconds. A time in the
// past sends now; one more than retention ahead is refused, as its
// message would be trimmed by the time it is sent.
func parseSendAt(raw json.RawMessage, now time.Time, retention time.Duration) (time.Time, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return time.Time{}, nil
	}
	bad := badRequest(`send_at must be an RFC 3339 time ("2026-12-01T09:00:00Z") or a whole number of unix milliseconds`)
	var at time.Time
	if raw[0] == '"' {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return time.Time{}, bad
		}
		t, err := time.Parse(time.RFC3339Nano, s)
		if err != nil || t.Year() < 1970 || t.Year() >= 10000 {
			return time.Time{}, bad
		}
		at = t
	} else {
		n, err := strconv.ParseInt(string(raw), 10, 64)
		if err != nil || n < 0 || n >= 1e15 || raw[0] == '-' || raw[0] == '+' {
			return time.Time{}, bad
		}
		at = time.UnixMilli(n)
	}
	if at.After(now.Add(retention)) {
		return time.Time{}, badRequest("send_at lies more than the retention (" + retention.String() + ") ahead")
	}
	return at, nil
}

func clip(s string) string {
	if len(s) > 40 {
		return s[:40] + "…"
	}
	return s
}

// publishAnswer is the answer to a publish.
type publishAnswer struct {
	PublishID string   `json:"publish_id"`
	State     string   `json:"state"` // sent, scheduled, revoked or cancelled
	Count     int      `json:"count"`
	IDs       []string `json:"ids"`               // one per recipient once sent, else []
	SendAt    *string  `json:"send_at,omitempty"` // scheduled sends only
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
		req, err := ParsePublish(body, d.publishLimits(), start)
		if err != nil {
			return err
		}
		req.Draft.Sender = p.Sender
		// Detached from the client's connection: a client that hangs up
		// mid-publish must not cut the pipeline half-way. The timeout still
		// bounds it, and a retry with the idempotency key completes it.
		ctx, cancel := withTimeout(context.WithoutCancel(r.Context()), d.cfg.StoreTimeout)
		defer cancel()
		res, err := d.store.PublishWith(ctx, req.Target, req.Draft,
			inbox.PublishOptions{IdemKey: req.IdemKey, SendAt: req.SendAt, MaxBody: d.cfg.MaxBody, Owner: ownerOf(p)})
		if err != nil {
			return err
		}
		d.metrics.published.Add(float64(len(res.IDs)))
		d.metrics.publishLatency.Observe(time.Since(start).Seconds())
		ans := publishAnswer{PublishID: res.PublishID, State: res.State, Count: res.Count, IDs: res.IDs}
		if ans.IDs == nil {
			ans.IDs = []string{}
		}
		if res.State == "scheduled" && !res.SendAt.IsZero() {
			ans.SendAt = wireTime(res.SendAt)
		}
		writeJSON(w, http.StatusCreated, ans)
		return nil
	})
}
