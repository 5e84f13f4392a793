// Package inbox is pollbox's Redis data model: per-user inbox streams,
// group and broadcast streams, cursors, publishing, reading, history,
// read state and the wake-up hub that lets waiting polls sleep without
// holding a Redis connection. It knows nothing of HTTP.
package inbox

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"golang.org/x/sync/singleflight"
)

// Options tune a Store. Zero values take the defaults noted.
type Options struct {
	Prefix        string        // key prefix; default "pollbox:"
	MaxLen        int64         // approximate entries kept per stream; default 1000
	Retention     time.Duration // entries older than this are trimmed; default 30 days
	UnreadScan    int           // entries examined per shared stream when counting unread; default 1000
	IdempotentFor time.Duration // how long idempotency keys are remembered; default 24 h
	// Pipelines is how many pipelines may be in flight at once (each holds
	// one connection per node while in flight); default 8.
	Pipelines int
	// CallTimeout bounds one shared pipeline; default 5 s.
	CallTimeout time.Duration
	// MaxRecipients caps users (or groups) in one publish; default 10,000.
	MaxRecipients int
	// TrustFor bounds how long an instance believes what it learnt from
	// Redis or from wake-ups (see view); default 15 s. It is the longest a
	// lost wake-up can delay a message.
	TrustFor time.Duration
	// Now is the clock (tests may replace it); default time.Now.
	Now func() time.Time
	// ScheduleLease is how long a scheduler owns a due publish it claimed
	// before another may deliver it; default 30 s.
	ScheduleLease time.Duration
	// OnNotice, if set, is called once per transition of a publish:
	// "delivered" (a scheduled one; lag = delivery time − send_at),
	// "cancelled" and "revoked" (lag 0).
	OnNotice func(event string, lag time.Duration)
}

func (o *Options) defaults() {
	if o.Prefix == "" {
		o.Prefix = DefaultPrefix
	}
	if o.MaxLen <= 0 {
		o.MaxLen = DefaultMaxLen
	}
	if o.Retention <= 0 {
		o.Retention = DefaultRetention
	}
	if o.UnreadScan <= 0 {
		o.UnreadScan = 1000
	}
	if o.IdempotentFor <= 0 {
		o.IdempotentFor = 24 * time.Hour
	}
	if o.Pipelines <= 0 {
		o.Pipelines = 8
	}
	if o.CallTimeout <= 0 {
		o.CallTimeout = 5 * time.Second
	}
	if o.MaxRecipients <= 0 {
		o.MaxRecipients = MaxRecipients
	}
	if o.TrustFor <= 0 {
		o.TrustFor = 15 * time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.ScheduleLease <= 0 {
		o.ScheduleLease = 30 * time.Second
	}
}

// Store is the Redis-backed inbox. It is safe for concurrent use. Run its
// Hub (Store.Hub().Run) for waiting polls to be woken.
type Store struct {
	rdb    redis.UniversalClient
	opt    Options
	k      keys
	hub    *Hub
	view   *view
	flight singleflight.Group // shared reads and counts of woken polls (see poll.go, state.go)
	batch  *batcher
	pubSeq pubSeqs // next publish id sequence to propose, per owner (see begin)
	// single: rdb is one node, where a script may touch keys of any slot
	// (see publishOne).
	single bool
	// scripts counts script calls sent to Redis: the tests use it to check
	// that the paths meant to be answered from the instance's caches are.
	scripts atomic.Int64
	// testHook, when set by a test, is called at the steps of a publish
	// ("written": entries written, not yet recorded) and of a scheduler's
	// delivery ("claimed", "written") with the publish id; true stops
	// there, as a crash would.
	testHook func(step, pid string) bool
}

// New returns a Store over rdb (a single node, Sentinel or Cluster client).
func New(rdb redis.UniversalClient, opt Options) *Store {
	opt.defaults()
	k := keys{opt.Prefix}
	s := &Store{rdb: rdb, opt: opt, k: k, hub: NewHub(rdb, k.wake),
		batch: newBatcher(rdb, opt.Pipelines, opt.CallTimeout)}
	_, s.single = rdb.(*redis.Client)
	s.view = newView(s.hub.Confirmed, func(u string) bool {
		return s.hub.Confirmed(k.inbox(u)) && s.hub.Confirmed(k.read(u))
	}, opt.TrustFor)
	s.hub.onNotify = s.onWake
	s.hub.onChannel = s.onChannel
	return s
}

// onChannel forgets what the view holds of key (and, for an inbox or a
// read state, of its user): its channel was just confirmed or lost, and
// nothing learnt without the channel may be trusted with it.
func (s *Store) onChannel(key string) {
	s.view.forget(key)
	if u, ok := s.k.inboxUser(key); ok {
		s.view.userChanged(u, key)
	} else if u, ok := s.k.readUser(key); ok {
		s.view.userChanged(u, s.k.inbox(u))
	}
}

// onWake applies a wake-up to the instance's view, before the hub wakes
// any waiter.
func (s *Store) onWake(key, payload string) {
	if w, ok := parseWake(payload); ok {
		u, _ := s.k.inboxUser(key)
		s.view.apply(w, u)
		return
	}
	if u, ok := s.k.readUser(key); ok {
		s.view.userChanged(u, s.k.inbox(u))
		return
	}
	// A wake-up that does not describe its entry (from an instance that
	// does not send them): forget what is known of the stream, and for an
	// inbox the user's unread count too.
	s.view.forget(key)
	if u, ok := s.k.inboxUser(key); ok {
		s.view.userChanged(u, key)
	}
}

// Close stops the store's pipeline workers. Calls after Close fail.
func (s *Store) Close() { s.batch.close() }

// sharded returns the command that publishes wake-ups: SPUBLISH on a
// cluster, so that a wake-up stays in the shard that owns its stream
// (a plain PUBLISH is copied to every node), else PUBLISH (miniredis has
// no SPUBLISH).
func (s *Store) sharded() string {
	if s.hub.sharded {
		return "SPUBLISH"
	}
	return "PUBLISH"
}

// Hub returns the store's wake-up hub.
func (s *Store) Hub() *Hub { return s.hub }

// LoadScripts loads pollbox's scripts into Redis (every master of a
// cluster). Calls work without it (a script Redis does not know is loaded
// and retried), but the first large publish after a Redis start would run
// twice: once to find the script missing, once for real.
func (s *Store) LoadScripts(ctx context.Context) error {
	for _, sc := range append([]*redis.Script{publishScript, readScript, stateScript, tailScript, sharedUnreadScript, wakeStateScript, markAllScript}, registered...) {
		if err := sc.Load(ctx, s.rdb).Err(); err != nil {
			return wrapRedis("script load", err)
		}
	}
	return nil
}

// registered lists the scripts that LoadScripts loads besides those it
// names; files add theirs with register.
var registered []*redis.Script

// register adds sc to the scripts LoadScripts loads and returns it, for
// package-level declarations: var fooScript = register(redis.NewScript(…)).
func register(sc *redis.Script) *redis.Script {
	registered = append(registered, sc)
	return sc
}

// Ping checks that Redis answers.
func (s *Store) Ping(ctx context.Context) error {
	return wrapRedis("ping", s.rdb.Ping(ctx).Err())
}

// scriptCall is one invocation of a script inside a pipeline.
type scriptCall struct {
	sc   *redis.Script
	keys []string
	args []any
}

// evalPipe runs script calls and returns their results in order. The
// calls share pipelines with other requests' calls (see batcher); on any
// call's error the first one is returned.
func (s *Store) evalPipe(ctx context.Context, calls []scriptCall) ([]any, error) {
	if len(calls) == 0 {
		return nil, nil
	}
	s.scripts.Add(int64(len(calls)))
	// However long the caller is prepared to wait, a call that Redis does
	// not answer in time fails (and the caller answers 503) rather than hang.
	out, errs, err := s.batch.do(ctx, calls)
	if err != nil {
		return nil, wrapRedis("script", err)
	}
	for _, e := range errs {
		if e != nil && e != redis.Nil {
			return out, wrapRedis("script", e)
		}
	}
	return out, nil
}

// ms converts a time to unix milliseconds.
func ms(t time.Time) int64 { return t.UnixNano() / int64(time.Millisecond) }

// streamsOf validates a reader and lists its streams.
func (s *Store) streamsOf(r Reader) ([]stream, error) {
	gs, err := r.normalize()
	if err != nil {
		return nil, err
	}
	return streamsFor(s.opt.Prefix, r.User, gs), nil
}

// findStream returns the reader's stream for a parsed id, or ErrNotFound
// when the id names a group the reader does not have.
func findStream(streams []stream, m msgRef) (stream, error) {
	name := m.streamName()
	for _, st := range streams {
		if st.name == name {
			return st, nil
		}
	}
	return stream{}, ErrNotFound
}
