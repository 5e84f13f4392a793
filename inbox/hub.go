package inbox

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// Hub wakes waiting polls when the streams they wait on grow. Each pollbox
// instance holds exactly one Redis subscription (to the wake channel) no
// matter how many polls wait; publishers PUBLISH the key of the stream
// they appended to (and a description of the new entry) in the same
// script as the XADD. A waiting poll
// therefore holds no Redis connection at all, only a Waiter in a map.
//
// Correctness rests on ordering: a poll registers its Waiter first and
// reads its streams second. An entry added before the read is seen by the
// read; one added after it publishes a wake-up that finds the Waiter
// already registered. Wake-ups lost while the subscription was down are
// covered by waking every waiter whenever the subscription (re)starts or
// fails, so they re-read instead of sleeping to their timeout.
type Hub struct {
	rdb     redis.UniversalClient
	channel string

	// Waiters by key, in shards with a lock each: thousands of polls
	// register and unregister at once after a broadcast, and one lock for
	// all of them was a point of contention.
	shards  [hubShards]hubShard
	waiting atomic.Int64

	// onNotify and onWakeAll run before any waiter is woken, so caches that
	// depend on wake-ups are invalid before a woken poll can consult them.
	onNotify  func(key, payload string)
	onWakeAll func()

	connected  atomic.Bool
	reconnects atomic.Int64
	// OnEvent, if set before Run, is told of "reconnected", "lost" and
	// "wake" events (for metrics). It must not block.
	OnEvent func(event string)
	// OnLost, if set before Run, receives the error that ended a
	// subscription (for the log). It must not block.
	OnLost func(err error)

	// Fault injection for tests (nil in production): drop, when it returns
	// true, makes the hub behave as if a wake-up never arrived.
	drop func(payload string) bool
	// cur is the live subscription, so that tests can cut it (kick).
	cur atomic.Pointer[redis.PubSub]
}

// Waiter is one waiting poll's registration.
type Waiter struct {
	// C receives a value whenever the waiter has been woken since the last Take.
	C    chan struct{}
	keys []string

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

// NewHub returns a hub for the given wake channel. Call Run to start it.
func NewHub(rdb redis.UniversalClient, channel string) *Hub {
	h := &Hub{rdb: rdb, channel: channel}
	for i := range h.shards {
		h.shards[i].byKey = map[string]map[*Waiter]struct{}{}
	}
	return h
}

// Register adds a waiter for the given keys. Unregister it when done.
func (h *Hub) Register(keys ...string) *Waiter {
	w := &Waiter{C: make(chan struct{}, 1), keys: keys}
	h.waiting.Add(1)
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
	return w
}

// Unregister removes a waiter.
func (h *Hub) Unregister(w *Waiter) {
	h.waiting.Add(-1)
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
}

// Waiting returns the number of registered waiters.
func (h *Hub) Waiting() int { return int(h.waiting.Load()) }

// Connected reports whether the subscription is currently live.
func (h *Hub) Connected() bool { return h.connected.Load() }

// Reconnects returns how many times the subscription was (re)established after the first.
func (h *Hub) Reconnects() int64 { return h.reconnects.Load() }

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

// WakeAll wakes every waiter and tells it to re-read everything.
func (h *Hub) WakeAll() {
	if h.onWakeAll != nil {
		h.onWakeAll()
	}
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
}

// Take returns the keys that fired since the last Take (all = every key).
func (w *Waiter) Take() (keys map[string]struct{}, all bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	keys, all = w.fired, w.all
	w.fired, w.all = nil, false
	return keys, all
}

func (h *Hub) event(e string) {
	if h.OnEvent != nil {
		h.OnEvent(e)
	}
}

// Run holds the subscription until ctx ends, resubscribing with backoff
// whenever it fails. It always returns ctx's error.
func (h *Hub) Run(ctx context.Context) error {
	backoff := 50 * time.Millisecond
	first := true
	for ctx.Err() == nil {
		ps := h.rdb.Subscribe(ctx, h.channel)
		h.cur.Store(ps)
		// The blocking read does not watch ctx; closing the subscription
		// is what ends it at once when ctx ends.
		stopClose := context.AfterFunc(ctx, func() { _ = ps.Close() })
		err := h.receive(ctx, ps, &first, &backoff)
		stopClose()
		_ = ps.Close()
		h.connected.Store(false)
		if ctx.Err() != nil {
			break
		}
		h.event("lost")
		if h.OnLost != nil {
			h.OnLost(err)
		}
		// Waiters must not trust that nothing happened while we were away.
		h.WakeAll()
		select {
		case <-ctx.Done():
		case <-time.After(backoff):
		}
		// A short cap: a publish accepted right after Redis returns wakes
		// nobody until the subscription is back, so the cap bounds that delay.
		if backoff *= 2; backoff > 250*time.Millisecond {
			backoff = 250 * time.Millisecond
		}
	}
	h.connected.Store(false)
	return ctx.Err()
}

// receive reads wake-ups until the connection fails.
func (h *Hub) receive(ctx context.Context, ps *redis.PubSub, first *bool, backoff *time.Duration) error {
	// A bounded wait lets a silent dead connection be found: after a quiet
	// period the hub pings, and if the next period passes without the Pong
	// (or anything else) arriving, the connection is given up.
	pingPending := false
	for ctx.Err() == nil {
		msg, err := ps.ReceiveTimeout(ctx, 15*time.Second)
		if err != nil {
			if isTimeout(err) && h.connected.Load() && !pingPending {
				if perr := ps.Ping(ctx); perr == nil {
					pingPending = true
					continue
				}
			}
			return err
		}
		pingPending = false
		switch m := msg.(type) {
		case *redis.Subscription:
			if m.Kind == "subscribe" {
				// Wake (and clear caches) before declaring the subscription
				// live, so nothing computed while it was down is trusted.
				h.WakeAll()
				h.connected.Store(true)
				*backoff = 50 * time.Millisecond
				if !*first {
					h.reconnects.Add(1)
					h.event("reconnected")
				}
				*first = false
			}
		case *redis.Message:
			h.event("wake")
			if h.drop != nil && h.drop(m.Payload) {
				continue
			}
			h.Notify(m.Payload)
		case *redis.Pong:
		}
	}
	return ctx.Err()
}

// kick closes the live subscription, as a network failure would (tests).
func (h *Hub) kick() {
	if ps := h.cur.Load(); ps != nil {
		_ = ps.Close()
	}
}

func isTimeout(err error) bool {
	type timeout interface{ Timeout() bool }
	t, ok := err.(timeout)
	return ok && t.Timeout()
}
