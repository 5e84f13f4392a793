package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"strings"
	"testing"
	"time"
)

// HMAC secrets shorter than 32 bytes (RFC 7518 §3.2), raw or after base64
// decoding, are refused at start and by the token command.
func TestShortHMACSecretRefused(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		env  map[string]string
	}{
		{"raw", map[string]string{"POLLBOX_JWT_SECRET": "s3cret"}},
		{"raw 31 bytes", map[string]string{"POLLBOX_JWT_SECRET": strings.Repeat("x", 31)}},
		{"base64 31 bytes", map[string]string{"POLLBOX_JWT_SECRET_BASE64": base64.StdEncoding.EncodeToString(make([]byte, 31))}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.env["POLLBOX_ADDR"] = "127.0.0.1:0"
			for _, args := range [][]string{nil, {"token", "--user", "42"}} {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				var stdout, stderr bytes.Buffer
				err := run(ctx, args, mapEnv(tc.env), &stdout, &stderr)
				if err == nil || !strings.Contains(err.Error(), "at least 32 bytes") {
					t.Errorf("run %q = %v, want an error saying the secret needs 32 bytes", args, err)
				}
				if strings.Contains(stdout.String(), "listening") || strings.Count(stdout.String(), ".") == 2 {
					t.Errorf("run %q went ahead with a short secret:\n%s", args, stdout.String())
				}
			}
		})
	}
	for _, secret := range []string{strings.Repeat("x", 32)} {
		if _, err := authConfig(&config{JWTSecret: secret}); err != nil {
			t.Errorf("a %d-byte secret is refused: %v", len(secret), err)
		}
	}
}

// tokenClaims runs `pollbox token` and returns the claims of the token it
// prints.
func tokenClaims(t *testing.T, env map[string]string, args ...string) map[string]any {
	t.Helper()
	var stdout, stderr bytes.Buffer
	if err := run(context.Background(), append([]string{"token"}, args...), mapEnv(env), &stdout, &stderr); err != nil {
		t.Fatalf("token %q: %v\n%s", args, err, stderr.String())
	}
	parts := strings.Split(strings.TrimSpace(stdout.String()), ".")
	if len(parts) != 3 {
		t.Fatalf("token printed %q", stdout.String())
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var claims map[string]any
	if err := json.Unmarshal(payload, &claims); err != nil {
		t.Fatal(err)
	}
	return claims
}

// `pollbox token` sets exp a day ahead unless told otherwise; --ttl 0
// leaves it out.
func TestTokenTTL(t *testing.T) {
	t.Parallel()
	env := map[string]string{"POLLBOX_JWT_SECRET": strings.Repeat("k", 32)}
	for _, tc := range []struct {
		name string
		args []string
		want time.Duration // 0: no exp claim
	}{
		{"default", nil, 24 * time.Hour},
		{"1h", []string{"--ttl", "1h"}, time.Hour},
		{"none", []string{"--ttl", "0"}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			claims := tokenClaims(t, env, append([]string{"--user", "42"}, tc.args...)...)
			exp, ok := claims["exp"].(float64)
			switch {
			case tc.want == 0 && ok:
				t.Errorf("claims %v: want no exp", claims)
			case tc.want == 0:
			case !ok:
				t.Errorf("claims %v: want exp %v ahead", claims, tc.want)
			default:
				if d := time.Until(time.Unix(int64(exp), 0)); d < tc.want-time.Minute || d > tc.want+time.Minute {
					t.Errorf("exp is %v ahead, want %v", d, tc.want)
				}
			}
		})
	}
}

// `pollbox token --help` lists the token command's flags, not the server's.
func TestTokenHelp(t *testing.T) {
	t.Parallel()
	var stdout, stderr bytes.Buffer
	err := run(context.Background(), []string{"token", "--help"}, mapEnv(nil), &stdout, &stderr)
	if !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("token --help = %v, want flag.ErrHelp", err)
	}
	help := stdout.String() + stderr.String()
	for _, want := range []string{"-user", "-groups", "-ttl", "-alg", "-jwt-secret"} {
		if !strings.Contains(help, want) {
			t.Errorf("token --help lacks %s:\n%s", want, help)
		}
	}
	for _, server := range []string{"-poll-timeout", "-redis-url", "-addr", "-max-body", "-cors-origins"} {
		if strings.Contains(help, server) {
			t.Errorf("token --help lists the server flag %s:\n%s", server, help)
		}
	}
}
