package main

import (
	"context"
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestMain lets the test binary play the worker processes that
// orchestrate starts (it re-executes its own binary).
func TestMain(m *testing.M) {
	if os.Getenv(envOperation) != "" {
		if err := worker(context.Background(), os.Stdout); err != nil {
			os.Stderr.WriteString("worker: " + err.Error() + "\n")
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func TestOrchestrate(t *testing.T) {
	var out strings.Builder
	err := orchestrate(context.Background(), &out, 2, 2, false)
	require.NoErrorf(t, err, "output:\n%s", out.String())
	s := out.String()
	for _, want := range []string{
		"started a ledger server at http://127.0.0.1:",
		"worker-1: step 2 done", "worker-2: step 2 done",
		"orchestrator: 3 participants, 0 frames open, aborted=false",
		"orchestrator: completed",
		"[INFO] worker-2 worker-2 finished",
		"OPERATION_COMPLETED",
	} {
		assert.Contains(t, s, want)
	}
	assert.Equalf(t, 4, strings.Count(s, "CALL_ENDED"), "calls ended:\n%s", s)
}
