package main

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"strings"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
)

// devMode is the zero-config mode: an embedded in-memory Redis and, when
// no JWT key is configured, a generated secret with ready-made tokens.
type devMode struct {
	mini   *miniredis.Miniredis
	rdb    redis.UniversalClient
	tokens map[string]string // "user", "admin"; nil when a key was configured
}

func startDevMode(cfg *config) (*devMode, error) {
	m := miniredis.NewMiniRedis()
	if err := m.StartAddr("127.0.0.1:0"); err != nil {
		return nil, fmt.Errorf("embedded redis: %w", err)
	}
	d := &devMode{mini: m, rdb: redis.NewClient(&redis.Options{Addr: m.Addr(), PoolSize: cfg.RedisPoolSize})}
	if cfg.JWTSecret == "" && cfg.JWTSecretBase64 == "" && cfg.JWTPublicKeyFile == "" {
		b := make([]byte, 32)
		_, _ = rand.Read(b)
		cfg.JWTSecret = hex.EncodeToString(b)
		user, err := mintToken([]byte(cfg.JWTSecret), "HS256", cfg.JWTUserClaim, cfg.JWTGroupsClaim, "42", []string{"user"}, 0)
		if err != nil {
			return nil, err
		}
		admin, err := mintToken([]byte(cfg.JWTSecret), "HS256", cfg.JWTUserClaim, cfg.JWTGroupsClaim, "1", splitList(cfg.PublisherGroups), 0)
		if err != nil {
			return nil, err
		}
		d.tokens = map[string]string{"user": user, "admin": admin}
	}
	return d, nil
}

func (d *devMode) close() {
	d.rdb.Close()
	d.mini.Close()
}

// announce prints the zero-config banner: the warning, tokens and the curl
// lines to paste. public says the listener is reachable beyond loopback.
//
// Every indented line is meant to be pasted as it is, into any POSIX shell
// (zsh too, where a comment is not a comment unless configured): so the
// explanations stand above them, not beside.
func (d *devMode) announce(w io.Writer, base string, public bool) {
	bar := strings.Repeat("!", 72)
	fmt.Fprintf(w, "%s\n!! pollbox is running on an EMBEDDED IN-MEMORY Redis: NOTHING IS KEPT.\n"+
		"!! Every message is lost when this process stops. Set POLLBOX_REDIS_URL for real use.\n", bar)
	if public && d.tokens != nil {
		fmt.Fprintf(w, "!! It listens beyond loopback: the demo page hands the dev tokens to loopback clients only.\n")
	}
	fmt.Fprintf(w, "%s\n\n", bar)
	fmt.Fprintf(w, "Demo page: %s/demo\nNotice management: %s/admin\n\n", base, base)
	if d.tokens == nil {
		return
	}
	fmt.Fprintf(w, "Dev tokens, signed with a secret generated for this run (user 42; user 1 in group admin, who may publish):\n"+
		"  USER_TOKEN=%s\n  ADMIN_TOKEN=%s\n\n", d.tokens["user"], d.tokens["admin"])
	fmt.Fprintf(w, "Try it: paste these lines into a shell after the two above. They take the current cursor,\n"+
		"wait for messages after it in the background, publish one to user 42 (the waiting poll\n"+
		"answers with it), then list the inbox, newest first:\n"+
		"  cursor=$(curl -s \"%[1]s/v1/unread\" -H \"Authorization: Bearer $USER_TOKEN\" | sed 's/.*\"cursor\":\"\\([^\"]*\\)\".*/\\1/')\n"+
		"  curl -s \"%[1]s/v1/poll?cursor=$cursor\" -H \"Authorization: Bearer $USER_TOKEN\" &\n"+
		"  curl -s -X POST \"%[1]s/v1/publish\" -H \"Authorization: Bearer $ADMIN_TOKEN\" -H 'Content-Type: application/json' \\\n"+
		"       -d '{\"to\":[\"42\"],\"title\":\"Hello\",\"body\":\"from pollbox\"}'\n"+
		"  wait\n"+
		"  curl -s \"%[1]s/v1/messages\" -H \"Authorization: Bearer $USER_TOKEN\"\n\n", base)
}
