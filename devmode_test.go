package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"pollbox/poll"
)

// The listen address: loopback for the embedded Redis unless ADDR says
// otherwise, every interface with a real Redis.
func TestListenAddressDefault(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		env  map[string]string
		want string
	}{
		{"embedded", nil, "127.0.0.1:8080"},
		{"embedded with ADDR", map[string]string{"POLLBOX_ADDR": "0.0.0.0:9000"}, "0.0.0.0:9000"},
		{"redis url", map[string]string{"POLLBOX_REDIS_URL": "redis://127.0.0.1:1"}, ":8080"},
		{"cluster", map[string]string{"POLLBOX_REDIS_CLUSTER_ADDRS": "127.0.0.1:1"}, ":8080"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := parseConfig(nil, mapEnv(tc.env), io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Addr != tc.want {
				t.Errorf("listen address %q, want %q", cfg.Addr, tc.want)
			}
		})
	}
}

// nonLoopbackIP returns an address of this machine other than loopback, or
// "" when it has none.
func nonLoopbackIP(t *testing.T) string {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Logf("interface addresses: %v", err)
		return ""
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil && !n.IP.IsLoopback() && !n.IP.IsLinkLocalUnicast() {
			return n.IP.String()
		}
	}
	return ""
}

// Listening beyond loopback on the embedded Redis, the demo page hands the
// dev tokens to loopback clients only, and the banner says so.
func TestDemoTokensLoopbackOnly(t *testing.T) {
	t.Parallel()
	in := startInstance(t, map[string]string{"POLLBOX_ADDR": "0.0.0.0:0", "POLLBOX_LOG_LEVEL": "warn"})
	admin := in.stdout.waitMatch(adminTokenRE, 5*time.Second, nil)
	if admin == nil {
		t.Fatalf("no ADMIN_TOKEN= line on stdout:\n%s", in.stdout)
	}
	if out := in.stdout.String(); !strings.Contains(out, "loopback clients only") {
		t.Errorf("the banner does not say the demo tokens go to loopback clients only:\n%s", out)
	}
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(in.base, "http://"))
	hc := newHTTPClient(t)
	demo := func(host string) []byte {
		t.Helper()
		res, err := do(hc, "GET", "http://"+net.JoinHostPort(host, port)+"/demo", "", nil, 5*time.Second)
		if err != nil || res.Status != http.StatusOK {
			t.Fatalf("GET /demo via %s: %v %v", host, err, res.Status)
		}
		return res.Body
	}
	if !bytes.Contains(demo("127.0.0.1"), []byte(admin[1])) {
		t.Errorf("a loopback client's demo page lacks the admin token")
	}
	ip := nonLoopbackIP(t)
	if ip == "" {
		t.Log("no non-loopback address on this machine: only the handler test below checks other clients")
	} else if body := demo(ip); bytes.Contains(body, []byte(admin[1])) {
		t.Errorf("a client connecting via %s got a demo page with the admin token", ip)
	}

	// The same through the handler, with a remote address from elsewhere.
	h := poll.New(poll.Config{DevTokens: map[string]string{"user": "user-token", "admin": "admin-token"}},
		nil, nil, poll.NewMetrics(), zerolog.Nop())
	for _, tc := range []struct {
		remote string
		want   bool
	}{{"127.0.0.1:5000", true}, {"[::1]:5000", true}, {"192.0.2.7:5000", false}, {"[2001:db8::1]:5000", false}} {
		req := httptest.NewRequest("GET", "/demo", nil)
		req.RemoteAddr = tc.remote
		req.Header.Set("X-Forwarded-For", "127.0.0.1")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if got := strings.Contains(rec.Body.String(), "admin-token"); got != tc.want {
			t.Errorf("client %s: demo page has the admin token: %v, want %v", tc.remote, got, tc.want)
		}
	}
}

// tryItDoneRE matches the last line of the printed "Try it" block.
var tryItDoneRE = regexp.MustCompile(`(?m)^  curl -s "http://\S+/v1/messages".*$`)

// The "Try it" lines, pasted verbatim into a shell after the token lines,
// show the poll answering with the message published after it.
func TestTryItLines(t *testing.T) {
	t.Parallel()
	in := startInstance(t, map[string]string{"POLLBOX_ADDR": "127.0.0.1:0", "POLLBOX_LOG_LEVEL": "warn"})
	if in.stdout.waitMatch(tryItDoneRE, 5*time.Second, nil) == nil {
		t.Fatalf("no Try it block ending in a history curl:\n%s", in.stdout)
	}
	// Every indented line from the token lines on is meant to be pasted.
	out := in.stdout.String()
	_, block, _ := strings.Cut(out, "Dev tokens")
	var script []string
	for _, line := range strings.Split(block, "\n") {
		if strings.HasPrefix(line, "  ") {
			script = append(script, strings.TrimPrefix(line, "  "))
		}
	}
	for _, sh := range []string{"sh", "bash"} {
		t.Run(sh, func(t *testing.T) {
			path, err := exec.LookPath(sh)
			if err != nil {
				t.Skipf("%s not found", sh)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, path, "-c", strings.Join(script, "\n"))
			cmd.WaitDelay = time.Second
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			start := time.Now()
			err = cmd.Run()
			if err != nil {
				t.Fatalf("%s: %v after %v\nscript:\n%s\nstdout:\n%s\nstderr:\n%s", sh, err, time.Since(start),
					strings.Join(script, "\n"), stdout.String(), stderr.String())
			}
			if !pollAnswered(stdout.Bytes(), "Hello") {
				t.Fatalf("no poll answer with the message %q in the output of the printed lines:\n%s\nstderr:\n%s",
					"Hello", stdout.String(), stderr.String())
			}
		})
	}
}

// pollAnswered reports whether the concatenated JSON answers in out hold a
// poll answer (it has "reset") carrying a message with the given title.
func pollAnswered(out []byte, title string) bool {
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var v struct {
			Reset    *bool `json:"reset"`
			Messages []struct {
				Title string `json:"title"`
			} `json:"messages"`
		}
		if err := dec.Decode(&v); err != nil {
			return false
		}
		if v.Reset != nil {
			for _, m := range v.Messages {
				if m.Title == title {
					return true
				}
			}
		}
	}
}
