package ledger_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/tomdist/ledger"
)

// Run a program as a tracked call that prints its result as JSON. The
// worker finds the operation in its environment (a Go worker would join it
// with JoinFromEnv); its progress lines on stderr go to OnStderr.
func ExampleExecStdioWorker() {
	dir, err := os.MkdirTemp("", "ledger-example-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	ctx := context.Background()
	l, err := ledger.Connect(ctx, ledger.Options{BasePath: dir, ParticipantID: "orchestrator"})
	if err != nil {
		log.Fatal(err)
	}
	defer l.Close()
	op, err := l.CreateOperation(ctx, ledger.CreateOptions{Description: "count words"})
	if err != nil {
		log.Fatal(err)
	}

	type count struct {
		Words     int    `json:"words"`
		Operation string `json:"operation"`
	}
	script := `echo "counting" >&2
echo "{\"words\": $(echo "$1" | wc -w), \"operation\": \"$LEDGER_OPERATION_ID\"}"`
	call := ledger.ExecStdioWorker(op, ledger.StdioWorker[count]{
		Process: ledger.Process{
			Executable: "sh",
			Args:       []string{"-c", script, "sh", "the quick brown fox"},
			OnStderr:   func(line string) { fmt.Println("worker says:", line) },
		},
		CallOptions: ledger.CallOptions[count]{Description: "count words"},
	})
	c, err := call.Wait(ctx)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("words:", c.Words)
	fmt.Println("same operation:", c.Operation == op.ID())

	// A worker that fails gives its exit status and the end of its stderr.
	failing := ledger.ExecStdioWorker(op, ledger.StdioWorker[count]{
		Process: ledger.Process{
			Executable: "sh",
			Args:       []string{"-c", `echo "disk full" >&2; exit 3`},
		},
		CallOptions: ledger.CallOptions[count]{Contained: true}, // the operation goes on
	})
	_, err = failing.Wait(ctx)
	var we *ledger.WorkerError
	if errors.As(err, &we) {
		fmt.Printf("status %d: %s\n", we.ExitCode, we.Stderr)
	}
	// Output:
	// worker says: counting
	// words: 4
	// same operation: true
	// status 3: disk full
}

// Run a program that writes its result to a file. The file is read (and
// deleted) once the worker has written it; a worker that exits without
// writing it fails the call at once.
func ExampleExecFileResultWorker() {
	dir, err := os.MkdirTemp("", "ledger-example-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	ctx := context.Background()
	l, err := ledger.Connect(ctx, ledger.Options{BasePath: dir, ParticipantID: "orchestrator"})
	if err != nil {
		log.Fatal(err)
	}
	defer l.Close()
	op, err := l.CreateOperation(ctx, ledger.CreateOptions{Description: "report"})
	if err != nil {
		log.Fatal(err)
	}

	// Write to a temporary name, then rename: the file never appears
	// half-written.
	script := `echo "noise on stdout"
printf '["%s", "done"]' "$LEDGER_CALL_ID" > result.tmp && mv result.tmp result.json`
	call := ledger.ExecFileResultWorker(op, ledger.FileWorker[[]string]{
		Process: ledger.Process{
			Executable: "sh",
			Args:       []string{"-c", script},
			Dir:        dir,
		},
		ResultFile: "result.json", // relative to Dir
	})
	v, err := call.Wait(ctx)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("the worker knew its call:", v[0] == call.ID())
	fmt.Println("status:", v[1])
	_, err = os.Stat(filepath.Join(dir, "result.json"))
	fmt.Println("result file deleted:", errors.Is(err, os.ErrNotExist))
	// Output:
	// the worker knew its call: true
	// status: done
	// result file deleted: true
}
