// Command crashtest is a kill -9 campaign against one operation of a
// ledger, to be rerun after every change that touches how the ledger
// writes:
//
//	go run ./internal/cmd/crashtest [-kills 1000] [-workers 4] [-life 250ms] [-remote] [-fsync] [-keep]
//
// A supervisor creates an operation in a new directory and stays in it.
// Worker processes (this program again, in the worker role) join it and do
// contained calls (StartCall, End) in a loop; the supervisor kills each at
// a random moment with SIGKILL and starts another, until -kills workers
// were killed; the last workers are stopped cleanly. Contained calls keep
// the operation running through every kill, so one operation sees them
// all: each kill exercises the victim's interrupted append to the
// operation's journal (a torn tail, cut by the next writer), the liveness
// locks and the crash verdict of the survivors, and the removal of the
// victim's frames. With -remote the workers go through a `ledger serve`
// process on 127.0.0.1 (built with go build unless -ledger-bin names it),
// so kills cut requests and streams, and crashes are seen when a stream
// drops (or by heartbeat staleness, for a worker killed before it opened
// one).
//
// Each worker appends to a journal of its own before and after each ledger
// call (see worker.go). While the workers run, every file of the ledger
// directory is parsed every -check; at the end the operation is completed
// (archived) and checked against the journals:
//
//   - corrupt: a state, log line, trail snapshot or backup that does not
//     parse or is not in the documented form;
//   - lost: an acknowledged StartCall without its CALL_STARTED, or an
//     acknowledged End without its CALL_ENDED or with its frame left;
//   - doubled: a call id or StartCall logged twice, a call ended twice
//     (two CALL_ENDED, or CALL_ENDED and a crash), a participant declared
//     crashed twice;
//   - undetected: a killed worker that had joined (it has a participant
//     record) whose record is not crashed at the end;
//   - falsecrash: a verdict on a participant that was not killed;
//   - inconsistent: the log, the final state and the journals disagree
//     otherwise (a call nobody started, one that never ended, ...);
//   - workerfail: a worker that failed on its own;
//   - loggaps: a change that is in the state but whose log line is
//     missing (a frame that CRASH_DETECTED lists without a CALL_STARTED, a
//     verdict with no CRASH_DETECTED line, ...). The log is derived from
//     the journal's records, which carry their lines, so a kill at any
//     instruction leaves none.
//
// It prints the details, then one verdict line, and exits with status 1 if
// any count is not zero. The directory is removed after a PASS unless
// -keep.
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"time"
)

func main() {
	if cfg, ok, err := workerFromEnv(); ok {
		if err != nil {
			fmt.Fprintln(os.Stderr, "crashtest worker:", err)
			os.Exit(2)
		}
		os.Exit(runWorker(cfg))
	}
	cfg, keep := parseFlags()
	res, err := run(cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "crashtest:", err)
		os.Exit(2)
	}
	report(os.Stdout, res)
	if res.failed() || keep {
		fmt.Printf("crashtest: files kept in %s\n", res.dir)
	} else {
		os.RemoveAll(res.dir)
	}
	fmt.Println(res.verdict())
	if res.failed() {
		os.Exit(1)
	}
}

func parseFlags() (config, bool) {
	var cfg config
	flag.IntVar(&cfg.kills, "kills", 1000, "workers to kill with SIGKILL")
	flag.IntVar(&cfg.workers, "workers", 4, "worker processes at a time")
	flag.DurationVar(&cfg.life, "life", 250*time.Millisecond, "mean time from a worker's start to its kill (uniform in [0, 2*life))")
	flag.DurationVar(&cfg.check, "check", time.Second, "period of the file checks while workers run")
	flag.BoolVar(&cfg.remote, "remote", false, "workers use a `ledger serve` process on 127.0.0.1")
	flag.StringVar(&cfg.ledgerBin, "ledger-bin", "", "the ledger command for -remote (default: go build ./cmd/ledger)")
	flag.BoolVar(&cfg.fsync, "fsync", false, "workers fsync their journal after every record (needed only for power cuts)")
	flag.DurationVar(&cfg.heartbeat, "heartbeat", 0, "HeartbeatInterval of every participant (default 5s; 250ms with -remote)")
	flag.DurationVar(&cfg.stale, "stale", 0, "StaleThreshold of every participant (default 15s; 2s with -remote)")
	flag.StringVar(&cfg.parent, "dir", "", "where to make the campaign's directory (default: the temp dir)")
	keep := flag.Bool("keep", false, "keep the campaign's directory after a PASS")
	flag.Parse()
	if cfg.remote && cfg.heartbeat == 0 && cfg.stale == 0 {
		cfg.heartbeat, cfg.stale = 250*time.Millisecond, 2*time.Second
	}
	cfg.detect = detectTime(cfg)
	cfg.exe = os.Args[0]
	cfg.progress = os.Stderr
	return cfg, *keep
}

// detectTime is how long verdicts may take after the last kill: a
// liveness poll locally, a stale threshold and two beats remotely, with
// room for a loaded machine.
func detectTime(cfg config) time.Duration {
	if !cfg.remote {
		return 15 * time.Second
	}
	return 3*(cfg.stale+2*cfg.heartbeat) + 5*time.Second
}

// maxDetails and maxGaps bound the details printed above the verdict.
const (
	maxDetails = 50
	maxGaps    = 5
)

func report(w io.Writer, res *result) {
	details(w, res.details, maxDetails)
	details(w, res.gapDetails, maxGaps)
	for _, n := range res.notes {
		fmt.Fprintln(w, "crashtest: note:", n)
	}
}

func details(w io.Writer, ds []string, limit int) {
	for i, d := range ds {
		if i == limit {
			fmt.Fprintf(w, "crashtest: ... and %d more\n", len(ds)-limit)
			break
		}
		fmt.Fprintln(w, "crashtest:", d)
	}
}
