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
//
// The same generations guard a second kind of entry: the raw result of
// reading a shared stream after a position. When a broadcast wakes ten
// thousand polls, all at the same position, one of them reads Redis and
// the rest take its result.
type countCache struct {
	mu      sync.Mutex
	live    func() bool // whether invalidations are currently being received
	epoch   uint64      // bumped by clear
	gen     map[string]uint64
	entries map[countKey]countEntry
	reads   map[readKey]readEntry
	flights map[countKey]*countFlight
}

// countFlight is a count being computed. Polls that need the same count
// meanwhile wait for it rather than each asking Redis: a broadcast wakes
// thousands of polls that all need the same count at the same moment.
type countFlight struct {
	at   countGen
	done chan struct{}
	n    int
	upTo entryID
	err  error
}

type readKey struct {
	stream, after string
	count         int
}

type readEntry struct {
	reply any
	at    countGen
}

// maxCountEntries bounds the cache; past it the cache starts over.
const maxCountEntries = 50000

type countKey struct{ stream, after, excl string }

type countGen struct{ epoch, gen uint64 }

type countEntry struct {
	n     int
	at    countGen
	until time.Time // zero: no counted entry expires
	upTo  entryID   // the stream's newest entry when counted
}

func newCountCache(live func() bool) *countCache {
	return &countCache{live: live, gen: map[string]uint64{}, entries: map[countKey]countEntry{},
		reads: map[readKey]readEntry{}, flights: map[countKey]*countFlight{}}
}

// get returns a cached count that is still valid and covers the stream up
// to at least seen (an entry the caller has just read: its wake-up may not
// have arrived yet, so the generation alone cannot vouch for the count).
func (c *countCache) get(k countKey, now time.Time, seen entryID) (int, bool) {
	if !c.live() {
		return 0, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[k]
	if !ok || e.at != (countGen{c.epoch, c.gen[k.stream]}) || (!e.until.IsZero() && !now.Before(e.until)) || e.upTo.less(seen) {
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

// join returns the flight computing k at the stream's current
// generation, creating it when there is none: lead tells the caller to
// compute the count (with the flight's generation as its snapshot) and
// land the flight. While invalidations are not being received every
// caller leads a flight of its own.
func (c *countCache) join(k countKey) (f *countFlight, lead bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.gen[k.stream]; !ok {
		c.gen[k.stream] = 0
	}
	at := countGen{c.epoch, c.gen[k.stream]}
	if !c.live() {
		return &countFlight{at: at, done: make(chan struct{})}, true
	}
	if f := c.flights[k]; f != nil && f.at == at {
		return f, false
	}
	f = &countFlight{at: at, done: make(chan struct{})}
	c.flights[k] = f
	return f, true
}

// land ends a flight with its result and wakes the polls waiting for it.
func (c *countCache) land(k countKey, f *countFlight, n int, upTo entryID, err error) {
	c.mu.Lock()
	if c.flights[k] == f {
		delete(c.flights, k)
	}
	c.mu.Unlock()
	f.n, f.upTo, f.err = n, upTo, err
	close(f.done)
}

// put stores a count computed after snapshot returned at.
func (c *countCache) put(k countKey, n int, at countGen, until time.Time, upTo entryID) {
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
	c.entries[k] = countEntry{n: n, at: at, until: until, upTo: upTo}
}

// getRead returns a cached read of a shared stream, if still valid.
func (c *countCache) getRead(k readKey) (any, bool) {
	if !c.live() {
		return nil, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.reads[k]
	if !ok || e.at != (countGen{c.epoch, c.gen[k.stream]}) {
		return nil, false
	}
	return e.reply, true
}

// putRead stores a read made after snapshot returned at.
func (c *countCache) putRead(k readKey, reply any, at countGen) {
	if !c.live() {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if at != (countGen{c.epoch, c.gen[k.stream]}) {
		return
	}
	if len(c.reads) >= maxCountEntries {
		clear(c.reads)
	}
	c.reads[k] = readEntry{reply: reply, at: at}
}

// bump invalidates every count and read of a stream.
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
	clear(c.reads)
	c.mu.Unlock()
}
