// Package redistest gives pollbox tests real Redis servers.
//
// pollbox is built on Redis Streams, blocking reads and cluster hash slots,
// so its tests run against a real redis-server rather than an emulation.
// Three kinds of server are offered:
//
//   - URL: one shared single-node Redis per test binary. Tests keep apart by
//     putting every key under Prefix(t).
//   - ClusterAddrs: one shared 3-master Redis Cluster per test binary.
//   - Start: a private redis-server owned by one test, for tests that stop,
//     kill or restart Redis.
//
// The shared servers come from POLLBOX_TEST_REDIS_URL and
// POLLBOX_TEST_CLUSTER_ADDRS when set (scripts/test.sh sets both, so all test
// binaries of a run share one server and one cluster). Otherwise they are
// started lazily on first use, on free ports of 127.0.0.1 with their own
// temporary directories, and stopped by Main. A package using URL or
// ClusterAddrs must therefore have:
//
//	func TestMain(m *testing.M) { redistest.Main(m) }
package redistest

import (
	"crypto/rand"
	"encoding/hex"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// Environment variables naming servers to use instead of starting private ones.
const (
	// EnvRedisURL is a redis:// URL of a single-node Redis.
	EnvRedisURL = "POLLBOX_TEST_REDIS_URL"
	// EnvClusterAddrs is a comma-separated list of host:port seeds of a
	// Redis Cluster with every slot assigned.
	EnvClusterAddrs = "POLLBOX_TEST_CLUSTER_ADDRS"
)

const (
	notFoundServer = "redis-server not found: install it (Debian/Ubuntu: apt-get install redis-server; " +
		"macOS: brew install redis) or run scripts/test.sh"
	notFoundCLI = "redis-cli not found: install it (Debian/Ubuntu: apt-get install redis-tools; " +
		"macOS: brew install redis) or run scripts/test.sh"
)

// mainCalled records that Main runs this test binary. The lazily started
// servers outlive any single test, so only Main can stop them and remove their
// directories; without it they would be left behind.
var mainCalled atomic.Bool

// shared holds what was started lazily for the whole test binary.
var shared struct {
	single      sync.Once
	singleURL   string
	singleErr   error
	cluster     sync.Once
	clusterSeed []string
	clusterErr  error

	mu    sync.Mutex
	procs []*proc
	dirs  []string
}

// Main runs the tests of a package and then stops the servers that URL and
// ClusterAddrs started, removes their directories and exits with the tests'
// exit code. Call it from TestMain:
//
//	func TestMain(m *testing.M) { redistest.Main(m) }
func Main(m *testing.M) {
	mainCalled.Store(true)
	code := m.Run()
	stopShared()
	os.Exit(code)
}

// stopShared stops every lazily started server and removes its directory.
func stopShared() {
	shared.mu.Lock()
	defer shared.mu.Unlock()
	for _, p := range shared.procs {
		p.stop()
	}
	for _, d := range shared.dirs {
		os.RemoveAll(d)
	}
	shared.procs, shared.dirs = nil, nil
}

// keepShared registers a lazily started server or directory for Main to clean.
func keepShared(p *proc, dir string) {
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if p != nil {
		shared.procs = append(shared.procs, p)
	}
	if dir != "" {
		shared.dirs = append(shared.dirs, dir)
	}
}

// requireMain fails the test when the package has no TestMain calling Main.
// It fails even when the servers come from the environment, so that a test
// package that passes under scripts/test.sh also passes under plain go test.
func requireMain(t testing.TB) {
	t.Helper()
	if !mainCalled.Load() {
		t.Fatal("redistest: this test package needs " +
			"`func TestMain(m *testing.M) { redistest.Main(m) }` so shared Redis servers are stopped")
	}
}

// URL returns the redis:// URL of a single-node Redis shared by all tests of
// the binary: POLLBOX_TEST_REDIS_URL when set, else a private redis-server
// started on first use. Keep keys under Prefix(t) so tests do not collide.
func URL(t testing.TB) string {
	t.Helper()
	requireMain(t)
	if u := strings.TrimSpace(os.Getenv(EnvRedisURL)); u != "" {
		return u
	}
	requireBinary(t, "redis-server", notFoundServer)
	shared.single.Do(func() {
		dir, err := os.MkdirTemp("", "pollbox-redis-")
		if err != nil {
			shared.singleErr = err
			return
		}
		keepShared(nil, dir)
		p, err := startOnFreePort(func(port int) (string, []string) {
			return dir, serverArgs(port, dir, false)
		}, false)
		if err != nil {
			shared.singleErr = err
			return
		}
		keepShared(p, "")
		shared.singleURL = "redis://" + p.addr()
	})
	if shared.singleErr != nil {
		t.Fatalf("redistest: starting shared redis-server: %v", shared.singleErr)
	}
	return shared.singleURL
}

// Prefix returns a key prefix unique to this call, like "t1f2e3d4c:", so that
// tests running in parallel can share one Redis. It carries no hash tag: a
// caller that needs keys in one cluster slot adds its own {tag}.
func Prefix(t testing.TB) string {
	t.Helper()
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatalf("redistest: random prefix: %v", err)
	}
	return "t" + hex.EncodeToString(b[:]) + ":"
}

// requireBinary fails the test with msg when name is not on PATH. A missing
// Redis is a broken test setup, never a reason to skip.
func requireBinary(t testing.TB, name, msg string) {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		t.Fatal(msg)
	}
}
