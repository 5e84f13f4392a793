package inbox

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// tcMsg is one message as the by-type model knows it.
type tcMsg struct {
	id      string // public id
	user    string // inbox owner ("" for shared)
	stream  string // "u", "b" or "g.<group>"
	typ     string
	expires int64 // unix ms, 0 = never
	gone    bool  // inbox entry deleted, or revoked
	pub     int   // index of its publish in the run (-1: written raw)
}

// tcModel predicts every reader's unread counts per type.
type tcModel struct {
	msgs   []*tcMsg
	read   map[string]map[string]bool // user → public ids read
	hidden map[string]map[string]bool // user → shared ids deleted
}

// visible tells whether m is in r's view at all.
func (m *tcMsg) visible(r Reader) bool {
	switch {
	case m.user != "":
		return m.user == r.User
	case m.stream == "b":
		return true
	}
	return slices.Contains(r.Groups, m.stream[2:])
}

// counts is the model's answer for r at nowMS.
func (md *tcModel) counts(r Reader, nowMS int64) Counts {
	c := Counts{ByType: map[string]int{}}
	for _, m := range md.msgs {
		if !m.visible(r) || m.gone || md.read[r.User][m.id] || md.hidden[r.User][m.id] {
			continue
		}
		if m.expires != 0 && m.expires <= nowMS {
			continue
		}
		c.Total++
		c.ByType[m.typ]++
	}
	return c
}

// expiresBetween tells whether a message expires in (a, b]: an answer
// computed in between may count it either way.
func (md *tcModel) expiresBetween(a, b int64) bool {
	for _, m := range md.msgs {
		if m.expires > a && m.expires <= b {
			return true
		}
	}
	return false
}

func sameCounts(total int, byType map[string]int, want Counts) bool {
	if total != want.Total || len(byType) != len(want.ByType) {
		return false
	}
	for t, n := range want.ByType {
		if byType[t] != n {
			return false
		}
	}
	return true
}

// TestUnreadByTypeModel runs seeded random operations — publishes of three
// types to users, groups and everyone (some expiring), marking read by id
// and all, deletions, revokes, history filtered by types, clock advances,
// and data as an older build wrote it
// (inbox entries without the per-type hashes, or the hashes lost) — and
// after each one checks every reader's Unread counts and a timeout=0
// poll's counts against a plain model, per type and in total.
func TestUnreadByTypeModel(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, b backend) {
		ctx := testCtx(t)
		clock := &fakeClock{}
		s := newStore(t, b.rdb, Options{Now: clock.Now})
		readers := []Reader{
			{User: "tu0", Groups: []string{"tg0"}},
			{User: "tu1", Groups: []string{"tg0", "tg1"}},
			{User: "tu2"},
			{User: "tu3", Groups: []string{"tg1"}},
		}
		types := []string{"alert", "news", "chat"}
		md := &tcModel{read: map[string]map[string]bool{}, hidden: map[string]map[string]bool{}}
		for _, r := range readers {
			md.read[r.User], md.hidden[r.User] = map[string]bool{}, map[string]bool{}
		}
		owner := Owner{Kind: 'u', Name: "tc-admin"}
		var pubs []string // publish ids, by publish index
		rng := rand.New(rand.NewPCG(14, 3))
		const ops = 1000
		var log []string
		fail := func(format string, a ...any) {
			t.Helper()
			start := max(0, len(log)-15)
			t.Fatalf("after op %d (last ops:\n  %s)\n%s", len(log), fmt.Sprint(log[start:]), fmt.Sprintf(format, a...))
		}
		pickMsgs := func(r Reader, n int) []*tcMsg {
			var vis []*tcMsg
			for _, m := range md.msgs {
				if m.visible(r) {
					vis = append(vis, m)
				}
			}
			rng.Shuffle(len(vis), func(i, j int) { vis[i], vis[j] = vis[j], vis[i] })
			return vis[:min(n, len(vis))]
		}
		for op := 0; op < ops; op++ {
			r := readers[rng.IntN(len(readers))]
			switch k := rng.IntN(100); {
			case k < 40: // publish
				d := Draft{Title: "m", Type: types[rng.IntN(len(types))]}
				if rng.IntN(10) < 3 {
					d.ExpiresIn = time.Duration(1+rng.IntN(300)) * time.Second
				}
				var tgt Target
				switch w := rng.IntN(10); {
				case w < 6:
					for _, rr := range readers {
						if rng.IntN(2) == 0 {
							tgt.Users = append(tgt.Users, rr.User)
						}
					}
					if len(tgt.Users) == 0 {
						tgt.Users = []string{r.User}
					}
				case w < 9:
					tgt.Groups = []string{[]string{"tg0", "tg1"}[rng.IntN(2)]}
				default:
					tgt.Broadcast = true
				}
				pr, err := s.PublishWith(ctx, tgt, d, PublishOptions{MaxBody: testMaxBody, Owner: owner})
				if err != nil || pr.State != "sent" {
					fail("PublishWith(%+v): %+v %v", tgt, pr, err)
				}
				ids := pr.IDs
				pubs = append(pubs, pr.PublishID)
				for i, id := range ids {
					m := &tcMsg{id: id, typ: d.Type, pub: len(pubs) - 1}
					switch {
					case len(tgt.Users) > 0:
						m.user, m.stream = tgt.Users[i], "u"
					case len(tgt.Groups) > 0:
						m.stream = "g." + tgt.Groups[i]
					default:
						m.stream = "b"
					}
					// The exact expiry is the store's clock at publish time.
					if d.ExpiresIn > 0 {
						m.expires = s.expiryOf(t, m)
					}
					md.msgs = append(md.msgs, m)
				}
				log = append(log, fmt.Sprintf("publish %s %+v", d.Type, tgt))
			case k < 55: // mark some read
				var ids []string
				for _, m := range pickMsgs(r, 1+rng.IntN(4)) {
					ids = append(ids, m.id)
				}
				if len(ids) == 0 {
					continue
				}
				c, err := s.MarkReadCounts(ctx, r, ids, false)
				if err != nil {
					fail("MarkReadCounts(%s, %v): %v", r.User, ids, err)
				}
				for _, id := range ids {
					md.read[r.User][id] = true
				}
				md.checkOne(t, fail, clock, "MarkReadCounts", r, c.Total, c.ByType)
				log = append(log, fmt.Sprintf("read %s %v", r.User, ids))
			case k < 60: // mark all read
				c, err := s.MarkReadCounts(ctx, r, nil, true)
				if err != nil {
					fail("MarkReadCounts(%s, all): %v", r.User, err)
				}
				for _, m := range md.msgs {
					if m.visible(r) {
						md.read[r.User][m.id] = true
					}
				}
				md.checkOne(t, fail, clock, "MarkReadCounts all", r, c.Total, c.ByType)
				log = append(log, "read all "+r.User)
			case k < 72: // delete
				ms := pickMsgs(r, 1)
				if len(ms) == 0 {
					continue
				}
				m := ms[0]
				err := s.Delete(ctx, r, m.id)
				already := m.gone || md.hidden[r.User][m.id]
				if already && !errors.Is(err, ErrNotFound) || !already && err != nil {
					fail("Delete(%s, %s) (deleted before: %v): %v", r.User, m.id, already, err)
				}
				if m.user != "" {
					m.gone = true
				} else {
					md.hidden[r.User][m.id] = true
				}
				log = append(log, fmt.Sprintf("delete %s %s", r.User, m.id))
			case k < 76: // history filtered by types
				var want []string
				for _, typ := range types {
					if rng.IntN(2) == 0 {
						want = append(want, typ)
					}
				}
				md.checkHistory(t, s, fail, clock, r, want)
				log = append(log, fmt.Sprintf("history %s types %v", r.User, want))
			case k < 79: // revoke a publish
				if len(pubs) == 0 {
					continue
				}
				i := rng.IntN(len(pubs))
				state, err := s.Withdraw(ctx, owner, false, pubs[i])
				if err != nil || state != "revoked" {
					fail("Withdraw(%s): %q %v", pubs[i], state, err)
				}
				for _, m := range md.msgs {
					if m.pub == i {
						m.gone = true
					}
				}
				log = append(log, fmt.Sprintf("revoke %s", pubs[i]))
			case k < 82: // clock
				dur := time.Duration(1+rng.IntN(120)) * time.Second
				clock.Advance(dur)
				log = append(log, fmt.Sprintf("advance %v", dur))
			case k < 92: // an older build's inbox entry: no per-type hashes
				m := s.rawInboxEntry(t, r.User, types[rng.IntN(len(types))], rng.IntN(3) == 0, clock.Now())
				md.msgs = append(md.msgs, m)
				log = append(log, fmt.Sprintf("raw entry %s %s", r.User, m.typ))
			default: // the per-type hashes lost, as if an older build wrote everything
				must(t, b.rdb.Del(ctx, s.k.utype(r.User), s.k.tunread(r.User)).Err(), "del hashes")
				log = append(log, "drop hashes "+r.User)
			}
			for _, rr := range readers {
				md.check(t, s, fail, clock, rr)
			}
		}
	})
}

// check compares r's Unread and timeout=0 poll counts with the model.
func (md *tcModel) check(t *testing.T, s *Store, fail func(string, ...any), clock *fakeClock, r Reader) {
	t.Helper()
	for try := 0; ; try++ {
		t0 := ms(clock.Now())
		c, _, err := s.UnreadCounts(t.Context(), r)
		if err != nil {
			fail("UnreadCounts(%s): %v", r.User, err)
		}
		p, err := s.Poll(t.Context(), r, PollOptions{})
		if err != nil {
			fail("Poll(%s): %v", r.User, err)
		}
		t1 := ms(clock.Now())
		if md.expiresBetween(t0-1, t1) && try < 5 {
			continue // a message expired while counting: ask again
		}
		want := md.counts(r, t1)
		if !sameCounts(c.Total, c.ByType, want) {
			fail("UnreadCounts(%s) = %d %v, model %d %v", r.User, c.Total, c.ByType, want.Total, want.ByType)
		}
		if !sameCounts(p.Unread, p.UnreadByType, want) {
			fail("Poll(%s, timeout 0) unread = %d %v, model %d %v", r.User, p.Unread, p.UnreadByType, want.Total, want.ByType)
		}
		return
	}
}

// checkHistory compares r's history filtered by types (none: all) with
// the messages of those types the model says r sees: not deleted, hidden
// or expired, and no more than that.
func (md *tcModel) checkHistory(t *testing.T, s *Store, fail func(string, ...any), clock *fakeClock, r Reader, types []string) {
	t.Helper()
	for try := 0; ; try++ {
		t0 := ms(clock.Now())
		var got []string
		for _, m := range allMessages(t, s, r, HistoryQuery{Types: types}) {
			if len(types) > 0 && !slices.Contains(types, m.Type) {
				fail("history of %s with types %v listed %s of type %q", r.User, types, m.ID, m.Type)
			}
			got = append(got, m.ID)
		}
		t1 := ms(clock.Now())
		if md.expiresBetween(t0-1, t1) && try < 5 {
			continue
		}
		var want []string
		for _, m := range md.msgs {
			if !m.visible(r) || m.gone || md.hidden[r.User][m.id] || (m.expires != 0 && m.expires <= t1) {
				continue
			}
			if len(types) == 0 || slices.Contains(types, m.typ) {
				want = append(want, m.id)
			}
		}
		slices.Sort(got)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			fail("history of %s with types %v:\n got  %v\n want %v", r.User, types, got, want)
		}
		return
	}
}

// checkOne compares counts a call answered with the model.
func (md *tcModel) checkOne(t *testing.T, fail func(string, ...any), clock *fakeClock, what string, r Reader, total int, byType map[string]int) {
	t.Helper()
	now := ms(clock.Now())
	if md.expiresBetween(now-1000, now) {
		return // too close to an expiry to tell
	}
	if want := md.counts(r, now); !sameCounts(total, byType, want) {
		fail("%s(%s) = %d %v, model %d %v", what, r.User, total, byType, want.Total, want.ByType)
	}
}

// expiryOf reads a message's expiry field from its stream.
func (s *Store) expiryOf(t *testing.T, m *tcMsg) int64 {
	t.Helper()
	ref, err := parseMsgRef(m.id)
	if err != nil {
		t.Fatal(err)
	}
	key := s.k.broadcast()
	switch {
	case m.user != "":
		key = s.k.inbox(m.user)
	case m.stream != "b":
		key = s.k.group(m.stream[2:])
	}
	xs, err := s.rdb.XRange(t.Context(), key, ref.entry.String(), ref.entry.String()).Result()
	if err != nil || len(xs) != 1 {
		t.Fatalf("XRANGE %s %s: %v %v", key, ref.entry, xs, err)
	}
	e, _ := strconv.ParseInt(fmt.Sprint(xs[0].Values["expires"]), 10, 64)
	return e
}

// rawInboxEntry writes an inbox entry and its unread bookkeeping the way a
// build without per-type counts did: no utype/tunread hashes.
func (s *Store) rawInboxEntry(t *testing.T, user, typ string, expiring bool, now time.Time) *tcMsg {
	t.Helper()
	ctx := t.Context()
	d := Draft{Title: "old", Type: typ, Level: "info", Sender: "old"}
	if expiring {
		d.ExpiresIn = 90 * time.Second
	}
	fv, exp := d.fields(now)
	vals := make([]string, len(fv))
	for i, v := range fv {
		vals[i] = v.(string)
	}
	id, err := s.rdb.XAdd(ctx, &redis.XAddArgs{Stream: s.k.inbox(user), Values: vals}).Result()
	if err != nil {
		t.Fatalf("XADD: %v", err)
	}
	e, err := parseEntryID(id)
	if err != nil {
		t.Fatal(err)
	}
	must(t, s.rdb.ZAdd(ctx, s.k.unread(user), redis.Z{Score: float64(e.ms), Member: id}).Err(), "zadd unread")
	if exp != 0 {
		must(t, s.rdb.ZAdd(ctx, s.k.expiring(user), redis.Z{Score: float64(exp), Member: id}).Err(), "zadd expiring")
	}
	return &tcMsg{id: s.k.userStream(user).publicID(e), user: user, stream: "u", typ: typ, expires: exp, pub: -1}
}

// TestUnreadByTypeTrimmed checks the per-type counts against the messages
// actually left after trimming drops unread inbox entries: publish 250
// messages of rotating types to a stream capped near 100, then compare
// UnreadCounts with the unread messages history lists.
func TestUnreadByTypeTrimmed(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, b backend) {
		s := newStore(t, b.rdb, Options{MaxLen: 50})
		r := Reader{User: "trimmed"}
		types := []string{"a", "b", "c", "d"}
		for i := 0; i < 250; i++ {
			publish(t, s, Target{Users: []string{r.User}}, Draft{Title: "m", Type: types[(i*7/3)%4]}, "")
			// After every publish (the next one, or a read, would rebuild
			// hashes that went out of step, hiding the fault but paying
			// for a rebuild): utype holds exactly the unread ids.
			h, err := b.rdb.HLen(t.Context(), s.k.utype(r.User)).Result()
			must(t, err, "HLEN")
			if z := b.rdb.ZCard(t.Context(), s.k.unread(r.User)).Val(); h != z {
				t.Fatalf("after %d publishes: utype holds %d ids, unread %d", i+1, h, z)
			}
			if i%40 == 39 {
				c, _, err := s.UnreadCounts(t.Context(), r)
				must(t, err, "UnreadCounts")
				want := Counts{ByType: map[string]int{}}
				for _, m := range allMessages(t, s, r, HistoryQuery{}) {
					if !m.Read {
						want.Total++
						want.ByType[m.Type]++
					}
				}
				if !sameCounts(c.Total, c.ByType, want) {
					t.Fatalf("after %d publishes: UnreadCounts = %d %v, messages left %d %v", i+1, c.Total, c.ByType, want.Total, want.ByType)
				}
			}
		}
		if n := xlen(t, b.rdb, s.k.inbox(r.User)); n >= 250 {
			t.Fatalf("stream not trimmed: %d entries", n)
		}
	})
}

// allMessages lists the reader's whole history for q.
func allMessages(t *testing.T, s *Store, r Reader, q HistoryQuery) []Message {
	t.Helper()
	var out []Message
	q.Limit = MaxHistoryLimit
	for {
		res := history(t, s, r, q)
		out = append(out, res.Messages...)
		if res.Next == "" {
			return out
		}
		q.Before = res.Next
	}
}

// TestHistoryTypesLimit checks the bounds on a history query's types.
func TestHistoryTypesLimit(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, b backend) {
		s := newStore(t, b.rdb, Options{})
		r := Reader{User: "typeslimit"}
		many := make([]string, MaxHistoryTypes+1)
		for i := range many {
			many[i] = strconv.Itoa(i)
		}
		if _, err := s.History(t.Context(), r, HistoryQuery{Types: many}); !errors.Is(err, ErrInvalid) {
			t.Fatalf("History with %d types: %v, want ErrInvalid", len(many), err)
		}
		if _, err := s.History(t.Context(), r, HistoryQuery{Types: []string{strings.Repeat("x", MaxTypeLen+1)}}); !errors.Is(err, ErrInvalid) {
			t.Fatalf("History with a type of %d bytes: %v, want ErrInvalid", MaxTypeLen+1, err)
		}
		if _, err := s.History(t.Context(), r, HistoryQuery{Types: many[:MaxHistoryTypes]}); err != nil {
			t.Fatalf("History with %d types: %v", MaxHistoryTypes, err)
		}
	})
}

// TestUnreadByTypeWaitingPoll checks the per-type counts of polls that
// waited: the instance answers them from what the wake-ups told it, so
// each wake-up must keep the per-type counts right, also when it left the
// message's fields out (a large message).
func TestUnreadByTypeWaitingPoll(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, b backend) {
		ctx := testCtx(t)
		s := newStore(t, b.rdb, Options{})
		r := Reader{User: "waiter"}
		to := Target{Users: []string{r.User}}
		publish(t, s, to, Draft{Title: "m", Type: "a"}, "")
		cur := poll(t, s, r, PollOptions{}).Cursor
		steps := []struct {
			d    Draft
			want map[string]int
		}{
			{Draft{Title: "m", Type: "b"}, map[string]int{"a": 1, "b": 1}},
			{Draft{Title: "m", Type: "b"}, map[string]int{"a": 1, "b": 2}},
			{Draft{Body: strings.Repeat("x", 3<<10), Type: "a"}, map[string]int{"a": 2, "b": 2}},
			{Draft{Title: "m", Type: "c"}, map[string]int{"a": 2, "b": 2, "c": 1}},
		}
		for i, st := range steps {
			ch := goPoll(ctx, s, r, PollOptions{Cursor: cur, Wait: 10 * time.Second})
			// The poll waits on the hub once it has read and found nothing.
			waitFor(t, 5*time.Second, "a waiting poll", func() bool { return s.Hub().Waiting() > 0 })
			publish(t, s, to, st.d, "")
			res := await(t, ch, 5*time.Second)
			if len(res.Messages) != 1 {
				t.Fatalf("step %d: %d messages", i, len(res.Messages))
			}
			want := Counts{Total: 0, ByType: st.want}
			for _, n := range st.want {
				want.Total += n
			}
			if !sameCounts(res.Unread, res.UnreadByType, want) {
				t.Fatalf("step %d (type %s): waiting poll answered unread %d %v, want %d %v", i, st.d.Type, res.Unread, res.UnreadByType, want.Total, want.ByType)
			}
			cur = res.Cursor
		}
	})
}
