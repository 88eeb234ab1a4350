package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestMain lets the test binary play the workers, as the program does.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == "worker" {
		if err := worker(os.Args[2:], os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, "worker:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func TestOrchestrate(t *testing.T) {
	exe, err := os.Executable()
	require.NoError(t, err)
	// A race build sleeps a second before each clean exit unless told not to.
	t.Setenv("GORACE", os.Getenv("GORACE")+" atexit_sleep_ms=0")
	var out bytes.Buffer
	require.NoError(t, orchestrate(context.Background(), exe, &out))
	want := `sum       100 = 5050    by worker-sum (via file)
squares    10 = 385     by worker-squares (via stdout)
primes    100 = 25      by worker-primes (via stdout)
fibonacci  30 = 832040  by worker-fibonacci (via stdout)
participants: orchestrator active, worker-fibonacci left, worker-primes left, worker-squares left, worker-sum left
operation completed
`
	assert.Equal(t, want, out.String(), "output")
}

func TestWorkerUnknownTask(t *testing.T) {
	err := worker([]string{"-task", "nope"}, new(bytes.Buffer))
	assert.ErrorContains(t, err, `unknown task "nope"`, "worker")
}
