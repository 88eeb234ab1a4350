// Command workers is an orchestrator that runs four worker processes as
// tracked calls of one operation, and prints their results.
//
//	go run ./examples/workers
//
// The workers are this same program, started again with the argument
// "worker". Each one joins the operation from its environment
// (ledger.JoinFromEnv), runs its computation as a tracked call of its own,
// and hands back a JSON result: one writes it to a file
// (ledger.ExecFileResultWorker), the three others print it
// (ledger.ExecStdioWorker). The orchestrator waits for all four with Sync,
// prints what they computed and who took part, and completes the
// operation. The ledger lives in a temporary directory that is removed at
// the end.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/tomdist/ledger"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "worker" {
		if err := worker(os.Args[2:], os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, "worker:", err)
			os.Exit(1)
		}
		return
	}
	exe, err := os.Executable()
	if err != nil {
		log.Fatal(err)
	}
	if err := orchestrate(context.Background(), exe, os.Stdout); err != nil {
		log.Fatal(err)
	}
}

// Result is what a worker hands back.
type Result struct {
	Task        string `json:"task"`
	N           int    `json:"n"`
	Value       int    `json:"value"`
	Participant string `json:"participant"`
}

// tasks are the computations the workers know.
var tasks = map[string]func(n int) int{
	// sum is 1 + 2 + ... + n.
	"sum": func(n int) int { return n * (n + 1) / 2 },
	// squares is 1² + 2² + ... + n².
	"squares": func(n int) int {
		s := 0
		for i := 1; i <= n; i++ {
			s += i * i
		}
		return s
	},
	// primes counts the primes below n.
	"primes": func(n int) int {
		c := 0
		for i := 2; i < n; i++ {
			prime := true
			for d := 2; d*d <= i; d++ {
				prime = prime && i%d != 0
			}
			if prime {
				c++
			}
		}
		return c
	},
	// fibonacci is the n-th Fibonacci number.
	"fibonacci": func(n int) int {
		a, b := 0, 1
		for range n {
			a, b = b, a+b
		}
		return a
	},
}

// orchestrate creates the operation, runs the workers (the program exe)
// and writes the report to out.
func orchestrate(ctx context.Context, exe string, out io.Writer) error {
	dir, err := os.MkdirTemp("", "ledger-workers-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	l, err := ledger.Connect(ctx, ledger.Options{BasePath: dir, ParticipantID: "orchestrator"})
	if err != nil {
		return err
	}
	defer l.Close()
	op, err := l.CreateOperation(ctx, ledger.CreateOptions{Description: "four workers"})
	if err != nil {
		return err
	}

	// The workers' progress lines on stderr are shown as they come.
	progress := func(task string) func(string) {
		return func(line string) { fmt.Fprintf(os.Stderr, "[%s] %s\n", task, line) }
	}
	opts := func(task string) ledger.CallOptions[Result] {
		return ledger.CallOptions[Result]{Description: "worker " + task}
	}
	resultFile := filepath.Join(dir, "sum.json")
	calls := []*ledger.SpawnedCall[Result]{
		ledger.ExecFileResultWorker(op, ledger.FileWorker[Result]{
			Process: ledger.Process{
				Executable: exe,
				Args:       []string{"worker", "-task", "sum", "-n", "100", "-out", resultFile},
				Timeout:    time.Minute,
				OnStderr:   progress("sum"),
			},
			ResultFile:  resultFile,
			CallOptions: opts("sum"),
		}),
	}
	for _, t := range []struct {
		task string
		n    int
	}{{"squares", 10}, {"primes", 100}, {"fibonacci", 30}} {
		calls = append(calls, ledger.ExecStdioWorker(op, ledger.StdioWorker[Result]{
			Process: ledger.Process{
				Executable: exe,
				Args:       []string{"worker", "-task", t.task, "-n", fmt.Sprint(t.n)},
				Timeout:    time.Minute,
				OnStderr:   progress(t.task),
			},
			CallOptions: opts(t.task),
		}))
	}

	spawned := make([]ledger.Spawned, len(calls))
	for i, c := range calls {
		spawned[i] = c
	}
	sr, err := op.Sync(ctx, spawned...)
	if err != nil {
		return err
	}
	if !sr.AllSucceeded() {
		var errs []error
		for _, c := range calls {
			errs = append(errs, c.Err())
		}
		return fmt.Errorf("not every worker succeeded: %w", errors.Join(errs...))
	}
	for i, c := range calls {
		r, _ := c.Result()
		how := "stdout"
		if i == 0 {
			how = "file"
		}
		fmt.Fprintf(out, "%-9s %3d = %-7d by %s (via %s)\n", r.Task, r.N, r.Value, r.Participant, how)
	}

	d, err := op.State(ctx)
	if err != nil {
		return err
	}
	var who []string
	for _, p := range d.Participants {
		who = append(who, p.ParticipantID+" "+string(p.State))
	}
	slices.Sort(who)
	fmt.Fprintln(out, "participants:", strings.Join(who, ", "))
	if err := op.Complete(ctx); err != nil {
		return err
	}
	fmt.Fprintln(out, "operation completed")
	return nil
}

// worker is the program in worker mode: it joins the operation named in
// its environment, computes its task as a tracked call, and writes the
// result as JSON to the file -out, or to stdout.
func worker(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("worker", flag.ContinueOnError)
	task := fs.String("task", "", "the computation: sum, squares, primes or fibonacci")
	n := fs.Int("n", 0, "its argument")
	outPath := fs.String("out", "", "write the result to this file instead of stdout")
	if err := fs.Parse(args); err != nil {
		return err
	}
	f, ok := tasks[*task]
	if !ok {
		return fmt.Errorf("unknown task %q", *task)
	}

	ctx := context.Background()
	l, op, err := ledger.JoinFromEnv(ctx, ledger.Options{ParticipantID: "worker-" + *task}, ledger.JoinOptions{})
	if err != nil {
		return err
	}
	defer l.Close()
	fmt.Fprintf(os.Stderr, "joined as %s, computing %s(%d)\n", op.ParticipantID(), *task, *n)

	call, err := ledger.StartCall[int](ctx, op, ledger.CallOptions[int]{Description: fmt.Sprintf("%s(%d)", *task, *n)})
	if err != nil {
		return err
	}
	v := f(*n)
	if err := op.Log(ctx, ledger.LogInfo, fmt.Sprintf("%s(%d) = %d", *task, *n, v)); err != nil {
		return err
	}
	if err := call.End(ctx, v); err != nil {
		return err
	}
	if err := op.Leave(ctx, ledger.LeaveOptions{}); err != nil {
		return err
	}

	b, err := json.Marshal(Result{Task: *task, N: *n, Value: v, Participant: op.ParticipantID()})
	if err != nil {
		return err
	}
	if *outPath == "" {
		_, err = fmt.Fprintf(stdout, "%s\n", b)
		return err
	}
	// Write a temporary file and rename it, so that the orchestrator never
	// sees a half-written result.
	tmp := *outPath + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, *outPath)
}
