package poll

import (
	"context"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"pollbox/inbox"
)

// PollStarter is what parking needs of the store: a poll that waits
// without a goroutine (see inbox.PendingPoll).
type PollStarter interface {
	StartPoll(ctx context.Context, r inbox.Reader, o inbox.PollOptions) (inbox.PollResult, *inbox.PendingPoll, error)
}

// parking keeps the waiting polls of plain HTTP/1.x connections as small
// records instead of net/http requests. A poll that has to wait takes
// its connection over (Hijack), so net/http's goroutine, buffers and
// background read go away, and the poll waits as a record: connection,
// deadline, pending poll, slot. Whatever ends the wait (a wake-up, the
// deadline, shutdown, the session's end) starts a goroutine that reads,
// writes the answer on the connection and hands a keep-alive connection
// back to the http.Server through the Listener. A client that left is
// noticed at once on Linux (see goneWatch), and anywhere by peeking at
// the user's parked connections before a poll is refused for the
// per-user cap.
// HTTP/2 and TLS polls wait in their request's goroutine, as do polls
// on a server without a Listener.
type parking struct {
	d     *deps
	start PollStarter
	ln    *Listener
	watch *goneWatch // nil where there is none

	mu      sync.Mutex
	all     map[*parked]struct{}
	byUser  map[string]map[*parked]struct{}
	stopped bool // shutdown began: every poll answers now
}

func newParking(d *deps, start PollStarter, ln *Listener) *parking {
	pk := &parking{d: d, start: start, ln: ln, watch: newGoneWatch(ln.done),
		all: map[*parked]struct{}{}, byUser: map[string]map[*parked]struct{}{}}
	if d.cfg.Stop != nil {
		go func() {
			<-d.cfg.Stop
			pk.stopAll()
		}()
	}
	return pk
}

// can tells whether this poll may be parked should it have to wait.
func (pk *parking) can(w http.ResponseWriter, r *http.Request, o inbox.PollOptions) bool {
	if o.Wait <= 0 || r.Method != http.MethodGet || r.ProtoMajor != 1 || r.TLS != nil ||
		r.ContentLength != 0 || len(r.TransferEncoding) > 0 {
		return false
	}
	for {
		switch u := w.(type) {
		case http.Hijacker:
			return true
		case interface{ Unwrap() http.ResponseWriter }:
			w = u.Unwrap()
		default:
			return false
		}
	}
}

// parked is one waiting poll without its request.
type parked struct {
	pk       *parking
	conn     net.Conn
	pp       *inbox.PendingPoll
	sc       *scope
	header   http.Header // the answer's headers set so far (request id, CORS, …)
	rawQuery string      // for the access log
	user     string
	deadline time.Time
	close    bool // the client asked for Connection: close (or spoke HTTP/1.0)
	done     func()
	leave    func() // leaves the session watch; nil without one
	wake     func()

	state atomic.Int32 // parkedWaiting, parkedRunning or parkedDone
	// ending is held from the move to parkedDone until the poll's slot is
	// released, so that a look at the per-user cap which finds the poll
	// ending can wait for its slot (see checkGone).
	ending sync.Mutex
	cause  atomic.Int32 // causeNone, causeGone or causeSession
}

const (
	parkedWaiting = iota
	parkedRunning
	parkedDone
)

const (
	causeNone = iota
	causeGone
	causeSession
)

// poll runs a poll that may be parked; done releases its slot.
func (pk *parking) poll(w http.ResponseWriter, r *http.Request, p Principal, o inbox.PollOptions, deadline time.Time, done func()) error {
	d := pk.d
	ctx, cancel := context.WithDeadline(r.Context(), deadline)
	defer cancel()
	res, pp, err := pk.start.StartPoll(ctx, readerOf(p), o)
	if pp == nil {
		done()
		return d.pollAnswered(w, r, res, err)
	}
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		pp.Close()
		done()
		return err
	}
	// Hijack cleared net/http's deadlines: nothing reads the connection
	// while parked, answer sets its own write deadline, and the server
	// sets both again for the next request.
	if n := brw.Reader.Buffered(); n > 0 {
		b, _ := brw.Reader.Peek(n)
		buf := append([]byte(nil), b...)
		if pc, ok := conn.(*prefixConn); ok {
			// Handed back before with bytes read ahead: keep one wrapper
			// (connFD and connGone look through one), with what net/http
			// buffered first and what it had not read yet after.
			pc.buf = append(buf, pc.buf...)
		} else {
			conn = &prefixConn{Conn: conn, buf: buf}
		}
	}
	sc := scopeOf(r)
	sc.parked = true // the access log line is written when it answers
	rec := &parked{pk: pk, conn: conn, pp: pp, sc: sc, header: w.Header(), rawQuery: r.URL.RawQuery,
		user: p.User, deadline: deadline, close: r.Close || r.ProtoMinor == 0, done: done}
	rec.wake = rec.resumeLater
	if d.sessions != nil {
		rec.leave = d.sessions.watch(p.Token, func(error) { rec.interrupt(causeSession) })
	}
	stopped := pk.add(rec)
	pk.watch.add(rec)
	pp.Arm(rec.wake)
	if stopped {
		pp.Stop()
	}
	return nil
}

// add records rec; it tells whether shutdown has begun.
func (pk *parking) add(rec *parked) (stopped bool) {
	pk.mu.Lock()
	defer pk.mu.Unlock()
	pk.all[rec] = struct{}{}
	set := pk.byUser[rec.user]
	if set == nil {
		set = map[*parked]struct{}{}
		pk.byUser[rec.user] = set
	}
	set[rec] = struct{}{}
	return pk.stopped
}

func (pk *parking) remove(rec *parked) {
	pk.watch.remove(rec)
	pk.mu.Lock()
	defer pk.mu.Unlock()
	delete(pk.all, rec)
	if set := pk.byUser[rec.user]; set != nil {
		delete(set, rec)
		if len(set) == 0 {
			delete(pk.byUser, rec.user)
		}
	}
}

// stopAll makes every parked poll answer now (shutdown).
func (pk *parking) stopAll() {
	pk.mu.Lock()
	pk.stopped = true
	recs := make([]*parked, 0, len(pk.all))
	for rec := range pk.all {
		recs = append(recs, rec)
	}
	pk.mu.Unlock()
	for _, rec := range recs {
		rec.pp.Stop()
	}
}

// reap ends the user's parked polls whose clients left; it tells whether
// it freed a slot.
func (pk *parking) reap(user string) bool {
	pk.mu.Lock()
	var recs []*parked
	for rec := range pk.byUser[user] {
		recs = append(recs, rec)
	}
	pk.mu.Unlock()
	freed := false
	for _, rec := range recs {
		if rec.checkGone() {
			freed = true
		}
	}
	return freed
}

// checkGone ends the poll at once if it is waiting and its client left;
// it tells whether it did. A poll busy reading is marked and ends when
// it next looks.
func (rec *parked) checkGone() bool {
	if rec.state.Load() == parkedDone {
		rec.ending.Lock() // its slot is free once ending is
		rec.ending.Unlock()
		return true
	}
	if !connGone(rec.conn) {
		return false
	}
	rec.cause.CompareAndSwap(causeNone, causeGone)
	rec.ending.Lock()
	if !rec.state.CompareAndSwap(parkedWaiting, parkedDone) {
		done := rec.state.Load() == parkedDone
		rec.ending.Unlock()
		return done
	}
	rec.release()
	rec.gone()
	rec.ending.Unlock()
	return true
}

// interrupt ends the wait for a reason of the server's own.
func (rec *parked) interrupt(cause int32) {
	rec.cause.CompareAndSwap(causeNone, cause)
	rec.pp.Interrupt()
}

// resumeLater is the pending poll's wake function: it runs under the
// hub's lock, so the work goes to a goroutine of its own.
func (rec *parked) resumeLater() {
	if rec.state.CompareAndSwap(parkedWaiting, parkedRunning) {
		go rec.resume()
	}
}

// resume continues a woken poll: it answers, or parks it again.
func (rec *parked) resume() {
	switch rec.cause.Load() {
	case causeGone:
		rec.ending.Lock()
		rec.state.Store(parkedDone)
		rec.release()
		rec.gone()
		rec.ending.Unlock()
		return
	case causeSession:
		rec.pk.d.metrics.polls.WithLabelValues("rejected").Inc()
		rec.answer(inbox.PollResult{}, errSessionExpired)
		return
	}
	ctx, cancel := context.WithDeadline(context.WithValue(context.Background(), scopeKey, rec.sc), rec.deadline)
	res, waiting, err := rec.pp.Continue(ctx)
	cancel()
	if err == nil && waiting {
		rec.state.Store(parkedWaiting)
		rec.pp.Arm(rec.wake)
		if rec.cause.Load() == causeGone {
			// Its client left while it read: the one-shot hang-up event
			// found it busy (checkGone), so end it now rather than at its
			// next wake-up.
			rec.pp.Interrupt()
		}
		return
	}
	if err != nil {
		rec.pk.d.metrics.polls.WithLabelValues("error").Inc()
	}
	rec.answer(res, err)
}

// end marks the poll done and lets go of what it holds but its connection.
func (rec *parked) end() {
	rec.ending.Lock()
	defer rec.ending.Unlock()
	rec.state.Store(parkedDone)
	rec.release()
}

// release lets go of what the poll holds but its connection; ending is held.
func (rec *parked) release() {
	rec.pk.remove(rec)
	rec.pp.Close()
	if rec.leave != nil {
		rec.leave()
	}
	rec.done()
}

// gone closes the connection of an ended poll whose client left: no
// answer, logged as cut.
func (rec *parked) gone() {
	_ = rec.conn.Close()
	rec.pk.d.metrics.cutPoll(time.Since(rec.sc.start))
	rec.sc.outcome = "cut"
	logRequest(*rec.sc.base, rec.pk.d.metrics, rec.sc, rec.request(), &statusRecorder{}, false)
}

// request is a stand-in for the parked poll's request, for the error
// adapter and the access log.
func (rec *parked) request() *http.Request {
	r := &http.Request{Method: http.MethodGet, URL: pollURL(rec.rawQuery), Header: http.Header{}}
	return r.WithContext(context.WithValue(context.Background(), scopeKey, rec.sc))
}
