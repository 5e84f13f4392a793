package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// sessionBatch is the number of SETs sent in one pipeline.
const sessionBatch = 1000

// sessionTTL outlives the minted tokens (they expire after 3 h).
const sessionTTL = 3*time.Hour + time.Minute

// sessionTokens returns the tokens whose login sessions must exist for a
// server with the session check on: every user token and, when publishing
// with a JWT rather than an API key, the publisher's token.
func (r *runner) sessionTokens() []string {
	toks := make([]string, 0, len(r.userAuth)+1)
	for _, a := range r.userAuth {
		toks = append(toks, strings.TrimPrefix(a, "Bearer "))
	}
	if pub := strings.TrimPrefix(r.pubAuth, "Bearer "); strings.Count(pub, ".") == 2 {
		toks = append(toks, pub)
	}
	return toks
}

// createSessions stores "<prefix><token>" for every token in the Redis at
// redisURL, as smpe-admin does when a user logs in, in pipelines of
// sessionBatch SETs.
func createSessions(ctx context.Context, redisURL, prefix string, tokens []string) error {
	opt, err := redis.ParseURL(redisURL)
	if err != nil {
		return err
	}
	opt.ClientName = "pollbox-loadgen-sessions"
	opt.PoolSize = 1
	rdb := redis.NewClient(opt)
	defer rdb.Close()
	for i := 0; i < len(tokens); i += sessionBatch {
		pipe := rdb.Pipeline()
		for _, tok := range tokens[i:min(i+sessionBatch, len(tokens))] {
			pipe.Set(ctx, prefix+tok, "{}", sessionTTL)
		}
		if _, err := pipe.Exec(ctx); err != nil {
			return fmt.Errorf("creating session keys: %w", err)
		}
	}
	return nil
}
