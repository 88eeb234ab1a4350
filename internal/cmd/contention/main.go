// Command contention measures what many processes on one operation do to
// the ledger:
//
//	go run ./internal/cmd/contention [-p 1,16,32,64] [-d 20s] [-rounds 1] [-contained]
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
//
// Runs of the same build differ by a third at P=32 on a small, shared
// machine. With -rounds N, the Ps are measured N times in turn; the table
// gives the median of each figure over the rounds (and the sums of the
// counts), the ratio is printed for each round, and the target is judged
// on the median ratio.
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
	var rounds [][]row
	for range cfg.rounds {
		var rows []row
		for _, p := range cfg.ps {
			r, err := measure(cfg, p)
			if err != nil {
				fmt.Fprintf(os.Stderr, "contention: P=%d: %v\n", p, err)
				os.Exit(2)
			}
			rows = append(rows, r)
		}
		rounds = append(rounds, rows)
	}
	if !report(os.Stdout, rounds) {
		os.Exit(1)
	}
}

func parseFlags(args []string) (config, error) {
	fs := flag.NewFlagSet("contention", flag.ContinueOnError)
	var cfg config
	ps := fs.String("p", "1,16,32,64", "numbers of worker processes, comma-separated")
	fs.DurationVar(&cfg.d, "d", 20*time.Second, "how long the workers run calls, for each P")
	fs.IntVar(&cfg.rounds, "rounds", 1, "how many times to measure every P, in turn")
	fs.BoolVar(&cfg.contained, "contained", false, "contained calls (a crash verdict then does not fail the operation)")
	fs.DurationVar(&cfg.heartbeat, "heartbeat", 0, "HeartbeatInterval of every participant (default 5s)")
	fs.DurationVar(&cfg.stale, "stale", 0, "StaleThreshold of every participant (default 15s)")
	fs.StringVar(&cfg.parent, "dir", "", "where to make the ledger directories (default: the temp dir)")
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	if cfg.rounds < 1 {
		return cfg, fmt.Errorf("-rounds: %d is not a number of rounds", cfg.rounds)
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
// it returns. rounds are the rows of each round, every round with the
// same Ps in the same order.
func report(w io.Writer, rounds [][]row) bool {
	rows := merge(rounds)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "P\tcalls/s\tp50\tp99\tfalse verdicts\tfailed workers\theartbeat errors\tcall errors")
	for _, r := range rows {
		fmt.Fprintf(tw, "%d\t%.0f\t%v\t%v\t%d\t%d\t%s\t%d\n", r.P, r.Rate, r.P50, r.P99, r.Verdicts, r.FailedWorkers, r.hbString(), r.Errors)
	}
	tw.Flush()
	if len(rounds) > 1 {
		fmt.Fprintf(w, "contention: medians of %d rounds; counts summed\n", len(rounds))
	}
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
	if many, ratios, texts, ok := roundRatios(rounds); ok {
		if dead := slices.Index(ratios, 0); dead >= 0 {
			missed = append(missed, fmt.Sprintf("no call through at P=1 or P=%d in round %d", many, dead+1))
		}
		median := medianOf(ratios)
		if len(rounds) == 1 {
			fmt.Fprintf(w, "contention: throughput at P=%d / at P=1 = %s (target >= 0.5)\n", many, texts[0])
		} else {
			fmt.Fprintf(w, "contention: throughput at P=%d / at P=1, round by round: %s; median %.3f (target >= 0.5)\n",
				many, strings.Join(texts, ", "), median)
		}
		if median < 0.5 {
			missed = append(missed, fmt.Sprintf("ratio %.3f < 0.5", median))
		}
	}
	if len(missed) > 0 {
		fmt.Fprintf(w, "contention: targets MISSED: %s\n", strings.Join(missed, "; "))
		return false
	}
	fmt.Fprintln(w, "contention: targets MET")
	return true
}

// merge returns a row per P of rounds: the median rate, p50 and p99, and
// the sums of the counts.
func merge(rounds [][]row) []row {
	rows := make([]row, len(rounds[0]))
	for i := range rows {
		var rates, p50s, p99s []float64
		m := row{P: rounds[0][i].P, HB: map[string]int{}}
		for _, round := range rounds {
			r := round[i]
			rates, p50s, p99s = append(rates, r.Rate), append(p50s, float64(r.P50)), append(p99s, float64(r.P99))
			m.Calls += r.Calls
			m.Verdicts += r.Verdicts
			m.FailedWorkers += r.FailedWorkers
			m.Errors += r.Errors
			m.Details = append(m.Details, r.Details...)
			for k, v := range r.HB {
				m.HB[k] += v
			}
		}
		m.Rate, m.P50, m.P99 = medianOf(rates), time.Duration(medianOf(p50s)), time.Duration(medianOf(p99s))
		rows[i] = m
	}
	return rows
}

// roundRatios returns the throughput ratio of each round (see ratioRows),
// as numbers and as text, and the P over 1 it is of. A round without a
// call at P=1 has a ratio of 0.
func roundRatios(rounds [][]row) (many int, ratios []float64, texts []string, ok bool) {
	for _, rows := range rounds {
		one, m, ok := ratioRows(rows)
		if !ok {
			return 0, nil, nil, false
		}
		many = m.P
		r := 0.0
		if one.Rate > 0 {
			r = m.Rate / one.Rate
		}
		ratios = append(ratios, r)
		texts = append(texts, fmt.Sprintf("%.0f / %.0f = %.3f", m.Rate, one.Rate, r))
	}
	return many, ratios, texts, true
}

// medianOf returns the median of vs (the mean of the middle two of an
// even number).
func medianOf(vs []float64) float64 {
	vs = slices.Sorted(slices.Values(vs))
	n := len(vs)
	if n%2 == 1 {
		return vs[n/2]
	}
	return (vs[n/2-1] + vs[n/2]) / 2
}

// ratioRows returns the rows of P=1 and of the largest P up to 32 above
// it, if the Ps measured include both.
func ratioRows(rows []row) (one, many row, ok bool) {
	i := slices.IndexFunc(rows, func(r row) bool { return r.P == 1 })
	if i < 0 {
		return row{}, row{}, false
	}
	for _, r := range rows {
		if r.P > 1 && r.P <= 32 && r.P > many.P {
			many, ok = r, true
		}
	}
	return rows[i], many, ok
}
