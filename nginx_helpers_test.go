package main

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// nginxBin is Debian's nginx binary, which .ci/run installs.
const nginxBin = "/usr/sbin/nginx"

// requireNginx returns the nginx binary. Missing, it fails the test in CI
// (CI=true) and skips it elsewhere.
func requireNginx(t *testing.T) string {
	t.Helper()
	if _, err := os.Stat(nginxBin); err == nil {
		return nginxBin
	}
	if p, err := exec.LookPath("nginx"); err == nil {
		return p
	}
	msg := nginxBin + " not found: install nginx (Debian/Ubuntu: apt-get install nginx; .ci/run does)"
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

var (
	readmeNginxRE   = regexp.MustCompile("(?s)### Behind nginx: several instances\n.*?```nginx\n(.*?)```")
	readmeServerRE  = regexp.MustCompile(`(?m)^(\s*server )10\.0\.0\.1[12]:8080([ ;].*)$`)
	readmeListenRE  = regexp.MustCompile(`(?m)^(\s*listen )80;`)
	readmeLocPathRE = regexp.MustCompile(`(?m)^\s*location (\S+) \{`)
)

// readmeNginx returns the multi-instance nginx configuration shown in
// README.md with its two upstream servers replaced by upstreams and its
// listen port by port, and the location's path.
func readmeNginx(t *testing.T, upstreams [2]string, port int) (conf, path string) {
	t.Helper()
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	m := readmeNginxRE.FindSubmatch(readme)
	if m == nil {
		t.Fatal("README.md has no nginx block under \"### Behind nginx: several instances\"")
	}
	conf = string(m[1])
	i := 0
	conf = readmeServerRE.ReplaceAllStringFunc(conf, func(line string) string {
		sm := readmeServerRE.FindStringSubmatch(line)
		if i >= len(upstreams) {
			t.Fatalf("README's nginx block lists more than %d upstream servers", len(upstreams))
		}
		i++
		return sm[1] + upstreams[i-1] + sm[2]
	})
	if i != len(upstreams) {
		t.Fatalf("README's nginx block lists %d upstream servers 10.0.0.11/12:8080, want %d", i, len(upstreams))
	}
	if !readmeListenRE.MatchString(conf) {
		t.Fatal("README's nginx block has no `listen 80;`")
	}
	conf = readmeListenRE.ReplaceAllString(conf, "${1}127.0.0.1:"+strconv.Itoa(port)+";")
	lm := readmeLocPathRE.FindStringSubmatch(conf)
	if lm == nil {
		t.Fatal("README's nginx block has no location")
	}
	return conf, lm[1]
}

// nginxProc is an nginx started by startNginx.
type nginxProc struct {
	dir  string
	base string // URL of the proxied pollbox, without a trailing slash
}

// startNginx runs nginx as the current user, not as a daemon, with its
// configuration, pid file, logs and temporary directories in a temporary
// directory, in front of upstreams, using README.md's configuration. It
// waits until /healthz answers through it and stops it when the test ends.
func startNginx(t *testing.T, bin string, upstreams [2]string) *nginxProc {
	t.Helper()
	var lastErr error
	for range 5 { // a free port may be taken before nginx binds it
		n, err := tryStartNginx(t, bin, upstreams)
		if err == nil {
			return n
		}
		lastErr = err
	}
	t.Fatalf("nginx did not start: %v", lastErr)
	return nil
}

func tryStartNginx(t *testing.T, bin string, upstreams [2]string) (*nginxProc, error) {
	t.Helper()
	port, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	server, path := readmeNginx(t, upstreams, port)
	return runNginx(t, bin, port, strings.TrimSuffix(path, "/"), server)
}

// runNginx runs nginx as the current user, not as a daemon, with the given
// server block and its configuration, pid file, logs and temporary
// directories in a temporary directory. pollbox is at path on port (""
// for the root); runNginx waits until its /healthz answers through nginx
// and stops nginx when the test ends.
func runNginx(t *testing.T, bin string, port int, path, server string) (*nginxProc, error) {
	t.Helper()
	dir := t.TempDir()
	user := ""
	if os.Geteuid() == 0 {
		user = "user root;" // workers would otherwise be nobody, who cannot enter dir
	}
	for _, d := range []string{"body", "proxy", "fastcgi", "uwsgi", "scgi"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	conf := fmt.Sprintf(`%s
worker_processes 1;
pid %[2]s/nginx.pid;
error_log %[2]s/error.log info;
events { worker_connections 1024; }
http {
    log_format test '$msec $request_time $status up=$upstream_addr upstatus=$upstream_status "$request"';
    access_log %[2]s/access.log test;
    client_body_temp_path %[2]s/body;
    proxy_temp_path %[2]s/proxy;
    fastcgi_temp_path %[2]s/fastcgi;
    uwsgi_temp_path %[2]s/uwsgi;
    scgi_temp_path %[2]s/scgi;
%[3]s
}
`, user, dir, server)
	confPath := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	n := &nginxProc{dir: dir, base: "http://127.0.0.1:" + strconv.Itoa(port) + path}
	out := newSyncBuffer()
	stop, err := startDaemonless(bin, []string{"-p", dir + "/", "-c", confPath, "-e", filepath.Join(dir, "error.log"),
		"-g", "daemon off;"}, out, func() error { return get200(n.base + "/healthz") })
	if err != nil {
		return nil, fmt.Errorf("%v: %s\n%s", err, out, n.tail("error.log", 3000))
	}
	t.Cleanup(func() {
		stop()
		if t.Failed() {
			t.Logf("nginx conf:\n%s", conf)
			t.Logf("nginx error log:\n%s", n.tail("error.log", 3000))
			t.Logf("nginx access log:\n%s", n.tail("access.log", 6000))
		}
	})
	return n, nil
}

// tail returns the end of one of nginx's log files.
func (n *nginxProc) tail(name string, max int) string {
	b, err := os.ReadFile(filepath.Join(n.dir, name))
	if err != nil {
		return err.Error()
	}
	if len(b) > max {
		b = append([]byte("…"), b[len(b)-max:]...)
	}
	return string(b)
}

// freePort returns a loopback port that was free a moment ago.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	addr, ok := ln.Addr().(*net.TCPAddr)
	if !ok {
		return 0, errors.New("not a TCP address")
	}
	return addr.Port, nil
}
