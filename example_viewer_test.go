package ledger_test

import (
	"context"
	"fmt"
	"log"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/tomdist/ledger"
)

// ConnectViewer follows an operation without taking part in it, here
// through a ledger server, as `ledger watch` does. Its Watch is pushed by
// the server's stream; over a server the channel closes once the
// operation is archived.
func ExampleConnectViewer() {
	dir, remove := exampleDir()
	defer remove()
	srv := ledger.NewServer(ledger.ServerOptions{BasePath: dir})
	defer srv.Close()
	ts := httptest.NewServer(srv) // on 127.0.0.1
	defer ts.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	l, err := ledger.Connect(ctx, ledger.Options{ParticipantID: "builder", ServerURL: ts.URL})
	if err != nil {
		log.Fatal(err)
	}
	defer l.Close()
	op, err := l.CreateOperation(ctx, ledger.CreateOptions{Description: "nightly build"})
	if err != nil {
		log.Fatal(err)
	}

	v, err := ledger.ConnectViewer(ctx, ledger.Options{ServerURL: ts.URL})
	if err != nil {
		log.Fatal(err)
	}
	defer v.Close()
	changes, err := v.Watch(ctx, op.ID())
	if err != nil {
		log.Fatal(err)
	}

	call, err := ledger.StartCall[int](ctx, op, ledger.CallOptions[int]{Description: "compile"})
	if err != nil {
		log.Fatal(err)
	}
	if err := call.End(ctx, 0); err != nil {
		log.Fatal(err)
	}
	if err := op.Complete(ctx); err != nil {
		log.Fatal(err)
	}

	// Values are coalesced: how many arrive depends on timing. The
	// channel is closed once the operation is archived.
	for range changes {
	}
	d, err := v.State(ctx, op.ID())
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(d.Description, d.OperationState)
	logText, err := v.Log(ctx, op.ID(), false)
	if err != nil {
		log.Fatal(err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(logText)), "\n") {
		f := strings.Fields(line) // time, [LEVEL], participant, event, ...
		fmt.Println(f[1], f[2], f[3])
	}
	// Output:
	// nightly build completed
	// [INFO] builder OPERATION_CREATED
	// [INFO] builder CALL_STARTED
	// [INFO] builder CALL_ENDED
	// [INFO] builder OPERATION_COMPLETED
}
