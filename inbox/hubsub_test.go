package inbox

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"pollbox/internal/redistest"
)

// listen keeps s subscribed to the wake-up channels of keys until the test
// ends, as a waiting poll on them would, without counting in Waiting: a
// test that watches s's view learn from wake-ups needs them to arrive.
func listen(t *testing.T, s *Store, keys ...string) {
	t.Helper()
	w := s.hub.register(keys, nil)
	t.Cleanup(func() { s.hub.Unregister(w) })
	waitFor(t, 5*time.Second, "subscribed wake-up channels", func() bool { return s.hub.confirmedAll(keys) })
}

// TestWakeupsOnlyWhereWaited: an instance receives the wake-ups of the
// streams its polls wait on, and no others. B waits on x's inbox and A
// on y's: x's publish wakes B, and y's publish, made after it, is the
// only wake-up A's process ever receives (on one channel, as before, x's
// would have reached A first).
func TestWakeupsOnlyWhereWaited(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, b backend) {
		ctx := testCtx(t)
		a := newStore(t, b.rdb, Options{})
		bs := newStore(t, b.rdb, Options{Prefix: a.opt.Prefix})
		x, y := Reader{User: "x"}, Reader{User: "y"}
		onB := goPoll(ctx, bs, x, PollOptions{Cursor: tail(t, bs, x), Wait: 20 * time.Second})
		onA := goPoll(ctx, a, y, PollOptions{Cursor: tail(t, a, y), Wait: 20 * time.Second})
		waitFor(t, 5*time.Second, "a waiting poll on each", func() bool { return a.Hub().Waiting() == 1 && bs.Hub().Waiting() == 1 })
		before := a.Hub().Received()

		idX := toUser(t, a, "x", "for x")
		checkIDs(t, "B's poll", msgIDs(await(t, onB, 5*time.Second).Messages), []string{idX})
		idY := toUser(t, bs, "y", "for y")
		checkIDs(t, "A's poll", msgIDs(await(t, onA, 5*time.Second).Messages), []string{idY})
		if got := a.Hub().Received() - before; got != 1 {
			t.Fatalf("A received %d wake-ups, want 1 (y's only)", got)
		}
		if bs.Hub().Received() < 1 {
			t.Fatal("B received no wake-up")
		}
		// Neither subscribed to the other's user.
		for _, k := range []string{a.k.inbox("y"), a.k.read("y")} {
			if bs.Hub().Confirmed(k) {
				t.Fatalf("B subscribed to %s", k)
			}
		}
	})
}

// TestRepollWithinLingerNoSubscribe: a client's next poll, within the
// linger window, finds its channels still subscribed: no (S)SUBSCRIBE is
// sent. Once they expired, the next poll subscribes again.
func TestRepollWithinLingerNoSubscribe(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, b backend) {
		ctx := testCtx(t)
		s := newStore(t, b.rdb, Options{}, func(s *Store) { s.Hub().Linger = time.Hour })
		r := Reader{User: "linger", Groups: []string{"g"}}
		c := tail(t, s, r)
		first := s.Hub().subscribed.Load()
		for i := range 3 {
			ch := goPoll(ctx, s, r, PollOptions{Cursor: c, Wait: 20 * time.Second})
			waitFor(t, 5*time.Second, "a waiting poll", func() bool { return s.Hub().Waiting() == 1 })
			id := toUser(t, s, r.User, fmt.Sprint("m", i))
			res := await(t, ch, 5*time.Second)
			checkIDs(t, "poll", msgIDs(res.Messages), []string{id})
			c = res.Cursor
			if i == 0 {
				first = s.Hub().subscribed.Load() - first
				if first != 4 { // inbox, group, broadcast, read state
					t.Fatalf("first poll subscribed %d channels, want 4", first)
				}
				first = s.Hub().subscribed.Load()
			} else if got := s.Hub().subscribed.Load(); got != first {
				t.Fatalf("re-poll %d subscribed %d channels, want none", i, got-first)
			}
		}
		s.Hub().expireIdle()
		waitFor(t, 5*time.Second, "expired channels", func() bool { return s.Hub().Subscriptions() == 0 })
		ch := goPoll(ctx, s, r, PollOptions{Cursor: c, Wait: 20 * time.Second})
		waitFor(t, 5*time.Second, "a waiting poll", func() bool { return s.Hub().Waiting() == 1 })
		if got := s.Hub().subscribed.Load() - first; got != 4 {
			t.Fatalf("poll after expiry subscribed %d channels, want 4", got)
		}
		id := toUser(t, s, r.User, "after expiry")
		checkIDs(t, "poll after expiry", msgIDs(await(t, ch, 5*time.Second).Messages), []string{id})
	})
}

// TestPollWaitsForConfirmation: a poll whose channel is not yet
// subscribed does not sleep on it: held back from subscribing, it is not
// counted as waiting, and a message published meanwhile (whose wake-up
// reaches nobody) is delivered as soon as the subscription is confirmed.
func TestPollWaitsForConfirmation(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, b backend) {
		ctx := testCtx(t)
		var held atomic.Bool
		held.Store(true)
		var name string
		s := newStore(t, b.rdb, Options{}, func(s *Store) {
			name = s.k.wake(s.k.inbox("held"))
			s.hub.hold = func(ch string) bool { return held.Load() && ch == name }
		})
		writer := newStore(t, b.rdb, Options{Prefix: s.opt.Prefix})
		r := Reader{User: "held"}
		c := tail(t, s, r)
		ch := goPoll(ctx, s, r, PollOptions{Cursor: c, Wait: 20 * time.Second})
		waitFor(t, 5*time.Second, "the poll's channels wanted", func() bool { return s.Hub().Subscriptions() == 3 })
		id := toUser(t, writer, r.User, "while unsubscribed")
		if n := s.Hub().Waiting(); n != 0 {
			t.Fatalf("%d polls counted as waiting before their channel is confirmed", n)
		}
		held.Store(false)
		s.hub.nudge()
		t0 := time.Now()
		checkIDs(t, "poll", msgIDs(await(t, ch, 5*time.Second).Messages), []string{id})
		if d := time.Since(t0); d > 3*time.Second {
			t.Fatalf("poll answered %v after the confirmation", d)
		}
	})
}

// TestShardedWakeups: on a cluster a wake-up channel hashes to its key's
// slot, is subscribed with SSUBSCRIBE on the slot's owner (no plain
// subscriber anywhere), and the wake-up travels by SPUBLISH.
func TestShardedWakeups(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: redistest.ClusterAddrs(t)})
	t.Cleanup(func() { cc.Close() })
	s := newStore(t, cc, Options{})
	if !s.hub.sharded || s.sharded() != "SPUBLISH" {
		t.Fatal("a cluster store does not use sharded pub/sub")
	}
	for _, key := range []string{s.k.inbox("u1"), s.k.group("ops"), s.k.broadcast(), s.k.read("u1")} {
		ch := s.k.wake(key)
		ks, err := cc.ClusterKeySlot(ctx, key).Result()
		must(t, err, "CLUSTER KEYSLOT %s", key)
		cs, err := cc.ClusterKeySlot(ctx, ch).Result()
		must(t, err, "CLUSTER KEYSLOT %s", ch)
		if ks != cs || int(cs) != slotOf(ch) {
			t.Fatalf("%s in slot %d, its channel %s in %d (slotOf %d)", key, ks, ch, cs, slotOf(ch))
		}
	}
	r := Reader{User: "u1", Groups: []string{"ops"}}
	w := goPoll(ctx, s, r, PollOptions{Cursor: tail(t, s, r), Wait: 20 * time.Second})
	waitFor(t, 5*time.Second, "a waiting poll", func() bool { return s.Hub().Waiting() == 1 })
	ch := s.k.wake(s.k.inbox("u1"))
	owner, err := cc.MasterForKey(ctx, ch)
	must(t, err, "MasterForKey")
	shard, err := owner.PubSubShardNumSub(ctx, ch).Result()
	must(t, err, "PUBSUB SHARDNUMSUB")
	if shard[ch] != 1 {
		t.Fatalf("PUBSUB SHARDNUMSUB %s = %d, want 1", ch, shard[ch])
	}
	must(t, cc.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error {
		plain, err := m.PubSubNumSub(ctx, ch).Result()
		if err == nil && plain[ch] != 0 {
			err = fmt.Errorf("%s: PUBSUB NUMSUB %s = %d, want 0", m.Options().Addr, ch, plain[ch])
		}
		return err
	}), "plain subscribers")
	before := s.Hub().Received()
	id := toUser(t, s, "u1", "sharded")
	checkIDs(t, "poll", msgIDs(await(t, w, 5*time.Second).Messages), []string{id})
	if s.Hub().Received() == before {
		t.Fatal("the poll answered without a wake-up")
	}
}

// TestUnconfirmedPollAnswersAtOnce: a waiting poll whose channels are not
// confirmed yet answers messages that are already there at once; only
// sleeping waits for the confirmation (up to confirmWait).
func TestUnconfirmedPollAnswersAtOnce(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, b backend) {
		ctx := testCtx(t)
		s := newStore(t, b.rdb, Options{}, func(s *Store) {
			name := s.k.wake(s.k.inbox("early"))
			s.hub.hold = func(ch string) bool { return ch == name } // never confirmed
		})
		r := Reader{User: "early"}
		c := tail(t, s, r)
		id := toUser(t, s, r.User, "already there")
		t0 := time.Now()
		ch := goPoll(ctx, s, r, PollOptions{Cursor: c, Wait: 20 * time.Second})
		checkIDs(t, "poll", msgIDs(await(t, ch, 5*time.Second).Messages), []string{id})
		if d := time.Since(t0); d >= confirmWait*7/10 {
			t.Fatalf("the poll answered a message already there after %v: it waited for its channels", d)
		}
	})
}
