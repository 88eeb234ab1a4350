package etcd_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/goleak"

	"github.com/tomdist/ledger"
	"github.com/tomdist/ledger/etcd"
	"github.com/tomdist/ledger/etcd/embedded"
)

// cluster is the embedded etcd that TestMain starts for the tests: one
// member on loopback ports, with short election timings (so that one-second
// leases are honoured) and without fsync. Tests share it, each under a
// prefix of its own.
var cluster *embedded.Cluster

// roles are the parts the test binary plays when a test re-executes it as
// a child process (see child).
var roles = map[string]func(){}

const roleEnv = "LEDGER_ETCD_TEST_ROLE"

func TestMain(m *testing.M) {
	if role := os.Getenv(roleEnv); role != "" {
		f, ok := roles[role]
		if !ok {
			fmt.Fprintf(os.Stderr, "unknown test role %q\n", role)
			os.Exit(2)
		}
		f()
		os.Exit(0)
	}
	os.Exit(run(m))
}

func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "ledger-etcd-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	cluster, err = embedded.Start(embedded.Options{Dir: dir, NoFsync: true, Fast: true, LogLevel: "fatal"})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	code := m.Run()
	removeBuilds()
	// No goroutine of a test may outlive it. They are counted once the
	// embedded etcd is closed, so that its own goroutines (raft, gRPC,
	// the lessor and the compactor, which live as long as the server)
	// need no exception: it stops them, and goleak.Find waits for the
	// last of them to exit.
	cluster.Close()
	if err := goleak.Find(); err != nil && code == 0 {
		fmt.Fprintln(os.Stderr, "goleak:", err)
		return 1
	}
	return code
}

// child returns a command that runs the test binary in the given role
// with extra environment variables ("KEY=value").
func child(t testing.TB, role string, env ...string) *exec.Cmd {
	t.Helper()
	require.Contains(t, roles, role)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), roleEnv+"="+role)
	cmd.Env = append(cmd.Env, env...)
	cmd.Stderr = os.Stderr
	return cmd
}

var prefixes atomic.Int64

// freshPrefix returns a key prefix that no other test uses.
func freshPrefix(t testing.TB) string {
	name := strings.NewReplacer("/", "_", " ", "_").Replace(t.Name())
	return fmt.Sprintf("/test/%d-%d-%s/", os.Getpid(), prefixes.Add(1), name)
}

// config returns the Config of a fresh ledger on the test cluster.
func config(t testing.TB) etcd.Config {
	return etcd.Config{Client: clientv3.Config{Endpoints: cluster.Endpoints()}, Prefix: freshPrefix(t)}
}

// openStore opens a store on c, closed when the test ends.
func openStore(t testing.TB, c etcd.Config) *etcd.Store {
	t.Helper()
	s, err := etcd.Open(context.Background(), c, etcd.StoreOptions{})
	require.NoError(t, err)
	t.Cleanup(func() { s.Close() })
	return s
}

// connect opens a ledger for participant on c with short test intervals
// unless o sets them; it is closed when the test ends.
func connect(t testing.TB, c etcd.Config, participant string, o ledger.Options) ledger.Ledger {
	t.Helper()
	o.ParticipantID = participant
	if o.HeartbeatInterval == 0 {
		o.HeartbeatInterval = 100 * time.Millisecond
	}
	if o.StaleThreshold == 0 {
		o.StaleThreshold = time.Second
	}
	l, err := etcd.Connect(context.Background(), c, o)
	require.NoError(t, err)
	t.Cleanup(func() { l.Close() })
	return l
}

// waitClosed waits for ch to close, failing the test after d.
func waitClosed(t testing.TB, ch <-chan struct{}, d time.Duration, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(d):
		t.Fatalf("timed out after %v waiting for %s", d, what)
	}
}
