package inbox

import (
	"fmt"
	"maps"
	"time"
)

// The runner's polls (see model_run_test.go): polls that answer at once,
// polls that wait in the background, clients starting over, and the final
// drain. Every answer goes to the checks in model_check_test.go.

// bgPoll is a waiting poll running in the background.
type bgPoll struct {
	op, inst, limit int
	wait            time.Duration
	done            chan struct{}
	res             PollResult
	err             error
	start, end      time.Time
	// resubscribed: the store's subscription was re-established while the
	// poll ran (wake-ups may have been lost on its way, even on A).
	resubscribed bool
}

// pollNow polls at once and checks the answer against the model.
func (r *modelRun) pollNow(c *modelClient, inst, limit int) (PollResult, error) {
	start := time.Now()
	res, err := r.st[inst].Poll(r.ctx, r.readers[c.user], PollOptions{Cursor: c.cursor, Limit: limit})
	if err != nil {
		return res, fmt.Errorf("Poll(c%d): %w", c.idx, err)
	}
	r.stats.pollsNow++
	r.notef("got %d messages, revoked %v, unread %d, more %v", len(res.Messages), res.Revoked, res.Unread, res.More)
	return res, r.checkNow(c, inst, limit, res, start)
}

func (r *modelRun) startWait(i int, c *modelClient, op modelOp) {
	p := &bgPoll{op: i, inst: op.inst, limit: op.limit, wait: op.wait, done: make(chan struct{}), start: time.Now()}
	c.bg = p
	o := PollOptions{Cursor: c.cursor, Limit: op.limit, Wait: op.wait}
	reader, s := r.readers[c.user], r.st[op.inst]
	subs := s.Hub().Reconnects()
	go func() {
		defer close(p.done)
		p.res, p.err = s.Poll(r.ctx, reader, o)
		p.end = time.Now()
		p.resubscribed = s.Hub().Reconnects() != subs
	}()
}

// await waits for the client's background poll, if any, and checks it.
func (r *modelRun) await(c *modelClient) error {
	p := c.bg
	if p == nil {
		return nil
	}
	select {
	case <-p.done:
	case <-time.After(p.wait + 10*time.Second):
		return fmt.Errorf("c%d's poll of op #%d (wait %v) did not return within %v", c.idx, p.op, p.wait, p.wait+10*time.Second)
	}
	c.bg = nil
	return r.checkWaited(c, p)
}

// collect checks the background polls that have ended.
func (r *modelRun) collect() error {
	for _, c := range r.clients {
		if c.bg == nil {
			continue
		}
		select {
		case <-c.bg.done:
			if err := r.await(c); err != nil {
				return err
			}
		default:
		}
	}
	return nil
}

func (r *modelRun) restartEmpty(c *modelClient, inst int) error {
	res, err := r.st[inst].Poll(r.ctx, r.readers[c.user], PollOptions{})
	if err != nil {
		return fmt.Errorf("Poll without a cursor: %w", err)
	}
	if len(res.Messages) > 0 {
		return fmt.Errorf("poll without a cursor (from now) returned %d messages: %v", len(res.Messages), msgIDs(res.Messages))
	}
	if err := r.exactCount("Poll without a cursor", inst, c.user, res.Unread, res.UnreadByType); err != nil {
		return err
	}
	c.moveTo(res.Cursor, r.m.tails(c.user))
	return nil
}

func (r *modelRun) restart(op modelOp) error {
	c := r.clients[op.client]
	if err := r.await(c); err != nil {
		return err
	}
	c.shown = nil // it starts over: a new page, showing nothing yet
	switch op.mode {
	case restartUnread:
		n, cur, err := r.st[op.inst].UnreadCounts(r.ctx, r.readers[c.user])
		if err != nil {
			return fmt.Errorf("Unread: %w", err)
		}
		if err := r.exactCount("Unread", op.inst, c.user, n.Total, n.ByType); err != nil {
			return err
		}
		c.moveTo(cur, r.m.tails(c.user))
	case restartHistory:
		res, err := r.st[op.inst].History(r.ctx, r.readers[c.user], HistoryQuery{Limit: 1})
		if err != nil {
			return fmt.Errorf("History: %w", err)
		}
		if err := r.exactCount("History", op.inst, c.user, res.Unread, res.UnreadByType); err != nil {
			return err
		}
		c.moveTo(res.Cursor, r.m.tails(c.user))
	case restartRewind:
		s := c.saved[op.picks[0]%len(c.saved)]
		r.notef("back to %d cursors ago", len(c.saved)-op.picks[0]%len(c.saved)-1)
		c.moveTo(s.cursor, maps.Clone(s.pos))
	case restartFork:
		o := r.clients[c.user*modelClientsPerUser+op.picks[0]%modelClientsPerUser]
		r.notef("takes c%d's cursor", o.idx)
		c.moveTo(o.cursor, maps.Clone(o.pos))
	default:
		return r.restartEmpty(c, op.inst)
	}
	return nil
}

// finish waits for the background polls, then checks every user's count
// on both stores and drains every client with polls that do not wait:
// each must end with everything the model says it is owed.
func (r *modelRun) finish() error {
	for _, c := range r.clients {
		if err := r.await(c); err != nil {
			return err
		}
	}
	for u := range modelUsers {
		for inst := range r.st {
			n, _, err := r.st[inst].UnreadCounts(r.ctx, r.readers[u])
			if err != nil {
				return fmt.Errorf("Unread: %w", err)
			}
			if err := r.exactCount("final Unread", inst, u, n.Total, n.ByType); err != nil {
				return err
			}
		}
	}
	for _, c := range r.clients {
		for k := 0; ; k++ {
			if k == 100 {
				return fmt.Errorf("c%d: still more after 100 polls", c.idx)
			}
			res, err := r.pollNow(c, (c.idx+k)%2, MaxLimit)
			if err != nil {
				return fmt.Errorf("final poll: %w", err)
			}
			if !res.More {
				break
			}
		}
	}
	return nil
}

// probe makes a quiet moment in which only the trust bound brings news to
// a waiting poll: the client polls B at once (so that B learns its
// streams' tails and its read state), a change for its user follows whose
// wake-up B loses, then the client waits on B, longer than the trust
// bound, and the run does nothing else until the poll answers. B's view
// believes there is no news until what it learnt lapses: the answer must
// carry the change if it came later than the trust bound (+ slack) after
// it (see checkWaited). One probe in four (probeReadOnA) polls A instead,
// briefly: A loses no wake-ups, so its answer must be right at once.
func (r *modelRun) probe(i int, op modelOp) error {
	c := r.clients[op.client]
	if err := r.await(c); err != nil {
		return err
	}
	inst, wait := op.probeOn()
	if _, err := r.pollNow(c, inst, op.limit); err != nil {
		return err
	}
	change := modelOp{inst: op.inst, user: c.user, typ: op.typ, drop: true}
	var err error
	switch op.mode {
	case probeInbox:
		change.target, change.to = 'u', []int{c.user}
		err = r.publishNew(i, change)
	case probeShared:
		change.target = 'b'
		if gs := r.m.groupsOf[c.user]; len(gs) > 0 && op.picks[0]%2 == 0 {
			change.target, change.to = 'g', []int{gs[op.picks[1]%len(gs)]}
		}
		err = r.publishNew(i, change)
	default:
		err = r.markAll(change)
	}
	if err != nil {
		return err
	}
	r.startWait(i, c, modelOp{inst: inst, limit: op.limit, wait: wait})
	return r.await(c)
}
