package poll

import (
	"net/http"
	"strconv"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// pollSlots counts open polls per user so that one user (or a leaked tab
// loop) cannot hold an unbounded share of the instance.
type pollSlots struct {
	mu   sync.Mutex
	max  int
	open map[string]int
}

func newPollSlots(max int) *pollSlots { return &pollSlots{max: max, open: map[string]int{}} }

// acquire takes a slot for user; ok is false when the user is at the limit.
func (s *pollSlots) acquire(user string) (release func(), ok bool) {
	if s.max <= 0 {
		return func() {}, true
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.open[user] >= s.max {
		return nil, false
	}
	s.open[user]++
	return func() {
		s.mu.Lock()
		if s.open[user]--; s.open[user] <= 0 {
			delete(s.open, user)
		}
		s.mu.Unlock()
	}, true
}

// publishLimits is a token bucket per publisher (user id or API-key name).
type publishLimits struct {
	mu      sync.Mutex
	limit   rate.Limit
	burst   int
	buckets map[string]*bucket
	lastGC  time.Time
}

type bucket struct {
	lim  *rate.Limiter
	used time.Time
}

func newPublishLimits(perSec float64, burst int) *publishLimits {
	if burst <= 0 {
		burst = max(1, int(perSec))
	}
	return &publishLimits{limit: rate.Limit(perSec), burst: burst, buckets: map[string]*bucket{}}
}

// allow reports whether name may publish now; when not, it returns how
// many seconds to wait.
func (p *publishLimits) allow(name string) (bool, int) {
	if p.limit <= 0 {
		return true, 0
	}
	now := time.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	if now.Sub(p.lastGC) > time.Minute { // forget idle publishers
		for k, b := range p.buckets {
			if now.Sub(b.used) > 10*time.Minute {
				delete(p.buckets, k)
			}
		}
		p.lastGC = now
	}
	b := p.buckets[name]
	if b == nil {
		b = &bucket{lim: rate.NewLimiter(p.limit, p.burst)}
		p.buckets[name] = b
	}
	b.used = now
	res := b.lim.ReserveN(now, 1)
	if d := res.DelayFrom(now); d > 0 {
		res.CancelAt(now)
		return false, int(d/time.Second) + 1
	}
	return true, 0
}

func tooManyPolls(n int) *apiError {
	return &apiError{status: http.StatusTooManyRequests, code: "too_many_polls",
		msg: "at most " + strconv.Itoa(n) + " polls may wait per user", retryAfter: 5}
}

func rateLimited(after int) *apiError {
	return &apiError{status: http.StatusTooManyRequests, code: "rate_limited", msg: "publish rate exceeded", retryAfter: after}
}
