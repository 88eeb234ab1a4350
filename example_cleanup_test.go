package ledger_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/tomdist/ledger"
)

// Callbacks registered with the process-wide handler run once, newest
// first, when the process is cleaned up: after SIGINT or SIGTERM while an
// operation is open, or when the program calls Run itself.
func ExampleCleanup() {
	h := ledger.Cleanup()
	h.Register(func(ctx context.Context) error {
		fmt.Println("close the database")
		return nil
	})
	id := h.Register(func(ctx context.Context) error {
		fmt.Println("never runs: unregistered")
		return nil
	})
	h.Register(func(ctx context.Context) error {
		fmt.Println("stop the compiler")
		return errors.New("compiler already gone")
	})
	h.Unregister(id)

	// A program that handles signals itself (Options.NoSignalHandler)
	// calls Run from its handler.
	err := h.Run(context.Background())
	fmt.Println("error:", err)
	fmt.Println("second run:", h.Run(context.Background()))
	// Output:
	// stop the compiler
	// close the database
	// error: ledger: cleanup callback: compiler already gone
	// second run: <nil>
}

// Temp resources that an open operation registered are deleted by the
// cleanup, after the callbacks.
func ExampleOperation_RegisterTempResource() {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "ledger-example-")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer os.RemoveAll(dir)
	l, err := ledger.NewLocalLedger(ledger.Options{
		BasePath:        filepath.Join(dir, "ledger"),
		ParticipantID:   "builder",
		NoSignalHandler: true, // this program calls Cleanup().Run itself
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer l.Close()
	op, err := l.CreateOperation(ctx, ledger.CreateOptions{Description: "build"})
	if err != nil {
		fmt.Println(err)
		return
	}

	scratch := filepath.Join(dir, "scratch")
	os.MkdirAll(filepath.Join(scratch, "obj"), 0o755)
	os.WriteFile(filepath.Join(scratch, "obj", "main.o"), []byte("..."), 0o644)
	if err := op.RegisterTempResource(ctx, scratch); err != nil {
		fmt.Println(err)
		return
	}

	fmt.Println("cleanup:", ledger.Cleanup().Run(ctx))
	_, err = os.Stat(scratch)
	fmt.Println("scratch removed:", errors.Is(err, os.ErrNotExist))
	// Output:
	// cleanup: <nil>
	// scratch removed: true
}
