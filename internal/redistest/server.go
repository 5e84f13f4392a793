package redistest

import (
	"sync"
	"testing"
)

// Options configures a private server made by Start.
type Options struct {
	// AOF turns on the append-only file with an fsync on every write
	// (--appendonly yes --appendfsync always), so that data written before
	// Kill is there again after Restart.
	AOF bool
}

// Server is a private redis-server owned by one test. It always runs on the
// same port and directory, also across Restart, so clients configured with
// its address reconnect to it.
type Server struct {
	mu sync.Mutex
	p  *proc
}

// Start starts a private redis-server on a free port of 127.0.0.1 with its
// own directory, waits until it answers PING and stops it when the test ends.
// Use it for tests that stop, kill or restart Redis; tests that only need a
// Redis should share URL instead.
func Start(t testing.TB, opts Options) *Server {
	t.Helper()
	requireBinary(t, "redis-server", notFoundServer)
	// Registered first so it is removed last, after the server has stopped.
	dir := t.TempDir()
	p, err := startOnFreePort(func(port int) (string, []string) {
		return dir, serverArgs(port, dir, opts.AOF)
	}, false)
	if err != nil {
		t.Fatalf("redistest: starting redis-server: %v", err)
	}
	s := &Server{p: p}
	t.Cleanup(s.Kill)
	return s
}

// Addr returns the server's host:port.
func (s *Server) Addr() string { return s.p.addr() }

// URL returns the server's redis:// URL.
func (s *Server) URL() string { return "redis://" + s.p.addr() }

// Stop shuts the server down gracefully (SIGTERM, which lets Redis finish
// its AOF) and waits until it has exited. Stopping a stopped server does
// nothing.
func (s *Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.p.stop()
}

// Kill ends the server with SIGKILL, as a crash would, and waits until it
// has exited. Killing a stopped server does nothing.
func (s *Server) Kill() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.p.kill()
}

// Restart starts the server again on the same port and directory, after Stop
// or Kill, and waits until it answers PING (and so has loaded its AOF). A
// server that is still running is stopped first.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.p.stop()
	if err := s.p.relaunch(); err != nil {
		t.Fatalf("redistest: restarting redis-server on %s: %v", s.p.addr(), err)
	}
}
