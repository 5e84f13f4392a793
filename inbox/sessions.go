package inbox

import (
	"context"

	"github.com/redis/go-redis/v9"
)

// Sessions checks login sessions kept as Redis keys, the way smpe-admin
// keeps "online-token-<token>" while a user is logged in.
type Sessions struct {
	rdb    redis.UniversalClient
	prefix string
}

// NewSessions returns a checker for keys "<prefix><token>" in rdb.
func NewSessions(rdb redis.UniversalClient, prefix string) *Sessions {
	return &Sessions{rdb: rdb, prefix: prefix}
}

// SessionAlive reports whether the session key of token exists.
func (s *Sessions) SessionAlive(ctx context.Context, token string) (bool, error) {
	n, err := s.rdb.Exists(ctx, s.prefix+token).Result()
	if err != nil {
		return false, wrapRedis("session check", err)
	}
	return n == 1, nil
}

// SessionChunk is the most session keys SessionsAlive sends in one pipeline.
const SessionChunk = 1000

// SessionsAlive reports for each token whether its session key exists.
// It sends one EXISTS per key, pipelined SessionChunk keys at a time: a
// single EXISTS of many keys only counts them, and on a cluster it is a
// CROSSSLOT error (a cluster client splits a pipeline by node). A key whose
// check failed counts as alive, so that an outage logs nobody out; err
// then says that some checks failed.
func (s *Sessions) SessionsAlive(ctx context.Context, tokens []string) ([]bool, error) {
	alive := make([]bool, len(tokens))
	cmds := make([]*redis.IntCmd, 0, min(len(tokens), SessionChunk))
	var firstErr error
	for start := 0; start < len(tokens); start += SessionChunk {
		chunk := tokens[start:min(start+SessionChunk, len(tokens))]
		if firstErr != nil && ctx.Err() != nil {
			// Out of time: the rest stay unchecked, so alive.
			for i := range chunk {
				alive[start+i] = true
			}
			continue
		}
		cmds = cmds[:0]
		pipe := s.rdb.Pipeline()
		for _, tok := range chunk {
			cmds = append(cmds, pipe.Exists(ctx, s.prefix+tok))
		}
		_, err := pipe.Exec(ctx)
		if err != nil && firstErr == nil {
			firstErr = wrapRedis("session check", err)
		}
		for i, c := range cmds {
			n, err := c.Result()
			alive[start+i] = err != nil || n == 1
		}
	}
	return alive, firstErr
}
