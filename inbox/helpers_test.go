package inbox

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"pollbox/internal/redistest"
)

func TestMain(m *testing.M) { redistest.Main(m) }

// testMaxBody is the body limit the tests publish with.
const testMaxBody = 64 << 10

// backend is one Redis deployment the store suite runs against.
type backend struct {
	name string
	rdb  redis.UniversalClient
}

// backends returns a client for the shared single node and one for the
// shared 3-master cluster. Each store test runs once per backend, as the
// subtests "single" and "cluster". The clients are closed when t ends,
// after all of its (parallel) subtests.
func backends(t *testing.T) []backend {
	t.Helper()
	opt, err := redis.ParseURL(redistest.URL(t))
	if err != nil {
		t.Fatalf("parse redis url: %v", err)
	}
	single := redis.NewClient(opt)
	cluster := redis.NewClusterClient(&redis.ClusterOptions{Addrs: redistest.ClusterAddrs(t)})
	t.Cleanup(func() {
		single.Close()
		cluster.Close()
	})
	return []backend{{"single", single}, {"cluster", cluster}}
}

// eachBackend runs fn as a parallel subtest per backend.
func eachBackend(t *testing.T, fn func(t *testing.T, b backend)) {
	t.Helper()
	for _, b := range backends(t) {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			fn(t, b)
		})
	}
}

// testCtx is a context that ends with the test, or after 60 s so a stuck
// call fails the test instead of hanging the binary.
func testCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// newStore returns a store under a fresh key prefix (unless opt sets one)
// whose hub runs until the test ends and is connected. Each setup function
// sees the store before its hub starts.
func newStore(t *testing.T, rdb redis.UniversalClient, opt Options, setup ...func(*Store)) *Store {
	t.Helper()
	if opt.Prefix == "" {
		opt.Prefix = redistest.Prefix(t)
	}
	s := New(rdb, opt)
	t.Cleanup(s.Close)
	for _, f := range setup {
		f(s)
	}
	runHub(t, s.Hub())
	return s
}

// runHub runs h until the test ends and waits until its subscription is live.
func runHub(t *testing.T, h *Hub) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		h.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	waitFor(t, 10*time.Second, "hub subscription", h.Connected)
}

// waitFor polls cond until it holds, failing the test after limit. Only for
// state that offers nothing to block on.
func waitFor(t *testing.T, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", limit, what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// fakeClock is a clock the test moves forward instead of sleeping.
type fakeClock struct{ offset atomic.Int64 }

func (c *fakeClock) Now() time.Time { return time.Now().Add(time.Duration(c.offset.Load())) }

func (c *fakeClock) Advance(d time.Duration) { c.offset.Add(int64(d)) }

// publish publishes d to tgt and fails the test on error.
func publish(t *testing.T, s *Store, tgt Target, d Draft, key string) []string {
	t.Helper()
	if d.Title == "" && d.Body == "" {
		d.Title = "hello"
	}
	ids, err := s.Publish(t.Context(), tgt, d, key, testMaxBody)
	if err != nil {
		t.Fatalf("Publish(%+v): %v", tgt, err)
	}
	want := len(tgt.Users) + len(tgt.Groups)
	if tgt.Broadcast {
		want = 1
	}
	if len(ids) != want {
		t.Fatalf("Publish(%+v) returned %d ids: %v", tgt, len(ids), ids)
	}
	return ids
}

// toUser, toGroup and toAll publish a message titled title to one target.
func toUser(t *testing.T, s *Store, user, title string) string {
	t.Helper()
	return publish(t, s, Target{Users: []string{user}}, Draft{Title: title}, "")[0]
}

func toGroup(t *testing.T, s *Store, group, title string) string {
	t.Helper()
	return publish(t, s, Target{Groups: []string{group}}, Draft{Title: title}, "")[0]
}

func toAll(t *testing.T, s *Store, title string) string {
	t.Helper()
	return publish(t, s, Target{Broadcast: true}, Draft{Title: title}, "")[0]
}

// poll polls and fails the test on error.
func poll(t *testing.T, s *Store, r Reader, o PollOptions) PollResult {
	t.Helper()
	res, err := s.Poll(t.Context(), r, o)
	if err != nil {
		t.Fatalf("Poll(%v, %+v): %v", r, o, err)
	}
	if res.Cursor == "" {
		t.Fatalf("Poll(%v) returned no cursor", r)
	}
	return res
}

// tail returns a cursor at the reader's current tail.
func tail(t *testing.T, s *Store, r Reader) string {
	t.Helper()
	_, c, err := s.Unread(t.Context(), r)
	if err != nil {
		t.Fatalf("Unread(%v): %v", r, err)
	}
	return c
}

func unread(t *testing.T, s *Store, r Reader) int {
	t.Helper()
	n, _, err := s.Unread(t.Context(), r)
	if err != nil {
		t.Fatalf("Unread(%v): %v", r, err)
	}
	return n
}

func history(t *testing.T, s *Store, r Reader, q HistoryQuery) HistoryResult {
	t.Helper()
	res, err := s.History(t.Context(), r, q)
	if err != nil {
		t.Fatalf("History(%v, %+v): %v", r, q, err)
	}
	return res
}

// allHistory pages through history with q, checking each page's shape, and
// returns the ids in the order served.
func allHistory(t *testing.T, s *Store, r Reader, q HistoryQuery) []string {
	t.Helper()
	var out []string
	for page := 0; ; page++ {
		if page > 1000 {
			t.Fatal("history does not end")
		}
		res := history(t, s, r, q)
		limit := q.Limit
		if limit == 0 {
			limit = DefaultHistoryLimit
		}
		if len(res.Messages) > limit {
			t.Fatalf("page %d has %d messages, limit %d", page, len(res.Messages), limit)
		}
		out = append(out, msgIDs(res.Messages)...)
		if res.Next == "" {
			return out
		}
		// Next is the page's last message, or older when the page was cut short.
		if n := len(res.Messages); n > 0 && res.Next != res.Messages[n-1].ID && !olderID(t, res.Next, res.Messages[n-1].ID) {
			t.Fatalf("page %d: next %q is newer than the last message %q", page, res.Next, res.Messages[n-1].ID)
		}
		q.Before = res.Next
	}
}

func msgIDs(ms []Message) []string {
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = m.ID
	}
	return out
}

func equalIDs(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// checkIDs fails the test when got differs from want.
func checkIDs(t *testing.T, what string, got, want []string) {
	t.Helper()
	if !equalIDs(got, want) {
		t.Fatalf("%s:\n got  %d %v\n want %d %v", what, len(got), got, len(want), want)
	}
}

// olderID orders public ids the way the store does: by entry ID, then by
// stream name.
func olderID(t *testing.T, a, b string) bool {
	t.Helper()
	ra, err1 := parseMsgRef(a)
	rb, err2 := parseMsgRef(b)
	if err1 != nil || err2 != nil {
		t.Fatalf("bad ids %q %q: %v %v", a, b, err1, err2)
	}
	if ra.entry != rb.entry {
		return ra.entry.less(rb.entry)
	}
	return ra.streamName() < rb.streamName()
}

// newestFirst returns ids sorted newest first.
func newestFirst(t *testing.T, ids []string) []string {
	t.Helper()
	out := append([]string(nil), ids...)
	sort.Slice(out, func(i, j int) bool { return olderID(t, out[j], out[i]) })
	return out
}

func reversed(ids []string) []string {
	out := make([]string, len(ids))
	for i, id := range ids {
		out[len(ids)-1-i] = id
	}
	return out
}

// pollOutcome is what a poll run in a goroutine reports.
type pollOutcome struct {
	res  PollResult
	err  error
	took time.Duration
}

// goPoll starts a poll in a goroutine and returns where its outcome arrives.
func goPoll(ctx context.Context, s *Store, r Reader, o PollOptions) <-chan pollOutcome {
	ch := make(chan pollOutcome, 1)
	go func() {
		t0 := time.Now()
		res, err := s.Poll(ctx, r, o)
		ch <- pollOutcome{res, err, time.Since(t0)}
	}()
	return ch
}

// await receives a poll's outcome, failing when it errs or takes longer than within.
func await(t *testing.T, ch <-chan pollOutcome, within time.Duration) PollResult {
	t.Helper()
	select {
	case o := <-ch:
		if o.err != nil {
			t.Fatalf("poll: %v", o.err)
		}
		if o.took > within {
			t.Fatalf("poll took %v, want < %v (result %+v)", o.took, within, o.res)
		}
		return o.res
	case <-time.After(within + 5*time.Second):
		t.Fatalf("poll did not return within %v", within+5*time.Second)
	}
	return PollResult{}
}

// xlen returns the length of a stream.
func xlen(t *testing.T, rdb redis.UniversalClient, key string) int64 {
	t.Helper()
	n, err := rdb.XLen(t.Context(), key).Result()
	if err != nil && !errors.Is(err, redis.Nil) {
		t.Fatalf("XLEN %s: %v", key, err)
	}
	return n
}

// entryOf returns the stream entry ID part of a public id.
func entryOf(t *testing.T, id string) string {
	t.Helper()
	m, err := parseMsgRef(id)
	if err != nil {
		t.Fatalf("parse %q: %v", id, err)
	}
	return m.entry.String()
}

func must(t *testing.T, err error, what string, args ...any) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", fmt.Sprintf(what, args...), err)
	}
}
