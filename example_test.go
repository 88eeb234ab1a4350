package ledger_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"time"

	"github.com/tomdist/ledger"
)

// exampleDir returns a fresh ledger directory and a function removing it.
func exampleDir() (string, func()) {
	dir, err := os.MkdirTemp("", "ledger-example-")
	if err != nil {
		log.Fatal(err)
	}
	return dir, func() { os.RemoveAll(dir) }
}

// A participant creates an operation, runs a tracked call in it and
// completes it.
func Example() {
	dir, remove := exampleDir()
	defer remove()
	ctx := context.Background()

	l, err := ledger.Connect(ctx, ledger.Options{BasePath: dir, ParticipantID: "builder"})
	if err != nil {
		log.Fatal(err)
	}
	defer l.Close()

	op, err := l.CreateOperation(ctx, ledger.CreateOptions{Description: "nightly build"})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("initiator:", op.IsInitiator(), "session:", op.SessionID())

	call, err := ledger.StartCall[int](ctx, op, ledger.CallOptions[int]{Description: "compile"})
	if err != nil {
		log.Fatal(err)
	}
	d, err := op.State(ctx)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("frames while compiling:", len(d.CallFrames), d.CallFrames[0].Description)

	// ... compile ...
	if err := call.End(ctx, 3); err != nil {
		log.Fatal(err)
	}
	if err := op.Complete(ctx); err != nil {
		log.Fatal(err)
	}
	_, err = os.Stat(filepath.Join(dir, "backup", op.ID(), "operation.json"))
	fmt.Println("archived:", err == nil)
	// Output:
	// initiator: true session: 1
	// frames while compiling: 1 compile
	// archived: true
}

// Connect opens a local ledger when Options.BasePath is set. Options must
// name their backend once: setting ServerURL too is an error.
func ExampleConnect() {
	dir, remove := exampleDir()
	defer remove()
	ctx := context.Background()

	l, err := ledger.Connect(ctx, ledger.Options{BasePath: dir, ParticipantID: "alice"})
	if err != nil {
		log.Fatal(err)
	}
	defer l.Close()
	_, local := l.(*ledger.LocalLedger)
	fmt.Println(l.ParticipantID(), local)

	_, err = ledger.Connect(ctx, ledger.Options{BasePath: dir, ServerURL: "http://127.0.0.1:19880"})
	fmt.Println(err)

	_, err = ledger.Connect(ctx, ledger.Options{BasePath: dir, HeartbeatInterval: 5 * time.Second, StaleThreshold: 2 * time.Second})
	fmt.Println(err)
	// Output:
	// alice true
	// ledger: Options.BasePath and Options.ServerURL are both set; choose one backend
	// ledger: Options.StaleThreshold (2s) must exceed HeartbeatInterval (5s)
}

// A second participant joins an operation by its id. Each join is a
// session of its own.
func ExampleLedger_JoinOperation() {
	dir, remove := exampleDir()
	defer remove()
	ctx := context.Background()

	alice, err := ledger.Connect(ctx, ledger.Options{BasePath: dir, ParticipantID: "alice"})
	if err != nil {
		log.Fatal(err)
	}
	defer alice.Close()
	bob, err := ledger.Connect(ctx, ledger.Options{BasePath: dir, ParticipantID: "bob"})
	if err != nil {
		log.Fatal(err)
	}
	defer bob.Close()

	op, err := alice.CreateOperation(ctx, ledger.CreateOptions{})
	if err != nil {
		log.Fatal(err)
	}
	joined, err := bob.JoinOperation(ctx, op.ID(), ledger.JoinOptions{})
	if err != nil {
		log.Fatal(err)
	}
	again, err := bob.JoinOperation(ctx, op.ID(), ledger.JoinOptions{})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(joined.ParticipantID(), "initiator:", joined.IsInitiator(), "sessions:", joined.SessionID(), again.SessionID())

	d, err := joined.State(ctx)
	if err != nil {
		log.Fatal(err)
	}
	for _, p := range d.Participants {
		fmt.Println(p.ParticipantID, p.Sessions, p.State)
	}

	_, err = bob.JoinOperation(ctx, "20240101T00:00:00.000-nobody-00000000", ledger.JoinOptions{})
	fmt.Println("unknown operation:", errors.Is(err, ledger.ErrOperationNotFound))
	// Output:
	// bob initiator: false sessions: 1 2
	// alice 1 active
	// bob 2 active
	// unknown operation: true
}

// StartCall writes a call frame; End removes it and runs OnCompletion with
// the result. A call ends once.
func ExampleStartCall() {
	dir, remove := exampleDir()
	defer remove()
	ctx := context.Background()
	l, err := ledger.Connect(ctx, ledger.Options{BasePath: dir, ParticipantID: "fetcher"})
	if err != nil {
		log.Fatal(err)
	}
	defer l.Close()
	op, err := l.CreateOperation(ctx, ledger.CreateOptions{})
	if err != nil {
		log.Fatal(err)
	}

	call, err := ledger.StartCall[string](ctx, op, ledger.CallOptions[string]{
		Description: "fetch sources",
		Callback: ledger.CallCallback[string]{
			OnCompletion: func(rev string) { fmt.Println("fetched", rev) },
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	d, err := op.State(ctx)
	if err != nil {
		log.Fatal(err)
	}
	f := d.CallFrames[0]
	fmt.Println(f.Description, f.State, "failOnCrash:", f.FailOnCrash)

	if err := call.End(ctx, "rev 1234"); err != nil {
		log.Fatal(err)
	}
	err = call.End(ctx, "rev 1235")
	fmt.Println("second End:", errors.Is(err, ledger.ErrCallCompleted))
	// Output:
	// fetch sources active failOnCrash: true
	// fetched rev 1234
	// second End: true
}

// A contained call fails alone; any other failed call fails the operation.
func ExampleCall_Fail() {
	dir, remove := exampleDir()
	defer remove()
	ctx := context.Background()
	l, err := ledger.Connect(ctx, ledger.Options{BasePath: dir, ParticipantID: "tester"})
	if err != nil {
		log.Fatal(err)
	}
	defer l.Close()
	op, err := l.CreateOperation(ctx, ledger.CreateOptions{})
	if err != nil {
		log.Fatal(err)
	}

	probe, err := ledger.StartCall[bool](ctx, op, ledger.CallOptions[bool]{
		Description: "probe mirror",
		Contained:   true,
		Callback:    ledger.CallCallback[bool]{OnCleanup: func() { fmt.Println("cleaning up after the probe") }},
	})
	if err != nil {
		log.Fatal(err)
	}
	if err := probe.Fail(ctx, errors.New("mirror down")); err != nil {
		log.Fatal(err)
	}
	d, err := op.State(ctx)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("after the contained failure:", d.OperationState)

	tests, err := ledger.StartCall[int](ctx, op, ledger.CallOptions[int]{Description: "tests"})
	if err != nil {
		log.Fatal(err)
	}
	if err := tests.Fail(ctx, errors.New("3 tests failed")); err != nil {
		log.Fatal(err)
	}
	<-op.Failed()
	info, _ := op.Failure()
	fmt.Println("operation failed:", info.Reason)
	// Output:
	// cleaning up after the probe
	// after the contained failure: running
	// operation failed: 3 tests failed
}

// Complete archives the operation to backup/{id}/; every handle of it
// then returns ErrOperationCompleted.
func ExampleOperation_Complete() {
	dir, remove := exampleDir()
	defer remove()
	ctx := context.Background()
	var archive string
	l, err := ledger.Connect(ctx, ledger.Options{
		BasePath: dir, ParticipantID: "releaser",
		Callback: ledger.LedgerCallback{OnBackupCreated: func(id, dir string) { archive = dir }},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer l.Close()
	op, err := l.CreateOperation(ctx, ledger.CreateOptions{Description: "release"})
	if err != nil {
		log.Fatal(err)
	}
	if err := op.Complete(ctx); err != nil {
		log.Fatal(err)
	}
	rel, _ := filepath.Rel(dir, archive)
	fmt.Println(rel == filepath.Join("backup", op.ID()))
	for _, name := range []string{"operation.json", "operation.log"} {
		_, err := os.Stat(filepath.Join(archive, name))
		fmt.Println(name, err == nil)
	}
	_, err = ledger.StartCall[int](ctx, op, ledger.CallOptions[int]{})
	fmt.Println(errors.Is(err, ledger.ErrOperationCompleted))
	// Output:
	// true
	// operation.json true
	// operation.log true
	// true
}

// SetAbortFlag aborts the operation for every participant: each sees it
// when it next reads the ledger (here bob's CheckAbort).
func ExampleOperation_SetAbortFlag() {
	dir, remove := exampleDir()
	defer remove()
	ctx := context.Background()
	alice, err := ledger.Connect(ctx, ledger.Options{BasePath: dir, ParticipantID: "alice"})
	if err != nil {
		log.Fatal(err)
	}
	defer alice.Close()
	bob, err := ledger.Connect(ctx, ledger.Options{BasePath: dir, ParticipantID: "bob"})
	if err != nil {
		log.Fatal(err)
	}
	defer bob.Close()
	op, err := alice.CreateOperation(ctx, ledger.CreateOptions{})
	if err != nil {
		log.Fatal(err)
	}
	joined, err := bob.JoinOperation(ctx, op.ID(), ledger.JoinOptions{})
	if err != nil {
		log.Fatal(err)
	}

	if err := op.SetAbortFlag(ctx, true); err != nil {
		log.Fatal(err)
	}
	<-op.Aborted()
	fmt.Println("alice:", op.IsAborted(), context.Cause(op.Context()))
	flag, err := joined.CheckAbort(ctx)
	if err != nil {
		log.Fatal(err)
	}
	<-joined.Aborted()
	fmt.Println("bob:", flag, joined.IsAborted())
	// Output:
	// alice: true ledger: operation aborted
	// bob: true true
}
