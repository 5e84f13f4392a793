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
