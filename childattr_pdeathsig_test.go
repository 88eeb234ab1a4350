//go:build linux || freebsd

package ledger_test

import "syscall"

// dieWithTestBinary returns the attributes of a child process that gets
// SIGKILL should the test binary die first (the parent-death signal).
func dieWithTestBinary() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
