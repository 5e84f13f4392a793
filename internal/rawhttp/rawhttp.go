// Package rawhttp is a test client that speaks HTTP/1.1 on a bare TCP
// connection, without a goroutine of its own: a test can hold a thousand
// polls cheaply, count the server's goroutines, pipeline requests and
// close a connection mid-poll.
package rawhttp

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"testing"
	"time"
)

// Conn is one client connection.
type Conn struct {
	C  net.Conn
	br *bufio.Reader
}

// Dial connects to addr (host:port); the connection closes when the test ends.
func Dial(t testing.TB, addr string) *Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &Conn{C: c, br: bufio.NewReader(c)}
}

// Get is the text of a GET with a bearer token.
func Get(path, token string) string {
	return "GET " + path + " HTTP/1.1\r\nHost: pollbox\r\nAuthorization: Bearer " + token + "\r\n\r\n"
}

// Send writes s (one or more requests).
func (c *Conn) Send(t testing.TB, s string) {
	t.Helper()
	if _, err := io.WriteString(c.C, s); err != nil {
		t.Fatal(err)
	}
}

// ReadBefore reads one answer and its body, waiting until deadline at most.
func (c *Conn) ReadBefore(deadline time.Time) (*http.Response, []byte, error) {
	_ = c.C.SetReadDeadline(deadline)
	res, err := http.ReadResponse(c.br, nil)
	if err != nil {
		return nil, nil, err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	return res, b, err
}

// Read reads one answer, failing the test if none comes within timeout.
func (c *Conn) Read(t testing.TB, timeout time.Duration) (*http.Response, []byte) {
	t.Helper()
	res, b, err := c.ReadBefore(time.Now().Add(timeout))
	if err != nil {
		t.Fatalf("reading an answer: %v", err)
	}
	return res, b
}

// Buffered is how many bytes of an answer have been read from the
// connection but not returned yet.
func (c *Conn) Buffered() int { return c.br.Buffered() }
