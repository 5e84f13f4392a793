package poll

import (
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"time"
)

// TestHalfClosedPollGetsNoAnswer: an HTTP/1.0 client that sends its poll
// and shuts down its sending side (shutdown(SHUT_WR), as some proxies and
// scripts do) has left as far as net/http can tell. Nobody waits for an
// answer any more, and an empty 200 would tell a proxy that is still
// reading that the poll ended normally: the connection is closed without
// a byte instead.
func TestHalfClosedPollGetsNoAnswer(t *testing.T) {
	t.Parallel()
	s := newStack(t, stackOptions{})
	alice := s.token(t, "alice")
	cur := s.cursor(t, alice)

	c, err := net.Dial("tcp", s.srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	req := "GET /v1/poll?timeout=30&cursor=" + cur + " HTTP/1.0\r\n" +
		"Host: pollbox\r\nAuthorization: Bearer " + alice + "\r\n\r\n"
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	s.waitPolls(t, 1)

	// The poll waits 30 s: an answer or a close well before that comes from
	// the client having gone, not from the wait ending.
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	got, err := io.ReadAll(c)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("the connection is still open 10 s after the client half-closed it (read %q)", got)
	}
	if len(got) > 0 {
		status, _, _ := strings.Cut(string(got), "\r\n")
		t.Fatalf("half-closed client got an answer %q, want the connection closed without one:\n%s", status, got)
	}
}
