package inbox

import (
	"context"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// The hub's pub/sub connections: what arrives on them (wake-ups,
// confirmations, unsubscribes), losing them, and the test hooks that cut
// them (see hubsub.go for how channels are routed and subscribed).

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
