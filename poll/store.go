package poll

import (
	"context"
	"time"

	"pollbox/inbox"
)

// Store is what the HTTP layer needs from the inbox.
type Store interface {
	Poll(ctx context.Context, r inbox.Reader, o inbox.PollOptions) (inbox.PollResult, error)
	PublishWith(ctx context.Context, t inbox.Target, d inbox.Draft, o inbox.PublishOptions) (inbox.PublishResult, error)
	Withdraw(ctx context.Context, by inbox.Owner, admin bool, publishID string) (string, error)
	Sent(ctx context.Context, o inbox.Owner, q inbox.SentQuery) (inbox.SentResult, error)
	SentDetail(ctx context.Context, by inbox.Owner, admin bool, publishID string, q inbox.SentDetailQuery) (inbox.SentDetailResult, error)
	History(ctx context.Context, r inbox.Reader, q inbox.HistoryQuery) (inbox.HistoryResult, error)
	UnreadCounts(ctx context.Context, r inbox.Reader) (inbox.Counts, string, error)
	MarkReadCounts(ctx context.Context, r inbox.Reader, ids []string, all bool) (inbox.Counts, error)
	Delete(ctx context.Context, r inbox.Reader, id string) error
	Ping(ctx context.Context) error
}

// wireMessage is the JSON form of a message.
type wireMessage struct {
	ID        string  `json:"id"`
	Source    string  `json:"source"`
	Type      string  `json:"type"`
	Title     string  `json:"title,omitempty"`
	Body      string  `json:"body,omitempty"`
	Link      string  `json:"link,omitempty"`
	Level     string  `json:"level,omitempty"`
	Data      any     `json:"data,omitempty"`
	Sender    string  `json:"sender,omitempty"`
	CreatedAt string  `json:"created_at"`
	ExpiresAt *string `json:"expires_at"`
	Read      bool    `json:"read"`
}

// timeFormat is RFC 3339 in UTC with milliseconds.
const timeFormat = "2006-01-02T15:04:05.000Z07:00"

func toWire(ms []inbox.Message) []wireMessage {
	out := make([]wireMessage, len(ms))
	for i, m := range ms {
		w := wireMessage{ID: m.ID, Source: m.Source, Type: m.Type, Title: m.Title, Body: m.Body,
			Link: m.Link, Level: m.Level, Sender: m.Sender, Read: m.Read,
			CreatedAt: m.Created.UTC().Format(timeFormat)}
		if len(m.Data) > 0 {
			w.Data = m.Data
		}
		if !m.Expires.IsZero() {
			s := m.Expires.UTC().Format(timeFormat)
			w.ExpiresAt = &s
		}
		out[i] = w
	}
	return out
}

// readerOf is the reading identity of a principal.
func readerOf(p Principal) inbox.Reader { return inbox.Reader{User: p.User, Groups: p.Groups} }

// ownerOf is the publishing identity of a principal: its user, or its API
// key, kept apart so that a user and a key of the same name never share
// publish records.
func ownerOf(p Principal) inbox.Owner {
	if p.User != "" {
		return inbox.Owner{Kind: 'u', Name: p.User}
	}
	return inbox.Owner{Kind: 'k', Name: p.Sender}
}

// wireTime is t as answers write times, or nil for the zero time.
func wireTime(t time.Time) *string {
	if t.IsZero() {
		return nil
	}
	s := t.UTC().Format(timeFormat)
	return &s
}

// answerMargin is what a request keeps of its time for writing its answer
// after its store work was cut off.
const answerMargin = 500 * time.Millisecond

// requestDeadline is when the store work of the request that ctx belongs
// to must end: budget (plus wait, a poll's wait) after the request began,
// less answerMargin. Every store call of a request, and the session check
// before them, shares this one deadline, so that a Redis that does not
// answer costs a request one timeout in all, not one per call. The start
// comes from the request's scope, which survives context.WithoutCancel;
// outside a request the clock starts now.
func requestDeadline(ctx context.Context, wait, budget time.Duration) time.Time {
	var start time.Time
	if sc, _ := ctx.Value(scopeKey).(*scope); sc != nil {
		start = sc.start
	}
	if start.IsZero() {
		start = time.Now()
	}
	return start.Add(wait + max(budget-answerMargin, budget/2))
}

// withTimeout bounds a request's store work (see requestDeadline).
func withTimeout(ctx context.Context, budget time.Duration) (context.Context, context.CancelFunc) {
	return context.WithDeadline(ctx, requestDeadline(ctx, 0, budget))
}
