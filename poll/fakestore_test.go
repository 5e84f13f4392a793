package poll

import (
	"context"
	"strconv"
	"sync"

	"pollbox/inbox"
)

// fakeStore is a Store for handler-only tests. Poll answers at once unless
// block is set, in which case it waits for the request to end.
type fakeStore struct {
	mu        sync.Mutex
	block     bool
	err       error // returned by History, Unread and Publish when set
	published []inbox.Draft
	targets   []inbox.Target
	history   []inbox.HistoryQuery
}

func (f *fakeStore) Poll(ctx context.Context, r inbox.Reader, o inbox.PollOptions) (inbox.PollResult, error) {
	if f.block && o.Wait > 0 {
		<-ctx.Done()
		return inbox.PollResult{}, context.Cause(ctx)
	}
	return inbox.PollResult{Messages: []inbox.Message{}, Cursor: "AQ"}, nil
}

func (f *fakeStore) Publish(ctx context.Context, t inbox.Target, d inbox.Draft, key string, maxBody int) ([]string, error) {
	if f.err != nil {
		return nil, f.err
	}
	if err := d.Validate(maxBody); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.published = append(f.published, d)
	f.targets = append(f.targets, t)
	n := max(len(t.Users), len(t.Groups), 1)
	ids := make([]string, n)
	for i := range ids {
		ids[i] = "u.1-" + strconv.Itoa(len(f.published)*1000+i)
	}
	return ids, nil
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

func (f *fakeStore) Unread(ctx context.Context, r inbox.Reader) (int, string, error) {
	if f.err != nil {
		return 0, "", f.err
	}
	return 0, "AQ", nil
}

func (f *fakeStore) MarkRead(ctx context.Context, r inbox.Reader, ids []string, all bool) (int, error) {
	return 0, nil
}

func (f *fakeStore) Delete(ctx context.Context, r inbox.Reader, id string) error { return nil }

func (f *fakeStore) Ping(ctx context.Context) error { return nil }
