//go:build unix

package main

import (
	"os"
	"syscall"
)

const exeSuffix = ""

// runEtcd replaces this process by ledger-etcd with the same arguments,
// so that its pid, signals and exit status are the server's own.
func runEtcd(args []string) error {
	p, err := etcdProgram()
	if err != nil {
		return err
	}
	return syscall.Exec(p, append([]string{p}, args...), os.Environ())
}
