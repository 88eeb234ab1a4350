// Etcd runs one operation on a ledger kept in etcd: an initiator creates
// it, a second participant (another connection, as another machine
// would have) joins, both run tracked calls, and the initiator completes
// it; then it prints the operation's log, read back from etcd.
//
// With -etcd (or $ETCD_ENDPOINTS) it uses that etcd; without, it starts
// an embedded etcd in a temporary directory and removes it afterwards:
//
//	cd examples/etcd && go run .
//	cd examples/etcd && go run . -etcd http://127.0.0.1:2379
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/tomdist/ledger"
	"github.com/tomdist/ledger/etcd"
	"github.com/tomdist/ledger/etcd/embedded"
)

func main() {
	endpoints := flag.String("etcd", os.Getenv("ETCD_ENDPOINTS"), "etcd endpoints, separated by commas (default: start an embedded etcd)")
	flag.Parse()
	if err := run(context.Background(), *endpoints); err != nil {
		fmt.Fprintln(os.Stderr, "etcd example:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, endpoints string) error {
	if endpoints == "" {
		dir, err := os.MkdirTemp("", "ledger-etcd-example-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		cl, err := embedded.Start(embedded.Options{Dir: dir, AutoCompaction: time.Hour})
		if err != nil {
			return err
		}
		defer cl.Close()
		endpoints = strings.Join(cl.Endpoints(), ",")
		fmt.Println("started an embedded etcd at", endpoints)
	}
	c := etcd.Config{
		Client: clientv3.Config{Endpoints: strings.Split(endpoints, ",")},
		Prefix: fmt.Sprintf("/ledger-example/%d/", time.Now().UnixNano()),
	}
	alice, err := etcd.Connect(ctx, c, ledger.Options{ParticipantID: "alice"})
	if err != nil {
		return err
	}
	defer alice.Close()
	bob, err := etcd.Connect(ctx, c, ledger.Options{ParticipantID: "bob"})
	if err != nil {
		return err
	}
	defer bob.Close()

	op, err := alice.CreateOperation(ctx, ledger.CreateOptions{Description: "nightly build"})
	if err != nil {
		return err
	}
	fmt.Println("alice created", op.ID())
	bobOp, err := bob.JoinOperation(ctx, op.ID(), ledger.JoinOptions{})
	if err != nil {
		return err
	}
	fmt.Println("bob joined")
	for _, step := range []struct {
		op   *ledger.Operation
		what string
	}{{op, "compile"}, {bobOp, "test"}, {op, "package"}} {
		call, err := ledger.StartCall[string](ctx, step.op, ledger.CallOptions[string]{Description: step.what})
		if err != nil {
			return err
		}
		if err := call.End(ctx, step.what+" done"); err != nil {
			return err
		}
		fmt.Printf("%s ran %s (%s)\n", step.op.ParticipantID(), step.what, call.ID())
	}
	if err := bobOp.Leave(ctx, ledger.LeaveOptions{}); err != nil {
		return err
	}
	if err := op.Complete(ctx); err != nil {
		return err
	}
	fmt.Println("alice completed the operation; its log, from etcd:")

	s, err := etcd.Open(ctx, c, etcd.StoreOptions{})
	if err != nil {
		return err
	}
	defer s.Close()
	log, err := ledger.NewViewer(s).Log(ctx, op.ID(), false)
	if err != nil {
		return err
	}
	fmt.Print(string(log))
	return nil
}
