package redistest

import "syscall"

// sysProcAttr makes the kernel SIGKILL a redis-server when the test binary
// dies without running Main (a panic, a -timeout, a SIGKILL), so no server
// outlives its tests. Strictly it fires when the OS thread that started the
// server exits; Go keeps its threads until the process ends unless a
// goroutine locked to one exits, which this package never does.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
