//go:build !linux

package redistest

import "syscall"

// sysProcAttr has no parent-death signal to ask for outside Linux: there a
// server left by a crashed test binary has to be stopped by hand.
func sysProcAttr() *syscall.SysProcAttr { return nil }
