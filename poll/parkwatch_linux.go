package poll

import (
	"sync"
	"syscall"
)

// goneWatch notices at once when the client of a parked poll closes its
// connection: each parked connection is registered, one shot, for
// "peer hung up" on an epoll set of its own, which one goroutine waits
// on. (Go's netpoller watches the same sockets only while a goroutine
// reads them, which a parked poll has none of.) A connection is not
// removed when its poll answers: the one-shot registration is re-armed
// by the next park, and closing the socket drops it.
type goneWatch struct {
	epfd int
	stop int // the read end of the pipe that ends run
	done <-chan struct{}
	once sync.Once // runs start at the first park

	mu   sync.Mutex
	byFD map[int]*parked
}

func newGoneWatch(done <-chan struct{}) *goneWatch {
	return &goneWatch{epfd: -1, done: done, byFD: map[int]*parked{}}
}

// start creates the epoll set and its goroutine, at the first park. A
// pipe in the set, closed when the listener closes, ends the goroutine's
// wait, so that it waits without a timeout.
func (g *goneWatch) start() {
	fd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return // no watch: the look at the per-user cap remains
	}
	var p [2]int
	if err := syscall.Pipe2(p[:], syscall.O_CLOEXEC|syscall.O_NONBLOCK); err != nil {
		syscall.Close(fd)
		return
	}
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN, Fd: int32(p[0])}
	if err := syscall.EpollCtl(fd, syscall.EPOLL_CTL_ADD, p[0], &ev); err != nil {
		syscall.Close(fd)
		syscall.Close(p[0])
		syscall.Close(p[1])
		return
	}
	g.epfd, g.stop = fd, p[0]
	go func() {
		<-g.done
		syscall.Close(p[1]) // the read end hangs up: run returns
	}()
	go g.run()
}

// add watches rec's connection.
func (g *goneWatch) add(rec *parked) {
	if g == nil {
		return
	}
	fd := connFD(rec.conn)
	if fd < 0 {
		return
	}
	if g.once.Do(g.start); g.epfd < 0 {
		return
	}
	g.mu.Lock()
	g.byFD[fd] = rec
	g.mu.Unlock()
	ev := syscall.EpollEvent{Events: syscall.EPOLLRDHUP | syscall.EPOLLONESHOT, Fd: int32(fd)}
	if err := syscall.EpollCtl(g.epfd, syscall.EPOLL_CTL_MOD, fd, &ev); err == syscall.ENOENT {
		_ = syscall.EpollCtl(g.epfd, syscall.EPOLL_CTL_ADD, fd, &ev)
	}
}

// remove forgets rec (its registration lapses by itself).
func (g *goneWatch) remove(rec *parked) {
	if g == nil {
		return
	}
	fd := connFD(rec.conn)
	g.mu.Lock()
	if g.byFD[fd] == rec {
		delete(g.byFD, fd)
	}
	g.mu.Unlock()
}

func (g *goneWatch) run() {
	defer syscall.Close(g.epfd)
	defer syscall.Close(g.stop)
	events := make([]syscall.EpollEvent, 128)
	for {
		n, err := syscall.EpollWait(g.epfd, events, -1)
		if err != nil && err != syscall.EINTR {
			return
		}
		for _, ev := range events[:max(n, 0)] {
			if int(ev.Fd) == g.stop {
				return
			}
			g.mu.Lock()
			rec := g.byFD[int(ev.Fd)]
			g.mu.Unlock()
			if rec != nil {
				rec.checkGone()
			}
		}
	}
}

// connFD is the socket of c, or -1.
func connFD(c interface{}) int {
	if p, ok := c.(*prefixConn); ok {
		c = p.Conn
	}
	sc, ok := c.(syscall.Conn)
	if !ok {
		return -1
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return -1
	}
	fd := -1
	_ = rc.Control(func(u uintptr) { fd = int(u) })
	return fd
}
