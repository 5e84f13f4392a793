package main

import (
	"encoding/json"
	"errors"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"pollbox/internal/redistest"
)

// While Redis is down, the process writes only JSON log lines, go-redis's
// own lines included, and few of them however many requests fail; the
// healthcheck command exits 0 while Redis is up and 1 once it is down.
func TestRedisOutageLogsOnlyJSON(t *testing.T) {
	t.Parallel()
	bin := buildPollbox(t)
	srv := redistest.Start(t, redistest.Options{})
	secret := newSecret(t)
	env := baseEnv(secret, redistest.Prefix(t), "POLLBOX_REDIS_URL", srv.URL(), "POLLBOX_LOG_LEVEL", "info")
	p := startProcess(t, bin, env)
	healthcheck := func() (int, string) {
		cmd := exec.Command(bin, "healthcheck")
		for k, v := range env {
			cmd.Env = append(cmd.Env, k+"="+v)
		}
		cmd.Env = append(cmd.Env, "POLLBOX_ADDR="+strings.TrimPrefix(p.base, "http://"))
		out, err := cmd.CombinedOutput()
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return ee.ExitCode(), string(out)
		} else if err != nil {
			t.Fatalf("healthcheck: %v", err)
		}
		return 0, string(out)
	}
	if code, out := healthcheck(); code != 0 {
		t.Errorf("healthcheck with Redis up exited %d, want 0: %s", code, out)
	}

	srv.Stop()
	hc := newHTTPClient(t)
	user := smpeToken(secret, "42", "user:list")
	// Many failing requests at once: each dial fails, and go-redis logs it.
	burst := func() {
		var wg sync.WaitGroup
		for range 50 {
			wg.Go(func() { _, _ = do(hc, "GET", p.base+"/v1/unread", user, nil, 10*time.Second) })
		}
		wg.Wait()
	}
	start := time.Now()
	burst()
	if p.stderr.waitMatch(regexp.MustCompile(`failed to dial`), 10*time.Second, p.exited) == nil {
		t.Fatalf("no go-redis dial failure logged while Redis is down; stderr:\n%s", p.stderr.tail(4000))
	}
	burst()
	if code, out := healthcheck(); code != 1 {
		t.Errorf("healthcheck with Redis down exited %d, want 1: %s", code, out)
	}
	elapsed := time.Since(start)

	lines := strings.Split(strings.TrimSpace(p.stderr.String()), "\n")
	redisLines := 0
	for _, line := range lines {
		var v map[string]any
		if err := json.Unmarshal([]byte(line), &v); err != nil {
			t.Errorf("stderr line is not JSON: %q", line)
			continue
		}
		if v["source"] == "redis" {
			redisLines++
		}
	}
	// A burst of 10, then one a second (and a line for what was held back).
	if limit := 10 + 2*int(elapsed/time.Second+1); redisLines > limit {
		t.Errorf("%d go-redis lines in %v, want at most %d", redisLines, elapsed, limit)
	}
}
