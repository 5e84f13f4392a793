package inbox

import "time"

// The view's facts about shared (broadcast and group) streams: reads after
// a position, kept for the other waiting polls at that position, and
// unread counts, kept per read position of the users who share them. Both
// follow the view's one trust rule (see view).

// readKey names a read of a shared stream: count entries after a position.
type readKey struct {
	after entryID
	count int
}

type readFact struct {
	reply  any
	size   int // bytes of the entries' fields
	learnt time.Time
}

// countKey names a shared stream's unread count for users in one
// position: read up to after, and excl (read one by one, or hidden).
type countKey struct {
	stream, after, excl string
}

type countFact struct {
	n      int
	byType map[string]int // n per type (read-only once stored)
	until  time.Time      // zero: no counted entry expires
	upTo   entryID        // the stream's newest entry when counted
	learnt time.Time
}

// read returns a shared stream's read after a position, if trusted.
func (v *view) read(key string, k readKey) (reply any, learnt time.Time, ok bool) {
	if !v.live(key) {
		return nil, time.Time{}, false
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	s := v.streams[key]
	if s == nil {
		return nil, time.Time{}, false
	}
	f, ok := s.reads[k]
	if !ok {
		return nil, time.Time{}, false
	}
	if !v.trusted(f.learnt) {
		delete(s.reads, k)
		v.facts--
		v.bytes -= f.size
		return nil, time.Time{}, false
	}
	return f.reply, f.learnt, true
}

// putRead stores a read of a shared stream made at version at, holding
// entries whose fields take size bytes.
func (v *view) putRead(key string, k readKey, reply any, size int, at version, learnt time.Time) {
	if !v.live(key) {
		return
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	s := v.current(key, at)
	if s == nil {
		return
	}
	if s.reads == nil {
		s.reads = map[readKey]readFact{}
	}
	if old, dup := s.reads[k]; dup {
		v.bytes -= old.size
	} else {
		v.facts++
	}
	s.reads[k] = readFact{reply: reply, size: size, learnt: learnt}
	v.bytes += size
	v.bound()
}

// count returns a cached unread count that is trusted, not stale by
// expiry, and covers the stream up to at least seen (an entry the caller
// has just read: its wake-up may not have arrived yet).
func (v *view) count(k countKey, now time.Time, seen entryID) (countFact, bool) {
	if !v.live(k.stream) {
		return countFact{}, false
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	s := v.streams[k.stream]
	if s == nil {
		return countFact{}, false
	}
	f, ok := s.counts[k]
	if !ok {
		return countFact{}, false
	}
	if !v.trusted(f.learnt) || (!f.until.IsZero() && !now.Before(f.until)) {
		delete(s.counts, k)
		v.facts--
		return countFact{}, false
	}
	if f.upTo.less(seen) {
		return countFact{}, false
	}
	return f, true
}

// putCount stores a count computed at version at.
func (v *view) putCount(k countKey, f countFact, at version) {
	if !v.live(k.stream) {
		return
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	s := v.current(k.stream, at)
	if s == nil {
		return
	}
	if s.counts == nil {
		s.counts = map[countKey]countFact{}
	}
	if _, dup := s.counts[k]; !dup {
		v.facts++
	}
	s.counts[k] = f
	v.bound()
}

// bound drops every read and count once there are too many, and every
// ring and read once they hold too many bytes. Callers hold v.mu. No
// version changes: what is dropped was still true.
func (v *view) bound() {
	if v.bytes > maxViewBytes {
		v.dropBytes()
	}
	if v.facts <= maxViewFacts {
		return
	}
	for _, s := range v.streams {
		v.dropFacts(s)
	}
	v.facts = 0
}
