package main

import (
	"context"
	"flag"
	"fmt"
	"time"

	"github.com/tomdist/ledger"
)

func init() {
	commands["abort"] = &command{
		args: "ID", nargs: [2]int{1, 1}, source: true, setup: setupAbort,
		summary: "set the abort flag of an operation",
		help: `abort sets the abort flag of operation ID, as participant "ledger-cli": every
participant sees it at once (pushed) and aborts its calls.`,
	}
	commands["prune"] = &command{
		nargs: [2]int{0, 0}, source: true, setup: setupPrune,
		summary: "delete the oldest archived operations",
		help: `prune deletes the oldest archived operations of a ledger directory beyond
--keep. A server's archive is pruned on its directory, not through it; a
ledger in etcd (--etcd) by ledger-etcd.`,
	}
}

func setupAbort(fs *flag.FlagSet) func(context.Context, *env, []string) error {
	return func(ctx context.Context, e *env, args []string) error {
		v, err := e.src.open(ctx)
		if err != nil {
			return err
		}
		defer v.Close()
		ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		d, err := v.SetAbortFlag(ctx, args[0], cliParticipant)
		if err != nil {
			return notFound(args[0], err)
		}
		_, err = fmt.Fprintf(e.stdout, "%s aborted (state %s)\n", d.OperationID, d.OperationState)
		return err
	}
}

func setupPrune(fs *flag.FlagSet) func(context.Context, *env, []string) error {
	keep := fs.Int("keep", ledger.DefaultMaxBackups, "how many archived operations to `keep`")
	return func(ctx context.Context, e *env, _ []string) error {
		if *keep < 0 {
			return usagef("--keep (%d) must not be negative", *keep)
		}
		v, err := e.src.open(ctx)
		if err != nil {
			return err
		}
		defer v.Close()
		removed, kept, err := v.Prune(ctx, *keep)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(e.stdout, "pruned %d archived operations, %d kept\n", removed, kept)
		return err
	}
}
