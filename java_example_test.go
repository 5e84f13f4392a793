package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"pollbox/internal/redistest"
)

// The Java publisher example (examples/java), compiled for JDK 11 and run
// as a JVM against a real pollbox with an API key: its message reaches a
// waiting poll, a second run with the same idempotency key creates no
// second copy, 429 and 503 are retried as Retry-After says (and with a
// backoff without it) while other errors are final.
func TestJavaPublisherExample(t *testing.T) {
	t.Parallel()
	jv := compileJavaExample(t)

	secret := newSecret(t)
	apiKey := "java-" + randomHex(t, 16)
	in := startInstance(t, baseEnv(secret, redistest.Prefix(t),
		"POLLBOX_REDIS_URL", redistest.URL(t), "POLLBOX_API_KEYS", "smpe-admin:"+apiKey))
	hc := newHTTPClient(t)
	user := smpeToken(secret, "42", "user:list")
	env := map[string]string{"POLLBOX_URL": in.base, "POLLBOX_API_KEY": apiKey}

	// Text that breaks naively built JSON: quotes, backslashes, control
	// characters (raw ones are invalid in a JSON string; titles refuse
	// them), non-BMP text.
	title := `Order "991" shipped \o/ — 订单已发货 😀`
	body := "订单 991 已发货\n\t路径 C:\\tmp\x01\x1f </script>\u2028."
	args := []string{"--to", "42", "--type", "notification", "--level", "success",
		"--title", title, "--body", body, "--link", "/order/991",
		"--data", "orderNo=991 \"x\"\x02", "--idempotency-key", "order-991-shipped"}

	start := mustPoll(t, hc, in.base, user, "", 0)
	var cursor string
	t.Run("publish reaches a waiting poll", func(t *testing.T) {
		type answer struct {
			body []byte
			res  response
			err  error
		}
		got := make(chan answer, 1)
		go func() {
			_, res, err := pollOnce(hc, in.base, user, start.Cursor, 30)
			got <- answer{res.Body, res, err}
		}()
		waitWaiting(t, hc, in.base, 1, 10*time.Second)

		ids := jv.mustPublish(t, env, args...)
		var a answer
		select {
		case a = <-got:
		case <-time.After(10 * time.Second):
			t.Fatal("the waiting poll did not receive the Java publish within 10 s")
		}
		if a.err != nil || a.res.Status != http.StatusOK {
			t.Fatalf("poll: %v %s", a.err, a.res)
		}
		var pr struct {
			Messages []javaMessage `json:"messages"`
			Cursor   string        `json:"cursor"`
		}
		if err := json.Unmarshal(a.body, &pr); err != nil {
			t.Fatal(err)
		}
		want := javaMessage{ID: ids[0], Type: "notification", Title: title, Body: body, Link: "/order/991",
			Level: "success", Sender: "smpe-admin", Data: map[string]string{"orderNo": "991 \"x\"\x02"}}
		if len(pr.Messages) != 1 || !reflect.DeepEqual(pr.Messages[0], want) {
			t.Fatalf("poll got %s\nwant one message %+v", a.body, want)
		}
		cursor = pr.Cursor
	})
	if cursor == "" {
		t.FailNow()
	}

	t.Run("same idempotency key, no second copy", func(t *testing.T) {
		first := mustHistory(t, hc, in.base, user)
		again := jv.mustPublish(t, env, args...)
		if len(first) != 1 || again[0] != first[0].ID {
			t.Fatalf("second run answered ids %v; history holds %+v", again, first)
		}
		if pr := mustPoll(t, hc, in.base, user, cursor, 0); len(pr.Messages) != 0 {
			t.Fatalf("the second run delivered %+v", pr.Messages)
		}
		if h := mustHistory(t, hc, in.base, user); len(h) != 1 {
			t.Fatalf("history holds %d messages after two runs, want 1", len(h))
		}
	})

	t.Run("429 and 503 are retried", func(t *testing.T) {
		// 429 without Retry-After (a backoff), then a 503 whose request did
		// reach pollbox but whose answer was lost, then through to pollbox:
		// the automatic idempotency key keeps that to one copy.
		front := newFrontServer(t, in.base,
			canned{status: http.StatusTooManyRequests, code: "rate_limited"},
			canned{status: http.StatusServiceUnavailable, code: "unavailable", retryAfter: "1", forwardFirst: true},
		)
		ids := jv.mustPublish(t, map[string]string{"POLLBOX_URL": front.URL, "POLLBOX_API_KEY": apiKey},
			"--to", "42", "--title", "retried")
		seen := front.requests()
		if len(seen) != 3 {
			t.Fatalf("pollbox saw %d requests, want 3", len(seen))
		}
		for i, r := range seen {
			if r.auth != "Bearer "+apiKey {
				t.Errorf("request %d: Authorization %q, want the API key as bearer token", i, r.auth)
			}
			if r.body != seen[0].body {
				t.Errorf("request %d sent %s, the first sent %s", i, r.body, seen[0].body)
			}
		}
		if !strings.Contains(seen[0].body, `"idempotency_key":"`) {
			t.Errorf("the publish carries no idempotency key: %s", seen[0].body)
		}
		if d := seen[1].at.Sub(seen[0].at); d < 200*time.Millisecond {
			t.Errorf("retried 429 without Retry-After after %v, want a backoff of 250 ms or more", d)
		}
		if d := seen[2].at.Sub(seen[1].at); d < time.Second {
			t.Errorf("retried 503 with Retry-After: 1 after %v", d)
		}
		pr := mustPoll(t, hc, in.base, user, cursor, 0)
		if len(pr.Messages) != 1 || pr.Messages[0].ID != ids[0] || pr.Messages[0].Title != "retried" {
			t.Fatalf("after the retried publish the user polled %+v, want only %s", pr.Messages, ids[0])
		}
	})

	for _, tc := range []struct {
		name     string
		key      string
		script   []canned
		proxy    bool
		args     []string
		code     int // the command's exit status
		requests int
		stderr   string
	}{
		{name: "400 is final", script: []canned{{status: 400, code: "bad_request"}},
			code: 3, requests: 1, stderr: "bad_request"},
		{name: "wrong API key is final", key: "not-the-key-0123456789", proxy: true,
			code: 3, requests: 1, stderr: "unauthorized"},
		{name: "Retry-After beyond the longest wait ends the retries",
			script: []canned{{status: 503, code: "unavailable", retryAfter: "3600"}},
			code:   4, requests: 1, stderr: "unavailable"},
		{name: "503 until the attempts run out", args: []string{"--max-attempts", "3"},
			script: []canned{{status: 503, retryAfter: "0"}, {status: 503, retryAfter: "0"}, {status: 503, retryAfter: "0"}},
			code:   4, requests: 3, stderr: "after 3 attempt(s)"},
		{name: "usage error sends nothing", args: []string{"--groups", "ops"},
			code: 2, requests: 0, stderr: "exactly one of"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			target := ""
			if tc.proxy {
				target = in.base
			}
			front := newFrontServer(t, target, tc.script...)
			key := apiKey
			if tc.key != "" {
				key = tc.key
			}
			r := jv.run(t, map[string]string{"POLLBOX_URL": front.URL, "POLLBOX_API_KEY": key},
				append([]string{"--to", "42", "--title", tc.name}, tc.args...)...)
			if r.code != tc.code || !strings.Contains(r.stderr, tc.stderr) {
				t.Errorf("exit status %d, stderr %q; want %d and %q", r.code, r.stderr, tc.code, tc.stderr)
			}
			if n := len(front.requests()); n != tc.requests {
				t.Errorf("pollbox saw %d requests, want %d", n, tc.requests)
			}
		})
	}
}

// javaMessage is a message with the fields the Java example sets.
type javaMessage struct {
	ID     string            `json:"id"`
	Type   string            `json:"type"`
	Title  string            `json:"title"`
	Body   string            `json:"body"`
	Link   string            `json:"link"`
	Level  string            `json:"level"`
	Sender string            `json:"sender"`
	Data   map[string]string `json:"data"`
}

// mustHistory returns the user's history (GET /v1/messages).
func mustHistory(t *testing.T, hc *http.Client, base, token string) []message {
	t.Helper()
	res, err := do(hc, "GET", base+"/v1/messages", token, nil, 10*time.Second)
	if err != nil || res.Status != http.StatusOK {
		t.Fatalf("GET /v1/messages: %v %s", err, res)
	}
	var h struct{ Messages []message }
	if err := json.Unmarshal(res.Body, &h); err != nil {
		t.Fatal(err)
	}
	return h.Messages
}

func randomHex(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// javaExample is examples/java compiled into a temporary directory.
type javaExample struct{ java, classes string }

// compileJavaExample compiles examples/java with javac --release 11 (the
// oldest JDK it supports) and warnings as errors. Without a JDK the test
// is skipped, except in CI, where .ci/run installs one.
func compileJavaExample(t *testing.T) javaExample {
	t.Helper()
	javac, errc := exec.LookPath("javac")
	java, errj := exec.LookPath("java")
	if errc != nil || errj != nil {
		msg := "javac or java not found: the Java publisher example needs a JDK 11+ " +
			"(Debian: apt-get install default-jdk-headless; .ci/run installs it)"
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip("SKIPPING: " + msg)
	}
	srcs, err := filepath.Glob("examples/java/*.java")
	if err != nil || len(srcs) == 0 {
		t.Fatalf("no sources in examples/java: %v", err)
	}
	classes := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, javac, append([]string{"--release", "11", "-Xlint:all,-options", "-Werror",
		"-encoding", "UTF-8", "-d", classes}, srcs...)...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("javac: %v\n%s", err, out)
	}
	return javaExample{java: java, classes: classes}
}

type javaResult struct {
	code           int
	stdout, stderr string
}

// run runs PublishCommand with exactly env (plus PATH and a UTF-8 locale,
// which the JVM needs to decode non-ASCII arguments).
func (j javaExample) run(t *testing.T, env map[string]string, args ...string) javaResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, j.java, append([]string{"-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC",
		"-Xmx64m", "-cp", j.classes, "PublishCommand"}, args...)...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "LC_ALL=C.UTF-8"}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := javaResult{stdout: stdout.String(), stderr: stderr.String()}
	if ee, ok := err.(*exec.ExitError); ok {
		r.code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("java: %v\nstderr:\n%s", err, r.stderr)
	}
	return r
}

// mustPublish runs PublishCommand, wants exit status 0 and returns the ids
// it printed.
func (j javaExample) mustPublish(t *testing.T, env map[string]string, args ...string) []string {
	t.Helper()
	r := j.run(t, env, args...)
	if r.code != 0 {
		t.Fatalf("java PublishCommand exited %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
	var out struct {
		Count int      `json:"count"`
		IDs   []string `json:"ids"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &out); err != nil || out.Count != 1 || len(out.IDs) != 1 {
		t.Fatalf("java PublishCommand printed %q (%v), want pollbox's answer for one recipient", r.stdout, err)
	}
	return out.IDs
}

// canned is one scripted answer of a frontServer.
type canned struct {
	status       int
	code         string // error code of the JSON body
	retryAfter   string // Retry-After header, when set
	forwardFirst bool   // pass the request on to pollbox first, then answer this anyway
}

type seenRequest struct {
	at         time.Time
	auth, body string
}

// frontServer stands between the Java example and pollbox: it answers the
// first requests from a script, then passes them on to pollbox (or, with
// no pollbox, answers 500), and records every request.
type frontServer struct {
	*httptest.Server
	mu     sync.Mutex
	script []canned
	seen   []seenRequest
}

func newFrontServer(t *testing.T, target string, script ...canned) *frontServer {
	t.Helper()
	hc := newHTTPClient(t)
	f := &frontServer{script: script}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		f.mu.Lock()
		f.seen = append(f.seen, seenRequest{at: time.Now(), auth: r.Header.Get("Authorization"), body: string(b)})
		var c *canned
		if len(f.script) > 0 {
			c, f.script = &f.script[0], f.script[1:]
		}
		f.mu.Unlock()

		forward := func() (response, error) {
			return do(hc, r.Method, target+r.URL.RequestURI(),
				strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer "), b, 15*time.Second)
		}
		if c == nil || c.forwardFirst {
			if target == "" {
				http.Error(w, "the script has no answer left", http.StatusInternalServerError)
				return
			}
			res, err := forward()
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadGateway)
				return
			}
			if c == nil {
				for _, h := range []string{"Content-Type", "Retry-After"} {
					if v := res.Header.Get(h); v != "" {
						w.Header().Set(h, v)
					}
				}
				w.WriteHeader(res.Status)
				_, _ = w.Write(res.Body)
				return
			}
		}
		if c.retryAfter != "" {
			w.Header().Set("Retry-After", c.retryAfter)
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(c.status)
		_ = json.NewEncoder(w).Encode(map[string]string{"error": c.code, "message": "scripted answer"})
	}))
	t.Cleanup(f.Close)
	return f
}

func (f *frontServer) requests() []seenRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]seenRequest(nil), f.seen...)
}
