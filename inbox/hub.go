package inbox

import (
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// Hub wakes waiting polls when the streams they wait on grow. Publishers
// PUBLISH (SPUBLISH on a cluster) the key of the stream they appended to,
// and a description of the new entry, on that stream's own wake-up channel
// (see wakeChannel), in the same script as the XADD. The hub subscribes to
// a key's channel while a poll here waits on the key, and for Linger after
// the last one leaves, so an instance receives only the wake-ups of the
// streams its polls wait on, and a re-poll causes no subscribe churn.
// Channels are batched over a few pub/sub connections: Conns of them on a
// single node, one per master on a cluster (sharded pub/sub, so that a
// wake-up stays in the shard that owns its stream). A waiting poll
// therefore holds no Redis connection, only a Waiter in a map.
//
// Correctness rests on ordering: before a poll sleeps, it has registered
// its Waiter, its channels are confirmed subscribed, and then it has read
// its streams. An entry added before that read is seen by it; one added
// after it publishes a wake-up on a channel already confirmed. A poll may
// read before its channels are confirmed (it answers what is already
// there at once, trusting nothing), but it reads again once they are (see
// pollRun.confirm), and a poll whose read ran while a connection was down
// is woken by the confirmation to read again, so it never sleeps on a
// channel not yet confirmed. Wake-ups lost while a connection was down are covered the
// same way: losing a connection, and confirming its channels again, wakes
// every waiter of their keys to re-read.
type Hub struct {
	rdb redis.UniversalClient
	// chanOf names a key's wake-up channel.
	chanOf func(key string) string
	// sharded: a cluster, where channels are SSUBSCRIBEd on their owner.
	sharded bool
	// Conns is the number of pub/sub connections on a single node
	// (default 4); set before Run.
	Conns int
	// Linger is how long a channel stays subscribed after its last waiter
	// left (default 2 minutes); set before Run.
	Linger time.Duration

	// Waiters by key, in shards with a lock each: thousands of polls
	// register and unregister at once after a broadcast, and one lock for
	// all of them was a point of contention.
	shards  [hubShards]hubShard
	waiting atomic.Int64

	subs hubSubs

	// onNotify runs before any waiter is woken, so caches that depend on
	// wake-ups are invalid before a woken poll can consult them; onChannel
	// likewise when a key's channel is confirmed or lost.
	onNotify  func(key, payload string)
	onChannel func(key string)

	reconnects atomic.Int64
	received   atomic.Int64 // wake-ups received
	subscribed atomic.Int64 // channels sent in (S)SUBSCRIBE commands
	// OnEvent, if set before Run, is told of "lost" (a first connection
	// lost), "reconnected" (all back) and "wake" events (for metrics). It
	// must not block.
	OnEvent func(event string)
	// OnLost, if set before Run, receives the error that ended a
	// subscription (for the log). It must not block.
	OnLost func(err error)

	// Fault injection for tests (nil in production): drop, when it returns
	// true, makes the hub behave as if a wake-up never arrived; hold, when
	// it returns true, keeps a channel's subscribe unsent.
	drop func(payload string) bool
	hold func(channel string) bool
}

// Waiter is one waiting poll's registration.
type Waiter struct {
	// C receives a value whenever the waiter has been woken since the last Take.
	C       chan struct{}
	keys    []string
	counted bool // in Waiting (only its poll's goroutine touches it)
	// notify, when set at registration, is called after every wake-up,
	// while the hub holds a lock: it must not block.
	notify func()

	mu    sync.Mutex
	fired map[string]struct{} // nil until a key fires
	all   bool
}

const hubShards = 64

type hubShard struct {
	mu    sync.Mutex
	byKey map[string]map[*Waiter]struct{}
}

// shard returns the shard holding key's waiters.
func (h *Hub) shard(key string) *hubShard {
	return &h.shards[groupHash(key)%hubShards]
}

// NewHub returns a hub whose keys' wake-up channels chanOf names. Call
// Run to start it.
func NewHub(rdb redis.UniversalClient, chanOf func(key string) string) *Hub {
	h := &Hub{rdb: rdb, chanOf: chanOf, Conns: 4, Linger: 2 * time.Minute}
	_, h.sharded = rdb.(*redis.ClusterClient)
	for i := range h.shards {
		h.shards[i].byKey = map[string]map[*Waiter]struct{}{}
	}
	h.subs.init()
	return h
}

// Register adds a waiter for the given keys, counted in Waiting.
// Unregister it when done.
func (h *Hub) Register(keys ...string) *Waiter {
	w := h.register(keys, nil)
	h.Count(w)
	return w
}

// register adds a waiter, not yet counted in Waiting (see Count), and
// asks for its keys' channels. notify (nil: none) is called on every
// wake-up, after C is signalled.
func (h *Hub) register(keys []string, notify func()) *Waiter {
	w := &Waiter{C: make(chan struct{}, 1), keys: keys, notify: notify}
	for _, k := range keys {
		sh := h.shard(k)
		sh.mu.Lock()
		set := sh.byKey[k]
		if set == nil {
			set = map[*Waiter]struct{}{}
			sh.byKey[k] = set
		}
		set[w] = struct{}{}
		sh.mu.Unlock()
	}
	h.want(keys)
	return w
}

// Count counts w in Waiting: a poll is counted once its channels are
// confirmed (see Store.confirmed), when a change is sure to wake it.
func (h *Hub) Count(w *Waiter) {
	if !w.counted {
		w.counted = true
		h.waiting.Add(1)
	}
}

// Unregister removes a waiter (nil: none).
func (h *Hub) Unregister(w *Waiter) {
	if w == nil {
		return
	}
	if w.counted {
		h.waiting.Add(-1)
	}
	for _, k := range w.keys {
		sh := h.shard(k)
		sh.mu.Lock()
		if set := sh.byKey[k]; set != nil {
			delete(set, w)
			if len(set) == 0 {
				delete(sh.byKey, k)
			}
		}
		sh.mu.Unlock()
	}
	h.unwant(w.keys)
}

// Waiting returns the number of registered waiters.
func (h *Hub) Waiting() int { return int(h.waiting.Load()) }

// Reconnects returns how many times the hub became whole again (every
// lost pub/sub connection back) after losing some.
func (h *Hub) Reconnects() int64 { return h.reconnects.Load() }

// Received returns how many wake-ups reached this instance.
func (h *Hub) Received() int64 { return h.received.Load() }

// Notify wakes the waiters of a key, as a message on the wake channel
// does. The payload is the key, optionally followed by a newline and a
// description of the change (see publishScript).
func (h *Hub) Notify(payload string) {
	key := payload
	if i := strings.IndexByte(payload, '\n'); i >= 0 {
		key = payload[:i]
	}
	if h.onNotify != nil {
		h.onNotify(key, payload)
	}
	sh := h.shard(key)
	sh.mu.Lock()
	for w := range sh.byKey[key] {
		w.fire(key, false)
	}
	sh.mu.Unlock()
}

// wakeKeys wakes the waiters of keys and tells them to re-read
// everything: their channels were confirmed or lost.
func (h *Hub) wakeKeys(keys []string) {
	for _, k := range keys {
		if h.onChannel != nil {
			h.onChannel(k)
		}
	}
	for _, k := range keys {
		sh := h.shard(k)
		sh.mu.Lock()
		for w := range sh.byKey[k] {
			w.fire("", true)
		}
		sh.mu.Unlock()
	}
}

// WakeAll wakes every waiter and tells it to re-read everything.
func (h *Hub) WakeAll() {
	// Every waiter is in the set of each of its keys: firing one twice is harmless.
	for i := range h.shards {
		sh := &h.shards[i]
		sh.mu.Lock()
		for _, set := range sh.byKey {
			for w := range set {
				w.fire("", true)
			}
		}
		sh.mu.Unlock()
	}
}

func (w *Waiter) fire(key string, all bool) {
	w.mu.Lock()
	if all {
		w.all = true
	} else {
		if w.fired == nil {
			w.fired = map[string]struct{}{}
		}
		w.fired[key] = struct{}{}
	}
	w.mu.Unlock()
	select { // C has room for one: a pending signal already covers this one
	case w.C <- struct{}{}:
	default:
	}
	if w.notify != nil {
		w.notify()
	}
}

// pending tells whether the waiter was woken since the last Take.
func (w *Waiter) pending() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.fired != nil || w.all
}

// Take returns the keys that fired since the last Take (all = every key).
func (w *Waiter) Take() (keys map[string]struct{}, all bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	keys, all = w.fired, w.all
	w.fired, w.all = nil, false
	return keys, all
}
