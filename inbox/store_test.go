package inbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestPublishThenPoll(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, b backend) {
		ctx := testCtx(t)
		s := newStore(t, b.rdb, Options{})
		r := Reader{User: "42"}

		t0 := time.Now()
		first := poll(t, s, r, PollOptions{})
		if took := time.Since(t0); took > time.Second {
			t.Fatalf("poll with Wait=0 took %v", took)
		}
		if len(first.Messages) != 0 || first.More || first.Reset {
			t.Fatalf("first poll without cursor = %+v, want nothing", first)
		}

		d := Draft{Type: "like", Title: "Hello", Body: "World", Link: "/posts/7", Level: "warning",
			Sender: "admin", Data: json.RawMessage(`{"post":7}`)}
		ids := publish(t, s, Target{Users: []string{"42", "43"}}, d, "")
		if !strings.HasPrefix(ids[0], "u.") || !strings.HasPrefix(ids[1], "u.") {
			t.Fatalf("ids %v, want u.<entry>", ids)
		}

		xs, err := b.rdb.XRange(ctx, s.opt.Prefix+"inbox:{42}", "-", "+").Result()
		must(t, err, "XRANGE")
		if len(xs) != 1 {
			t.Fatalf("XRANGE inbox:{42} has %d entries, want 1", len(xs))
		}
		if "u."+xs[0].ID != ids[0] {
			t.Fatalf("entry %s does not match id %s", xs[0].ID, ids[0])
		}
		want := map[string]string{"type": "like", "title": "Hello", "body": "World", "link": "/posts/7",
			"level": "warning", "sender": "admin", "data": `{"post":7}`}
		if len(xs[0].Values) != len(want) {
			t.Fatalf("entry fields %v, want %v", xs[0].Values, want)
		}
		for k, v := range want {
			if got, _ := xs[0].Values[k].(string); got != v {
				t.Fatalf("field %s = %q, want %q (all: %v)", k, got, v, xs[0].Values)
			}
		}
		if n := xlen(t, b.rdb, s.opt.Prefix+"inbox:{43}"); n != 1 {
			t.Fatalf("XLEN inbox:{43} = %d, want 1", n)
		}

		second := toUser(t, s, "42", "second")
		got := poll(t, s, r, PollOptions{Cursor: first.Cursor})
		checkIDs(t, "poll after cursor", msgIDs(got.Messages), []string{ids[0], second})
		m := got.Messages[0]
		if m.Source != "user" || m.Type != "like" || m.Title != "Hello" || m.Body != "World" ||
			m.Link != "/posts/7" || m.Level != "warning" || m.Sender != "admin" ||
			string(m.Data) != `{"post":7}` || m.Read || !m.Expires.IsZero() {
			t.Fatalf("message = %+v", m)
		}
		if c := m.Created; c.Location() != time.UTC || time.Since(c) > time.Minute || time.Until(c) > time.Minute {
			t.Fatalf("created %v is not a recent UTC time", c)
		}
		if got.Unread != 2 || got.More || got.Reset {
			t.Fatalf("unread/more/reset = %d/%v/%v, want 2/false/false", got.Unread, got.More, got.Reset)
		}

		again := poll(t, s, r, PollOptions{Cursor: got.Cursor})
		if len(again.Messages) != 0 {
			t.Fatalf("repeat poll returned %v", msgIDs(again.Messages))
		}
		third := toUser(t, s, "42", "third")
		newer := poll(t, s, r, PollOptions{Cursor: again.Cursor})
		checkIDs(t, "poll after third publish", msgIDs(newer.Messages), []string{third})

		t0 = time.Now()
		timedOut := poll(t, s, r, PollOptions{Cursor: newer.Cursor, Wait: 300 * time.Millisecond})
		took := time.Since(t0)
		if len(timedOut.Messages) != 0 || took < 290*time.Millisecond || took > 3*time.Second {
			t.Fatalf("timed-out poll returned %v after %v", msgIDs(timedOut.Messages), took)
		}
		fourth := toUser(t, s, "42", "fourth")
		after := poll(t, s, r, PollOptions{Cursor: timedOut.Cursor})
		checkIDs(t, "poll with the timed-out poll's cursor", msgIDs(after.Messages), []string{fourth})
	})
}

func TestPollRejects(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, b backend) {
		ctx := testCtx(t)
		s := newStore(t, b.rdb, Options{})
		good := tail(t, s, Reader{User: "u1"})
		for _, tc := range []struct {
			name string
			r    Reader
			o    PollOptions
			want error
		}{
			{"bad user", Reader{User: "a{b}"}, PollOptions{}, ErrBadName},
			{"empty user", Reader{User: ""}, PollOptions{}, ErrBadName},
			{"bad group", Reader{User: "u1", Groups: []string{"a b"}}, PollOptions{}, ErrBadName},
			{"limit too high", Reader{User: "u1"}, PollOptions{Limit: MaxLimit + 1}, ErrInvalid},
			{"garbage cursor", Reader{User: "u1"}, PollOptions{Cursor: "!!"}, ErrBadCursor},
			{"cursor of a reader with a group", Reader{User: "u1"},
				PollOptions{Cursor: tail(t, s, Reader{User: "u1", Groups: []string{"ops"}})}, ErrBadCursor},
			{"good cursor", Reader{User: "u1"}, PollOptions{Cursor: good}, nil},
		} {
			_, err := s.Poll(ctx, tc.r, tc.o)
			if !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
				t.Errorf("%s: err = %v, want %v", tc.name, err, tc.want)
			}
		}
	})
}

func TestConcurrentPollsOfOneUserAllWake(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, b backend) {
		ctx := testCtx(t)
		s := newStore(t, b.rdb, Options{})
		r := Reader{User: "42", Groups: []string{"ops"}}
		c := tail(t, s, r)
		const devices = 2
		var outs []<-chan pollOutcome
		for range devices {
			outs = append(outs, goPoll(ctx, s, r, PollOptions{Cursor: c, Wait: 10 * time.Second}))
		}
		waitFor(t, 5*time.Second, "both polls to wait", func() bool { return s.Hub().Waiting() == devices })
		id := toUser(t, s, "42", "for every device")
		for i, ch := range outs {
			res := await(t, ch, 2*time.Second)
			checkIDs(t, fmt.Sprintf("device %d", i), msgIDs(res.Messages), []string{id})
			c = res.Cursor
		}

		// The same for a group stream.
		outs = outs[:0]
		for range devices {
			outs = append(outs, goPoll(ctx, s, r, PollOptions{Cursor: c, Wait: 10 * time.Second}))
		}
		waitFor(t, 5*time.Second, "both polls to wait", func() bool { return s.Hub().Waiting() == devices })
		gid := toGroup(t, s, "ops", "for the group")
		for i, ch := range outs {
			res := await(t, ch, 2*time.Second)
			checkIDs(t, fmt.Sprintf("device %d", i), msgIDs(res.Messages), []string{gid})
		}
	})
}

// TestNoLostWakeup races a waiting poll against a publish many times: the
// poll must always come back with the message, long before its timeout.
func TestNoLostWakeup(t *testing.T) {
	t.Parallel()
	workers := map[string]int{"single": 50, "cluster": 20}
	rounds := map[string]int{"single": 20, "cluster": 10}
	eachBackend(t, func(t *testing.T, b backend) {
		ctx := testCtx(t)
		s := newStore(t, b.rdb, Options{})
		errs := make(chan error, workers[b.name])
		var wg sync.WaitGroup
		for w := range workers[b.name] {
			wg.Go(func() {
				errs <- raceRounds(ctx, s, Reader{User: fmt.Sprintf("w%d", w), Groups: []string{"ops"}}, rounds[b.name])
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Error(err)
			}
		}
	})
}

// raceRounds runs rounds of "poll and publish released at the same instant"
// for one user, each poll from the previous one's cursor.
func raceRounds(ctx context.Context, s *Store, r Reader, rounds int) error {
	res, err := s.Poll(ctx, r, PollOptions{})
	if err != nil {
		return err
	}
	cursor := res.Cursor
	for i := range rounds {
		start := make(chan struct{})
		polled := make(chan pollOutcome, 1)
		go func() {
			<-start
			t0 := time.Now()
			res, err := s.Poll(ctx, r, PollOptions{Cursor: cursor, Wait: 5 * time.Second})
			polled <- pollOutcome{res, err, time.Since(t0)}
		}()
		var ids []string
		var perr error
		published := make(chan struct{})
		go func() {
			defer close(published)
			<-start
			ids, perr = s.Publish(ctx, Target{Users: []string{r.User}}, Draft{Title: "race"}, "", testMaxBody)
		}()
		close(start)
		<-published
		o := <-polled
		switch {
		case perr != nil:
			return fmt.Errorf("%s round %d: publish: %v", r.User, i, perr)
		case o.err != nil:
			return fmt.Errorf("%s round %d: poll: %v", r.User, i, o.err)
		case len(o.res.Messages) != 1 || o.res.Messages[0].ID != ids[0]:
			return fmt.Errorf("%s round %d: poll got %v after %v, want %v", r.User, i, msgIDs(o.res.Messages), o.took, ids)
		case o.took >= 2*time.Second:
			return fmt.Errorf("%s round %d: poll took %v", r.User, i, o.took)
		}
		cursor = o.res.Cursor
	}
	return nil
}
