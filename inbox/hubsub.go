package inbox

import (
	"context"
	"hash/fnv"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// wakeChannel names the wake-up channel of key: "<p>wake:" and the key,
// whose hash tag it keeps, so that on a cluster the channel hashes to the
// key's slot and a wake-up published by a script on the key's node stays
// there (sharded pub/sub). A key without a tag (the broadcast stream)
// becomes the channel's tag: "{<key>}" hashes like the whole key. A tag
// in the prefix is the first tag of both, which keeps them together too.
func wakeChannel(prefix, key string) string {
	if strings.IndexByte(key, '{') >= 0 {
		return prefix + "wake:" + key
	}
	return prefix + "wake:{" + key + "}"
}

// Channel states.
const (
	chanPending   = iota // not subscribed, or the connection was lost
	chanSent             // (S)SUBSCRIBE sent, not yet confirmed
	chanConfirmed        // confirmed: its wake-ups arrive
)

// hubChan is one key's wake-up channel.
type hubChan struct {
	key, name string
	refs      int       // waiters on the key
	idle      time.Time // when refs fell to 0
	state     int
	conn      *hubConn // nil while pending
}

// hubConn is one pub/sub connection and the channels it carries.
type hubConn struct {
	id      string // "0".."Conns-1" on a single node, the master's address on a cluster
	ps      *redis.PubSub
	chans   map[string]*hubChan // by channel name
	unsubs  map[string]int      // unsubscribes sent, whose replies are due
	lost    bool                // lost and not yet confirmed again
	retryAt time.Time
}

// hubSubs is the hub's subscription state, under one lock: it changes
// only when a key gains its first waiter, a channel expires, or a
// connection comes or goes, not per poll.
type hubSubs struct {
	mu      sync.Mutex
	chans   map[string]*hubChan // by key
	conns   map[string]*hubConn
	down    int // connections lost and not back
	running bool
	work    chan struct{}
}

func (s *hubSubs) init() {
	s.chans = map[string]*hubChan{}
	s.conns = map[string]*hubConn{}
	s.work = make(chan struct{}, 1)
}

// nudge asks Run to act on pending changes.
func (h *Hub) nudge() {
	select {
	case h.subs.work <- struct{}{}:
	default:
	}
}

// want counts a waiter on keys, subscribing the channels of new ones.
func (h *Hub) want(keys []string) {
	if h.chanOf == nil {
		return
	}
	s := &h.subs
	s.mu.Lock()
	added := false
	for _, k := range keys {
		c := s.chans[k]
		if c == nil {
			c = &hubChan{key: k, name: h.chanOf(k)}
			s.chans[k] = c
			added = true
		}
		c.refs++
	}
	s.mu.Unlock()
	if added {
		h.nudge()
	}
}

// unwant drops a waiter's count on keys; a channel left without waiters
// lingers (see Hub.Linger).
func (h *Hub) unwant(keys []string) {
	if h.chanOf == nil {
		return
	}
	s := &h.subs
	now := time.Now()
	s.mu.Lock()
	for _, k := range keys {
		if c := s.chans[k]; c != nil {
			if c.refs--; c.refs == 0 {
				c.idle = now
			}
		}
	}
	s.mu.Unlock()
}

// Confirmed reports whether key's wake-up channel is confirmed subscribed.
func (h *Hub) Confirmed(key string) bool {
	s := &h.subs
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.chans[key]
	return c != nil && c.state == chanConfirmed
}

// confirmedAll reports whether the channels of all keys are confirmed,
// or no confirmation is to be had soon: the hub is not running, or a
// connection is down (backing off). A poll then reads at once, trusting
// nothing, and is woken to read again when its channels are confirmed.
func (h *Hub) confirmedAll(keys []string) bool {
	s := &h.subs
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.running || s.down > 0 {
		return true
	}
	for _, k := range keys {
		if c := s.chans[k]; c == nil || c.state != chanConfirmed {
			return false
		}
	}
	return true
}

// Connected reports whether the hub runs with no pub/sub connection lost.
func (h *Hub) Connected() bool {
	s := &h.subs
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.running && s.down == 0
}

// Subscriptions returns how many channels the hub holds or wants.
func (h *Hub) Subscriptions() int {
	s := &h.subs
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.chans)
}

func (h *Hub) event(e string) {
	if h.OnEvent != nil {
		h.OnEvent(e)
	}
}

// Run holds the subscriptions until ctx ends: it subscribes channels as
// keys gain waiters, drops them once they lingered, and replaces lost
// connections with backoff. It always returns ctx's error.
func (h *Hub) Run(ctx context.Context) error {
	s := &h.subs
	s.mu.Lock()
	s.running = true
	s.mu.Unlock()
	var conns sync.WaitGroup
	tick := time.NewTicker(h.Linger/4 + time.Millisecond)
	defer tick.Stop()
	for ctx.Err() == nil {
		h.step(ctx, &conns, time.Now())
		select {
		case <-ctx.Done():
		case <-s.work:
		case <-tick.C:
		}
	}
	s.mu.Lock()
	s.running = false
	for _, c := range s.conns {
		if c.ps != nil {
			_ = c.ps.Close()
		}
	}
	s.mu.Unlock()
	conns.Wait()
	return ctx.Err()
}

// step routes pending channels to connections, opens the connections
// they need, sends the (S)SUBSCRIBEs in batches and unsubscribes the
// channels that lingered past Linger.
func (h *Hub) step(ctx context.Context, conns *sync.WaitGroup, now time.Time) {
	s := &h.subs
	s.mu.Lock()
	var pending []*hubChan
	drop := map[*redis.PubSub][]string{}
	for k, c := range s.chans {
		switch {
		case c.refs == 0 && (c.idle.IsZero() || now.Sub(c.idle) >= h.Linger):
			delete(s.chans, k)
			if c.conn != nil {
				delete(c.conn.chans, c.name)
				if ps := c.conn.ps; ps != nil && c.state != chanPending {
					c.conn.unsubs[c.name]++
					drop[ps] = append(drop[ps], c.name)
				}
			}
		case c.state == chanPending && c.conn == nil && (h.hold == nil || !h.hold(c.name)):
			pending = append(pending, c)
		}
	}
	s.mu.Unlock()
	for ps, names := range drop {
		if h.sharded {
			_ = ps.SUnsubscribe(ctx, names...)
		} else {
			_ = ps.Unsubscribe(ctx, names...)
		}
	}
	// Route outside the lock: on a cluster it may ask for the slot map.
	routes := make([]string, len(pending))
	for i, c := range pending {
		routes[i] = h.route(ctx, c.name)
	}
	s.mu.Lock()
	batch := map[*hubConn][]*hubChan{}
	retry := false // channels left pending: step again soon, not at the next tick
	for i, c := range pending {
		if s.chans[c.key] != c || c.conn != nil {
			continue
		}
		if routes[i] == "" {
			retry = true
			continue
		}
		cn := s.conns[routes[i]]
		if cn == nil {
			cn = &hubConn{id: routes[i], chans: map[string]*hubChan{}, unsubs: map[string]int{}}
			s.conns[routes[i]] = cn
		}
		if now.Before(cn.retryAt) {
			retry = true
			continue
		}
		c.conn, c.state = cn, chanSent
		cn.chans[c.name] = c
		batch[cn] = append(batch[cn], c)
	}
	s.settle()
	s.mu.Unlock()
	for cn, cs := range batch {
		h.subscribe(ctx, conns, cn, cs)
	}
	if retry {
		time.AfterFunc(50*time.Millisecond, h.nudge)
	}
}

// route returns the id of the connection that carries channel ("" when
// the cluster's slot map cannot be had now: retried on the next step).
func (h *Hub) route(ctx context.Context, channel string) string {
	if cc, ok := h.rdb.(*redis.ClusterClient); ok {
		m, err := cc.MasterForKey(ctx, channel)
		if err != nil {
			return ""
		}
		return m.Options().Addr
	}
	f := fnv.New32a()
	_, _ = f.Write([]byte(channel))
	n := max(h.Conns, 1)
	return strconv.Itoa(int(f.Sum32() % uint32(n)))
}

// subscribe sends the (S)SUBSCRIBEs for cs on cn, opening cn first if it
// has no live PubSub. On a cluster each command holds one slot's channels.
func (h *Hub) subscribe(ctx context.Context, conns *sync.WaitGroup, cn *hubConn, cs []*hubChan) {
	groups := [][]string{nil}
	if h.sharded {
		bySlot := map[int][]string{}
		for _, c := range cs {
			sl := slotOf(c.name)
			bySlot[sl] = append(bySlot[sl], c.name)
		}
		groups = groups[:0]
		for _, g := range bySlot {
			groups = append(groups, g)
		}
	} else {
		for _, c := range cs {
			groups[0] = append(groups[0], c.name)
		}
	}
	h.subs.mu.Lock()
	ps := cn.ps
	h.subs.mu.Unlock()
	var err error
	for i, g := range groups {
		h.subscribed.Add(int64(len(g)))
		if ps == nil && i == 0 {
			if cc, ok := h.rdb.(*redis.ClusterClient); ok {
				ps = cc.SSubscribe(ctx) // connects on the first channel's owner
			} else {
				ps = h.rdb.Subscribe(ctx)
			}
			h.subs.mu.Lock()
			cn.ps = ps
			h.subs.mu.Unlock()
			if h.sharded {
				err = ps.SSubscribe(ctx, g...)
			} else {
				err = ps.Subscribe(ctx, g...)
			}
			conns.Go(func() { h.receive(ctx, cn, ps) })
			continue
		}
		if h.sharded {
			err = ps.SSubscribe(ctx, g...)
		} else {
			err = ps.Subscribe(ctx, g...)
		}
		if err != nil {
			break
		}
	}
	if err != nil {
		_ = ps.Close() // the receiver finds the connection closed and reports it lost
	}
}
