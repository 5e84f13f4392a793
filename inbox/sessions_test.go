package inbox

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"testing"

	"github.com/redis/go-redis/v9"

	"pollbox/internal/redistest"
)

// pipeCounter is a go-redis hook that records the size of every pipeline.
type pipeCounter struct {
	mu    sync.Mutex
	sizes []int
}

func (h *pipeCounter) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *pipeCounter) ProcessHook(next redis.ProcessHook) redis.ProcessHook { return next }

func (h *pipeCounter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		h.mu.Lock()
		h.sizes = append(h.sizes, len(cmds))
		h.mu.Unlock()
		return next(ctx, cmds)
	}
}

// TestSessionsAlive: one batch tells which of 2,500 session keys exist, on
// a single node and on a cluster (where the keys lie on every node), in
// pipelines of at most SessionChunk keys; a failed check counts as alive.
func TestSessionsAlive(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, b backend) {
		ctx := testCtx(t)
		prefix := redistest.Prefix(t) + "online-token-"
		const n = 2*SessionChunk + SessionChunk/2
		tokens := make([]string, n)
		pipe := b.rdb.Pipeline()
		for i := range tokens {
			tokens[i] = fmt.Sprintf("tok-%d", i)
			if i%3 != 0 {
				pipe.Set(ctx, prefix+tokens[i], "{}", 0)
			}
		}
		if _, err := pipe.Exec(ctx); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			pipe := b.rdb.Pipeline()
			for _, tok := range tokens {
				pipe.Del(context.Background(), prefix+tok)
			}
			_, _ = pipe.Exec(context.Background())
		})

		var hook pipeCounter
		b.rdb.AddHook(&hook)
		s := NewSessions(b.rdb, prefix)
		alive, err := s.SessionsAlive(ctx, tokens)
		if err != nil {
			t.Fatal(err)
		}
		if len(alive) != n {
			t.Fatalf("%d answers for %d tokens", len(alive), n)
		}
		for i, a := range alive {
			if want := i%3 != 0; a != want {
				t.Fatalf("token %d: alive %v, want %v", i, a, want)
			}
		}
		hook.mu.Lock()
		sizes := hook.sizes
		hook.mu.Unlock()
		total := 0
		for _, sz := range sizes {
			if sz > SessionChunk {
				t.Errorf("a pipeline of %d commands, want at most %d", sz, SessionChunk)
			}
			total += sz
		}
		if len(sizes) != 3 || total != n {
			t.Errorf("pipelines %v, want 3 of at most %d commands, %d in all", sizes, SessionChunk, n)
		}

		// One poll's token alone, and none at all.
		if a, err := s.SessionsAlive(ctx, tokens[1:2]); err != nil || len(a) != 1 || !a[0] {
			t.Errorf("one live token: %v %v", a, err)
		}
		if a, err := s.SessionsAlive(ctx, nil); err != nil || len(a) != 0 {
			t.Errorf("no tokens: %v %v", a, err)
		}
	})
}

// TestSessionsAliveFailureKeepsSessions: when Redis cannot be reached,
// every session counts as alive and the error says ErrUnavailable.
func TestSessionsAliveFailureKeepsSessions(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	rdb := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
	t.Cleanup(func() { rdb.Close() })
	alive, err := NewSessions(rdb, "online-token-").SessionsAlive(testCtx(t), []string{"a", "b"})
	if !errors.Is(err, ErrUnavailable) {
		t.Errorf("error %v, want ErrUnavailable", err)
	}
	if len(alive) != 2 || !alive[0] || !alive[1] {
		t.Errorf("alive %v, want [true true]", alive)
	}
}
