package main

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// etcdCommand is the program that serves and inspects ledgers kept in
// etcd (module github.com/tomdist/ledger/etcd, cmd/ledger-etcd). This
// command cannot link etcd, which the core module keeps out of its
// dependencies, so a command line that names --etcd is handed to it.
const etcdCommand = "ledger-etcd"

// wantsEtcd reports whether args name the --etcd flag.
func wantsEtcd(args []string) bool {
	for _, a := range args {
		if a == "--" {
			return false
		}
		name, _, _ := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if strings.HasPrefix(a, "-") && name == "etcd" {
			return true
		}
	}
	return false
}

// etcdProgram finds ledger-etcd: beside this program, then in $PATH.
func etcdProgram() (string, error) {
	if self, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(self), etcdCommand+exeSuffix)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() {
			return p, nil
		}
	}
	p, err := exec.LookPath(etcdCommand)
	if err != nil {
		return "", errors.New("--etcd needs " + etcdCommand + " beside this program or in $PATH: go install github.com/tomdist/ledger/etcd/cmd/ledger-etcd@latest")
	}
	return p, nil
}
