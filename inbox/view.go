package inbox

import (
	"sync"
	"time"
)

// view is what this instance has learnt about its streams and users, from
// Redis reads and from wake-ups: each stream's tail and last few entries,
// reads and unread counts of shared streams, each user's read state. It
// lets the common waiting poll sleep, and answer when woken, without a
// Redis call.
//
// The trust rule, the only one for every fact the view holds:
//
//	A fact is used only by a waiting poll (Wait > 0), only while the
//	wake-up channel of every key it was derived from is confirmed
//	subscribed (a stream's own; a user's state: the inbox's and the read
//	state's), and only for TrustFor after it was learnt (read from Redis,
//	or described by a wake-up). Past that it is read from Redis again, and
//	a waiting poll that relies on a fact re-reads when the fact lapses,
//	without waiting for a wake-up. Everything else (polls with timeout 0,
//	history, /v1/unread, read marks) reads Redis.
//
// Why it holds: a waiting poll registers with the hub before it reads, and
// every change sends a wake-up that the hub applies to the view before it
// wakes any poll, so a fact never outlives a wake-up that contradicts it,
// and the poll is woken to read again. A wake-up lost on its way (a refused
// PUBLISH, a cluster link reset) contradicts nothing: the age bound is what
// limits its damage to a delay of TrustFor at most. While a key's channel
// is not confirmed nothing derived from the key is trusted, and confirming
// or losing the channel forgets what the view holds of the key (see
// Store.onChannel), so nothing learnt without it is trusted later.
//
// A revoke is such a change, not an exception to the rule: it deletes the
// message and appends a tombstone entry to the same stream (see
// revokeScript), whose wake-up is an ordinary entry wake-up. Applying it
// drops what was derived from the stream's content, as for any entry, and
// also the revoked entry's ring slot (and an inbox's user state), so no
// fact the view still holds describes the message; the instance that
// revokes does the same at once. Lost, it contradicts nothing either: the
// revoked entry stays in the ring for TrustFor at most, like any fact.
//
// Every record has a generation, bumped by each change that touches it,
// and the view an epoch, bumped whenever records are dropped wholesale. A
// value read from Redis is stored only if its record's version did not
// move while it was being read (snapshot, then put): a wake-up that came
// meanwhile may describe a change the read did not see.
type view struct {
	mu       sync.Mutex
	live     func(key string) bool // the key's wake-up channel is confirmed subscribed
	liveUser func(u string) bool   // so are both channels a user's state depends on
	trust    time.Duration
	epoch    uint64
	streams  map[string]*streamRec
	users    map[string]*userRec
	bytes    int // field bytes held in rings and reads
	facts    int // reads and counts held
}

// version identifies a record's state for snapshot-then-put.
type version struct{ epoch, gen uint64 }

// recentRing is how many entries per stream are kept.
const recentRing = 8

// maxViewKeys bounds the streams and users remembered; past it the view
// starts over.
const maxViewKeys = 200000

// maxViewBytes bounds the message bytes held in rings and reads; past it
// every ring and read is dropped (tails and states stay: they are small).
const maxViewBytes = 32 << 20

// maxViewFacts bounds the shared reads and counts held; past it they are
// all dropped.
const maxViewFacts = 50000

// streamRec is what is known of one stream.
type streamRec struct {
	gen       uint64
	tail      entryID
	tailKnown bool
	learnt    time.Time                // when the tail was last learnt
	ring      *[recentRing]recentEntry // nil until a wake-up describes an entry
	next      int                      // ring slot for the next entry
	// Shared streams only: raw reads after a position, and unread counts.
	reads  map[readKey]readFact
	counts map[countKey]countFact
}

// recentEntry is one entry as a wake-up described it. raw is nil when the
// wake-up carried no fields (a large message): it only moves the tail.
type recentEntry struct {
	id, prev entryID
	raw      []any // [id, [field, value, …]], as XRANGE returns an entry
	size     int   // bytes of its fields
	learnt   time.Time
	set      bool
}

// userRec is what is known of one user.
type userRec struct {
	gen    uint64
	st     *userState // nil: not known
	until  time.Time  // zero: the count cannot go stale by expiry
	learnt time.Time
}

func newView(live func(key string) bool, liveUser func(u string) bool, trust time.Duration) *view {
	return &view{live: live, liveUser: liveUser, trust: trust, streams: map[string]*streamRec{}, users: map[string]*userRec{}}
}

// lapse returns when a fact learnt at learnt stops being trusted.
func (v *view) lapse(learnt time.Time) time.Time { return learnt.Add(v.trust) }

// trusted applies the trust rule's age and subscription parts; callers
// apply its first part by asking only on behalf of waiting polls.
func (v *view) trusted(learnt time.Time) bool {
	return time.Now().Before(v.lapse(learnt))
}

// stream returns the record of key, creating it. Callers hold v.mu.
func (v *view) stream(key string) *streamRec {
	s := v.streams[key]
	if s == nil {
		if len(v.streams) >= maxViewKeys {
			clear(v.streams)
			v.bytes, v.facts = 0, 0
			v.epoch++
		}
		s = &streamRec{}
		v.streams[key] = s
	}
	return s
}

// user returns the record of u, creating it. Callers hold v.mu.
func (v *view) user(u string) *userRec {
	e := v.users[u]
	if e == nil {
		if len(v.users) >= maxViewKeys {
			clear(v.users)
			v.epoch++
		}
		e = &userRec{}
		v.users[u] = e
	}
	return e
}

// change bumps a stream's generation and drops the facts derived from its
// content (its reads and counts). Callers hold v.mu.
func (v *view) change(s *streamRec) {
	s.gen++
	v.dropFacts(s)
}

// dropFacts drops a stream's reads and counts. Callers hold v.mu.
func (v *view) dropFacts(s *streamRec) {
	v.facts -= len(s.reads) + len(s.counts)
	for _, f := range s.reads {
		v.bytes -= f.size
	}
	s.reads, s.counts = nil, nil
}

// dropRing empties a stream's ring. Callers hold v.mu.
func (v *view) dropRing(s *streamRec) {
	if s.ring == nil {
		return
	}
	for i := range s.ring {
		v.bytes -= s.ring[i].size
	}
	s.ring = nil
}

// dropBytes drops every ring and read, once they hold too many bytes.
// Callers hold v.mu. No version changes: what is dropped was still true.
func (v *view) dropBytes() {
	for _, o := range v.streams {
		v.dropRing(o)
		v.dropFacts(o)
	}
	v.bytes, v.facts = 0, 0
}

// apply records a wake-up that describes a new entry. inboxUser is the
// user whose inbox the stream is, or "" for a shared stream.
func (v *view) apply(w wake, inboxUser string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	s := v.stream(w.key)
	v.change(s)
	now := time.Now()
	if !s.tailKnown || s.tail.less(w.id) {
		// Only a wake-up that moves the tail is news of the tail: a late
		// one must not make an old tail look freshly learnt.
		s.tail, s.tailKnown, s.learnt = w.id, true, now
	}
	if v.bytes+w.size > maxViewBytes {
		v.dropBytes()
	}
	if s.ring == nil {
		s.ring = new([recentRing]recentEntry)
	}
	v.bytes += w.size - s.ring[s.next].size
	s.ring[s.next] = recentEntry{id: w.id, prev: w.prev, raw: w.raw, size: w.size, learnt: now, set: true}
	s.next = (s.next + 1) % recentRing
	if !w.revokes.isZero() {
		v.unring(s, w.revokes)
	}
	if inboxUser == "" {
		return
	}
	u := v.user(inboxUser)
	u.gen++
	typ, typed := w.entryType()
	if u.st == nil || w.unread < 0 || w.typeUnread < 0 || !typed || !w.revokes.isZero() {
		// The wake-up does not say how the counts changed (a revoke also
		// changes the revoked entry's type's count, and the soonest
		// expiry): read the state again.
		u.st = nil
		return
	}
	// The wake-up carries the inbox's new unread count and its type's:
	// the state stays known (with its original age). States and their
	// maps are shared by concurrent polls: replace, never modify.
	st := *u.st
	st.unreadInbox = w.unread
	st.unreadByType = make(map[string]int, len(u.st.unreadByType)+1)
	for t, n := range u.st.unreadByType {
		st.unreadByType[t] = n
	}
	if w.typeUnread > 0 {
		st.unreadByType[typ] = w.typeUnread
	} else {
		delete(st.unreadByType, typ)
	}
	u.st = &st
	if w.expires > 0 && (u.until.IsZero() || w.expires < u.until.UnixMilli()) {
		u.until = time.UnixMilli(w.expires)
	}
}

// forget drops everything known of a stream: a wake-up that did not
// describe its entry.
func (v *view) forget(key string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if s := v.streams[key]; s != nil {
		v.change(s)
		v.dropRing(s)
		*s = streamRec{gen: s.gen}
	}
}

// touch marks a stream as written by this instance, before its wake-up
// has come back: facts derived from its content are dropped.
func (v *view) touch(key string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if s := v.streams[key]; s != nil {
		v.change(s)
	}
}

// revoked applies a revoke this instance made, before its wake-up has
// come back: as touch, and the revoked entry leaves the ring, so no
// waiting poll here is served it from memory; for an inbox (inboxUser
// not "") the user's read state is forgotten too.
func (v *view) revoked(key string, entry entryID, inboxUser string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if s := v.streams[key]; s != nil {
		v.change(s)
		v.unring(s, entry)
	}
	if e := v.users[inboxUser]; inboxUser != "" && e != nil {
		e.gen++
		e.st = nil
	}
}

// unring clears the ring slot holding entry, if any: a chain of entries
// from a position before it then breaks there, and the poll asks Redis.
// Callers hold v.mu.
func (v *view) unring(s *streamRec, entry entryID) {
	if s.ring == nil {
		return
	}
	for i := range s.ring {
		if e := &s.ring[i]; e.set && e.id == entry {
			v.bytes -= e.size
			*e = recentEntry{}
		}
	}
}

// userChanged forgets a user's read state and the cached entries of the
// user's inbox (their read flags, or the entries themselves, changed).
func (v *view) userChanged(u, inboxKey string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if e := v.users[u]; e != nil {
		e.gen++
		e.st = nil
	}
	if s := v.streams[inboxKey]; s != nil {
		v.change(s)
		v.dropRing(s)
	}
}

// clear forgets everything.
func (v *view) clear() {
	v.mu.Lock()
	v.epoch++
	clear(v.streams)
	clear(v.users)
	v.bytes, v.facts = 0, 0
	v.mu.Unlock()
}

// streamVersion returns the stream's version; take it before reading Redis.
func (v *view) streamVersion(key string) version {
	v.mu.Lock()
	defer v.mu.Unlock()
	return version{v.epoch, v.stream(key).gen}
}

// userVersion returns the user's version; take it before reading Redis.
func (v *view) userVersion(u string) version {
	v.mu.Lock()
	defer v.mu.Unlock()
	return version{v.epoch, v.user(u).gen}
}

// current returns the stream's record if at is still its version.
// Callers hold v.mu.
func (v *view) current(key string, at version) *streamRec {
	s := v.streams[key]
	if s == nil || at != (version{v.epoch, s.gen}) {
		return nil
	}
	return s
}

// after answers a read of the stream after pos: nothing (upToDate), or
// the chain of entries after pos up to the known tail, as readScript
// would return them (inbox flags all unread: a read-state change empties
// the inbox's ring). learnt is when the tail was learnt; ok = false: ask
// Redis.
func (v *view) after(key string, pos entryID, count int, inbox bool) (reply []any, upToDate bool, learnt time.Time, ok bool) {
	if !v.live(key) {
		return nil, false, time.Time{}, false
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	s := v.streams[key]
	if s == nil || !s.tailKnown || !v.trusted(s.learnt) {
		return nil, false, time.Time{}, false
	}
	if !pos.less(s.tail) {
		return nil, true, s.learnt, true
	}
	if s.ring == nil {
		return nil, false, time.Time{}, false
	}
	var list, flags []any
	at := pos
	for len(list) < count && at != s.tail {
		found := false
		for i := range s.ring {
			e := &s.ring[i]
			// Each entry is a fact of its own, trusted as long as the tail.
			if e.set && e.prev == at && e.raw != nil && v.trusted(e.learnt) {
				list = append(list, e.raw)
				if inbox {
					flags = append(flags, int64(1))
				}
				at, found = e.id, true
				break
			}
		}
		if !found {
			return nil, false, time.Time{}, false
		}
	}
	return []any{"", list, flags}, false, s.learnt, true
}

// putTail records a tail read from Redis, at version at, by a read that
// began at learnt.
func (v *view) putTail(key string, tail entryID, at version, learnt time.Time) {
	if !v.live(key) {
		return
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	s := v.current(key, at)
	if s == nil {
		return
	}
	if !s.tailKnown || s.tail.less(tail) {
		s.tail, s.tailKnown = tail, true
	}
	if learnt.After(s.learnt) {
		s.learnt = learnt
	}
}

// state returns a copy of the user's read state, safe for the caller to
// add to (inboxUnread, newest), if trusted and not stale by expiry (by
// the store's clock now), with when it was learnt.
func (v *view) state(u string, now time.Time) (*userState, time.Time, bool) {
	if !v.liveUser(u) {
		return nil, time.Time{}, false
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	e := v.users[u]
	if !e.usable(v, now) {
		return nil, time.Time{}, false
	}
	st := *e.st
	st.inboxUnread = map[string]bool{}
	st.newest = nil
	return &st, e.learnt, true
}

// putState stores a state read at version at, by a read that began at
// learnt. The stored state must not change afterwards, so it gets its own
// copy without the per-call maps.
func (v *view) putState(u string, st *userState, at version, learnt time.Time) {
	if !v.liveUser(u) {
		return
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	e := v.users[u]
	if e == nil || at != (version{v.epoch, e.gen}) {
		return
	}
	cp := *st
	cp.inboxUnread, cp.newest, cp.allInbox = nil, nil, false
	e.st, e.until, e.learnt = &cp, st.until, learnt
}

// hasState tells whether the view holds a state for u that is usable now
// and still trusted at by.
func (v *view) hasState(u string, now, by time.Time) bool {
	if !v.liveUser(u) {
		return false
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	e := v.users[u]
	return e.usable(v, now) && by.Before(v.lapse(e.learnt))
}

// usable tells whether the record holds a trusted state, not stale by
// expiry at now (the store's clock). Callers hold v.mu.
func (e *userRec) usable(v *view, now time.Time) bool {
	return e != nil && e.st != nil && v.trusted(e.learnt) && (e.until.IsZero() || now.Before(e.until))
}
