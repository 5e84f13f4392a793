package inbox

import (
	"context"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// batcher sends the script calls of many concurrent requests to Redis in
// shared pipelines. Thousands of polls answering at once would otherwise
// queue for a small connection pool, one round trip each; here a fixed
// number of workers each take whatever requests are waiting and send them
// together, so one round trip serves many requests and the number of
// connections stays fixed however busy the instance is.
type batcher struct {
	rdb     redis.UniversalClient
	queue   chan *batchReq
	timeout time.Duration
	stop    chan struct{}
	once    sync.Once
}

type batchReq struct {
	calls []scriptCall
	out   []any
	errs  []error
	done  chan struct{}
}

// maxBatchCalls caps the calls one worker gathers into one pipeline (a
// single larger request still goes alone).
const maxBatchCalls = 512

func newBatcher(rdb redis.UniversalClient, workers int, timeout time.Duration) *batcher {
	b := &batcher{rdb: rdb, queue: make(chan *batchReq, 4096), timeout: timeout, stop: make(chan struct{})}
	for i := 0; i < workers; i++ {
		go b.work()
	}
	return b
}

// do runs calls and returns one result or error per call. It returns early
// with ctx's error if ctx ends first, or with context.DeadlineExceeded
// after the batcher's timeout, however long ctx allows; the calls may
// still run. The timeout counts from this call: a caller making several
// calls bounds them together with its context's deadline, which is the
// only bound when it comes first. (A timer rather than a derived context:
// that would register with the request's context on every call, and this
// runs for most requests.)
func (b *batcher) do(ctx context.Context, calls []scriptCall) ([]any, []error, error) {
	r := &batchReq{calls: calls, out: make([]any, len(calls)), errs: make([]error, len(calls)), done: make(chan struct{})}
	var timeout <-chan time.Time // nil: ctx's deadline comes first
	if dl, ok := ctx.Deadline(); !ok || time.Until(dl) > b.timeout {
		t := time.NewTimer(b.timeout)
		defer t.Stop()
		timeout = t.C
	}
	select {
	case b.queue <- r:
	case <-ctx.Done():
		return nil, nil, context.Cause(ctx)
	case <-timeout:
		return nil, nil, context.DeadlineExceeded
	case <-b.stop:
		return nil, nil, redis.ErrClosed
	}
	select {
	case <-r.done:
		return r.out, r.errs, nil
	case <-ctx.Done():
		return nil, nil, context.Cause(ctx)
	case <-timeout:
		return nil, nil, context.DeadlineExceeded
	}
}

func (b *batcher) close() { b.once.Do(func() { close(b.stop) }) }

func (b *batcher) work() {
	for {
		var first *batchReq
		select {
		case first = <-b.queue:
		case <-b.stop:
			return
		}
		reqs := []*batchReq{first}
		n := len(first.calls)
	gather:
		for n < maxBatchCalls {
			select {
			case r := <-b.queue:
				reqs = append(reqs, r)
				n += len(r.calls)
			default:
				break gather
			}
		}
		b.run(reqs)
		for _, r := range reqs {
			close(r.done)
		}
	}
}

type callRef struct {
	req *batchReq
	i   int
}

// run sends every call of reqs in one pipeline, then once more for calls
// that found the script cache empty (NOSCRIPT: they did not run).
func (b *batcher) run(reqs []*batchReq) {
	var todo []callRef
	for _, r := range reqs {
		for i := range r.calls {
			todo = append(todo, callRef{r, i})
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), b.timeout)
	defer cancel()
	for attempt := 0; len(todo) > 0; attempt++ {
		cmds := make([]*redis.Cmd, len(todo))
		_, _ = b.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for j, c := range todo {
				call := c.req.calls[c.i]
				cmds[j] = call.sc.EvalSha(ctx, p, call.keys, call.args...)
			}
			return nil
		})
		var retry []callRef
		for j, c := range todo {
			v, err := cmds[j].Result()
			if err != nil && redis.HasErrorPrefix(err, "NOSCRIPT") && attempt == 0 {
				retry = append(retry, c)
				continue
			}
			c.req.out[c.i], c.req.errs[c.i] = v, err
		}
		loaded := map[*redis.Script]error{}
		for _, c := range retry {
			sc := c.req.calls[c.i].sc
			if _, ok := loaded[sc]; !ok {
				loaded[sc] = sc.Load(ctx, b.rdb).Err()
			}
		}
		todo = todo[:0]
		for _, c := range retry {
			if err := loaded[c.req.calls[c.i].sc]; err != nil {
				c.req.errs[c.i] = err
			} else {
				todo = append(todo, c)
			}
		}
	}
}
