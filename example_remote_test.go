package ledger_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net"
	"net/http/httptest"
	"os"
	"strconv"
	"time"

	"github.com/tomdist/ledger"
)

// ExampleNewServer serves a ledger directory over HTTP and lets two
// participants work on one operation through it, as they would from
// different machines.
func ExampleNewServer() {
	dir, err := os.MkdirTemp("", "ledger-example-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	srv := ledger.NewServer(ledger.ServerOptions{BasePath: dir})
	defer srv.Close()
	ts := httptest.NewServer(srv) // on 127.0.0.1; `ledger serve` in production
	defer ts.Close()

	ctx := context.Background()
	boss, err := ledger.Connect(ctx, ledger.Options{ParticipantID: "boss", ServerURL: ts.URL})
	if err != nil {
		log.Fatal(err)
	}
	defer boss.Close()
	worker, err := ledger.Connect(ctx, ledger.Options{ParticipantID: "worker", ServerURL: ts.URL})
	if err != nil {
		log.Fatal(err)
	}
	defer worker.Close()

	op, err := boss.CreateOperation(ctx, ledger.CreateOptions{Description: "nightly build"})
	if err != nil {
		log.Fatal(err)
	}
	wop, err := worker.JoinOperation(ctx, op.ID(), ledger.JoinOptions{})
	if err != nil {
		log.Fatal(err)
	}
	call, err := ledger.StartCall[string](ctx, wop, ledger.CallOptions[string]{Description: "compile"})
	if err != nil {
		log.Fatal(err)
	}
	st, err := op.State(ctx)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("while compiling: %d frame of %s\n", len(st.CallFrames), st.CallFrames[0].ParticipantID)
	if err := call.End(ctx, "ok"); err != nil {
		log.Fatal(err)
	}
	if err := wop.Leave(ctx, ledger.LeaveOptions{}); err != nil {
		log.Fatal(err)
	}

	// Errors are the same sentinels as with a local directory.
	_, err = worker.JoinOperation(ctx, "20240101T00:00:00.000-nobody-00000000", ledger.JoinOptions{})
	fmt.Println("unknown operation:", errors.Is(err, ledger.ErrOperationNotFound))

	if err := op.Complete(ctx); err != nil {
		log.Fatal(err)
	}
	_, err = worker.JoinOperation(ctx, op.ID(), ledger.JoinOptions{})
	fmt.Println("after Complete:", errors.Is(err, ledger.ErrOperationCompleted))
	// Output:
	// while compiling: 1 frame of worker
	// unknown operation: true
	// after Complete: true
}

// ExampleDiscoveryOptions finds a ledger server without being told its
// URL. Here the candidate is the loopback port of a test server; by
// default discovery tries LEDGER_SERVER_URL, then 127.0.0.1 and localhost
// on port 19880.
func ExampleDiscoveryOptions() {
	dir, err := os.MkdirTemp("", "ledger-example-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	srv := ledger.NewServer(ledger.ServerOptions{BasePath: dir})
	defer srv.Close()
	ts := httptest.NewServer(srv)
	defer ts.Close()
	_, port, _ := net.SplitHostPort(ts.Listener.Addr().String())
	p, _ := strconv.Atoi(port)

	os.Unsetenv(ledger.EnvServerURL) // so that only the candidates count
	l, err := ledger.Connect(context.Background(), ledger.Options{
		ParticipantID: "finder",
		Discovery:     ledger.DiscoveryOptions{Hosts: []string{"127.0.0.1"}, Ports: []int{p}, Timeout: time.Second},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer l.Close()
	fmt.Println("found the server:", l.(*ledger.RemoteClient).ServerURL() == ts.URL)

	// Nothing listening: ErrNoServer.
	ts.Close()
	_, err = ledger.Connect(context.Background(), ledger.Options{
		Discovery: ledger.DiscoveryOptions{Hosts: []string{"127.0.0.1"}, Ports: []int{p}, Timeout: time.Second},
	})
	fmt.Println("after it stopped:", errors.Is(err, ledger.ErrNoServer))
	// Output:
	// found the server: true
	// after it stopped: true
}
