package poll

import (
	"context"
	"fmt"
	"strconv"
	"sync"

	"pollbox/inbox"
)

// fakeStore is a Store for handler-only tests. Poll answers at once unless
// block is set, in which case it waits for the request to end.
type fakeStore struct {
	mu        sync.Mutex
	block     bool
	err       error // returned by History, Unread and the publisher calls when set
	published []inbox.Draft
	targets   []inbox.Target
	options   []inbox.PublishOptions
	owners    map[string]inbox.Owner // publish id → owner
	history   []inbox.HistoryQuery
}

func (f *fakeStore) Poll(ctx context.Context, r inbox.Reader, o inbox.PollOptions) (inbox.PollResult, error) {
	if f.block && o.Wait > 0 {
		<-ctx.Done()
		return inbox.PollResult{}, context.Cause(ctx)
	}
	return inbox.PollResult{Messages: []inbox.Message{}, Cursor: "AQ"}, nil
}

func (f *fakeStore) PublishWith(ctx context.Context, t inbox.Target, d inbox.Draft, o inbox.PublishOptions) (inbox.PublishResult, error) {
	if f.err != nil {
		return inbox.PublishResult{}, f.err
	}
	if err := d.Validate(o.MaxBody); err != nil {
		return inbox.PublishResult{}, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.published = append(f.published, d)
	f.targets = append(f.targets, t)
	f.options = append(f.options, o)
	n := max(len(t.Users), len(t.Groups), 1)
	res := inbox.PublishResult{PublishID: "p." + string(o.Owner.Kind) + "." + o.Owner.Name + "." + strconv.Itoa(len(f.published)) + "-0",
		Count: n, State: "sent", IDs: make([]string, n)}
	for i := range res.IDs {
		res.IDs[i] = "u.1-" + strconv.Itoa(len(f.published)*1000+i)
	}
	if !o.SendAt.IsZero() {
		res.State, res.SendAt, res.IDs = "scheduled", o.SendAt, nil
	}
	if f.owners == nil {
		f.owners = map[string]inbox.Owner{}
	}
	f.owners[res.PublishID] = o.Owner
	return res, nil
}

// mine is what the inbox's ownership rule answers for id: nil when by may
// manage it (its owner, or an admin), else ErrNotFound.
func (f *fakeStore) mine(by inbox.Owner, admin bool, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if o, ok := f.owners[id]; ok && (o == by || admin) {
		return nil
	}
	return fmt.Errorf("%w: publish %s", inbox.ErrNotFound, id)
}

func (f *fakeStore) Withdraw(ctx context.Context, by inbox.Owner, admin bool, id string) (string, error) {
	if f.err != nil {
		return "", f.err
	}
	if err := f.mine(by, admin, id); err != nil {
		return "", err
	}
	return "revoked", nil
}

func (f *fakeStore) Sent(ctx context.Context, o inbox.Owner, q inbox.SentQuery) (inbox.SentResult, error) {
	if f.err != nil {
		return inbox.SentResult{}, f.err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	var res inbox.SentResult
	for id, owner := range f.owners {
		if owner == o {
			res.Sends = append(res.Sends, inbox.SentRecord{PublishID: id, State: "sent", Target: "users", To: []string{"alice"}, Count: 1, Type: "notification"})
		}
	}
	return res, nil
}

func (f *fakeStore) SentDetail(ctx context.Context, by inbox.Owner, admin bool, id string, q inbox.SentDetailQuery) (inbox.SentDetailResult, error) {
	if f.err != nil {
		return inbox.SentDetailResult{}, f.err
	}
	if err := f.mine(by, admin, id); err != nil {
		return inbox.SentDetailResult{}, err
	}
	return inbox.SentDetailResult{Send: inbox.SentRecord{PublishID: id, State: "sent", Target: "users", To: []string{"alice"}, Count: 1, Type: "notification"},
		Recipients: []inbox.RecipientStatus{{User: "alice", ID: "u.1-0", State: "unread"}}}, nil
}

func (f *fakeStore) drafts() []inbox.Draft {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]inbox.Draft(nil), f.published...)
}

func (f *fakeStore) History(ctx context.Context, r inbox.Reader, q inbox.HistoryQuery) (inbox.HistoryResult, error) {
	if f.err != nil {
		return inbox.HistoryResult{}, f.err
	}
	f.mu.Lock()
	f.history = append(f.history, q)
	f.mu.Unlock()
	return inbox.HistoryResult{Messages: []inbox.Message{}, Cursor: "AQ"}, nil
}

func (f *fakeStore) UnreadCounts(ctx context.Context, r inbox.Reader) (inbox.Counts, string, error) {
	if f.err != nil {
		return inbox.Counts{}, "", f.err
	}
	return inbox.Counts{ByType: map[string]int{}}, "AQ", nil
}

func (f *fakeStore) MarkReadCounts(ctx context.Context, r inbox.Reader, ids []string, all bool) (inbox.Counts, error) {
	return inbox.Counts{ByType: map[string]int{}}, nil
}

func (f *fakeStore) Delete(ctx context.Context, r inbox.Reader, id string) error { return nil }

func (f *fakeStore) Ping(ctx context.Context) error { return nil }
