package poll

import (
	"net"
	"syscall"
)

// connGone tells whether the client of c has closed it (or it broke),
// without reading anything it sent and without blocking.
func connGone(c net.Conn) bool {
	if p, ok := c.(*prefixConn); ok {
		c = p.Conn
	}
	sc, ok := c.(syscall.Conn)
	if !ok {
		return false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return true
	}
	gone := false
	var buf [1]byte
	err = rc.Read(func(fd uintptr) bool {
		n, _, e := syscall.Recvfrom(int(fd), buf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		switch {
		case e == nil:
			gone = n == 0 // end of stream
		case e == syscall.EAGAIN || e == syscall.EINTR:
		default:
			gone = true
		}
		return true // one look, never a wait
	})
	return gone || err != nil
}
