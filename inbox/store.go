// Package inbox is pollbox's Redis data model: per-user inbox streams,
// group and broadcast streams, cursors, publishing, reading, history,
// read state and the wake-up hub that lets waiting polls sleep without
// holding a Redis connection. It knows nothing of HTTP.
package inbox

import (
	"context"
	"errors"
	"time"

	"github.com/redis/go-redis/v9"
)

// Options tune a Store. Zero values take the defaults noted.
type Options struct {
	Prefix       string        // key prefix; default "pollbox:"
	MaxLen       int64         // approximate entries kept per stream; default 1000
	Retention    time.Duration // entries older than this are trimmed; default 30 days
	UnreadScan   int           // entries examined per shared stream when counting unread; default 1000
	IdempotentFor time.Duration // how long idempotency keys are remembered; default 24 h
	// Now is the clock (tests may replace it); default time.Now.
	Now func() time.Time
}

func (o *Options) defaults() {
	if o.Prefix == "" {
		o.Prefix = "pollbox:"
	}
	if o.MaxLen <= 0 {
		o.MaxLen = 1000
	}
	if o.Retention <= 0 {
		o.Retention = 30 * 24 * time.Hour
	}
	if o.UnreadScan <= 0 {
		o.UnreadScan = 1000
	}
	if o.IdempotentFor <= 0 {
		o.IdempotentFor = 24 * time.Hour
	}
	if o.Now == nil {
		o.Now = time.Now
	}
}

// Store is the Redis-backed inbox. It is safe for concurrent use. Run its
// Hub (Store.Hub().Run) for waiting polls to be woken.
type Store struct {
	rdb  redis.UniversalClient
	opt  Options
	k    keys
	hub  *Hub
}

// New returns a Store over rdb (a single node, Sentinel or Cluster client).
func New(rdb redis.UniversalClient, opt Options) *Store {
	opt.defaults()
	k := keys{opt.Prefix}
	return &Store{rdb: rdb, opt: opt, k: k, hub: NewHub(rdb, k.wake())}
}

// Hub returns the store's wake-up hub.
func (s *Store) Hub() *Hub { return s.hub }

// Ping checks that Redis answers.
func (s *Store) Ping(ctx context.Context) error {
	return wrapRedis("ping", s.rdb.Ping(ctx).Err())
}

// scriptCall is one invocation of a script inside a pipeline.
type scriptCall struct {
	keys []string
	args []any
}

// evalPipe runs one script many times in a single pipeline (one round trip
// per cluster node) and returns the results in order. Scripts are sent by
// SHA; when Redis has lost its script cache (a restart), the calls that got
// NOSCRIPT — which therefore did not run — are loaded and sent again.
func (s *Store) evalPipe(ctx context.Context, sc *redis.Script, calls []scriptCall) ([]any, error) {
	out := make([]any, len(calls))
	todo := make([]int, len(calls))
	for i := range todo {
		todo[i] = i
	}
	for attempt := 0; ; attempt++ {
		cmds := make([]*redis.Cmd, len(todo))
		_, _ = s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for j, i := range todo {
				cmds[j] = sc.EvalSha(ctx, p, calls[i].keys, calls[i].args...)
			}
			return nil
		})
		var retry []int
		var firstErr error
		for j, i := range todo {
			v, err := cmds[j].Result()
			switch {
			case err == nil:
				out[i] = v
			case redis.HasErrorPrefix(err, "NOSCRIPT") && attempt == 0:
				retry = append(retry, i)
			default:
				if firstErr == nil {
					firstErr = err
				}
			}
		}
		if firstErr != nil {
			return out, wrapRedis("script", firstErr)
		}
		if len(retry) == 0 {
			return out, nil
		}
		if err := sc.Load(ctx, s.rdb).Err(); err != nil {
			return out, wrapRedis("script load", err)
		}
		todo = retry
	}
}

// evalOne runs a script once, loading it when Redis lacks it.
func (s *Store) evalOne(ctx context.Context, sc *redis.Script, keys []string, args ...any) (any, error) {
	v, err := sc.EvalSha(ctx, s.rdb, keys, args...).Result()
	if err != nil && redis.HasErrorPrefix(err, "NOSCRIPT") {
		v, err = sc.Eval(ctx, s.rdb, keys, args...).Result()
	}
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	return v, wrapRedis("script", err)
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
