package redistest

import "syscall"

// Pause freezes the server with SIGSTOP: it keeps its port and its
// connections, and the kernel still accepts new ones, but nothing is
// answered, as with a Redis hung on a slow disk or a stalled VM. Pausing
// a stopped server does nothing.
func (s *Server) Pause() { s.signal(syscall.SIGSTOP) }

// Resume lets a paused server go on (SIGCONT). Resuming a server that is
// not paused does nothing.
func (s *Server) Resume() { s.signal(syscall.SIGCONT) }

func (s *Server) signal(sig syscall.Signal) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.p.running() {
		s.p.cmd.Process.Signal(sig)
	}
}
