package main

import (
	"bytes"
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"pollbox/internal/redistest"
)

// `pollbox healthcheck` succeeds while the configured address answers
// /readyz with 200, and fails when Redis is down or nothing listens.
func TestHealthcheck(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t, redistest.Options{})
	env := baseEnv(newSecret(t), redistest.Prefix(t), "POLLBOX_REDIS_URL", srv.URL())
	in := startInstance(t, env)
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(in.base, "http://"))

	// A free port: listen, note it, close.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	_, closedPort, _ := net.SplitHostPort(ln.Addr().String())
	ln.Close()

	check := func(addr string) error {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		e := map[string]string{}
		for k, v := range env {
			e[k] = v
		}
		e["POLLBOX_ADDR"] = addr
		var stdout, stderr bytes.Buffer
		return run(ctx, []string{"healthcheck"}, mapEnv(e), &stdout, &stderr)
	}
	// Every interface (":port", "0.0.0.0:port") is checked on 127.0.0.1.
	for _, addr := range []string{"127.0.0.1:" + port, ":" + port, "0.0.0.0:" + port} {
		if err := check(addr); err != nil {
			t.Errorf("healthcheck %s with Redis up: %v", addr, err)
		}
	}
	if err := check("127.0.0.1:" + closedPort); err == nil {
		t.Errorf("healthcheck of a port nothing listens on succeeded")
	}
	srv.Stop()
	if err := check("127.0.0.1:" + port); err == nil {
		t.Errorf("healthcheck with Redis down succeeded")
	}
}
