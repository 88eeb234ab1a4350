//go:build !(linux || freebsd)

package ledger_test

import "syscall"

// dieWithTestBinary returns nil: this system has no parent-death signal,
// so a child outlives a test binary that dies without its cleanup.
func dieWithTestBinary() *syscall.SysProcAttr { return nil }
