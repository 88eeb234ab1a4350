package etcd_test

import (
	"context"
	"os"
	"slices"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tomdist/ledger"
)

// TestWorkerJoinsFromEnv: a worker process started by ExecStdioWorker on
// a ledger over etcd finds it through its environment (ledger.EnvStore,
// the endpoints and the prefix) and joins with etcd.JoinFromEnv.
func TestWorkerJoinsFromEnv(t *testing.T) {
	ctx := context.Background()
	l := connect(t, config(t), "orchestrator", ledger.Options{})
	op, err := l.CreateOperation(ctx, ledger.CreateOptions{Description: "workers"})
	require.NoError(t, err)
	// Values this process may have inherited are replaced.
	t.Setenv(ledger.EnvStore, "elsewhere")
	t.Setenv("LEDGER_ETCD_PREFIX", "/not/this/")
	call := ledger.ExecStdioWorker(op, ledger.StdioWorker[joinReport]{Process: ledger.Process{
		Executable: os.Args[0], Args: []string{"-test.run=^$"}, Env: []string{roleEnv + "=joiner"},
	}})
	r, err := call.Wait(ctx)
	require.NoError(t, err)
	assert.Equal(t, joinReport{Operation: op.ID(), Participant: "joiner", SawFrame: true}, r)
	d, err := op.State(ctx)
	require.NoError(t, err)
	assert.True(t, slices.ContainsFunc(d.Participants, func(p ledger.Participant) bool { return p.ParticipantID == "joiner" }),
		"participants %+v lack the worker", d.Participants)
}
