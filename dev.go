package main

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	stdlog "log"
	"strings"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/golang-jwt/jwt/v5"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"
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

// announce prints the zero-config banner: the warning, tokens and curl lines.
func (d *devMode) announce(w io.Writer, base string) {
	bar := strings.Repeat("!", 72)
	fmt.Fprintf(w, "%s\n!! pollbox is running on an EMBEDDED IN-MEMORY Redis: NOTHING IS KEPT.\n"+
		"!! Every message is lost when this process stops. Set POLLBOX_REDIS_URL for real use.\n%s\n\n", bar, bar)
	fmt.Fprintf(w, "Demo page: %s/demo\n\n", base)
	if d.tokens == nil {
		return
	}
	fmt.Fprintf(w, "Dev tokens (signed with a secret generated for this run):\n"+
		"  USER_TOKEN=%s   # user 42\n  ADMIN_TOKEN=%s  # user 1, group admin: may publish\n\n", d.tokens["user"], d.tokens["admin"])
	fmt.Fprintf(w, "Try it (in a shell, after pasting the two lines above):\n"+
		"  # 1. wait for messages (returns as soon as one arrives, or after 25 s):\n"+
		"  curl -s \"%[1]s/v1/poll\" -H \"Authorization: Bearer $USER_TOKEN\" &\n"+
		"  # 2. publish one to user 42:\n"+
		"  curl -s -X POST \"%[1]s/v1/publish\" -H \"Authorization: Bearer $ADMIN_TOKEN\" -H 'Content-Type: application/json' \\\n"+
		"       -d '{\"to\":[\"42\"],\"title\":\"Hello\",\"body\":\"from pollbox\"}'\n"+
		"  # 3. the inbox, newest first:\n"+
		"  curl -s \"%[1]s/v1/messages\" -H \"Authorization: Bearer $USER_TOKEN\"\n\n", base)
}

// mintToken signs a user token. groupsClaim "auth" is written the way
// smpe-admin writes it (comma-joined); any other claim as a JSON array.
func mintToken(key []byte, alg, userClaim, groupsClaim, user string, groups []string, ttl time.Duration) (string, error) {
	m := jwt.GetSigningMethod(alg)
	if _, ok := m.(*jwt.SigningMethodHMAC); !ok {
		return "", fmt.Errorf("can only mint HMAC tokens, not %q", alg)
	}
	now := time.Now()
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	claims := jwt.MapClaims{userClaim: user, "iat": now.Unix(), "jti": hex.EncodeToString(b)}
	if len(groups) > 0 {
		if groupsClaim == "auth" {
			claims[groupsClaim] = strings.Join(groups, ",")
		} else {
			claims[groupsClaim] = groups
		}
	}
	if ttl > 0 {
		claims["exp"] = now.Add(ttl).Unix()
	}
	return jwt.NewWithClaims(m, claims).SignedString(key)
}

// runToken is `pollbox token`: it prints a token signed with the
// configured HMAC secret, for scripts and curl.
func runToken(args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	cfg := &config{}
	fs := flag.NewFlagSet("pollbox token", flag.ContinueOnError)
	fs.SetOutput(stderr)
	errs := configFlags(fs, cfg, getenv)
	user := fs.String("user", "", "user id (required)")
	groups := fs.String("groups", "", "comma-separated groups (e.g. admin)")
	ttl := fs.String("ttl", "", "lifetime, e.g. 1h (empty: no exp claim)")
	alg := fs.String("alg", "", "HS256, HS384 or HS512 (default: HS512 for a base64 secret, else HS256)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if len(*errs) > 0 {
		return errors.Join(*errs...)
	}
	ac, err := authConfig(cfg)
	if err != nil {
		return err
	}
	if len(ac.HMACSecret) == 0 {
		return errors.New("token: set POLLBOX_JWT_SECRET or POLLBOX_JWT_SECRET_BASE64 (tokens for RS256/ES256 come from your identity provider)")
	}
	if *user == "" {
		return errors.New("token: --user is required")
	}
	a := *alg
	if a == "" {
		a = "HS256"
		if cfg.JWTSecretBase64 != "" {
			a = "HS512"
		}
	}
	var d time.Duration
	if *ttl != "" {
		if d, err = parseDuration(*ttl); err != nil {
			return fmt.Errorf("token: --ttl: %w", err)
		}
	}
	tok, err := mintToken(ac.HMACSecret, a, cfg.JWTUserClaim, cfg.JWTGroupsClaim, *user, splitList(*groups), d)
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, tok)
	return nil
}

// newStdLogger routes net/http's own error log through zerolog.
func newStdLogger(log zerolog.Logger) *stdlog.Logger {
	return stdlog.New(zerologWriter{log}, "", 0)
}

type zerologWriter struct{ log zerolog.Logger }

func (z zerologWriter) Write(p []byte) (int, error) {
	z.log.Warn().Str("source", "http").Msg(strings.TrimSpace(string(p)))
	return len(p), nil
}
