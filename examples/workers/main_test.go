package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
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
	if err != nil {
		t.Fatal(err)
	}
	// A race build sleeps a second before each clean exit unless told not to.
	t.Setenv("GORACE", os.Getenv("GORACE")+" atexit_sleep_ms=0")
	var out bytes.Buffer
	if err := orchestrate(context.Background(), exe, &out); err != nil {
		t.Fatal(err)
	}
	want := `sum       100 = 5050    by worker-sum (via file)
squares    10 = 385     by worker-squares (via stdout)
primes    100 = 25      by worker-primes (via stdout)
fibonacci  30 = 832040  by worker-fibonacci (via stdout)
participants: orchestrator active, worker-fibonacci left, worker-primes left, worker-squares left, worker-sum left
operation completed
`
	if got := out.String(); got != want {
		t.Fatalf("output:\n%s\nwant:\n%s", got, want)
	}
}

func TestWorkerUnknownTask(t *testing.T) {
	err := worker([]string{"-task", "nope"}, new(bytes.Buffer))
	if err == nil || !strings.Contains(err.Error(), `unknown task "nope"`) {
		t.Fatalf("worker: %v", err)
	}
}
