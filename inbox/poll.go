package inbox

import (
	"context"
	"fmt"
	"math/rand/v2"
	"time"
)

// Poll limits.
const (
	DefaultLimit = 100
	MaxLimit     = 1000
)

// PollOptions are the parameters of one poll.
type PollOptions struct {
	Cursor string        // "" = start from now
	Limit  int           // messages per answer; 0 = DefaultLimit
	Wait   time.Duration // how long to wait for news; 0 = answer at once
	// Stop, when closed, ends a waiting poll at once with its cursor (for
	// graceful shutdown). Cancelling ctx instead ends it with ctx's error.
	Stop <-chan struct{}
}

// PollResult is the answer to a poll.
type PollResult struct {
	Messages []Message // oldest first
	Cursor   string
	Unread   int
	More     bool // more messages are ready: poll again at once
	Reset    bool // a stream was trimmed past the cursor: messages were missed
	// Revoked lists the public ids of messages their publisher revoked
	// after the cursor's positions (each once): a client that shows one
	// removes it. An id the client never got is harmless.
	Revoked []string
	// UnreadByType splits Unread by message type (types with n > 0).
	UnreadByType map[string]int
}

// Poll returns the reader's messages after the cursor, waiting up to
// o.Wait for some to arrive. A change to the reader's read state also ends
// the wait, so every device learns the new unread count. While waiting the
// poll holds no Redis connection: it sleeps on a hub Waiter.
//
// Poll is StartPoll with the calling goroutine waiting: see PendingPoll
// for a poll that waits without one.
func (s *Store) Poll(ctx context.Context, r Reader, o PollOptions) (PollResult, error) {
	res, pp, err := s.StartPoll(ctx, r, o)
	if pp == nil {
		return res, err
	}
	defer pp.Close()
	woken := make(chan struct{}, 1)
	wake := func() {
		select {
		case woken <- struct{}{}:
		default:
		}
	}
	for {
		pp.Arm(wake)
		select {
		case <-woken:
		case <-o.Stop:
			pp.Stop()
		case <-ctx.Done():
			return PollResult{}, context.Cause(ctx)
		}
		res, waiting, err := pp.Continue(ctx)
		if err != nil || !waiting {
			return res, err
		}
	}
}

// pollRun is one poll in progress.
type pollRun struct {
	s        *Store
	user     string
	o        PollOptions
	streams  []stream
	pos      positions
	w        *Waiter
	stateKey string
	// cached: a waiting poll, which may use the view.
	cached bool
	// learnt[i] is when what the poll knows of streams[i] was learnt: from
	// Redis, or by the view. The poll reads the stream again once that
	// lapses (see view), so a lost wake-up delays it by TrustFor at most.
	learnt []time.Time
	toRead []int // indexes of the streams to read next
	// Room for the common poll's streams (inbox, broadcast, a few groups).
	learntBuf [4]time.Time
	toReadBuf [4]int
	deadline  time.Time
	until     time.Time   // when the current sleep ends unless woken
	timer     *time.Timer // fires notify at until
	res       PollResult
	st        *userState // the latest state read, if still current
	// stateChanged: the read state changed while waiting; answer after
	// reading the streams that fired with it.
	stateChanged bool
	stopping     bool
	// unconfirmed: registered, but its wake-up channels were not all
	// confirmed subscribed yet; it may read, but not sleep, until they are.
	unconfirmed bool
}

// startPoll checks the poll, decodes its cursor, registers it with the
// hub and positions the streams the cursor does not cover at their tails.
func (s *Store) startPoll(ctx context.Context, p *pollRun, r Reader, o PollOptions, notify func()) error {
	streams, err := s.streamsOf(r)
	if err != nil {
		return err
	}
	if o.Limit <= 0 {
		o.Limit = DefaultLimit
	}
	if o.Limit > MaxLimit {
		return fmt.Errorf("%w: limit above %d", ErrInvalid, MaxLimit)
	}
	*p = pollRun{s: s, user: r.User, o: o, streams: streams, stateKey: s.k.read(r.User), cached: o.Wait > 0}
	p.learnt, p.toRead = p.learntBuf[:0], p.toReadBuf[:0]
	if len(streams) > len(p.learntBuf) {
		p.learnt, p.toRead = make([]time.Time, 0, len(streams)), make([]int, 0, len(streams))
	}
	for i := range streams {
		p.learnt = append(p.learnt, time.Time{})
		p.toRead = append(p.toRead, i)
	}
	if o.Cursor != "" {
		if p.pos, err = decodeCursor(o.Cursor, streams); err != nil {
			return err
		}
	} else {
		p.pos = newPositions(len(streams))
	}
	if o.Wait > 0 {
		p.deadline = time.Now().Add(o.Wait)
	}

	// Register before the first read: see Hub for why this order matters.
	keys := make([]string, 0, len(streams)+1)
	for _, st := range streams {
		keys = append(keys, st.key)
	}
	keys = append(keys, p.stateKey)
	// A poll that does not wait needs no wake-up (nor a subscription).
	if o.Wait > 0 {
		p.w = s.hub.register(keys, notify)
		if p.unconfirmed = !s.hub.confirmedAll(keys); !p.unconfirmed {
			s.hub.Count(p.w)
		}
	}

	// Streams the cursor does not cover (no cursor, or a group new to the
	// token) start from their current tail.
	var missing []stream
	var at []version
	for _, st := range streams {
		if _, ok := p.pos[st.name]; !ok {
			missing = append(missing, st)
			at = append(at, s.view.streamVersion(st.key))
		}
	}
	if len(missing) > 0 {
		began := time.Now()
		tails, err := s.tails(ctx, r.User, missing)
		if err != nil {
			s.hub.Unregister(p.w)
			return err
		}
		for i, st := range missing {
			p.pos[st.name] = tails[st.name]
			s.view.putTail(st.key, tails[st.name], at[i], began)
		}
	}
	return nil
}

// confirmWait bounds how long a poll waits for its channels to be
// confirmed before it sleeps; past it (a pub/sub connection down) it reads
// and sleeps anyway, and the confirmation, when it comes, wakes it to read
// again.
const confirmWait = time.Second

// confirm waits until the wake-up channels of the poll's keys are
// confirmed subscribed, so that every change after its next read sends a
// wake-up that reaches it (see Hub): register, confirm, read, then sleep.
// The poll's first read does not wait for it: messages already there are
// answered at once. Every stream is read again afterwards.
func (p *pollRun) confirm(ctx context.Context) error {
	p.unconfirmed = false
	defer p.s.hub.Count(p.w)
	p.toRead = p.toRead[:0]
	for i := range p.streams {
		p.learnt[i] = time.Time{}
		p.toRead = append(p.toRead, i)
	}
	p.st = nil
	return p.s.confirmed(ctx, p)
}

// confirmed waits (at most confirmWait, or the poll's wait) until the
// poll's channels are confirmed or no confirmation is to be had soon.
func (s *Store) confirmed(ctx context.Context, p *pollRun) error {
	if s.hub.confirmedAll(p.w.keys) {
		return nil
	}
	limit := time.NewTimer(min(confirmWait, p.o.Wait))
	defer limit.Stop()
	for !s.hub.confirmedAll(p.w.keys) {
		select {
		case <-p.w.C: // a confirmation (or a loss)
		case <-limit.C:
			return nil
		case <-p.o.Stop:
			return nil
		case <-ctx.Done():
			return context.Cause(ctx)
		}
	}
	// What fired so far came before the first read: nothing to re-read.
	select {
	case <-p.w.C:
	default:
	}
	p.w.Take()
	return nil
}

// close releases what the poll holds.
func (p *pollRun) close() {
	p.s.hub.Unregister(p.w)
	if p.timer != nil {
		p.timer.Stop()
	}
}

// read reads the streams due and tells whether the poll has something to
// answer (messages, a reset, revokes, a read-state change, or no wait at
// all).
func (p *pollRun) read(ctx context.Context) (bool, error) {
	for len(p.toRead) > 0 {
		got, st, err := p.readAfter(ctx)
		if err != nil {
			return false, err
		}
		p.st = st
		// A revoke ends the wait: clients may be showing the message.
		if len(got) > 0 || p.res.Reset || len(p.res.Revoked) > 0 {
			p.res.Messages = got
			return true, nil
		}
		if !p.res.More {
			break
		}
		// Only hidden or expired entries so far, and more behind them.
		p.res.More = false
		p.toRead = p.all()
	}
	return p.o.Wait <= 0 || p.stateChanged, nil
}

// all returns the indexes of every stream.
func (p *pollRun) all() []int {
	out := p.toRead[:0]
	for i := range p.streams {
		out = append(out, i)
	}
	return out
}

// prepareSleep readies the poll to sleep until a wake-up, the end of the
// wait, or the moment what the poll knows of a stream lapses; the
// timer calls notify at that moment.
func (p *pollRun) prepareSleep(ctx context.Context, notify func()) error {
	s := p.s
	until, recheck := p.deadline, p.recheckAt()
	if recheck.Before(until) {
		until = recheck
	}
	if s.view.liveUser(p.user) && !s.view.hasState(p.user, s.opt.Now(), until) {
		// About to sleep: load the read state now (unless the view holds
		// one that lasts through this sleep), while nothing is urgent,
		// rather than when a broadcast wakes this poll together with
		// thousands of others that would all need theirs at the same
		// moment. The view keeps it for later polls; a wake-up that lands
		// meanwhile is kept by the waiter.
		if _, err := s.freshState(ctx, p.user); err != nil {
			return err
		}
	}
	p.until = until
	if d := time.Until(until); p.timer == nil {
		p.timer = time.AfterFunc(d, notify)
	} else {
		p.timer.Reset(d)
	}
	return nil
}

// woken sets the streams to read after a sleep ended by a wake-up or
// its time, and tells whether to read again (false: answer now).
func (p *pollRun) woken() bool {
	fired, all := p.w.Take()
	if fired == nil && !all {
		if !time.Now().Before(p.deadline) {
			// The state read before the wait may be a wait old (entries
			// may have expired since): answer with a current one.
			p.st = nil
			return false
		}
		p.toRead = p.lapsed()
		return true
	}
	p.timer.Stop()
	if _, ok := fired[p.stateKey]; ok {
		// Another device changed the read state: answer with the new count.
		delete(fired, p.stateKey)
		p.st = nil
		if len(fired) == 0 && !all {
			p.toRead = p.toRead[:0]
			return false
		}
		// Streams fired too: read them first, then answer either way.
		p.stateChanged = true
	}
	if all {
		p.toRead = p.all()
		return true
	}
	// The streams that fired, and any whose knowledge has lapsed meanwhile
	// (a poll woken late must not answer without what the bound owes it).
	p.toRead = p.toRead[:0]
	for i, st := range p.streams {
		if _, ok := fired[st.key]; ok || p.lapsing(i) {
			p.toRead = append(p.toRead, i)
		}
	}
	return true
}

// recheckAt returns when the poll re-reads: when the first thing it knows
// lapses, less a random eighth of the bound, so that polls which learnt a
// stream from the same wake-up do not all re-read it at the same instant
// (the first to re-read refreshes the view for the others).
func (p *pollRun) recheckAt() time.Time {
	var first time.Time
	for _, l := range p.learnt {
		if !l.IsZero() && (first.IsZero() || l.Before(first)) {
			first = l
		}
	}
	if first.IsZero() {
		return p.deadline
	}
	jitter := time.Duration(rand.Int64N(int64(p.s.view.trust/8) + 1))
	return p.s.view.lapse(first).Add(-jitter)
}

// lapsed returns the indexes of the streams whose knowledge has lapsed,
// or will within the jitter of recheckAt.
func (p *pollRun) lapsed() []int {
	out := p.toRead[:0]
	for i := range p.learnt {
		if p.lapsing(i) {
			out = append(out, i)
		}
	}
	return out
}

// lapsing tells whether what the poll knows of stream i has lapsed, or
// will within the jitter of recheckAt.
func (p *pollRun) lapsing(i int) bool {
	l := p.learnt[i]
	return l.IsZero() || !time.Now().Add(p.s.view.trust/8).Before(p.s.view.lapse(l))
}

// answer builds the answer, with the unread count.
func (p *pollRun) answer(ctx context.Context) (PollResult, error) {
	if !p.stopping {
		return p.s.finish(ctx, p.user, p.streams, p.pos, p.st, p.cached, p.res)
	}
	// Shutting down: answer now. The count is best effort, bounded so
	// that shutdown is not held up by a slow Redis.
	sctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancel()
	out, err := p.s.finish(sctx, p.user, p.streams, p.pos, nil, p.cached, p.res)
	if err != nil {
		out = p.s.answer(p.streams, p.pos, Counts{}, p.res)
	}
	return out, nil
}

// newPositions is kept out of line so that the map is not placed in a
// poll's frame.
//
//go:noinline
func newPositions(n int) positions { return make(positions, n) }

func (s *Store) answer(streams []stream, pos positions, unread Counts, res PollResult) PollResult {
	res.Cursor = encodeCursor(streams, pos)
	res.Unread = unread.Total
	res.UnreadByType = unread.ByType
	if res.UnreadByType == nil {
		res.UnreadByType = map[string]int{}
	}
	if res.Messages == nil {
		res.Messages = []Message{}
	}
	return res
}

// finish answers with the unread counts, reading the state first unless
// the caller has a current one.
func (s *Store) finish(ctx context.Context, user string, streams []stream, pos positions, st *userState, cached bool, res PollResult) (PollResult, error) {
	if st == nil {
		var err error
		if st, err = s.state(ctx, user, cached); err != nil {
			return PollResult{}, err
		}
	}
	c, err := s.unreadCounts(ctx, streams, st, cached)
	if err != nil {
		return PollResult{}, err
	}
	return s.answer(streams, pos, c, res), nil
}
