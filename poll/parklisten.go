package poll

import (
	"errors"
	"net"
	"sync"
)

// Listener is the server's listener when waiting polls are parked (see
// parking). It accepts new connections from the listener it wraps and,
// besides, hands the http.Server back the keep-alive connection of a
// parked poll once its answer is written, so that the client's next
// request on it is served as on any connection.
type Listener struct {
	inner net.Listener
	in    chan accepted
	back  chan net.Conn
	done  chan struct{}
	once  sync.Once
}

type accepted struct {
	c   net.Conn
	err error
}

// NewListener wraps ln; its Accept runs in a goroutine of its own from now on.
func NewListener(ln net.Listener) *Listener {
	l := &Listener{inner: ln, in: make(chan accepted), back: make(chan net.Conn, 64), done: make(chan struct{})}
	go l.acceptLoop()
	return l
}

func (l *Listener) acceptLoop() {
	for {
		c, err := l.inner.Accept()
		select {
		case l.in <- accepted{c, err}:
		case <-l.done:
			if c != nil {
				c.Close()
			}
			return
		}
		if err != nil && errors.Is(err, net.ErrClosed) {
			return
		}
	}
}

// Accept returns the next new or handed-back connection.
func (l *Listener) Accept() (net.Conn, error) {
	select {
	case c := <-l.back:
		return c, nil
	default:
	}
	select {
	case c := <-l.back:
		return c, nil
	case a := <-l.in:
		return a.c, a.err
	case <-l.done:
		return nil, net.ErrClosed
	}
}

// Close stops accepting; connections handed back from then on are closed.
func (l *Listener) Close() error {
	var err error
	l.once.Do(func() {
		close(l.done)
		err = l.inner.Close()
		for {
			select {
			case c := <-l.back:
				c.Close()
			default:
				return
			}
		}
	})
	return err
}

// Addr is the wrapped listener's address.
func (l *Listener) Addr() net.Addr { return l.inner.Addr() }

// handBack gives c to the server as if newly accepted, or closes it once
// the listener is closed.
func (l *Listener) handBack(c net.Conn) {
	select {
	case <-l.done:
		c.Close()
		return
	default:
	}
	select {
	case l.back <- c:
	case <-l.done:
		c.Close()
	}
}

// prefixConn is a connection whose first reads return bytes the client
// had already sent when its poll was parked (a pipelined request).
type prefixConn struct {
	net.Conn
	buf []byte
}

func (c *prefixConn) Read(p []byte) (int, error) {
	if len(c.buf) > 0 {
		n := copy(p, c.buf)
		c.buf = c.buf[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}
