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

// receive reads one connection's wake-ups and confirmations until it
// fails, then reports it lost.
func (h *Hub) receive(ctx context.Context, cn *hubConn, ps *redis.PubSub) {
	// A bounded wait lets a silent dead connection be found: after a quiet
	// period the hub pings, and if the next period passes without the Pong
	// (or anything else) arriving, the connection is given up.
	pingPending := false
	var err error
	for ctx.Err() == nil {
		var msg any
		msg, err = ps.ReceiveTimeout(ctx, 15*time.Second)
		if err != nil {
			if isTimeout(err) && !pingPending {
				if perr := ps.Ping(ctx); perr == nil {
					pingPending = true
					continue
				}
			}
			break
		}
		pingPending = false
		switch m := msg.(type) {
		case *redis.Subscription:
			switch m.Kind {
			case "subscribe", "ssubscribe":
				h.confirm(cn, ps, m.Channel)
			case "unsubscribe", "sunsubscribe":
				h.unsubscribed(cn, ps, m.Channel)
			}
		case *redis.Message:
			h.received.Add(1)
			h.event("wake")
			if h.drop != nil && h.drop(m.Payload) {
				continue
			}
			h.Notify(m.Payload)
		case *redis.Pong:
		}
	}
	h.lose(ctx, cn, ps, err)
}

// confirm marks a channel confirmed and wakes its key's waiters to read
// again: a wake-up published before the confirmation may have been missed.
func (h *Hub) confirm(cn *hubConn, ps *redis.PubSub, name string) {
	s := &h.subs
	s.mu.Lock()
	c := cn.chans[name]
	// A confirmation that precedes a pending unsubscribe's reply is for
	// the subscription being dropped.
	if cn.ps != ps || c == nil || c.state != chanSent || cn.unsubs[name] > 0 {
		s.mu.Unlock()
		return
	}
	// Forget before trusting: a read that began before now is not stored.
	if h.onChannel != nil {
		h.onChannel(c.key)
	}
	c.state = chanConfirmed
	back := false
	if cn.lost {
		cn.lost = false
		s.down--
		back = s.down == 0 // the hub is whole again
	}
	s.mu.Unlock()
	if back {
		h.reconnects.Add(1)
		h.event("reconnected")
	}
	h.wakeKeys([]string{c.key})
}

// unsubscribed handles an unsubscribe reply: the answer to one the hub
// sent, or the server dropping a channel (a cluster slot moved), which is
// a lost subscription: the key's waiters re-read and the channel is
// routed again.
func (h *Hub) unsubscribed(cn *hubConn, ps *redis.PubSub, name string) {
	s := &h.subs
	s.mu.Lock()
	if n := cn.unsubs[name]; n > 0 {
		if n == 1 {
			delete(cn.unsubs, name)
		} else {
			cn.unsubs[name] = n - 1
		}
		s.mu.Unlock()
		return
	}
	c := cn.chans[name]
	if cn.ps != ps || c == nil {
		s.mu.Unlock()
		return
	}
	delete(cn.chans, name)
	c.state, c.conn = chanPending, nil
	if h.onChannel != nil {
		h.onChannel(c.key)
	}
	s.mu.Unlock()
	h.wakeKeys([]string{c.key})
	h.reroute()
	h.nudge()
}

// reroute makes a cluster client reload its slot map before channels are
// routed again: a lost connection or a dropped channel may mean that
// slots moved.
func (h *Hub) reroute() {
	if cc, ok := h.rdb.(*redis.ClusterClient); ok {
		cc.ReloadState(context.Background())
	}
}

// lose handles a connection that failed: its channels are pending again
// (and dropped if no waiter needs them), their keys' waiters re-read, and
// the connection is opened again after a backoff.
func (h *Hub) lose(ctx context.Context, cn *hubConn, ps *redis.PubSub, err error) {
	_ = ps.Close()
	s := &h.subs
	s.mu.Lock()
	if cn.ps != ps {
		s.mu.Unlock()
		return
	}
	cn.ps = nil
	var keys []string
	for name, c := range cn.chans {
		delete(cn.chans, name)
		c.state, c.conn = chanPending, nil
		if h.onChannel != nil {
			h.onChannel(c.key)
		}
		if c.refs == 0 {
			delete(s.chans, c.key)
		}
		keys = append(keys, c.key)
	}
	clear(cn.unsubs)
	stopping := ctx.Err() != nil || !s.running
	first := false // the first connection lost while the hub was whole
	if !stopping && len(keys) > 0 && !cn.lost {
		cn.lost = true
		s.down++
		first = s.down == 1
	}
	// A short cap: a publish accepted right after Redis returns wakes
	// nobody until the subscription is back, so the cap bounds that delay.
	backoff := 50 * time.Millisecond
	if !cn.retryAt.IsZero() && time.Since(cn.retryAt) < time.Second {
		backoff = 250 * time.Millisecond
	}
	cn.retryAt = time.Now().Add(backoff)
	s.mu.Unlock()
	// Waiters must not trust that nothing happened while it was away.
	h.wakeKeys(keys)
	if stopping {
		return
	}
	if first {
		h.event("lost")
	}
	h.reroute()
	if h.OnLost != nil && err != nil && len(keys) > 0 {
		h.OnLost(err)
	}
	time.AfterFunc(backoff, h.nudge)
}

// settle clears the lost mark of connections that carry nothing any
// more: no waiter needs them back. Callers hold subs.mu.
func (s *hubSubs) settle() {
	for _, c := range s.chans {
		if c.state != chanConfirmed {
			return
		}
	}
	for _, cn := range s.conns {
		if cn.lost {
			cn.lost = false
			s.down--
		}
	}
}

// kick closes every live connection, as a network failure would (tests).
func (h *Hub) kick() {
	s := &h.subs
	s.mu.Lock()
	var pss []*redis.PubSub
	for _, cn := range s.conns {
		if cn.ps != nil {
			pss = append(pss, cn.ps)
		}
	}
	s.mu.Unlock()
	for _, ps := range pss {
		_ = ps.Close()
	}
}

// kickOne closes the live connection that carries key's channel, if any
// (tests).
func (h *Hub) kickOne(key string) {
	s := &h.subs
	s.mu.Lock()
	var ps *redis.PubSub
	if c := s.chans[key]; c != nil && c.conn != nil {
		ps = c.conn.ps
	}
	s.mu.Unlock()
	if ps != nil {
		_ = ps.Close()
	}
}

// expireIdle ends the linger of every channel without waiters now
// (tests).
func (h *Hub) expireIdle() {
	s := &h.subs
	s.mu.Lock()
	for _, c := range s.chans {
		if c.refs == 0 {
			c.idle = time.Time{}
		}
	}
	s.mu.Unlock()
	h.nudge()
}

func isTimeout(err error) bool {
	type timeout interface{ Timeout() bool }
	t, ok := err.(timeout)
	return ok && t.Timeout()
}

// slotOf returns the Redis Cluster slot of a key or channel name.
func slotOf(key string) int {
	if i := strings.IndexByte(key, '{'); i >= 0 {
		if j := strings.IndexByte(key[i+1:], '}'); j > 0 {
			key = key[i+1 : i+1+j]
		}
	}
	var crc uint16
	for k := 0; k < len(key); k++ {
		crc ^= uint16(key[k]) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return int(crc) % 16384
}
