package main

import (
	"io"
	"testing"

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
