package inbox

import (
	"strconv"
	"strings"
	"sync"
	"time"
)

// recentCache holds what this instance learnt from wake-ups, so that the
// common poll needs no Redis call at all:
//
//   - the tail (newest entry) of each stream written since the
//     subscription started: a waiting poll whose position is at the tail
//     has nothing to read and goes straight to sleep;
//   - the last few entries of each stream, each with the entry before it:
//     a poll woken by a publish finds the new entry here, and it may use it
//     only when its position is exactly that predecessor, so a chain read
//     from the cache has no gap;
//   - each user's read state, updated in place by the unread count that
//     inbox wake-ups carry and dropped by read-state wake-ups.
//
// The rules are those of countCache: only trusted while the hub is
// subscribed (wake-ups sent while it was not may be missing), emptied
// whenever the subscription is lost or comes back, and a value read from
// Redis is only stored when no wake-up for its stream or user arrived
// while it was being read (snapshot, then put).
type recentCache struct {
	mu      sync.Mutex
	live    func() bool
	trust   time.Duration // maxTrust; shorter in tests
	stTrust time.Duration // maxStateTrust
	epoch   uint64
	streams map[string]*recentStream
	users   map[string]*recentUser
	bytes   int // field bytes held in rings
}

// recentRing is how many entries per stream are kept.
const recentRing = 8

// maxRecentKeys bounds the streams and users remembered; past it the cache starts over.
const maxRecentKeys = 200000

// maxTrust is how long the cache believes a stream's tail without hearing
// of the stream again. Wake-ups can be lost without the subscription
// failing (a PUBLISH refused, a cluster bus link reset), and a lost one
// must not leave polls sleeping past a message for good: past this age,
// the next poll reads Redis and the cache starts over from it.
const maxTrust = 15 * time.Second

// maxStateTrust is the same for a user's read state, read from Redis at
// most this long ago. A lost read-state wake-up costs only a stale badge,
// so the bound is longer: reloading states often would put the loads back
// where they hurt, at the moment a broadcast wakes every poll at once.
// Polls about to wait reload a state half this old (needsState), so that
// it stays good for the whole wait (at most a minute).
const maxStateTrust = 2 * time.Minute

// maxRecentBytes bounds the message bytes held in rings; past it every
// ring is emptied (tails and states stay: they are small).
const maxRecentBytes = 32 << 20

type recentStream struct {
	gen       uint64
	tail      entryID
	tailKnown bool
	confirmed time.Time // when the tail was last learnt
	ring      [recentRing]recentEntry
	next      int // ring slot for the next entry
}

// recentEntry is one entry as a wake-up described it. raw is nil when the
// wake-up carried no fields (a large message): it only moves the tail.
type recentEntry struct {
	id, prev entryID
	raw      []any // [id, [field, value, …]], as XRANGE returns an entry
	size     int   // bytes of its fields
	set      bool
}

type recentUser struct {
	gen    uint64
	st     *userState // nil: not known
	until  time.Time  // zero: the count cannot go stale by expiry
	loaded time.Time  // when st was read from Redis
}

func newRecentCache(live func() bool) *recentCache {
	return &recentCache{live: live, trust: maxTrust, stTrust: maxStateTrust, streams: map[string]*recentStream{}, users: map[string]*recentUser{}}
}

// wake is a parsed wake-up for a new entry (see publishScript).
type wake struct {
	key      string
	id, prev entryID
	unread   int   // the inbox's unread count after the publish; -1 for shared streams
	expires  int64 // the entry's expiry (unix ms), 0 = never
	raw      []any // nil when the fields were left out
	size     int   // bytes of the fields
}

// parseWake parses "key\nid\nprev\nunread\nexpires\nfields". fields is
// "-" when left out, else each field and value as "<len>:<bytes>". A
// payload that is only a key (a read-state change) returns ok = false.
func parseWake(p string) (w wake, ok bool) {
	var parts [5]string
	rest := p
	for i := range parts {
		j := strings.IndexByte(rest, '\n')
		if j < 0 {
			return wake{}, false
		}
		parts[i], rest = rest[:j], rest[j+1:]
	}
	var err error
	w.key = parts[0]
	if w.id, err = parseEntryID(parts[1]); err != nil {
		return wake{}, false
	}
	if w.prev, err = parseEntryID(parts[2]); err != nil {
		return wake{}, false
	}
	if w.unread, err = strconv.Atoi(parts[3]); err != nil {
		return wake{}, false
	}
	if w.expires, err = strconv.ParseInt(parts[4], 10, 64); err != nil {
		return wake{}, false
	}
	if rest == "-" {
		return w, true
	}
	var kv []any
	for rest != "" {
		j := strings.IndexByte(rest, ':')
		if j < 0 {
			return wake{}, false
		}
		n, err := strconv.Atoi(rest[:j])
		if err != nil || n < 0 || n > len(rest)-j-1 {
			return wake{}, false
		}
		kv = append(kv, rest[j+1:j+1+n])
		w.size += n
		rest = rest[j+1+n:]
	}
	if len(kv)%2 != 0 {
		return wake{}, false
	}
	w.raw = []any{parts[1], kv}
	return w, true
}

// stream returns the entry of key, creating it. Callers hold c.mu.
func (c *recentCache) stream(key string) *recentStream {
	s := c.streams[key]
	if s == nil {
		if len(c.streams) >= maxRecentKeys {
			// A new epoch: a snapshot taken before the clear must not
			// match an entry recreated after it.
			clear(c.streams)
			c.bytes = 0
			c.epoch++
		}
		s = &recentStream{}
		c.streams[key] = s
	}
	return s
}

// dropRing empties a stream's ring. Callers hold c.mu.
func (c *recentCache) dropRing(s *recentStream) {
	for i := range s.ring {
		c.bytes -= s.ring[i].size
	}
	s.ring = [recentRing]recentEntry{}
}

// user returns the entry of user u, creating it. Callers hold c.mu.
func (c *recentCache) user(u string) *recentUser {
	e := c.users[u]
	if e == nil {
		if len(c.users) >= maxRecentKeys {
			clear(c.users)
			c.epoch++
		}
		e = &recentUser{}
		c.users[u] = e
	}
	return e
}

// added records a new entry from a wake-up. inboxUser is the user whose
// inbox the stream is, or "" for a shared stream.
func (c *recentCache) added(w wake, inboxUser string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.stream(w.key)
	s.gen++
	if !s.tailKnown || s.tail.less(w.id) {
		s.tail, s.tailKnown = w.id, true
	}
	s.confirmed = time.Now()
	if c.bytes+w.size > maxRecentBytes {
		for _, o := range c.streams {
			o.ring = [recentRing]recentEntry{}
		}
		c.bytes = 0
	}
	c.bytes += w.size - s.ring[s.next].size
	s.ring[s.next] = recentEntry{id: w.id, prev: w.prev, raw: w.raw, size: w.size, set: true}
	s.next = (s.next + 1) % recentRing
	if inboxUser == "" {
		return
	}
	u := c.user(inboxUser)
	u.gen++
	if u.st == nil || w.unread < 0 {
		u.st = nil
		return
	}
	// States are shared by concurrent polls: replace, never modify.
	st := *u.st
	st.unreadInbox = w.unread
	u.st = &st
	if w.expires > 0 && (u.until.IsZero() || w.expires < u.until.UnixMilli()) {
		u.until = time.UnixMilli(w.expires)
	}
}

// changed forgets what is known of a stream (a write whose wake-up may
// not have arrived yet, or a wake-up that did not describe an entry).
func (c *recentCache) changed(key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if s := c.streams[key]; s != nil {
		c.dropRing(s)
		*s = recentStream{gen: s.gen + 1}
	}
}

// userChanged forgets a user's read state and the cached entries of the
// user's inbox (their read flags, or the entries themselves, changed).
func (c *recentCache) userChanged(u, inboxKey string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e := c.users[u]; e != nil {
		e.gen++
		e.st = nil
	}
	if s := c.streams[inboxKey]; s != nil {
		s.gen++
		c.dropRing(s)
	}
}

// clear forgets everything.
func (c *recentCache) clear() {
	c.mu.Lock()
	c.epoch++
	clear(c.streams)
	clear(c.users)
	c.bytes = 0
	c.mu.Unlock()
}

// after answers a read of the stream after pos from the cache: nothing
// (upToDate), or the chain of entries after pos up to the known tail, as
// readScript would return them (flags: every inbox entry unread, since a
// read-state change empties the inbox's entries). ok = false: ask Redis.
func (c *recentCache) after(key string, pos entryID, count int, inbox bool) (reply []any, upToDate, ok bool) {
	if !c.live() {
		return nil, false, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.streams[key]
	if s == nil || !s.tailKnown || time.Since(s.confirmed) > c.trust {
		return nil, false, false
	}
	if !pos.less(s.tail) {
		return nil, true, true
	}
	var list, flags []any
	at := pos
	for len(list) < count && at != s.tail {
		found := false
		for i := range s.ring {
			e := &s.ring[i]
			if e.set && e.prev == at && e.raw != nil {
				list = append(list, e.raw)
				if inbox {
					flags = append(flags, int64(1))
				}
				at, found = e.id, true
				break
			}
		}
		if !found {
			return nil, false, false
		}
	}
	return []any{"", list, flags}, false, true
}

// streamGen returns the stream's generation; take it before reading Redis.
func (c *recentCache) streamGen(key string) countGen {
	c.mu.Lock()
	defer c.mu.Unlock()
	return countGen{c.epoch, c.stream(key).gen}
}

// putTail records a tail read from Redis at generation at.
func (c *recentCache) putTail(key string, tail entryID, at countGen) {
	if !c.live() {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.streams[key]
	if s == nil || at != (countGen{c.epoch, s.gen}) {
		return
	}
	if !s.tailKnown || s.tail.less(tail) {
		s.tail, s.tailKnown = tail, true
	}
	s.confirmed = time.Now()
}

// state returns a copy of the user's cached read state, safe for the
// caller to add to (inboxUnread, newest), if it is still valid.
func (c *recentCache) state(u string, now time.Time) (*userState, bool) {
	if !c.live() {
		return nil, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.users[u]
	if !e.valid(now, c.stTrust) {
		return nil, false
	}
	st := *e.st
	st.inboxUnread = map[string]bool{}
	st.newest = nil
	return &st, true
}

// needsState tells whether loading the user's read state now would be
// kept, and is wanted: the cache is live (a load while it is not would be
// thrown away) and holds no state young enough to last through a poll's
// wait (see maxStateTrust).
func (c *recentCache) needsState(u string, now time.Time) bool {
	if !c.live() {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return !c.users[u].valid(now, c.stTrust/2)
}

// valid tells whether the entry holds a state that is still good at now
// (expiry, by the store's clock) and still trusted (age, by the wall clock).
func (e *recentUser) valid(now time.Time, trust time.Duration) bool {
	return e != nil && e.st != nil && (e.until.IsZero() || now.Before(e.until)) && time.Since(e.loaded) <= trust
}

// userGen returns the user's generation; take it before reading Redis.
func (c *recentCache) userGen(u string) countGen {
	c.mu.Lock()
	defer c.mu.Unlock()
	return countGen{c.epoch, c.user(u).gen}
}

// putState stores a state read at generation at. The cached state must
// not be changed afterwards, so it gets its own copy of the per-call maps.
func (c *recentCache) putState(u string, st *userState, until time.Time, at countGen) {
	if !c.live() {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.users[u]
	if e == nil || at != (countGen{c.epoch, e.gen}) {
		return
	}
	cp := *st
	cp.inboxUnread, cp.newest, cp.allInbox = nil, nil, false
	e.st, e.until, e.loaded = &cp, until, time.Now()
}
