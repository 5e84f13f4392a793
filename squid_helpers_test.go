package main

// Helpers of the proxy tests (proxy_test.go): squid as a forward proxy,
// nginx as a reverse proxy in front of one pollbox, Chromium with extra
// flags, and a raw HTTP/1.0 client.

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// squidBin is Debian's squid binary, which .ci/run installs.
const squidBin = "/usr/sbin/squid"

// requireSquid returns the squid binary. Missing, it fails the test in CI
// (CI=true) and skips it elsewhere.
func requireSquid(t *testing.T) string {
	t.Helper()
	if _, err := os.Stat(squidBin); err == nil {
		return squidBin
	}
	if p, err := exec.LookPath("squid"); err == nil {
		return p
	}
	msg := squidBin + " not found: install squid (Debian/Ubuntu: apt-get install squid; .ci/run does)"
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// squidOptions are the settings a test gives its squid.
type squidOptions struct {
	ports          []int         // destination ports it may forward to (pollbox's)
	readTimeout    time.Duration // read_timeout: a server silent this long is cut with a 504
	clientLifetime time.Duration // client_lifetime: no client connection lives longer (0: squid's default)
}

// squidProc is a forward proxy started by startSquid.
type squidProc struct {
	dir  string
	addr string // host:port it listens on
	conf string
}

// startSquid runs squid in the foreground (-N) as a forward proxy on a free
// loopback port, with a configuration written from scratch (so squid's
// default Safe_ports do not refuse pollbox's ports), no cache, and its pid
// file and logs in a directory of its own. It waits until squid forwards a
// request and stops it when the test ends.
func startSquid(t *testing.T, bin string, o squidOptions) *squidProc {
	t.Helper()
	var lastErr error
	for range 5 { // a free port may be taken before squid binds it
		s, err := tryStartSquid(t, bin, o)
		if err == nil {
			return s
		}
		lastErr = err
	}
	t.Fatalf("squid did not start: %v", lastErr)
	return nil
}

// squidDir makes squid's directory. As root, squid drops to an unprivileged
// user, which can enter neither the test's 0700 temporary directories nor
// one owned by root: the directory is made outside them and given to that
// user.
func squidDir(t *testing.T) (dir, effectiveUser string) {
	t.Helper()
	if os.Geteuid() != 0 {
		return t.TempDir(), ""
	}
	dir, err := os.MkdirTemp("", "pollbox-squid-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	for _, name := range []string{"proxy", "nobody"} { // Debian's squid runs as proxy
		u, err := user.Lookup(name)
		if err != nil {
			continue
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := os.Chown(dir, uid, gid); err != nil {
			t.Fatal(err)
		}
		return dir, name
	}
	t.Fatal("neither the user proxy nor nobody exists for squid to run as")
	return "", ""
}

func tryStartSquid(t *testing.T, bin string, o squidOptions) (*squidProc, error) {
	t.Helper()
	dir, effUser := squidDir(t)
	port, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "http_port 127.0.0.1:%d\n", port)
	if effUser != "" {
		fmt.Fprintf(&b, "cache_effective_user %s\n", effUser)
	}
	fmt.Fprintf(&b, `pid_filename %[1]s/squid.pid
visible_hostname pollbox-test
cache deny all
cache_mem 8 MB
access_log stdio:%[1]s/access.log squid
cache_log %[1]s/cache.log
cache_store_log none
coredump_dir %[1]s
netdb_filename none
pinger_enable off
logfile_rotate 0
shutdown_lifetime 0 seconds
`, dir)
	ports := make([]string, len(o.ports))
	for i, p := range o.ports {
		ports[i] = strconv.Itoa(p)
	}
	// localhost is squid's built-in ACL for 127.0.0.1 and ::1.
	fmt.Fprintf(&b, "acl pollbox_ports port %s\nhttp_access allow localhost pollbox_ports\nhttp_access deny all\n",
		strings.Join(ports, " "))
	if o.readTimeout > 0 {
		fmt.Fprintf(&b, "read_timeout %d seconds\n", int(o.readTimeout/time.Second))
	}
	if o.clientLifetime > 0 {
		fmt.Fprintf(&b, "client_lifetime %d seconds\n", int(o.clientLifetime/time.Second))
	}
	s := &squidProc{dir: dir, addr: "127.0.0.1:" + strconv.Itoa(port), conf: b.String()}
	confPath := filepath.Join(dir, "squid.conf")
	if err := os.WriteFile(confPath, []byte(s.conf), 0o644); err != nil {
		t.Fatal(err)
	}
	out := newSyncBuffer()
	// Ready once it answers a proxied request: squid refuses a port it
	// was not given with its own 403, so none of pollbox's is needed.
	stop, err := startDaemonless(bin, []string{"-N", "-f", confPath}, out, func() error {
		res, err := rawHTTP(s.addr, "GET http://127.0.0.1:1/ HTTP/1.0\r\nHost: 127.0.0.1:1\r\n\r\n", 2*time.Second)
		if err == nil && res.status != http.StatusForbidden {
			err = fmt.Errorf("answered %q", res.raw)
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("squid on %s: %v: %s\n%s", s.addr, err, out.tail(2000), s.tail("cache.log", 3000))
	}
	t.Cleanup(func() {
		stop()
		if t.Failed() {
			t.Logf("squid conf:\n%s", s.conf)
			t.Logf("squid output:\n%s", out.tail(2000))
			t.Logf("squid cache.log:\n%s", s.tail("cache.log", 3000))
			t.Logf("squid access.log:\n%s", s.tail("access.log", 6000))
		}
	})
	return s, nil
}

// tail returns the end of one of squid's files.
func (s *squidProc) tail(name string, max int) string {
	b, err := os.ReadFile(filepath.Join(s.dir, name))
	if err != nil {
		return err.Error()
	}
	if len(b) > max {
		b = append([]byte("…"), b[len(b)-max:]...)
	}
	return string(b)
}

// rawAnswer is what came back on a connection that was read until EOF.
type rawAnswer struct {
	raw    []byte      // everything received
	status int         // 0 when no status line came
	header http.Header // nil when no status line came
	body   []byte
}

// rawHTTP sends req as it is on a new connection to addr and reads until
// the other side closes it (HTTP/1.0 and Connection: close), within
// timeout. An empty reply is not an error: raw is then empty and status 0.
func rawHTTP(addr, req string, timeout time.Duration) (rawAnswer, error) {
	var a rawAnswer
	conn, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return a, err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(timeout))
	if _, err := io.WriteString(conn, req); err != nil {
		return a, err
	}
	a.raw, err = io.ReadAll(conn)
	if err != nil && len(a.raw) == 0 && !isReset(err) {
		return a, err
	}
	if len(a.raw) == 0 {
		return a, nil
	}
	res, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(a.raw)), nil)
	if err != nil {
		return a, fmt.Errorf("reading %q: %w", a.raw, err)
	}
	defer res.Body.Close()
	a.status, a.header = res.StatusCode, res.Header
	if len(res.TransferEncoding) > 0 {
		return a, fmt.Errorf("answer to an HTTP/1.0 request has Transfer-Encoding %v: %q", res.TransferEncoding, a.raw)
	}
	a.body, err = io.ReadAll(res.Body)
	return a, err
}

// isReset tells a connection the other side reset from other read errors.
func isReset(err error) bool {
	return errors.Is(err, syscall.ECONNRESET)
}

// startReverseNginx runs nginx as the current user in front of one
// upstream (host:port), with the given directives in its location, and
// waits until /healthz answers through it. It stops nginx at the test's end.
func startReverseNginx(t *testing.T, bin, upstream, directives string) *nginxProc {
	t.Helper()
	var lastErr error
	for range 5 { // a free port may be taken before nginx binds it
		port, err := freePort()
		if err != nil {
			t.Fatal(err)
		}
		server := fmt.Sprintf(`    server {
        listen 127.0.0.1:%d;
        location / {
            proxy_pass http://%s;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;%s
        }
    }`, port, upstream, directives)
		n, err := runNginx(t, bin, port, "", server)
		if err == nil {
			return n
		}
		lastErr = err
	}
	t.Fatalf("nginx did not start: %v", lastErr)
	return nil
}

// startDaemonless starts bin in a process group of its own (its workers
// and helpers go with it) and waits until ready succeeds. stop ends the
// group: SIGTERM, then SIGKILL after 10 s.
func startDaemonless(bin string, args []string, out *syncBuffer, ready func() error) (stop func(), err error) {
	cmd := exec.Command(bin, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
			select {
			case <-exited:
			case <-time.After(10 * time.Second):
				_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
				<-exited
			}
		})
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		select {
		case <-exited:
			return nil, fmt.Errorf("%s exited", bin)
		default:
		}
		err := ready()
		if err == nil {
			return stop, nil
		}
		if time.Now().After(deadline) {
			stop()
			return nil, fmt.Errorf("not ready within 20 s (last: %v)", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// get200 fails unless u answers 200 to a GET on a fresh connection.
func get200(u string) error {
	hc := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 2 * time.Second}
	res, err := hc.Get(u)
	if err != nil {
		return err
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return fmt.Errorf("%s answered %s", u, res.Status)
	}
	return nil
}

// rawPoll sends one poll through the forward proxy at proxyAddr as an
// HTTP/1.0 client would (absolute URI, Connection: close) and reads the
// answer until the connection closes.
func rawPoll(proxyAddr, base, token, cursor string, timeout int) (pollResult, rawAnswer, error) {
	host := strings.TrimPrefix(base, "http://")
	q := url.Values{"timeout": {strconv.Itoa(timeout)}}
	if cursor != "" {
		q.Set("cursor", cursor)
	}
	req := "GET " + base + "/v1/poll?" + q.Encode() + " HTTP/1.0\r\nHost: " + host +
		"\r\nAuthorization: Bearer " + token + "\r\nConnection: close\r\n\r\n"
	a, err := rawHTTP(proxyAddr, req, time.Duration(timeout)*time.Second+15*time.Second)
	if err != nil || a.status != http.StatusOK {
		return pollResult{}, a, err
	}
	var pr pollResult
	if err := json.Unmarshal(a.body, &pr); err != nil {
		return pr, a, fmt.Errorf("poll answer %q: %w", a.raw, err)
	}
	if pr.Messages == nil || pr.Cursor == "" {
		return pr, a, fmt.Errorf("poll answer lacks messages or cursor: %q", a.raw)
	}
	return pr, a, nil
}

// mustRawPoll is rawPoll that fails the test unless squid passed on a 200.
func mustRawPoll(t *testing.T, proxyAddr, base, token, cursor string, timeout int) pollResult {
	t.Helper()
	pr, a, err := rawPoll(proxyAddr, base, token, cursor, timeout)
	if err != nil {
		t.Fatalf("poll through squid: %v", err)
	}
	if a.status != http.StatusOK {
		t.Fatalf("poll through squid: got %q, want 200", a.raw)
	}
	if via := a.header.Get("Via"); !strings.Contains(via, "squid") {
		t.Fatalf("poll answer has Via %q: it did not come through squid", via)
	}
	return pr
}

// metricsOf reads series from /metrics; one absent is 0 (a labelled
// counter appears once it was first counted).
func metricsOf(t *testing.T, hc *http.Client, base string, names ...string) map[string]float64 {
	t.Helper()
	res, err := do(hc, "GET", base+"/metrics", "", nil, 5*time.Second)
	if err != nil || res.Status != http.StatusOK {
		t.Fatalf("/metrics: %v %s", err, res)
	}
	out := map[string]float64{}
	for _, line := range strings.Split(string(res.Body), "\n") {
		for _, name := range names {
			if v, ok := strings.CutPrefix(line, name+" "); ok {
				f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
				if err != nil {
					t.Fatalf("/metrics: %q: %v", line, err)
				}
				out[name] = f
			}
		}
	}
	return out
}
