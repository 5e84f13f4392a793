package inbox

import (
	"fmt"
	"time"
)

// The checks of TestModel. Answers that do not wait (timeout=0 polls,
// Unread, MarkRead, History) must match the model exactly: nothing runs
// concurrently with them but polls, which change nothing. Answers of
// waiting polls may see each message in any state it had in the window
// [answer - trust - slack, answer], the trust bound being
// Options.TrustFor, and slack the machine's own delays (widened by a
// poll's overrun of its wait or the longest stall measured during it, up
// to modelMaxOverrun): that is the only tolerance. It applies to counts
// (see countRange), read flags, messages deleted or expired, messages
// left out of an answer with room for them, and how long a poll may hold
// back a message owed to it. A, which loses no wake-ups, gets no trust
// bound for its counts: only the slack.
//
// Where several streams hold entries of the same millisecond the checks
// accept any order among them: they compare by millisecond across streams
// and by position within a stream.

// modelMaxOverrun caps how much later than its wait a waiting poll may
// answer: a store that overslept by more is wrong however slow the
// machine.
const modelMaxOverrun = time.Second

// exactCount checks unread counts that must equal the model's now, in
// total and per type.
func (r *modelRun) exactCount(what string, inst, u, n int, byType map[string]int) error {
	if want := r.m.unread(u); n != want {
		return fmt.Errorf("%s on %s for %s: unread %d, model %d", what, instName(inst), userName(u), n, want)
	}
	if want := r.m.unreadByType(u); !sameTypeCounts(byType, want) {
		return fmt.Errorf("%s on %s for %s: unread by type %v, model %v", what, instName(inst), userName(u), byType, want)
	}
	return nil
}

// sameTypeCounts compares per-type counts (a nil map is empty).
func sameTypeCounts(got, want map[string]int) bool {
	if len(got) != len(want) {
		return false
	}
	for t, n := range want {
		if got[t] != n {
			return false
		}
	}
	return true
}

// resolve finds the model's messages for an answer and compares fields.
func (r *modelRun) resolve(u int, got []Message) ([]*modelMsg, error) {
	out := make([]*modelMsg, len(got))
	for i, g := range got {
		msg, err := r.m.lookup(u, g.ID)
		if err != nil {
			return nil, err
		}
		var exp int64
		if !g.Expires.IsZero() {
			exp = g.Expires.UnixMilli()
		}
		if g.Title != msg.title || g.Type != msg.typ || g.Sender != msg.sender || g.Source != source(msg.stream) || exp != msg.expiresAt {
			return nil, fmt.Errorf("%s: got title %q type %q sender %q source %q expires %d, model %q %q %q %q %d",
				msg, g.Title, g.Type, g.Sender, g.Source, exp, msg.title, msg.typ, msg.sender, source(msg.stream), msg.expiresAt)
		}
		out[i] = msg
	}
	return out, nil
}

// inOrder checks that an answer runs oldest first (or newest first) by
// time across streams and by position within each stream, and holds no
// message twice.
func inOrder(got []*modelMsg, newestFirst bool) error {
	last := map[string]*modelMsg{}
	for i, g := range got {
		if i > 0 {
			p := got[i-1]
			if !newestFirst && g.ms < p.ms || newestFirst && g.ms > p.ms {
				return fmt.Errorf("%s comes after %s", g, p)
			}
		}
		if p := last[g.stream]; p != nil && (!newestFirst && g.index <= p.index || newestFirst && g.index >= p.index) {
			return fmt.Errorf("%s comes after %s of the same stream", g, p)
		}
		last[g.stream] = g
	}
	return nil
}

// describe says what the model knows of a message, for failure reports.
func (r *modelRun) describe(msg *modelMsg) string {
	s := fmt.Sprintf("%s, published by op #%d %v before", msg, msg.op, time.Since(msg.pub.end).Round(time.Millisecond))
	if msg.dropped {
		s += ", its wake-ups lost on B"
	}
	return s
}

// checkNow checks the answer of a poll that did not wait: it must hold
// the oldest messages the client is owed (up to limit, with more set if
// it left any out), with the current read flags and unread count.
func (r *modelRun) checkNow(c *modelClient, inst, limit int, res PollResult, start time.Time) error {
	u := c.user
	where := fmt.Sprintf("timeout=0 poll of c%d (%s) on %s, limit %d", c.idx, userName(u), instName(inst), limit)
	if res.Reset {
		return fmt.Errorf("%s: reset, but no stream was trimmed", where)
	}
	if len(res.Messages) > limit {
		return fmt.Errorf("%s: %d messages", where, len(res.Messages))
	}
	got, err := r.resolve(u, res.Messages)
	if err != nil {
		return fmt.Errorf("%s: %w", where, err)
	}
	if err := inOrder(got, false); err != nil {
		return fmt.Errorf("%s: %w", where, err)
	}
	avail := r.m.available(u, c.pos)
	owed := map[*modelMsg]bool{}
	next := map[string]int{} // per stream: how many of its owed messages the answer holds
	perStream := map[string][]*modelMsg{}
	for _, a := range avail {
		owed[a] = true
		perStream[a.stream] = append(perStream[a.stream], a)
	}
	for _, g := range got {
		if !owed[g] {
			if g.index < c.pos[g.stream] {
				return fmt.Errorf("%s: %s again (the cursor is past it)", where, g)
			}
			return fmt.Errorf("%s: %s, which is deleted or expired", where, g)
		}
		if want := perStream[g.stream][next[g.stream]]; want != g {
			return fmt.Errorf("%s: skipped %s (got %s)", where, r.describe(want), g)
		}
		next[g.stream]++
	}
	// The contract orders messages across streams only within an answer:
	// an answer cut short (more) may leave an older message of one stream
	// for the next poll while it returns a newer one of another (when the
	// first stream's read found only hidden or expired entries).
	if len(got) < len(avail) && !res.More {
		var missing []string
		for _, a := range avail {
			if !contains(got, a) {
				missing = append(missing, r.describe(a))
				if len(missing) == 3 {
					break
				}
			}
		}
		return fmt.Errorf("%s: %d of %d owed messages and more=false; missing %v", where, len(got), len(avail), missing)
	}
	for i, g := range got {
		if want := r.m.isRead(u, g); res.Messages[i].Read != want {
			return fmt.Errorf("%s: %s read=%v, model %v", where, g, res.Messages[i].Read, want)
		}
	}
	if want := r.m.unread(u); res.Unread != want {
		return fmt.Errorf("%s: unread %d, model %d", where, res.Unread, want)
	}
	if want := r.m.unreadByType(u); !sameTypeCounts(res.UnreadByType, want) {
		return fmt.Errorf("%s: unread by type %v, model %v", where, res.UnreadByType, want)
	}
	if err := r.checkRevoked(where, c, res, time.Now(), start); err != nil {
		return err
	}
	r.advanceClient(c, res.Cursor, got)
	return nil
}

// checkRevoked checks an answer's revoked ids: each names a message the
// model revoked (by t, the answer's time) from a stream the user reads,
// and the client stops showing it. An answer that read everything (more
// = false) must name every message the client shows that was revoked
// before w (the start of a poll that reads Redis; for a waiting poll, the
// trust bound and slack before its answer).
func (r *modelRun) checkRevoked(where string, c *modelClient, res PollResult, t, w time.Time) error {
	u, m := c.user, r.m
	seen := map[string]bool{}
	for _, id := range res.Revoked {
		if seen[id] {
			return fmt.Errorf("%s: revoked lists %s twice", where, id)
		}
		seen[id] = true
		msg, err := r.m.lookup(u, id)
		if err != nil {
			return fmt.Errorf("%s: revoked: %w", where, err)
		}
		if msg.revoked == nil || !msg.revoked.start.Before(t) {
			return fmt.Errorf("%s: revoked lists %s, which was not revoked", where, msg)
		}
		delete(c.shown, msg)
	}
	if res.More {
		return nil
	}
	for msg := range c.shown {
		// A message its user deleted from the inbox before the revoke has
		// no entry left to revoke, so no tombstone: its user's other
		// devices are not told of a deletion either.
		if gone := m.relOf(u, msg).gone; msg.revoked != nil && msg.revoked.end.Before(w) && (gone == nil || !gone.start.Before(msg.revoked.end)) {
			return fmt.Errorf("%s: the client shows %s, revoked %v before the answer, but revoked is %v",
				where, r.describe(msg), t.Sub(msg.revoked.end).Round(time.Millisecond), res.Revoked)
		}
	}
	return nil
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

func contains(ms []*modelMsg, m *modelMsg) bool {
	for _, x := range ms {
		if x == m {
			return true
		}
	}
	return false
}

// advanceClient moves a client past the messages it got.
func (r *modelRun) advanceClient(c *modelClient, cursor string, got []*modelMsg) {
	pos := make(map[string]int, len(c.pos))
	for k, v := range c.pos {
		pos[k] = v
	}
	for _, g := range got {
		pos[g.stream] = g.index + 1
		if c.shown == nil {
			c.shown = map[*modelMsg]bool{}
		}
		c.shown[g] = true
	}
	c.moveTo(cursor, pos)
}

// checkWaited checks the answer of a waiting poll (see the tolerance above).
func (r *modelRun) checkWaited(c *modelClient, p *bgPoll) error {
	u := c.user
	where := fmt.Sprintf("poll of c%d (%s) on %s from op #%d, limit %d, wait %v, answered after %v",
		c.idx, userName(u), instName(p.inst), p.op, p.limit, p.wait, p.end.Sub(p.start).Round(time.Millisecond))
	if p.err != nil {
		return fmt.Errorf("%s: %w", where, p.err)
	}
	r.stats.waited[p.inst]++
	if p.wait >= 2*r.trust {
		r.stats.longWaits++
	}
	res := p.res
	t := p.end
	// A poll that came back later than its wait allows was held up by the
	// machine, perhaps after it had computed its answer: the overrun
	// widens the window, so that a starved machine does not fail the test,
	// up to a cap past which the poll itself is too late.
	overrun := max(0, t.Sub(p.start)-p.wait)
	if overrun > modelMaxOverrun {
		return fmt.Errorf("%s: answered %v after its wait ended, more than the %v a loaded machine is allowed",
			where, overrun.Round(time.Millisecond), modelMaxOverrun)
	}
	r.stats.maxOverrun = max(r.stats.maxOverrun, overrun)
	// The machine's stalls during the wait may have held the poll up just
	// as well (an overrun is mostly one of them): they widen it too.
	stalled := r.stalls.longest(p.start, t)
	r.stats.maxStall = max(r.stats.maxStall, stalled)
	slack := r.slack + min(max(overrun, stalled), modelMaxOverrun)
	w := t.Add(-r.trust - slack)
	if res.Reset {
		return fmt.Errorf("%s: reset, but no stream was trimmed", where)
	}
	if len(res.Messages) > p.limit {
		return fmt.Errorf("%s: %d messages", where, len(res.Messages))
	}
	got, err := r.resolve(u, res.Messages)
	if err != nil {
		return fmt.Errorf("%s: %w", where, err)
	}
	if err := inOrder(got, false); err != nil {
		return fmt.Errorf("%s: %w", where, err)
	}
	from := map[string]int{}
	for k, v := range c.pos {
		from[k] = v
	}
	for i, g := range got {
		if g.index < from[g.stream] {
			return fmt.Errorf("%s: %s again (the cursor is past it)", where, g)
		}
		if sp := r.m.goneBefore(u, g, w); sp != nil {
			return fmt.Errorf("%s: %s, deleted or expired %v before the answer (trust bound %v + slack %v)",
				where, g, t.Sub(sp.end).Round(time.Millisecond), r.trust, slack)
		}
		for _, x := range r.m.streams[g.stream][from[g.stream]:g.index] {
			if !r.m.goneBy(u, x, t) {
				return fmt.Errorf("%s: skipped %s (got %s)", where, r.describe(x), g)
			}
		}
		from[g.stream] = g.index + 1
		// Owed to this poll since it began or since the publish, whichever
		// came later: a lost wake-up may delay it by the trust bound.
		owed := t.Sub(later(g.pub.end, p.start))
		r.stats.slowest[p.inst] = max(r.stats.slowest[p.inst], owed)
		if owed > r.trust+slack {
			return fmt.Errorf("%s: %s came %v after it was owed to the poll (trust bound %v + slack %v)",
				where, r.describe(g), owed.Round(time.Millisecond), r.trust, slack)
		}
		rel := r.m.relOf(u, g)
		switch read := res.Messages[i].Read; {
		case read && (rel.read == nil || !rel.read.start.Before(t)):
			return fmt.Errorf("%s: %s read=true, but it was not read by then", where, g)
		case !read && rel.read != nil && rel.read.end.Before(w):
			return fmt.Errorf("%s: %s read=false, but it was read %v before the answer (trust bound %v + slack %v)",
				where, g, t.Sub(rel.read.end).Round(time.Millisecond), r.trust, slack)
		}
	}
	lo, hi := r.m.countRange(u, w, t)
	if res.Unread < lo || res.Unread > hi {
		return fmt.Errorf("%s: unread %d, model %d..%d within the trust bound %v + slack %v (now %d; last changes, relative to the answer: %s)",
			where, res.Unread, lo, hi, r.trust, slack, r.m.unread(u), r.m.countHistory(u, t))
	}
	if lo, hi := r.m.countRange(u, t, t); res.Unread < lo || res.Unread > hi {
		// Not a count of the moment of the answer: the tolerance was used.
		r.stats.tolerated[p.inst]++
		age := r.m.countAge(u, res.Unread, t, r.trust+slack)
		r.stats.countAge[p.inst] = max(r.stats.countAge[p.inst], age)
		// A loses no wake-ups, and by the trust rule no fact outlives a
		// wake-up that contradicts it: A's count may lag by a wake-up's
		// way (the slack), not by the trust bound.
		if lo, hi := r.m.countRange(u, t.Add(-slack), t); p.inst == 0 && !p.resubscribed && (res.Unread < lo || res.Unread > hi) {
			return fmt.Errorf("%s: unread %d, a count of %v before the answer or earlier, but A loses no wake-ups: slack %v allowed (now %d; last changes, relative to the answer: %s)",
				where, res.Unread, age, slack, r.m.unread(u), r.m.countHistory(u, t))
		}
	}
	if exact := r.m.countAt(u, t); res.Unread != exact {
		// The tolerance stands for changes the answer did not see yet: one
		// must have been under way within the window, and the count is off
		// by no more than those changes moved it.
		if moved := r.m.countMoves(u, w, t); max(res.Unread-exact, exact-res.Unread) > moved {
			return fmt.Errorf("%s: unread %d, model %d, but the changes within the trust bound %v + slack %v moved it by %d (last changes, relative to the answer: %s)",
				where, res.Unread, exact, r.trust, slack, moved, r.m.countHistory(u, t))
		}
	}
	if err := r.checkRevoked(where, c, res, t, w); err != nil {
		return err
	}
	if len(got) == 0 && len(res.Revoked) == 0 {
		r.stats.emptyWaits++
	}
	if !res.More && len(got) < p.limit {
		// The answer had room: it must hold every message owed for longer
		// than the trust bound, in whichever stream. A lost wake-up may
		// delay a message by the trust bound, no more.
		for _, s := range r.m.userStreams(u) {
			for _, x := range r.m.streams[s][min(c.pos[s], len(r.m.streams[s])):] {
				if contains(got, x) || r.m.goneBy(u, x, t) {
					continue
				}
				r.stats.leftOut[p.inst] = max(r.stats.leftOut[p.inst], t.Sub(x.pub.end))
				if x.pub.end.Before(w) {
					return fmt.Errorf("%s: %d messages and more=false, but %s was owed (trust bound %v + slack %v)",
						where, len(got), r.describe(x), r.trust, slack)
				}
			}
		}
	}
	r.advanceClient(c, res.Cursor, got)
	return nil
}

// history checks up to three pages of history against the model.
func (r *modelRun) history(op modelOp) error {
	u := op.user
	q := HistoryQuery{Limit: op.limit, Unread: op.mode&1 != 0}
	if op.mode&2 != 0 {
		q.Types = []string{modelTypes[op.picks[0]%len(modelTypes)]}
	}
	where := fmt.Sprintf("history of %s on %s (limit %d, unread %v, types %q)", userName(u), instName(op.inst), q.Limit, q.Unread, q.Types)
	var want []*modelMsg
	for _, msg := range r.m.userMsgs(u) {
		if r.m.visible(u, msg) && (!q.Unread || !r.m.isRead(u, msg)) && (len(q.Types) == 0 || msg.typ == q.Types[0]) {
			want = append(want, msg)
		}
	}
	byTime(want)
	for i, j := 0, len(want)-1; i < j; i, j = i+1, j-1 {
		want[i], want[j] = want[j], want[i]
	}
	var got []*modelMsg
	complete := false
	for page := 0; page < 3; page++ {
		res, err := r.st[op.inst].History(r.ctx, r.readers[u], q)
		if err != nil {
			return fmt.Errorf("%s: %w", where, err)
		}
		if len(res.Messages) > q.Limit {
			return fmt.Errorf("%s: page %d has %d messages", where, page, len(res.Messages))
		}
		if err := r.exactCount(where, op.inst, u, res.Unread, res.UnreadByType); err != nil {
			return err
		}
		msgs, err := r.resolve(u, res.Messages)
		if err != nil {
			return fmt.Errorf("%s: %w", where, err)
		}
		for i, g := range msgs {
			if want := r.m.isRead(u, g); res.Messages[i].Read != want {
				return fmt.Errorf("%s: %s read=%v, model %v", where, g, res.Messages[i].Read, want)
			}
		}
		got = append(got, msgs...)
		if res.Next == "" {
			complete = true
			break
		}
		q.Before = res.Next
	}
	r.notef("%d of %d messages", len(got), len(want))
	if err := inOrder(got, true); err != nil {
		return fmt.Errorf("%s: %w", where, err)
	}
	wanted := map[*modelMsg]bool{}
	for _, x := range want {
		wanted[x] = true
	}
	for _, g := range got {
		if !wanted[g] {
			return fmt.Errorf("%s: %s, which the model does not list (deleted, expired, read or of another type)", where, g)
		}
	}
	if len(got) == 0 {
		if complete && len(want) > 0 {
			return fmt.Errorf("%s: empty, model has %d messages, newest %s", where, len(want), want[0])
		}
		return nil
	}
	oldest := got[len(got)-1]
	for _, x := range want {
		if (x.ms > oldest.ms || complete) && !contains(got, x) {
			return fmt.Errorf("%s: left out %s", where, r.describe(x))
		}
	}
	return nil
}
