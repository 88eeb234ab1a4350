package main

import (
	"context"
	"os"
	"strings"
	"testing"
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
	if err := orchestrate(context.Background(), &out, 2, 2, false); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	s := out.String()
	for _, want := range []string{
		"started a ledger server at http://127.0.0.1:",
		"worker-1: step 2 done", "worker-2: step 2 done",
		"orchestrator: 3 participants, 0 frames open, aborted=false",
		"orchestrator: completed",
		"[INFO] worker-2 worker-2 finished",
		"OPERATION_COMPLETED",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("output lacks %q:\n%s", want, s)
		}
	}
	if n := strings.Count(s, "CALL_ENDED"); n != 4 {
		t.Errorf("%d calls ended, want 4:\n%s", n, s)
	}
}
