package ledger_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"strings"

	"github.com/tomdist/ledger"
)

// Spawn calls with different result types, wait for all of them with Sync,
// then read their results.
func ExampleSpawnCall() {
	dir, err := os.MkdirTemp("", "ledger-example-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	ctx := context.Background()
	l, err := ledger.Connect(ctx, ledger.Options{BasePath: dir, ParticipantID: "builder"})
	if err != nil {
		log.Fatal(err)
	}
	defer l.Close()
	op, err := l.CreateOperation(ctx, ledger.CreateOptions{Description: "build"})
	if err != nil {
		log.Fatal(err)
	}

	count := ledger.SpawnCall(op, func(ctx context.Context, call *ledger.SpawnedCall[int]) (int, error) {
		return len(strings.Fields("compile link test")), nil
	}, ledger.CallOptions[int]{Description: "count steps"})
	name := ledger.SpawnCall(op, func(ctx context.Context, call *ledger.SpawnedCall[string]) (string, error) {
		return "app-v1", nil
	}, ledger.CallOptions[string]{Description: "name artifact"})
	lint := ledger.SpawnCall(op, func(ctx context.Context, call *ledger.SpawnedCall[bool]) (bool, error) {
		return false, errors.New("3 warnings")
	}, ledger.CallOptions[bool]{
		Description: "lint",
		Contained:   true, // a failed lint does not fail the build
	})

	r, err := op.Sync(ctx, count, name, lint)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("succeeded %d, failed %d, unknown %d\n", len(r.Successful), len(r.Failed), len(r.Unknown))
	steps, _ := count.Result()
	artifact, _ := name.Result()
	fmt.Println(steps, artifact)
	fmt.Println("lint failed:", errors.Unwrap(lint.Err()))
	fmt.Println("operation failed:", r.OperationFailed)

	if err := op.Complete(ctx); err != nil {
		log.Fatal(err)
	}
	// Output:
	// succeeded 2, failed 1, unknown 0
	// 3 app-v1
	// lint failed: 3 warnings
	// operation failed: false
}

// WaitForCompletion returns the work's result, a fallback for its error, or
// the operation's failure, whichever comes first.
func ExampleWaitForCompletion() {
	dir, err := os.MkdirTemp("", "ledger-example-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	ctx := context.Background()
	l, err := ledger.Connect(ctx, ledger.Options{BasePath: dir, ParticipantID: "waiter"})
	if err != nil {
		log.Fatal(err)
	}
	defer l.Close()
	op, err := l.CreateOperation(ctx, ledger.CreateOptions{Description: "deploy"})
	if err != nil {
		log.Fatal(err)
	}

	v, err := ledger.WaitForCompletion(ctx, op, func(ctx context.Context) (string, error) {
		return "ready", nil
	}, ledger.WaitOptions[string]{})
	fmt.Println(v, err)

	v, err = ledger.WaitForCompletion(ctx, op, func(ctx context.Context) (string, error) {
		return "", errors.New("no cache")
	}, ledger.WaitOptions[string]{
		OnError: func(err error) (string, bool) { return "cold start", true },
	})
	fmt.Println(v, err)

	// A call that fails the operation while another waits.
	ledger.SpawnCall(op, func(ctx context.Context, call *ledger.SpawnedCall[int]) (int, error) {
		return 0, errors.New("disk full")
	}, ledger.CallOptions[int]{Description: "upload"})
	_, err = ledger.WaitForCompletion(ctx, op, func(ctx context.Context) (string, error) {
		<-ctx.Done() // cancelled by the failure
		return "", context.Cause(ctx)
	}, ledger.WaitOptions[string]{
		OnOperationFailed: func(info ledger.OperationFailedInfo) {
			fmt.Println("operation failed:", info.Reason)
		},
	})
	var failed *ledger.OperationFailedError
	fmt.Println(errors.As(err, &failed), errors.Is(err, ledger.ErrOperationFailed))
	// Output:
	// ready <nil>
	// cold start <nil>
	// operation failed: disk full
	// true true
}
