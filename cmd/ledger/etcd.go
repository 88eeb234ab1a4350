package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"

	"github.com/tomdist/ledger"
)

// etcdCommand is the program that serves and inspects ledgers kept in
// etcd (module github.com/tomdist/ledger/etcd, cmd/ledger-etcd). This
// command cannot link etcd, which the core module keeps out of its
// dependencies: `serve --etcd` and `prune --etcd` are handed to it, and
// the commands that read a ledger read one in etcd through a server that
// it runs for them (the etcd source).
const etcdCommand = "ledger-etcd"

// The environment of a worker of a ledger in etcd (as the etcd module
// names it): the endpoints, which the etcd source reads when --etcd is not
// given, and the key prefix.
const (
	envEtcdEndpoints = "LEDGER_ETCD_ENDPOINTS"
	envEtcdPrefix    = "LEDGER_ETCD_PREFIX"
)

func init() {
	sources = append(sources, source{
		flag: "etcd", env: envEtcdEndpoints, open: openEtcd,
		usage: "read the ledger kept in etcd at `URL[,URL...]` (with " + etcdCommand + "; key prefix $" + envEtcdPrefix + ")",
	})
}

// handedToEtcd reports whether command line args (command first) is run
// by ledger-etcd: serve and prune naming --etcd.
func handedToEtcd(args []string) bool {
	return len(args) > 1 && (args[0] == "serve" || args[0] == "prune") && wantsEtcd(args[1:])
}

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

// openEtcd reads the ledger in etcd at endpoints through a ledger server
// that ledger-etcd runs for this process: on a loopback port of its
// choosing, with a token of this process's making, until this process
// exits (its standard input, a pipe from here, then closes). Every
// command, watch and log -f included, then reads etcd as it reads a
// server.
func openEtcd(ctx context.Context, endpoints string, _ *sourceFlags) (*ledger.Viewer, error) {
	p, err := etcdProgram()
	if err != nil {
		return nil, err
	}
	var b [16]byte
	rand.Read(b[:])
	token := hex.EncodeToString(b[:])
	args := []string{"serve", "--etcd", endpoints, "--addr", "127.0.0.1:0", "--while-stdin"}
	if prefix := os.Getenv(envEtcdPrefix); prefix != "" {
		args = append(args, "--prefix", prefix)
	}
	cmd := exec.Command(p, args...)
	cmd.Env = append(os.Environ(), ledger.TokenEnv+"="+token)
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer r.Close() // the server has its own
	cmd.Stdin = r
	stderr := new(syncBuffer)
	cmd.Stderr = stderr
	out, err := cmd.StdoutPipe()
	if err == nil {
		err = cmd.Start()
	}
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("run %s: %w", etcdCommand, err)
	}
	line, _ := bufio.NewReader(out).ReadString('\n')
	url, ok := strings.CutPrefix(strings.TrimSpace(line), "listening on ")
	if !ok {
		w.Close()
		cmd.Wait()
		return nil, fmt.Errorf("%s serve: %s", etcdCommand, strings.TrimSpace(stderr.String()))
	}
	etcdServers.mu.Lock()
	etcdServers.stdin = append(etcdServers.stdin, w)
	etcdServers.mu.Unlock()
	return ledger.ConnectViewer(ctx, ledger.Options{ServerURL: url, Token: token})
}

// etcdServers holds the write ends of the standard inputs of the servers
// openEtcd started, open (and so the servers running) until this process
// exits.
var etcdServers struct {
	mu    sync.Mutex // guards stdin
	stdin []*os.File
}

// syncBuffer is a bytes.Buffer safe for a writer and a reader at once.
type syncBuffer struct {
	mu sync.Mutex // guards b
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
