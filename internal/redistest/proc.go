package redistest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
)

const (
	// readyTimeout bounds the wait for a started server to answer PING. It is
	// generous because an AOF reload or a loaded CI machine can be slow.
	readyTimeout = 20 * time.Second
	// stopTimeout bounds the graceful shutdown before SIGKILL.
	stopTimeout = 15 * time.Second
	// startAttempts is how often a start is tried when redis-server exits at
	// once, which almost always means its port was taken in the meantime.
	startAttempts = 8
	// clusterBusOffset is Redis Cluster's fixed distance to the bus port.
	clusterBusOffset = 10000
	// maxClusterPort keeps port+clusterBusOffset a valid port.
	maxClusterPort = 55000
)

// errExited reports a redis-server that exited before it was ready.
var errExited = errors.New("redis-server exited before it was ready")

// proc is one redis-server process.
type proc struct {
	port int
	dir  string
	args []string

	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited
}

func (p *proc) addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(p.port)) }

func (p *proc) logPath() string { return filepath.Join(p.dir, "redis.log") }

// serverArgs is the command line of a throw-away redis-server: loopback only,
// no RDB snapshots and, unless aof is set, no persistence at all.
func serverArgs(port int, dir string, aof bool) []string {
	args := []string{
		"--port", strconv.Itoa(port),
		"--bind", "127.0.0.1",
		"--dir", dir,
		"--save", "",
		"--daemonize", "no",
	}
	if aof {
		// fsync on every write so that a SIGKILL loses nothing that was
		// acknowledged: fault tests rely on exactly that.
		return append(args, "--appendonly", "yes", "--appendfsync", "always")
	}
	return append(args, "--appendonly", "no")
}

// launch starts redis-server with args; its output is appended to
// dir/redis.log so that several runs (restarts) of one server keep one log.
func launch(port int, dir string, args []string) (*proc, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	p := &proc{port: port, dir: dir, args: args, done: make(chan struct{})}
	logf, err := os.OpenFile(p.logPath(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer logf.Close() // the child keeps its own copy
	cmd := exec.Command("redis-server", args...)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p.cmd = cmd
	go func() {
		cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// startOnFreePort picks a free port, starts the server that layout describes
// for that port (its directory and command line) and waits until it is ready.
// Another process may grab the port between the check and redis-server
// binding it, so a server that exits at once is tried again on a new port.
func startOnFreePort(layout func(port int) (dir string, args []string), cluster bool) (*proc, error) {
	var lastErr error
	for range startAttempts {
		port, err := freePort(cluster)
		if err != nil {
			return nil, err
		}
		dir, args := layout(port)
		p, err := launch(port, dir, args)
		if err != nil {
			return nil, err
		}
		if lastErr = p.waitReady(readyTimeout); lastErr == nil {
			return p, nil
		}
		p.kill()
		if !errors.Is(lastErr, errExited) {
			break
		}
	}
	return nil, lastErr
}

// relaunch starts p's server again with the same port, directory and
// arguments. The port can stay busy for a moment after the old process died,
// so an immediate exit is retried after a short pause.
func (p *proc) relaunch() error {
	var lastErr error
	for i := range startAttempts {
		if i > 0 {
			time.Sleep(250 * time.Millisecond)
		}
		np, err := launch(p.port, p.dir, p.args)
		if err != nil {
			return err
		}
		p.cmd, p.done = np.cmd, np.done
		if lastErr = p.waitReady(readyTimeout); lastErr == nil {
			return nil
		}
		p.kill()
		if !errors.Is(lastErr, errExited) {
			break
		}
	}
	return lastErr
}

// waitReady waits until this very process answers PING. The answer must come
// from our process (INFO process_id): if our redis-server failed to bind, a
// server of a parallel test binary might hold the port and answer instead.
// PING is what tells readiness, since Redis answers INFO but not PING while it
// is still loading its AOF.
func (p *proc) waitReady(timeout time.Duration) error {
	c := newProbeClient(p.addr())
	defer c.Close()
	deadline := time.Now().Add(timeout)
	want := "process_id:" + strconv.Itoa(p.cmd.Process.Pid)
	for {
		select {
		case <-p.done:
			return fmt.Errorf("%w (port %d)%s", errExited, p.port, p.logTail())
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := c.Ping(ctx).Err()
		var info string
		if err == nil {
			info, err = c.Info(ctx, "server").Result()
		}
		cancel()
		if err == nil && strings.Contains(info, want) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("redis-server on port %d not ready after %v (last error: %v)%s",
				p.port, timeout, err, p.logTail())
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// stop shuts the server down gracefully with SIGTERM (Redis flushes its AOF
// and exits) and falls back to SIGKILL if that takes too long.
func (p *proc) stop() {
	if !p.running() {
		return
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(stopTimeout):
		p.kill()
	}
}

// kill ends the server at once, as a crash or power loss would.
func (p *proc) kill() {
	if !p.running() {
		return
	}
	p.cmd.Process.Kill()
	<-p.done
}

func (p *proc) running() bool {
	if p == nil || p.cmd == nil {
		return false
	}
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// logTail returns the end of the server's log for error messages.
func (p *proc) logTail() string {
	f, err := os.Open(p.logPath())
	if err != nil {
		return ""
	}
	defer f.Close()
	const max = 2048
	if st, err := f.Stat(); err == nil && st.Size() > max {
		f.Seek(st.Size()-max, io.SeekStart)
	}
	b, _ := io.ReadAll(f)
	if len(b) == 0 {
		return ""
	}
	return "\n--- " + p.logPath() + " (end) ---\n" + strings.TrimRight(string(b), "\n")
}

// newProbeClient returns a go-redis client for readiness checks: one
// connection, no retries, short timeouts, and no optional handshakes that old
// servers would answer with errors.
func newProbeClient(addr string) *redis.Client {
	return redis.NewClient(&redis.Options{
		Addr:            addr,
		Protocol:        2,
		DisableIdentity: true,
		MaxRetries:      -1,
		PoolSize:        1,
		DialTimeout:     time.Second,
		ReadTimeout:     time.Second,
		WriteTimeout:    time.Second,
		MaintNotificationsConfig: &maintnotifications.Config{
			Mode: maintnotifications.ModeDisabled,
		},
	})
}

// handedOut remembers the ports given out by this process so that two servers
// started one after another never get the same port before either has bound it.
var handedOut struct {
	sync.Mutex
	ports map[int]bool
}

// freePort returns a port of 127.0.0.1 that nothing listens on, found by
// letting the kernel pick one. For a cluster node the port must stay below
// maxClusterPort and its bus port (port+10000) must be free as well.
func freePort(cluster bool) (int, error) {
	handedOut.Lock()
	defer handedOut.Unlock()
	if handedOut.ports == nil {
		handedOut.ports = map[int]bool{}
	}
	for range 500 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, fmt.Errorf("finding a free port: %w", err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		if handedOut.ports[port] {
			continue
		}
		if cluster {
			if port >= maxClusterPort || handedOut.ports[port+clusterBusOffset] || !portFree(port+clusterBusOffset) {
				continue
			}
			handedOut.ports[port+clusterBusOffset] = true
		}
		handedOut.ports[port] = true
		return port, nil
	}
	return 0, errors.New("no free port found on 127.0.0.1")
}

// portFree reports whether port can be bound on 127.0.0.1 right now.
func portFree(port int) bool {
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		return false
	}
	l.Close()
	return true
}
