package inbox

import (
	"context"
	"sync/atomic"
	"time"
)

// PendingPoll is a poll that has to wait. It holds no goroutine while it
// waits: its waiter and its timer call the function given to Arm, once,
// when there is a reason to read again (a wake-up, the end of its sleep,
// Stop or Interrupt), and the caller then calls Continue from any
// goroutine. So a server can keep thousands of waiting polls as records
// and give each a goroutine only while it reads or answers.
//
// Arm and Continue are called by one party at a time (the poll's owner);
// Close once, by the owner or by whoever ends the poll meanwhile (then an
// Arm running at the same moment arms a poll that will not be woken); Stop
// and Interrupt may be called from anywhere, at any time.
type PendingPoll struct {
	p     pollRun
	armed atomic.Bool
	wake  func()
	// stop: answer at once with the cursor (shutdown); interrupted: the
	// owner has its own reason to end the wait (it reads nothing more).
	stop, interrupted atomic.Bool
}

// StartPoll starts a poll. It answers at once (with a nil PendingPoll)
// when there is something to say, when o.Wait is 0, or on error;
// otherwise it returns a pending poll, whose owner arms it, calls
// Continue when woken, and finally Close. o.Stop is not watched: the
// owner calls Stop instead.
func (s *Store) StartPoll(ctx context.Context, r Reader, o PollOptions) (PollResult, *PendingPoll, error) {
	pp := &PendingPoll{}
	if err := s.startPoll(ctx, &pp.p, r, o, pp.fire); err != nil {
		return PollResult{}, nil, err
	}
	res, waiting, err := pp.step(ctx)
	if err != nil || !waiting {
		pp.p.close()
		return res, nil, err
	}
	return PollResult{}, pp, nil
}

// fire calls the armed wake function, once per Arm.
func (pp *PendingPoll) fire() {
	if pp.armed.CompareAndSwap(true, false) {
		pp.wake()
	}
}

// Arm makes the poll call wake, once, when it has a reason to be
// continued; at once if it already has one.
func (pp *PendingPoll) Arm(wake func()) {
	pp.wake = wake
	// Once armed, the poll may be woken and continued by another
	// goroutine at any moment: what the check below needs is read first.
	w, until := pp.p.w, pp.p.until
	pp.armed.Store(true)
	// A wake-up that came before armed was set found nothing armed: look.
	if pp.stop.Load() || pp.interrupted.Load() || w.pending() || !time.Now().Before(until) {
		pp.fire()
	}
}

// Continue carries on after a wake: it reads what the wake-up calls for
// and answers, or, with waiting true, has to wait again (Arm it again).
// An error ends the poll as an answer does.
func (pp *PendingPoll) Continue(ctx context.Context) (res PollResult, waiting bool, err error) {
	pp.armed.Store(false)
	if pp.stop.Load() {
		pp.p.stopping = true
		res, err = pp.p.answer(ctx)
		return res, false, err
	}
	if !pp.p.woken() {
		res, err = pp.p.answer(ctx)
		return res, false, err
	}
	return pp.step(ctx)
}

// step reads, and either answers or gets ready to sleep.
func (pp *PendingPoll) step(ctx context.Context) (PollResult, bool, error) {
	p := &pp.p
	for {
		done, err := p.read(ctx)
		if err != nil {
			return PollResult{}, false, err
		}
		if done {
			res, err := p.answer(ctx)
			return res, false, err
		}
		if p.unconfirmed {
			// About to sleep on channels not yet confirmed: confirm, then
			// read everything again, trusting nothing from before.
			if err := p.confirm(ctx); err != nil {
				return PollResult{}, false, err
			}
			continue
		}
		if err := p.prepareSleep(ctx, pp.fire); err != nil {
			return PollResult{}, false, err
		}
		return PollResult{}, true, nil
	}
}

// Stop makes the poll answer at once with its cursor when continued
// (graceful shutdown).
func (pp *PendingPoll) Stop() {
	pp.stop.Store(true)
	pp.fire()
}

// Interrupt wakes the poll's owner now, for a reason of its own (its
// client left, its session ended); the owner then closes the poll.
func (pp *PendingPoll) Interrupt() {
	pp.interrupted.Store(true)
	pp.fire()
}

// Close releases what the poll holds. Call it once, when done.
func (pp *PendingPoll) Close() {
	pp.armed.Store(false)
	pp.p.close()
}
