package inbox

import (
	"context"
	"errors"
	"time"
)

// SentQuery pages an owner's publishes, newest first.
type SentQuery struct {
	Limit  int    // default 20, at most 100
	Before string // a publish id: list only older ones; "" = from the newest
}

// SentRecord is one publish as its owner sees it.
type SentRecord struct {
	PublishID, State, Target string // target: users, groups or broadcast
	To                       []string
	Count                    int
	Type, Title, Level, Link string
	Created, SendAt, StateAt time.Time // SendAt zero: not scheduled
	// Recipients of a sent direct publish by status; nil when not
	// reported (group and broadcast sends, and sends not in state sent).
	Read, Unread, Deleted, Expired *int
}

// SentResult is a page of publishes; Next is the Before of the next page ("" = end).
type SentResult struct {
	Sends []SentRecord
	Next  string
}

// SentDetailQuery pages one publish's recipients, sorted by user id.
type SentDetailQuery struct {
	State string // read, unread, deleted or expired; "" = all
	Limit int    // default 100, at most 1,000
	After string // a user id: list only later ones
}

// RecipientStatus is one recipient of a direct publish: the user, their
// message id and its status (read, unread, deleted or expired).
type RecipientStatus struct{ User, ID, State string }

// SentDetailResult is one publish and a page of its recipients
// (Recipients nil for group and broadcast sends).
type SentDetailResult struct {
	Send       SentRecord
	Recipients []RecipientStatus
	Next       string
}

var errNotYet = errors.New("not implemented yet")

// Sent lists o's publishes, newest first.
func (s *Store) Sent(ctx context.Context, o Owner, q SentQuery) (SentResult, error) {
	return SentResult{}, errNotYet
}

// SentDetail returns one publish with a page of its recipients' statuses.
// A publish that is not by's (unless admin) is ErrNotFound.
func (s *Store) SentDetail(ctx context.Context, by Owner, admin bool, publishID string, q SentDetailQuery) (SentDetailResult, error) {
	return SentDetailResult{}, errNotYet
}
