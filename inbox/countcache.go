package inbox

import (
	"sync"
	"time"
)

// countCache remembers unread counts of shared (broadcast and group)
// streams, so that polls of many users do not each ask Redis to count the
// same stream. A count is keyed by the stream, the user's read-up-to mark
// and the ids the user excluded (read one by one or hidden): users in the
// same position share an entry.
//
// Invalidation rides on the hub. Every change to a shared stream is
// followed by a wake-up naming it; the hub calls bump before it wakes any
// waiter, so a woken poll never reads a count older than the change. A
// count computed concurrently with a change is only stored when the
// stream's generation did not move while it was being computed (snapshot,
// then put). While the hub is not subscribed, changes may go unseen, so
// the cache is bypassed, and it is emptied whenever the subscription is
// lost or comes back. Expiry changes counts with no wake-up, so each entry
// also lapses when the first counted entry expires.
type countCache struct {
	mu      sync.Mutex
	live    func() bool // whether invalidations are currently being received
	epoch   uint64      // bumped by clear
	gen     map[string]uint64
	entries map[countKey]countEntry
}

// maxCountEntries bounds the cache; past it the cache starts over.
const maxCountEntries = 50000

type countKey struct{ stream, after, excl string }

type countGen struct{ epoch, gen uint64 }

type countEntry struct {
	n     int
	at    countGen
	until time.Time // zero: no counted entry expires
}

func newCountCache(live func() bool) *countCache {
	return &countCache{live: live, gen: map[string]uint64{}, entries: map[countKey]countEntry{}}
}

func (c *countCache) get(k countKey, now time.Time) (int, bool) {
	if !c.live() {
		return 0, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[k]
	if !ok || e.at != (countGen{c.epoch, c.gen[k.stream]}) || (!e.until.IsZero() && !now.Before(e.until)) {
		return 0, false
	}
	return e.n, true
}

// snapshot returns the stream's generation; take it before reading Redis.
func (c *countCache) snapshot(stream string) countGen {
	c.mu.Lock()
	defer c.mu.Unlock()
	g, ok := c.gen[stream]
	if !ok {
		c.gen[stream] = 0
	}
	return countGen{c.epoch, g}
}

// put stores a count computed after snapshot returned at.
func (c *countCache) put(k countKey, n int, at countGen, until time.Time) {
	if !c.live() {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if at != (countGen{c.epoch, c.gen[k.stream]}) {
		return // the stream changed meanwhile
	}
	if len(c.entries) >= maxCountEntries {
		clear(c.entries)
	}
	c.entries[k] = countEntry{n: n, at: at, until: until}
}

// bump invalidates every count of a stream.
func (c *countCache) bump(stream string) {
	c.mu.Lock()
	if _, ok := c.gen[stream]; ok {
		c.gen[stream]++
	}
	c.mu.Unlock()
}

// clear invalidates everything.
func (c *countCache) clear() {
	c.mu.Lock()
	c.epoch++
	clear(c.entries)
	c.mu.Unlock()
}
