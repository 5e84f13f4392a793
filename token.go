package main

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// defaultTokenTTL is the lifetime of a token from `pollbox token` unless
// --ttl says otherwise: a forgotten script token should not work forever.
const defaultTokenTTL = "24h"

// mintToken signs a user token. groupsClaim "auth" is written the way
// smpe-admin writes it (comma-joined); any other claim as a JSON array.
// A ttl of 0 leaves out exp.
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
// configured HMAC secret, for scripts and curl. It reads the server's
// POLLBOX_* variables, and takes as flags only what concerns tokens.
func runToken(args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	cfg, err := parseConfig(nil, getenv, stderr)
	if err != nil {
		return err
	}
	fs := flag.NewFlagSet("pollbox token", flag.ContinueOnError)
	fs.SetOutput(stderr)
	user := fs.String("user", "", "user id (required)")
	groups := fs.String("groups", "", "comma-separated groups (e.g. admin)")
	ttl := fs.String("ttl", defaultTokenTTL, "lifetime, e.g. 1h or 7d; 0 for a token without exp")
	alg := fs.String("alg", "", "HS256, HS384 or HS512 (default: HS512 for a base64 secret, else HS256)")
	// Secrets are not shown as defaults: --help would print them.
	secret := fs.String("jwt-secret", "", "HMAC secret, raw"+envNote("jwt-secret"))
	secret64 := fs.String("jwt-secret-base64", "", "HMAC secret, base64"+envNote("jwt-secret-base64"))
	fs.StringVar(&cfg.JWTUserClaim, "jwt-user-claim", cfg.JWTUserClaim, "claim holding the user id"+envNote("jwt-user-claim"))
	fs.StringVar(&cfg.JWTGroupsClaim, "jwt-groups-claim", cfg.JWTGroupsClaim,
		"claim holding the groups (smpe-admin: auth)"+envNote("jwt-groups-claim"))
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: pollbox token --user ID [--groups a,b] [--ttl %s]\n\n"+
			"Prints a user token signed with pollbox's HMAC secret.\n\nFlags:\n", defaultTokenTTL)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("token: unexpected argument %q (see pollbox token --help)", fs.Arg(0))
	}
	switch {
	case *secret64 != "":
		cfg.JWTSecretBase64 = *secret64
	case *secret != "":
		cfg.JWTSecret, cfg.JWTSecretBase64 = *secret, ""
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
	d, err := parseDuration(*ttl)
	if err != nil {
		return fmt.Errorf("token: --ttl: %w", err)
	}
	tok, err := mintToken(ac.HMACSecret, a, cfg.JWTUserClaim, cfg.JWTGroupsClaim, *user, splitList(*groups), d)
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, tok)
	return nil
}
