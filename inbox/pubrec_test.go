package inbox

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

var alice = Owner{Kind: 'u', Name: "alice"}

// publishWith publishes and fails the test on error.
func publishWith(t *testing.T, s *Store, tgt Target, d Draft, o PublishOptions) PublishResult {
	t.Helper()
	if d.Title == "" && d.Body == "" {
		d.Title = "hello"
	}
	if o.MaxBody == 0 {
		o.MaxBody = testMaxBody
	}
	if o.Owner == (Owner{}) {
		o.Owner = alice
	}
	if d.Sender == "" {
		d.Sender = o.Owner.Name
	}
	r, err := s.PublishWith(testCtx(t), tgt, d, o)
	if err != nil {
		t.Fatalf("PublishWith(%+v): %v", tgt, err)
	}
	return r
}

func TestParsePublishID(t *testing.T) {
	for _, id := range []string{"p.u.alice.1-0", "p.k.job.x.1700000000000-12", "p.u.a@b.c-d_e.0-0",
		"p.u." + strings.Repeat("a", MaxNameLen) + ".18446744073709551615-18446744073709551615"} {
		if err := ParsePublishID(id); err != nil {
			t.Errorf("ParsePublishID(%q) = %v, want nil", id, err)
		}
		p, _ := parsePubID(id)
		if p.String() != id {
			t.Errorf("parsePubID(%q).String() = %q", id, p.String())
		}
	}
	for _, id := range []string{"", "p.", "p.u.alice", "p.x.alice.1-0", "p.u..1-0", "u.1-0", "p.u.alice.01-0",
		"p.u.alice.1-", "p.u.al{ce.1-0", "p.u.alice.1-0.", "q.u.alice.1-0", "p.ualice.1-0",
		"p.u." + strings.Repeat("a", MaxNameLen+1) + ".1-0"} {
		if err := ParsePublishID(id); !errors.Is(err, ErrBadID) {
			t.Errorf("ParsePublishID(%q) = %v, want ErrBadID", id, err)
		}
	}
}

// TestPublishIDsUnique: publishes of one owner in one millisecond get
// distinct ids of that millisecond, each naming its record.
func TestPublishIDsUnique(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		at := time.Now()
		s := newStore(t, b.rdb, Options{Now: func() time.Time { return at }})
		const n = 40
		ids := make([]string, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ids[i] = publishWith(t, s, Target{Users: []string{"bob"}}, Draft{Title: fmt.Sprint(i)}, PublishOptions{}).PublishID
			}()
		}
		wg.Wait()
		seen := map[string]bool{}
		for _, id := range ids {
			p, err := parsePubID(id)
			if err != nil {
				t.Fatalf("publish id %q: %v", id, err)
			}
			if seen[id] || p.owner != alice || p.at.ms != uint64(ms(at)) || p.at.seq >= n {
				t.Fatalf("publish id %q: duplicate, or not alice's at %d with seq < %d", id, ms(at), n)
			}
			seen[id] = true
		}
		// The key owner k.alice is someone else: its ids never clash with alice's.
		k := publishWith(t, s, Target{Users: []string{"bob"}}, Draft{}, PublishOptions{Owner: Owner{Kind: 'k', Name: "alice"}})
		if !strings.HasPrefix(k.PublishID, "p.k.alice.") || seen[k.PublishID] {
			t.Fatalf("API key's publish id %q", k.PublishID)
		}
	})
}

// TestPublishRecord: a publish now is recorded as sent, lists each
// recipient's entry, and its entries name it.
func TestPublishRecord(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		s := newStore(t, b.rdb, Options{})
		ctx := testCtx(t)
		r := publishWith(t, s, Target{Users: []string{"bob", "carol", "bob"}}, Draft{Title: "t", Type: "news"}, PublishOptions{})
		if r.State != "sent" || r.Count != 3 || len(r.IDs) != 3 || r.IDs[0] != r.IDs[2] {
			t.Fatalf("result %+v", r)
		}
		p, _ := parsePubID(r.PublishID)
		rec, err := s.readRecord(ctx, p)
		must(t, err, "read record")
		if rec.f["state"] != "sent" || rec.f["to"] != `["bob","carol"]` || rec.f["count"] != "2" || rec.f["type"] != "news" {
			t.Fatalf("record %v", rec.f)
		}
		got, err := b.rdb.HGetAll(ctx, s.k.prcpt(p.owner.tag(), p.seq())).Result()
		must(t, err, "prcpt")
		if "u."+got["bob"] != r.IDs[0] || "u."+got["carol"] != r.IDs[1] || len(got) != 2 {
			t.Fatalf("recipients %v, ids %v", got, r.IDs)
		}
		xs, err := b.rdb.XRange(ctx, s.k.inbox("carol"), "-", "+").Result()
		must(t, err, "xrange")
		if len(xs) != 1 || xs[0].Values["pid"] != r.PublishID {
			t.Fatalf("carol's entries %v", xs)
		}
		ttl, err := b.rdb.PTTL(ctx, s.k.pub(p.owner.tag(), p.seq())).Result()
		must(t, err, "pttl")
		if ttl <= 0 || ttl > s.opt.Retention {
			t.Fatalf("record TTL %v, want within retention %v", ttl, s.opt.Retention)
		}
		// A retry under an idempotency key answers the first publish.
		a := publishWith(t, s, Target{Groups: []string{"g1"}}, Draft{}, PublishOptions{IdemKey: "k1"})
		a2 := publishWith(t, s, Target{Groups: []string{"g1"}}, Draft{}, PublishOptions{IdemKey: "k1"})
		if a.PublishID != a2.PublishID || a2.State != "sent" || a2.IDs[0] != a.IDs[0] || xlen(t, b.rdb, s.k.group("g1")) != 1 {
			t.Fatalf("retry %+v after %+v", a2, a)
		}
	})
}

// TestSentReadCounts: read counts are exact: of 1,000 recipients 300
// marked read and 10 deleted, Sent reports 300/690/10 and the detail
// pages list every recipient once.
func TestSentReadCounts(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		s := newStore(t, b.rdb, Options{})
		ctx := testCtx(t)
		users := make([]string, 1000)
		for i := range users {
			users[i] = fmt.Sprintf("r%04d", i)
		}
		r := publishWith(t, s, Target{Users: users}, Draft{Title: "count me"}, PublishOptions{})
		// Another publish of alice's: listed, with counts of its own.
		r2 := publishWith(t, s, Target{Users: users[:5]}, Draft{Title: "small"}, PublishOptions{})
		g := publishWith(t, s, Target{Groups: []string{"staff"}}, Draft{Title: "group"}, PublishOptions{})
		var wg sync.WaitGroup
		errs := make(chan error, len(users))
		for i := range 310 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				rd := Reader{User: users[i]}
				var err error
				if i < 300 {
					_, err = s.MarkRead(ctx, rd, []string{r.IDs[i]}, false)
				} else {
					err = s.Delete(ctx, rd, r.IDs[i])
				}
				errs <- err
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			must(t, err, "mark or delete")
		}
		page, err := s.Sent(ctx, alice, SentQuery{})
		must(t, err, "Sent")
		if len(page.Sends) != 3 || page.Next != "" {
			t.Fatalf("Sent: %d sends, next %q", len(page.Sends), page.Next)
		}
		for i, want := range []string{g.PublishID, r2.PublishID, r.PublishID} {
			if page.Sends[i].PublishID != want {
				t.Fatalf("send %d is %s, want %s (newest first)", i, page.Sends[i].PublishID, want)
			}
		}
		big := page.Sends[2]
		if big.Read == nil || *big.Read != 300 || *big.Unread != 690 || *big.Deleted != 10 || *big.Expired != 0 || big.Count != 1000 {
			t.Fatalf("counts %+v", big)
		}
		if sm := page.Sends[1]; *sm.Unread != 5 || *sm.Read != 0 {
			t.Fatalf("small send counts %+v", sm)
		}
		if gs := page.Sends[0]; gs.Read != nil || gs.Target != "groups" || gs.To[0] != "staff" || gs.Count != 1 {
			t.Fatalf("group send %+v", gs)
		}
		// Detail pages, all and filtered, add up.
		for _, c := range []struct {
			state string
			n     int
		}{{"", 1000}, {"read", 300}, {"unread", 690}, {"deleted", 10}, {"expired", 0}} {
			seen, after, pages := map[string]bool{}, "", 0
			for {
				d, err := s.SentDetail(ctx, alice, false, r.PublishID, SentDetailQuery{State: c.state, Limit: 100, After: after})
				must(t, err, "SentDetail")
				pages++
				for _, rc := range d.Recipients {
					if seen[rc.User] || rc.User <= after || (c.state != "" && rc.State != c.state) {
						t.Fatalf("state %q: recipient %+v repeated, out of order or unfiltered", c.state, rc)
					}
					seen[rc.User] = true
				}
				if *d.Send.Read != 300 {
					t.Fatalf("detail counts %+v", d.Send)
				}
				if d.Next == "" {
					break
				}
				after = d.Next
			}
			if len(seen) != c.n || pages > c.n/100+1 {
				t.Fatalf("state %q: %d recipients over %d pages, want %d", c.state, len(seen), pages, c.n)
			}
		}
		// Others' publishes are not found; an admin's view is.
		if _, err := s.SentDetail(ctx, Owner{Kind: 'k', Name: "alice"}, false, r.PublishID, SentDetailQuery{}); !errors.Is(err, ErrNotFound) {
			t.Fatalf("other owner's SentDetail: %v", err)
		}
		if d, err := s.SentDetail(ctx, Owner{Kind: 'u', Name: "root"}, true, g.PublishID, SentDetailQuery{}); err != nil || d.Recipients != nil {
			t.Fatalf("admin's SentDetail of a group send: %+v, %v", d, err)
		}
	})
}

// TestSentPaging: pages of Sent follow each other without gaps or
// repeats, also through one millisecond holding more publishes than a page.
func TestSentPaging(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		clock := &fakeClock{}
		s := newStore(t, b.rdb, Options{Now: clock.Now})
		var want []string
		for i := range 30 {
			if i == 5 {
				frozen := clock.Now().Add(time.Second)
				s.opt.Now = func() time.Time { return frozen } // 15 in one millisecond
			}
			if i == 20 {
				clock.Advance(2 * time.Second)
				s.opt.Now = clock.Now
			}
			want = append(want, publishWith(t, s, Target{Broadcast: true}, Draft{}, PublishOptions{}).PublishID)
		}
		var got []string
		before := ""
		for {
			page, err := s.Sent(testCtx(t), alice, SentQuery{Limit: 4, Before: before})
			must(t, err, "Sent")
			for _, sr := range page.Sends {
				got = append(got, sr.PublishID)
			}
			if page.Next == "" {
				break
			}
			before = page.Next
		}
		checkIDs(t, "sent pages", got, reversed(want))
	})
}

// TestWithdrawRevokes: a withdrawn sent publish is revoked once; others
// may not withdraw it, an admin may.
func TestWithdrawRevokes(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		var events []string
		var mu sync.Mutex
		s := newStore(t, b.rdb, Options{OnNotice: func(e string, _ time.Duration) {
			mu.Lock()
			events = append(events, e)
			mu.Unlock()
		}})
		ctx := testCtx(t)
		r := publishWith(t, s, Target{Users: []string{"bob", "carol"}}, Draft{}, PublishOptions{})
		if _, err := s.Withdraw(ctx, Owner{Kind: 'k', Name: "alice"}, false, r.PublishID); !errors.Is(err, ErrNotFound) {
			t.Fatalf("Withdraw by another owner: %v", err)
		}
		if _, err := s.Withdraw(ctx, alice, false, "p.u.alice.1-0"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("Withdraw of no publish: %v", err)
		}
		if _, err := s.Withdraw(ctx, alice, false, "p.u.alice"); !errors.Is(err, ErrBadID) {
			t.Fatalf("Withdraw of a bad id: %v", err)
		}
		for i, by := range []Owner{alice, {Kind: 'u', Name: "root"}} {
			st, err := s.Withdraw(ctx, by, i == 1, r.PublishID)
			if err != nil || st != "revoked" {
				t.Fatalf("Withdraw %d = %q, %v", i, st, err)
			}
		}
		for _, u := range []string{"bob", "carol"} {
			// The message gone, one tombstone in its place, after the second Withdraw too.
			xs, err := b.rdb.XRange(ctx, s.k.inbox(u), "-", "+").Result()
			must(t, err, "xrange")
			if len(xs) != 1 || xs[0].Values["revoke"] == nil {
				t.Fatalf("%s's stream after revoke: %v", u, xs)
			}
		}
		page, err := s.Sent(ctx, alice, SentQuery{})
		must(t, err, "Sent")
		if sr := page.Sends[0]; sr.State != "revoked" || sr.Read != nil {
			t.Fatalf("revoked send %+v", sr)
		}
		mu.Lock()
		defer mu.Unlock()
		if len(events) != 1 || events[0] != "revoked" {
			t.Fatalf("notices %v, want one revoked", events)
		}
	})
}

// recordState reads a publish's state.
func recordState(t *testing.T, s *Store, rdb redis.UniversalClient, pid string) string {
	t.Helper()
	p, err := parsePubID(pid)
	must(t, err, "parse %s", pid)
	st, err := rdb.HGet(testCtx(t), s.k.pub(p.owner.tag(), p.seq()), "state").Result()
	if err != nil && err != redis.Nil {
		t.Fatalf("record state: %v", err)
	}
	return st
}

// TestWithdrawRacesPublish: a withdraw that comes while a publish is
// writing its entries still removes every one of them: those it can find
// under the publish's idempotency key, and the publisher those it cannot.
func TestWithdrawRacesPublish(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		clock := &fakeClock{}
		var s *Store
		var withdrew []string
		s = newStore(t, b.rdb, Options{Now: clock.Now, ScheduleLease: 200 * time.Millisecond}, func(st *Store) {
			st.testHook = func(step, pid string) bool {
				if step != "written" {
					return false
				}
				got, err := st.Withdraw(context.Background(), alice, false, pid)
				if err != nil || got != "revoked" {
					t.Errorf("Withdraw during publish = %q, %v", got, err)
				}
				withdrew = append(withdrew, pid)
				// A scheduled delivery stops here (a crash), a publish now goes on.
				pp, _ := parsePubID(pid)
				rec, _ := st.readRecord(context.Background(), pp)
				return rec.f["send_at"] != ""
			}
		})
		ctx := testCtx(t)
		users := []string{"bob", "carol"}
		// A publish now, without idempotency key: Withdraw finds nothing
		// to revoke; the publisher revokes what it wrote.
		r := publishWith(t, s, Target{Users: users}, Draft{}, PublishOptions{})
		if r.State != "revoked" || len(r.IDs) != 0 || len(withdrew) != 1 || withdrew[0] != r.PublishID {
			t.Fatalf("publish answered %+v after withdraws %v", r, withdrew)
		}
		// A scheduled publish whose delivery stops after writing: Withdraw
		// finds the entries under the derived idempotency key.
		sc := publishWith(t, s, Target{Users: users}, Draft{}, PublishOptions{SendAt: clock.Now().Add(time.Second)})
		clock.Advance(time.Second)
		if _, err := s.schedulerRound(ctx); err != nil {
			t.Fatalf("round: %v", err)
		}
		if len(withdrew) != 2 {
			t.Fatalf("withdraws %v", withdrew)
		}
		for _, u := range users {
			xs, err := b.rdb.XRange(ctx, s.k.inbox(u), "-", "+").Result()
			must(t, err, "xrange")
			if len(xs) != 2 || xs[0].Values["revoke"] == nil || xs[1].Values["revoke"] == nil {
				t.Fatalf("%s's stream %v, want two tombstones only", u, xs)
			}
		}
		// After the lease, the queue forgets the revoked publish.
		clock.Advance(time.Second)
		if _, err := s.schedulerRound(ctx); err != nil {
			t.Fatalf("round: %v", err)
		}
		if dueLeft(t, s, b.rdb) != 0 || recordState(t, s, b.rdb, sc.PublishID) != "revoked" || recordState(t, s, b.rdb, r.PublishID) != "revoked" {
			t.Fatal("revoked publishes left queued or not revoked")
		}
	})
}

// TestSentExpired: once a message's expiry has passed, its recipients
// count as expired, read or not; a deleted one stays deleted.
func TestSentExpired(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		clock := &fakeClock{}
		s := newStore(t, b.rdb, Options{Now: clock.Now})
		ctx := testCtx(t)
		users := []string{"u1", "u2", "u3", "u4"}
		r := publishWith(t, s, Target{Users: users}, Draft{ExpiresIn: time.Minute}, PublishOptions{})
		_, err := s.MarkRead(ctx, Reader{User: "u1"}, []string{r.IDs[0]}, false)
		must(t, err, "MarkRead")
		must(t, s.Delete(ctx, Reader{User: "u2"}, r.IDs[1]), "Delete")
		counts := func() [4]int {
			page, err := s.Sent(ctx, alice, SentQuery{})
			must(t, err, "Sent")
			sr := page.Sends[0]
			return [4]int{*sr.Read, *sr.Unread, *sr.Deleted, *sr.Expired}
		}
		if got := counts(); got != [4]int{1, 2, 1, 0} {
			t.Fatalf("before expiry read/unread/deleted/expired = %v", got)
		}
		clock.Advance(time.Minute)
		unread(t, s, Reader{User: "u3"}) // drops u3's expired id from its unread set
		if got := counts(); got != [4]int{0, 0, 1, 3} {
			t.Fatalf("after expiry read/unread/deleted/expired = %v", got)
		}
	})
}
