package main

import (
	"bytes"
	"context"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"pollbox/inbox"
	"pollbox/poll"
)

// The configuration's defaults are the ones inbox and poll use when a
// setting is left empty.
func TestConfigDefaults(t *testing.T) {
	t.Parallel()
	cfg, err := parseConfig(nil, mapEnv(nil), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name      string
		got, want any
	}{
		{"key-prefix", cfg.KeyPrefix, inbox.DefaultPrefix},
		{"inbox-maxlen", int64(cfg.InboxMaxLen), inbox.DefaultMaxLen},
		{"retention", cfg.Retention, inbox.DefaultRetention},
		{"max-recipients", cfg.MaxRecipients, inbox.MaxRecipients},
		{"poll-timeout", cfg.PollTimeout, poll.DefaultPollTimeout},
		{"poll-timeout-max", cfg.PollTimeoutMax, poll.DefaultPollTimeoutMax},
		{"max-body", cfg.MaxBody, poll.DefaultMaxBody},
		{"max-recipients (poll)", cfg.MaxRecipients, poll.DefaultMaxRecipients},
	} {
		if tc.got != tc.want {
			t.Errorf("%s: config default %v, package default %v", tc.name, tc.got, tc.want)
		}
	}
	// The derived timeouts keep their order: a request's store deadline is
	// within one inbox call's, and the write deadline outlasts any poll.
	d := derivedTimeouts(cfg)
	if d.Store <= cfg.RedisTimeout || d.Call <= d.Store || d.Write <= cfg.PollTimeoutMax+d.Store {
		t.Errorf("derived timeouts %+v out of order for redis-timeout %v", d, cfg.RedisTimeout)
	}
}

// API-key names become part of Redis keys and their hash tags (a key's
// publish records live under {k.<name>}), so a name outside the user id
// alphabet is refused at start, naming the key.
func TestAPIKeyNamesRefused(t *testing.T) {
	t.Parallel()
	for _, name := range []string{"job{1}", "a b", strings.Repeat("n", 129)} {
		env := map[string]string{"POLLBOX_ADDR": "127.0.0.1:0", "POLLBOX_JWT_SECRET": strings.Repeat("s", 32),
			"POLLBOX_API_KEYS": "ok:0123456789abcdef," + name + ":0123456789abcdef"}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		var stdout bytes.Buffer
		err := run(ctx, nil, mapEnv(env), &stdout, io.Discard)
		cancel()
		if err == nil || !strings.Contains(err.Error(), "API key name") || !strings.Contains(err.Error(), strconv.Quote(name)) {
			t.Errorf("key name %q: run = %v, want an error naming the key", name, err)
		}
		if strings.Contains(stdout.String(), "listening") {
			t.Errorf("key name %q: pollbox started", name)
		}
	}
	if _, err := authConfig(&config{JWTSecret: strings.Repeat("s", 32), APIKeys: "notice-job.v2@ops:0123456789abcdef"}); err != nil {
		t.Errorf("a valid key name is refused: %v", err)
	}
}

// Admin groups come from --admin-groups (default admin) into the token settings.
func TestAdminGroupsConfig(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		env  map[string]string
		want []string
	}{
		{nil, []string{"admin"}},
		{map[string]string{"POLLBOX_ADMIN_GROUPS": "ops, notice:admin"}, []string{"ops", "notice:admin"}},
	} {
		tc.env = maps.Clone(tc.env)
		if tc.env == nil {
			tc.env = map[string]string{}
		}
		tc.env["POLLBOX_JWT_SECRET"] = strings.Repeat("s", 32)
		cfg, err := parseConfig(nil, mapEnv(tc.env), io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		ac, err := authConfig(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(ac.AdminGroups, tc.want) {
			t.Errorf("env %v: admin groups %q, want %q", tc.env, ac.AdminGroups, tc.want)
		}
	}
	var help bytes.Buffer
	if _, err := parseConfig([]string{"--help"}, mapEnv(nil), &help); !strings.Contains(help.String(), "POLLBOX_ADMIN_GROUPS") {
		t.Errorf("--help (%v) does not list POLLBOX_ADMIN_GROUPS:\n%s", err, help.String())
	}
}
