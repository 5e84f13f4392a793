package poll

import (
	"context"
	"sync"
	"time"

	"github.com/rs/zerolog"
)

// sessionWatch re-checks the login sessions of waiting polls: one round
// per interval for the whole instance, one key per distinct token however
// many polls wait with it, sent in one batch (see
// SessionChecker.SessionsAlive). A poll registers while it waits and holds
// no goroutine or timer of its own; the round's goroutine runs only while
// some poll is registered, so an idle instance sends nothing.
type sessionWatch struct {
	check   SessionChecker
	every   time.Duration // how often a session is re-checked
	timeout time.Duration // how long one round may take
	log     zerolog.Logger
	metrics *Metrics

	mu       sync.Mutex
	sessions map[string]*watchedSession
	running  bool     // the round goroutine is alive
	batch    []string // the tokens of the current round, reused
	failed   int      // rounds failed since the last log line
	loggedAt time.Time
}

// watchedSession is one token and the polls waiting with it, in a list so
// that a poll leaves in constant time.
type watchedSession struct {
	token string
	head  *sessionPoll
	n     int
}

// sessionPoll is one waiting poll's registration.
type sessionPoll struct {
	cancel     context.CancelCauseFunc
	s          *watchedSession // nil once the poll was ended or left
	prev, next *sessionPoll
}

// sessionLogEvery is the least time between two log lines about failed
// rounds: while Redis is down every round fails, and one line says so.
const sessionLogEvery = time.Minute

func newSessionWatch(check SessionChecker, every, timeout time.Duration, log zerolog.Logger, m *Metrics) *sessionWatch {
	return &sessionWatch{check: check, every: every, timeout: timeout, log: log, metrics: m,
		sessions: map[string]*watchedSession{}}
}

// watch registers a waiting poll of token; cancel ends the poll with
// sessionEnded once a round finds the session gone. The poll calls the
// returned function when it ends, whatever ended it.
func (w *sessionWatch) watch(token string, cancel context.CancelCauseFunc) (leave func()) {
	p := &sessionPoll{cancel: cancel}
	w.mu.Lock()
	s := w.sessions[token]
	if s == nil {
		s = &watchedSession{token: token}
		w.sessions[token] = s
		w.metrics.sessionsWatched.Inc()
	}
	p.s, p.next = s, s.head
	if s.head != nil {
		s.head.prev = p
	}
	s.head = p
	s.n++
	if !w.running {
		w.running = true
		go w.run()
	}
	w.mu.Unlock()
	return func() { w.leave(p) }
}

func (w *sessionWatch) leave(p *sessionPoll) {
	w.mu.Lock()
	defer w.mu.Unlock()
	s := p.s
	if s == nil {
		return
	}
	if p.prev != nil {
		p.prev.next = p.next
	} else {
		s.head = p.next
	}
	if p.next != nil {
		p.next.prev = p.prev
	}
	p.s, p.prev, p.next = nil, nil, nil
	if s.n--; s.n == 0 {
		w.drop(s)
	}
}

// drop forgets a session; w.mu is held.
func (w *sessionWatch) drop(s *watchedSession) {
	if w.sessions[s.token] == s {
		delete(w.sessions, s.token)
		w.metrics.sessionsWatched.Dec()
	}
}

// run makes a round every interval until no poll is registered.
func (w *sessionWatch) run() {
	t := time.NewTicker(w.every)
	defer t.Stop()
	for range t.C {
		w.mu.Lock()
		if len(w.sessions) == 0 {
			w.running = false
			w.mu.Unlock()
			return
		}
		tokens := w.batch[:0]
		for tok := range w.sessions {
			tokens = append(tokens, tok)
		}
		w.batch = tokens
		w.mu.Unlock()
		w.round(tokens)
	}
}

// round checks tokens and ends the polls of every session found gone. A
// session whose check failed counts as alive: a Redis outage does not log
// anyone out, as the check at the start of each request does not either.
func (w *sessionWatch) round(tokens []string) {
	ctx, cancel := context.WithTimeout(context.Background(), w.timeout)
	alive, err := w.check.SessionsAlive(ctx, tokens)
	cancel()
	result := "ok"
	if err != nil {
		result = "error"
	}
	w.metrics.sessionRounds.WithLabelValues(result).Inc()
	var ended []context.CancelCauseFunc
	w.mu.Lock()
	if err != nil {
		w.failed++
		if now := time.Now(); now.Sub(w.loggedAt) >= sessionLogEvery {
			w.log.Warn().Err(err).Int("failed_rounds", w.failed).Int("sessions", len(tokens)).
				Msg("could not re-check the login sessions of waiting polls; they keep waiting")
			w.failed, w.loggedAt = 0, now
		}
	}
	for i, tok := range tokens {
		if i >= len(alive) || alive[i] {
			continue
		}
		s := w.sessions[tok]
		if s == nil {
			continue // its polls all ended during the round
		}
		for p := s.head; p != nil; {
			next := p.next
			ended = append(ended, p.cancel)
			p.s, p.prev, p.next = nil, nil, nil
			p = next
		}
		w.drop(s)
	}
	clear(tokens) // the batch is kept: let go of the token strings
	w.mu.Unlock()
	for _, c := range ended {
		c(sessionEnded)
	}
}
