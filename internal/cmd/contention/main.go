// Command contention measures what many processes on one operation do to
// the ledger:
//
//	go run ./internal/cmd/contention [-p 1,16,32,64] [-d 20s] [-contained]
//
// For each P, a supervisor creates an operation in a new directory of a
// LocalLedger and P worker processes (this program again, in the worker
// role) join it, each with a LocalLedger of its own and the default
// Options. Once all have joined, they all do StartCall + End in a loop for
// -d; nothing is killed. Per P it prints the calls per second of all
// workers together (round trips whose End returned within the window), the
// median and 99th percentile of one round trip, the false crash verdicts
// (participants declared crashed, by a CRASH_DETECTED line or a crashed
// participant record: all false, since nothing was killed), the workers
// whose operation failed, the heartbeat errors of all participants by type
// and the errors of StartCall and End. Then the throughput at the largest
// P of at most 32 over that at 1, and whether the targets hold: no false
// verdict at any P, and that ratio at least 0.5. It exits with status 1
// if they do not.
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

func main() {
	if cfg, ok, err := workerFromEnv(); ok {
		if err != nil {
			fmt.Fprintln(os.Stderr, "contention worker:", err)
			os.Exit(2)
		}
		os.Exit(runWorker(cfg))
	}
	cfg, err := parseFlags(os.Args[1:])
	if err != nil {
		fmt.Fprintln(os.Stderr, "contention:", err)
		os.Exit(2)
	}
	var rows []row
	for _, p := range cfg.ps {
		r, err := measure(cfg, p)
		if err != nil {
			fmt.Fprintf(os.Stderr, "contention: P=%d: %v\n", p, err)
			os.Exit(2)
		}
		rows = append(rows, r)
	}
	if !report(os.Stdout, rows) {
		os.Exit(1)
	}
}

func parseFlags(args []string) (config, error) {
	fs := flag.NewFlagSet("contention", flag.ContinueOnError)
	var cfg config
	ps := fs.String("p", "1,16,32,64", "numbers of worker processes, comma-separated")
	fs.DurationVar(&cfg.d, "d", 20*time.Second, "how long the workers run calls, for each P")
	fs.BoolVar(&cfg.contained, "contained", false, "contained calls (a crash verdict then does not fail the operation)")
	fs.DurationVar(&cfg.heartbeat, "heartbeat", 0, "HeartbeatInterval of every participant (default 5s)")
	fs.DurationVar(&cfg.stale, "stale", 0, "StaleThreshold of every participant (default 15s)")
	fs.StringVar(&cfg.parent, "dir", "", "where to make the ledger directories (default: the temp dir)")
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	var err error
	if cfg.ps, err = parsePs(*ps); err != nil {
		return cfg, err
	}
	cfg.exe, cfg.progress = os.Args[0], os.Stderr
	return cfg, nil
}

// parsePs reads "1,16,32,64".
func parsePs(s string) ([]int, error) {
	var ps []int
	for f := range strings.SplitSeq(s, ",") {
		p, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || p < 1 {
			return nil, fmt.Errorf("-p: %q is not a number of processes", f)
		}
		ps = append(ps, p)
	}
	return ps, nil
}

// report prints the table, the ratio and whether the targets hold, which
// it returns.
func report(w io.Writer, rows []row) bool {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "P\tcalls/s\tp50\tp99\tfalse verdicts\tfailed workers\theartbeat errors\tcall errors")
	for _, r := range rows {
		fmt.Fprintf(tw, "%d\t%.0f\t%v\t%v\t%d\t%d\t%s\t%d\n", r.P, r.Rate, r.P50, r.P99, r.Verdicts, r.FailedWorkers, r.hbString(), r.Errors)
	}
	tw.Flush()
	for _, r := range rows {
		for _, d := range r.Details {
			fmt.Fprintf(w, "contention: P=%d: %s\n", r.P, d)
		}
	}
	var missed []string
	for _, r := range rows {
		if r.Verdicts > 0 {
			missed = append(missed, fmt.Sprintf("%d false verdicts at P=%d", r.Verdicts, r.P))
		}
	}
	if one, many, ok := ratioRows(rows); ok {
		ratio := many.Rate / one.Rate
		fmt.Fprintf(w, "contention: throughput at P=%d / at P=1 = %.0f / %.0f = %.3f (target >= 0.5)\n", many.P, many.Rate, one.Rate, ratio)
		if ratio < 0.5 {
			missed = append(missed, fmt.Sprintf("ratio %.3f < 0.5", ratio))
		}
	}
	if len(missed) > 0 {
		fmt.Fprintf(w, "contention: targets MISSED: %s\n", strings.Join(missed, "; "))
		return false
	}
	fmt.Fprintln(w, "contention: targets MET")
	return true
}

// ratioRows returns the rows of P=1 and of the largest P up to 32 above it.
func ratioRows(rows []row) (one, many row, ok bool) {
	i := slices.IndexFunc(rows, func(r row) bool { return r.P == 1 })
	if i < 0 || rows[i].Rate == 0 {
		return row{}, row{}, false
	}
	for _, r := range rows {
		if r.P > 1 && r.P <= 32 && r.P > many.P {
			many, ok = r, true
		}
	}
	return rows[i], many, ok
}
