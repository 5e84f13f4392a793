package main

import (
	"bufio"
	"errors"
	"io"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"
)

// process is pollbox running as a child process.
type process struct {
	base   string
	cmd    *exec.Cmd
	stderr *syncBuffer
	exited chan struct{}
}

// buildPollbox builds the pollbox binary into the test's temporary
// directory (only the process-level fault test needs it).
func buildPollbox(t *testing.T) string {
	t.Helper()
	bin := t.TempDir() + "/pollbox"
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// startProcess runs the pollbox binary with exactly env and waits until it
// listens. The test's end stops it with SIGTERM.
func startProcess(t *testing.T, bin string, env map[string]string) *process {
	t.Helper()
	cmd := exec.Command(bin)
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	p := &process{cmd: cmd, stderr: newSyncBuffer(), exited: make(chan struct{})}
	cmd.Stderr = p.stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		if sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
		_, _ = io.Copy(io.Discard, out)
		_ = cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.exited:
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			<-p.exited
			t.Errorf("pollbox process %d ignored SIGTERM for 15 s", cmd.Process.Pid)
		}
		if t.Failed() {
			t.Logf("pollbox process %s stderr:\n%s", p.base, p.stderr.tail(4000))
		}
	})
	select {
	case line, ok := <-lines:
		m := listenRE.FindStringSubmatch(line)
		if !ok || m == nil {
			<-p.exited
			t.Fatalf("pollbox process: first stdout line %q; stderr:\n%s", line, p.stderr.tail(4000))
		}
		p.base = m[1]
	case <-time.After(15 * time.Second):
		t.Fatalf("pollbox process did not print its listening line within 15 s")
	}
	return p
}

// kill9 ends the process with SIGKILL and waits for it to be gone.
func (p *process) kill9(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		t.Fatal(err)
	}
	<-p.exited
}
