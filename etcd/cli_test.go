package etcd_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tomdist/ledger"
	"github.com/tomdist/ledger/etcd"
)

// cliRun is a run of the core's ledger command on a ledger in etcd.
type cliRun struct {
	cmd      *exec.Cmd
	mu       sync.Mutex // guards out
	out, err bytes.Buffer
	done     chan struct{} // closed when the command has exited
}

func (r *cliRun) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.out.Write(p)
}

func (r *cliRun) stdout() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.out.String()
}

// startCLI starts `ledger ARGS --etcd ENDPOINTS` on the ledger of c, its
// prefix given by LEDGER_ETCD_PREFIX; it is killed if the test ends first.
func startCLI(t *testing.T, c etcd.Config, args ...string) *cliRun {
	t.Helper()
	args = append(args, "--etcd", strings.Join(c.Client.Endpoints, ","))
	r := &cliRun{done: make(chan struct{})}
	r.cmd = exec.Command(filepath.Join(commands(t), "ledger"), args...)
	r.cmd.Env = append(os.Environ(), etcd.EnvPrefix+"="+c.Prefix)
	r.cmd.Stdout, r.cmd.Stderr = r, &r.err
	require.NoError(t, r.cmd.Start())
	go func() {
		r.cmd.Wait()
		close(r.done)
	}()
	t.Cleanup(func() {
		r.cmd.Process.Kill()
		<-r.done
	})
	return r
}

// exit waits for the command to exit and returns its status.
func (r *cliRun) exit(t *testing.T) int {
	t.Helper()
	waitClosed(t, r.done, 30*time.Second, "ledger "+strings.Join(r.cmd.Args[1:], " "))
	return r.cmd.ProcessState.ExitCode()
}

// runCLI runs `ledger ARGS --etcd ...` to its end and returns its output.
func runCLI(t *testing.T, c etcd.Config, args ...string) string {
	t.Helper()
	r := startCLI(t, c, args...)
	require.Equal(t, 0, r.exit(t), "ledger %s: %s", strings.Join(args, " "), r.err.String())
	return r.stdout()
}

// TestCLIReadsEtcd: every command of the core's ledger program that reads
// a ledger (ls, show, show --json, log, watch, log -f, abort) reads one in
// etcd given --etcd, the real binaries against the embedded etcd: watch
// and log -f follow the operation as it changes and exit at its end.
func TestCLIReadsEtcd(t *testing.T) {
	c := config(t)
	ctx := context.Background()
	l := connect(t, c, "alice", ledger.Options{})
	op, err := l.CreateOperation(ctx, ledger.CreateOptions{Description: "read by the cli"})
	require.NoError(t, err)
	call, err := ledger.StartCall[int](ctx, op, ledger.CallOptions[int]{Description: "long step"})
	require.NoError(t, err)

	assert.Contains(t, runCLI(t, c, "ls"), op.ID())
	show := runCLI(t, c, "show", op.ID())
	assert.Contains(t, show, "read by the cli")
	assert.Contains(t, show, "long step")
	var doc struct {
		OperationID string `json:"operationId"`
	}
	require.NoError(t, json.Unmarshal([]byte(runCLI(t, c, "show", "--json", op.ID())), &doc))
	assert.Equal(t, op.ID(), doc.OperationID)
	assert.Contains(t, runCLI(t, c, "log", op.ID()), "CALL_STARTED "+call.ID())

	watch := startCLI(t, c, "watch", op.ID())
	follow := startCLI(t, c, "log", "-f", op.ID())
	require.Eventually(t, func() bool {
		return strings.Contains(watch.stdout(), "long step") && strings.Contains(follow.stdout(), "CALL_STARTED")
	}, 20*time.Second, 20*time.Millisecond, "watch and log -f print the operation")
	require.NoError(t, call.End(ctx, 1))
	require.NoError(t, op.Complete(ctx))
	assert.Equal(t, 0, watch.exit(t), "watch exits 0 at completion: %s", watch.err.String())
	assert.Equal(t, 0, follow.exit(t), "log -f exits at the end: %s", follow.err.String())
	assert.Contains(t, follow.stdout(), "CALL_ENDED "+call.ID())
	assert.True(t, strings.HasSuffix(follow.stdout(), "OPERATION_COMPLETED\n"), follow.stdout())

	other, err := l.CreateOperation(ctx, ledger.CreateOptions{Description: "to abort"})
	require.NoError(t, err)
	assert.Contains(t, runCLI(t, c, "abort", other.ID()), "aborted")
	waitClosed(t, other.Aborted(), 10*time.Second, "the abort set by the cli")
}
