package ledger_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/tomdist/ledger"
)

// roles are the parts the test binary plays when a test re-executes it as a
// child process: TestMain runs roles[$LEDGER_TEST_ROLE] instead of the
// tests. Test files register their roles in init functions.
var roles = map[string]func(){}

const roleEnv = "LEDGER_TEST_ROLE"

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
	goleak.VerifyTestMain(m, goleak.Cleanup(func(code int) {
		removeBuilds() // remote_test.go: the ledger binary built for this run
		os.Exit(code)
	}))
}

// child returns a command that runs the test binary in the given role with
// extra environment variables ("KEY=value").
func child(t testing.TB, role string, env ...string) *exec.Cmd {
	t.Helper()
	_, ok := roles[role]
	require.Truef(t, ok, "no role %q", role)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), roleEnv+"="+role)
	cmd.Env = append(cmd.Env, env...)
	cmd.Stderr = os.Stderr
	return cmd
}

// testBackend opens ledgers of one kind for the behavioural tests, which
// run against the Ledger interface so that every backend passes the same
// suite.
type testBackend struct {
	name string
	// setup prepares a fresh ledger location and returns a function that
	// opens a ledger on it for one participant.
	setup func(t testing.TB) (open func(t testing.TB, o ledger.Options) ledger.Ledger, loc location)
}

// location is where a test's ledger lives: its directory and, for the
// remote backends, the URL of the server over it.
type location struct {
	dir string
	url string
}

// backends is the table the behavioural tests run over.
var backends = []testBackend{
	{name: "local", setup: setupLocal},
	{name: "remote-httptest", setup: setupRemoteHTTPTest}, // remote_test.go
	{name: "remote-binary", setup: setupRemoteBinary},     // remote_test.go
}

func setupLocal(t testing.TB) (func(testing.TB, ledger.Options) ledger.Ledger, location) {
	dir := t.TempDir()
	return func(t testing.TB, o ledger.Options) ledger.Ledger {
		t.Helper()
		o.BasePath = dir
		l, err := ledger.Connect(context.Background(), o)
		require.NoError(t, err, "connect")
		t.Cleanup(func() { l.Close() })
		return l
	}, location{dir: dir}
}

// env is one test's ledger location on one backend.
type env struct {
	t      *testing.T
	dir    string // the ledger directory (the server's, for remote backends)
	url    string // the server's URL, for remote backends
	remote bool   // the ledger is reached through a server
	open   func(testing.TB, ledger.Options) ledger.Ledger
}

// localEnv is an env on the local backend only, for tests of what only
// the local backend does.
func localEnv(t *testing.T) *env {
	open, loc := setupLocal(t)
	return &env{t: t, dir: loc.dir, open: open}
}

// childEnv returns the environment that tells a child process where the
// ledger of e is: LEDGER_DIR, or SERVER_URL on remote backends.
func (e *env) childEnv() string {
	if e.remote {
		return "SERVER_URL=" + e.url
	}
	return "LEDGER_DIR=" + e.dir
}

// Open connects a participant with fast test intervals unless o sets them.
func (e *env) Open(participant string, o ledger.Options) ledger.Ledger {
	e.t.Helper()
	o.ParticipantID = participant
	if o.HeartbeatInterval == 0 {
		o.HeartbeatInterval = 50 * time.Millisecond
	}
	if o.StaleThreshold == 0 {
		o.StaleThreshold = 400 * time.Millisecond
	}
	if o.LivenessPoll == 0 {
		o.LivenessPoll = 20 * time.Millisecond
	}
	return e.open(e.t, o)
}

// forEachBackend runs f as a subtest on every backend.
func forEachBackend(t *testing.T, f func(t *testing.T, e *env)) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			open, loc := b.setup(t)
			f(t, &env{t: t, dir: loc.dir, url: loc.url, remote: loc.url != "", open: open})
		})
	}
}

// waitFor waits until cond holds, failing the test after d.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			require.Failf(t, "timed out", "after %v waiting for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitClosed waits for ch to close, failing the test after d.
func waitClosed(t testing.TB, ch <-chan struct{}, d time.Duration, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(d):
		require.Failf(t, "timed out", "after %v waiting for %s", d, what)
	}
}

// logEvents returns the event words of a log, in order.
func logEvents(log string) []string {
	var evs []string
	for _, line := range strings.Split(strings.TrimSpace(log), "\n") {
		f := strings.Fields(line)
		if len(f) >= 4 {
			evs = append(evs, f[3])
		}
	}
	return evs
}

// count returns how often each string occurs.
func count(xs []string) map[string]int {
	m := map[string]int{}
	for _, x := range xs {
		m[x]++
	}
	return m
}
