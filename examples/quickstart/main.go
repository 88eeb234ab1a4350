// Quickstart runs one operation on a local ledger in a fresh temporary
// directory: an initiator creates it, a second participant joins, both run
// tracked calls, one call fails without failing the operation, and the
// initiator completes it. It prints what happened and where the archive
// is, and leaves the directory for you to look at.
//
//	go run ./examples/quickstart
package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/tomdist/ledger"
)

func main() {
	if err := run(context.Background()); err != nil {
		fmt.Fprintln(os.Stderr, "quickstart:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context) error {
	dir, err := os.MkdirTemp("", "ledger-quickstart-")
	if err != nil {
		return err
	}
	fmt.Println("ledger directory:", dir)

	// Two participants. Here they are two ledgers in one process; usually
	// they are separate processes, maybe separate programs.
	initiator, err := ledger.NewLocalLedger(ledger.Options{BasePath: dir, ParticipantID: "initiator"})
	if err != nil {
		return err
	}
	defer initiator.Close()
	worker, err := ledger.NewLocalLedger(ledger.Options{BasePath: dir, ParticipantID: "worker"})
	if err != nil {
		return err
	}
	defer worker.Close()

	op, err := initiator.CreateOperation(ctx, ledger.CreateOptions{Description: "build and test a release"})
	if err != nil {
		return err
	}
	fmt.Println("initiator created operation", op.ID())

	// The worker learns the id (a command-line flag, a message...) and joins.
	joined, err := worker.JoinOperation(ctx, op.ID(), ledger.JoinOptions{})
	if err != nil {
		return err
	}
	fmt.Printf("worker joined in session %d\n", joined.SessionID())

	if err := compile(ctx, op); err != nil {
		return err
	}
	if err := probeMirror(ctx, joined); err != nil {
		return err
	}
	if err := runTests(ctx, joined); err != nil {
		return err
	}

	d, err := op.State(ctx)
	if err != nil {
		return err
	}
	fmt.Printf("operation is %s with %d running calls\n", d.OperationState, len(d.CallFrames))

	if err := joined.Leave(ctx, ledger.LeaveOptions{}); err != nil {
		return err
	}
	fmt.Println("worker left")
	if err := op.Complete(ctx); err != nil {
		return err
	}
	archive := filepath.Join(dir, "backup", op.ID())
	fmt.Println("initiator completed the operation; archive:", archive)
	return printLog(filepath.Join(archive, "operation.log"))
}

// compile is the initiator's call.
func compile(ctx context.Context, op *ledger.Operation) error {
	call, err := ledger.StartCall[int](ctx, op, ledger.CallOptions[int]{
		Description: "compile",
		Callback: ledger.CallCallback[int]{
			OnCompletion: func(n int) { fmt.Printf("  initiator: compile done, %d binaries\n", n) },
		},
	})
	if err != nil {
		return err
	}
	// ... the work ...
	return call.End(ctx, 3)
}

// probeMirror is a call of the worker that may fail without harm: it is
// Contained, so its failure removes only its own frame.
func probeMirror(ctx context.Context, op *ledger.Operation) error {
	call, err := ledger.StartCall[bool](ctx, op, ledger.CallOptions[bool]{
		Description: "probe download mirror",
		Contained:   true,
		Callback: ledger.CallCallback[bool]{
			OnCleanup: func() { fmt.Println("  worker: mirror probe failed, cleaned up, carrying on") },
		},
	})
	if err != nil {
		return err
	}
	return call.Fail(ctx, errors.New("mirror unreachable"))
}

// runTests is a call of the worker whose failure would fail the operation.
func runTests(ctx context.Context, op *ledger.Operation) error {
	call, err := ledger.StartCall[int](ctx, op, ledger.CallOptions[int]{
		Description: "run tests",
		Callback: ledger.CallCallback[int]{
			OnCompletion: func(n int) { fmt.Printf("  worker: %d tests passed\n", n) },
		},
	})
	if err != nil {
		return err
	}
	return call.End(ctx, 128)
}

// printLog prints the operation log, without its timestamps.
func printLog(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	fmt.Println("operation log:")
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		_, rest, _ := strings.Cut(sc.Text(), " ")
		fmt.Println("  " + rest)
	}
	return sc.Err()
}
