// Command livenessbench measures how fast participants learn of a crash
// and of an abort, on one host and through a ledger server, and what idle
// participants cost, all with the default intervals:
//
//	go run ./internal/cmd/livenessbench [-n 50] [-survivors 3] [-idle 32] [-frames 1000] [-window 10s] [-archived 0]
//
// Local crash: a victim process with a fail-on-crash call is killed with
// SIGKILL; the time from the kill to the last survivor's Failed() is
// recorded. Local abort: one participant sets the abort flag; the time
// from its return to the last other participant's Aborted() is recorded.
// Every survivor is a LocalLedger of its own (its own monitor), as
// separate processes would be.
//
// Remote crash and remote abort: the same through a ledger server on
// 127.0.0.1 (in this process), with RemoteClients; the victim is a process
// of its own, so its kill drops its stream and its connections.
//
// Idle: -idle processes join one operation whose initiator holds -frames
// open calls, each starts a call of its own, and then nothing happens for
// -window; the CPU time all of them (and the initiator) use in that window
// is reported as a share of one core.
//
// With -archived N a second directory gets N archived operations first,
// and every trial and the idle measure run in both, alternating, so that
// both meet the same load; the figures with the history over those
// without must not exceed 2x, to show that a long history does not
// change them.
//
// It prints p50, p99 and max of each kind and the idle share, then whether
// the targets hold (p99 of 20ms for local crash and abort, 1.5s for remote
// crash, 100ms for remote abort; 5% of a core idle); it exits with status
// 1 if one does not.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"math"
	"os"
	"slices"
	"time"

	"github.com/tomdist/ledger/internal/history"
)

func main() {
	n := flag.Int("n", 50, "trials of each kind")
	survivors := flag.Int("survivors", 3, "participants that must notice")
	idlers := flag.Int("idle", 32, "idle participant processes (0: skip the idle measure)")
	frames := flag.Int("frames", 1000, "open calls of the operation the idle participants share")
	window := flag.Duration("window", 10*time.Second, "how long the idle participants are measured")
	archived := flag.Int("archived", 0, "archived operations to put in the directory first")
	role := flag.String("role", "", "internal: victim, remote-victim or idler")
	target := flag.String("target", "", "internal: ledger directory or server URL")
	opID := flag.String("op", "", "internal: operation id")
	flag.Parse()
	log.SetFlags(0)
	log.SetPrefix("livenessbench: ")
	if *role != "" {
		runChild(*role, *target, *opID)
		return
	}

	benches := []*bench{newBench("", *survivors, 0)}
	if *archived > 0 {
		benches = append(benches, newBench(fmt.Sprintf("with %d archived", *archived), *survivors, *archived))
	}
	var stops []func()
	for _, b := range benches {
		stops = append(stops, b.serve())
	}
	// The trials of the benches alternate, so that they meet the same
	// load.
	for i := range *n {
		for _, b := range benches {
			b.local.crash = append(b.local.crash, b.crashTrial(b.openLocal, "victim"))
			b.local.abort = append(b.local.abort, b.abortTrial(b.openLocal))
			b.remote.crash = append(b.remote.crash, b.crashTrial(b.openRemote, "remote-victim"))
			b.remote.abort = append(b.remote.abort, b.abortTrial(b.openRemote))
		}
		if (i+1)%10 == 0 {
			fmt.Fprintf(os.Stderr, "%d/%d trials\n", i+1, *n)
		}
	}
	for _, stop := range stops {
		stop()
	}

	ok := true
	for _, b := range benches {
		ok = b.report(*idlers, *frames, *window) && ok
	}
	if len(benches) == 2 {
		ok = compare(benches[0], benches[1]) && ok
	}
	for _, b := range benches {
		os.RemoveAll(b.dir)
	}
	if !ok {
		fmt.Println("livenessbench: a target was missed")
		os.Exit(1)
	}
	fmt.Println("livenessbench: all targets hold")
}

// newBench makes a ledger directory with archived operations in it.
func newBench(name string, survivors, archived int) *bench {
	base, err := os.MkdirTemp("", "livenessbench-")
	if err != nil {
		log.Fatal(err)
	}
	if archived > 0 {
		t0 := time.Now()
		if err := history.Archive(context.Background(), base, archived); err != nil {
			log.Fatal(err)
		}
		fmt.Fprintf(os.Stderr, "%d archived operations in %v\n", archived, time.Since(t0).Round(time.Second))
	}
	return &bench{name: name, dir: base, survivors: survivors}
}

// report prints the figures of b, measuring its idle cost if idlers is
// positive, and says whether they are within target.
func (b *bench) report(idlers, frames int, window time.Duration) bool {
	suffix := ""
	if b.name != "" {
		suffix = ", " + b.name
	}
	ok := true
	ok = report("kill -9 -> every survivor's Failed(), same host"+suffix, b.local.crash, 20*time.Millisecond) && ok
	ok = report("SetAbortFlag -> every Aborted(), same host"+suffix, b.local.abort, 20*time.Millisecond) && ok
	ok = report("kill -9 -> every survivor's Failed(), remote"+suffix, b.remote.crash, 1500*time.Millisecond) && ok
	ok = report("SetAbortFlag -> every Aborted(), remote"+suffix, b.remote.abort, 100*time.Millisecond) && ok
	if idlers > 0 {
		b.idleShare = b.idle(idlers, frames, window)
		fmt.Printf("%-64s %d participants, %d frames, %v: %.2f%% of one core (target <= 5%%)\n",
			"idle"+suffix, idlers, frames, window, 100*b.idleShare)
		ok = b.idleShare <= 0.05 && ok
	}
	return ok
}

// compare prints the figures of b over those of a, the same directory
// without a history, and says whether none is more than 2x.
func compare(a, b *bench) bool {
	ok := true
	ratio := func(what string, x, y []time.Duration) {
		p50, p99 := pct(y, 0.50).Seconds()/pct(x, 0.50).Seconds(), pct(y, 0.99).Seconds()/pct(x, 0.99).Seconds()
		fmt.Printf("%-64s p50 %.2fx p99 %.2fx (target <= 2x)\n", what+", "+b.name+" / without", p50, p99)
		ok = ok && p50 <= 2 && p99 <= 2
	}
	ratio("kill -9 -> Failed(), same host", a.local.crash, b.local.crash)
	ratio("SetAbortFlag -> Aborted(), same host", a.local.abort, b.local.abort)
	ratio("kill -9 -> Failed(), remote", a.remote.crash, b.remote.crash)
	ratio("SetAbortFlag -> Aborted(), remote", a.remote.abort, b.remote.abort)
	if a.idleShare > 0 {
		fmt.Printf("%-64s %.2fx (target <= 2x)\n", "idle, "+b.name+" / without", b.idleShare/a.idleShare)
		ok = ok && b.idleShare <= 2*a.idleShare
	}
	return ok
}

// pct is the nearest-rank percentile of ds: the smallest value that p of
// them do not exceed.
func pct(ds []time.Duration, p float64) time.Duration {
	ds = slices.Sorted(slices.Values(ds))
	return ds[max(0, int(math.Ceil(p*float64(len(ds))))-1)]
}

// report prints the percentiles of ds and says whether p99 is within
// target.
func report(what string, ds []time.Duration, target time.Duration) bool {
	p99 := pct(ds, 0.99)
	fmt.Printf("%-64s n=%d p50=%v p99=%v max=%v (target p99 <= %v)\n", what, len(ds),
		round(pct(ds, 0.50)), round(p99), round(slices.Max(ds)), target)
	return p99 <= target
}

func round(d time.Duration) time.Duration {
	if d < 10*time.Millisecond {
		return d.Round(10 * time.Microsecond)
	}
	return d.Round(time.Millisecond)
}
