package ledger_test

import (
	"context"
	"fmt"
	"log"
	"net/http/httptest"
	"time"

	"github.com/tomdist/ledger"
)

// A RemoteClient given several servers of one ledger (Options.ServerURL
// and ServerURLs) moves to the next when the one it uses goes away: the
// request is sent again there with the same idempotency key, so it is
// made once, and the operation's stream opens again there. Here two
// servers share one ledger directory; in production they would be
// `ledger serve --etcd` fronts of one etcd cluster.
func ExampleRemoteClient_failover() {
	dir, remove := exampleDir()
	defer remove()
	srvA := ledger.NewServer(ledger.ServerOptions{BasePath: dir})
	defer srvA.Close()
	tsA := httptest.NewServer(srvA) // on 127.0.0.1
	defer tsA.Close()
	srvB := ledger.NewServer(ledger.ServerOptions{BasePath: dir})
	defer srvB.Close()
	tsB := httptest.NewServer(srvB)
	defer tsB.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	l, err := ledger.NewRemoteClient(ctx, ledger.Options{
		ParticipantID: "builder",
		ServerURL:     tsA.URL,
		ServerURLs:    []string{tsB.URL},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer l.Close()
	fmt.Println("using A:", l.ServerURL() == tsA.URL)
	op, err := l.CreateOperation(ctx, ledger.CreateOptions{})
	if err != nil {
		log.Fatal(err)
	}

	// Server A goes away: Close ends its streams (without a verdict on
	// their participants), then its listener closes.
	srvA.Close()
	tsA.Close()

	call, err := ledger.StartCall[string](ctx, op, ledger.CallOptions[string]{Description: "compile"})
	if err != nil {
		log.Fatal(err)
	}
	if err := call.End(ctx, "ok"); err != nil {
		log.Fatal(err)
	}
	fmt.Println("using B:", l.ServerURL() == tsB.URL)
	d, err := op.State(ctx)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("frames:", len(d.CallFrames), "state:", d.OperationState)
	if err := op.Complete(ctx); err != nil {
		log.Fatal(err)
	}
	// Output:
	// using A: true
	// using B: true
	// frames: 0 state: running
}
