//go:build windows

package main

import (
	"errors"
	"os"
	"os/exec"
)

const exeSuffix = ".exe"

// runEtcd runs ledger-etcd with the same arguments and standard streams
// and exits with its status (Windows cannot replace a process's program).
func runEtcd(args []string) error {
	p, err := etcdProgram()
	if err != nil {
		return err
	}
	cmd := exec.Command(p, args...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	err = cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		os.Exit(ee.ExitCode())
	}
	if err == nil {
		os.Exit(0)
	}
	return err
}
