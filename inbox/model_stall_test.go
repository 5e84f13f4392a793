package inbox

import (
	"context"
	"sync"
	"time"
)

// stallMeter measures the machine's own delays during a model run: a
// goroutine that asks to sleep stallTick at a time notes how much longer
// it slept. A loaded machine (or the race detector's pauses) holds up
// every goroutine alike, the stores' polls included, so a poll may be
// late by as much as the longest stall during its wait, and the checks
// widen their slack by it. A store that is late by itself is not: its
// lateness shows in no stall.
type stallMeter struct {
	mu     sync.Mutex
	stalls []stall // oldest first; only those longer than stallNoise
}

type stall struct {
	end time.Time
	d   time.Duration
}

const (
	stallTick  = 5 * time.Millisecond
	stallNoise = 5 * time.Millisecond
)

// run measures until ctx ends.
func (m *stallMeter) run(ctx context.Context) {
	t := time.NewTimer(stallTick)
	defer t.Stop()
	for last := time.Now(); ; {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := time.Now()
		if d := now.Sub(last) - stallTick; d > stallNoise {
			m.mu.Lock()
			m.stalls = append(m.stalls, stall{now, d})
			m.mu.Unlock()
		}
		last = now
		t.Reset(stallTick)
	}
}

// longest returns the longest stall that overlaps [from, to].
func (m *stallMeter) longest(from, to time.Time) time.Duration {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out time.Duration
	for i := len(m.stalls) - 1; i >= 0; i-- {
		s := m.stalls[i]
		if s.end.Before(from) {
			break // recorded by their end, in order
		}
		if s.end.Add(-s.d - stallTick).Before(to) {
			out = max(out, s.d)
		}
	}
	return out
}
