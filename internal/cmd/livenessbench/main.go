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
// With -archived N the directory first gets N archived operations, to show
// that a long history does not change the figures.
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

	base, err := os.MkdirTemp("", "livenessbench-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(base)
	if *archived > 0 {
		t0 := time.Now()
		if err := history.Archive(context.Background(), base, *archived); err != nil {
			log.Fatal(err)
		}
		fmt.Fprintf(os.Stderr, "%d archived operations in %v\n", *archived, time.Since(t0).Round(time.Second))
	}

	b := bench{dir: base, survivors: *survivors}
	srv := b.serve()
	var local, remote struct{ crash, abort []time.Duration }
	for i := range *n {
		local.crash = append(local.crash, b.crashTrial(b.openLocal, "victim"))
		local.abort = append(local.abort, b.abortTrial(b.openLocal))
		remote.crash = append(remote.crash, b.crashTrial(b.openRemote, "remote-victim"))
		remote.abort = append(remote.abort, b.abortTrial(b.openRemote))
		if (i+1)%10 == 0 {
			fmt.Fprintf(os.Stderr, "%d/%d trials\n", i+1, *n)
		}
	}
	srv()

	ok := true
	ok = report("kill -9 -> every survivor's Failed(), same host", local.crash, 20*time.Millisecond) && ok
	ok = report("SetAbortFlag -> every Aborted(), same host", local.abort, 20*time.Millisecond) && ok
	ok = report("kill -9 -> every survivor's Failed(), remote", remote.crash, 1500*time.Millisecond) && ok
	ok = report("SetAbortFlag -> every Aborted(), remote", remote.abort, 100*time.Millisecond) && ok
	if *idlers > 0 {
		share := b.idle(*idlers, *frames, *window)
		fmt.Printf("%-52s %d participants, %d frames, %v: %.2f%% of one core (target <= 5%%)\n",
			"idle", *idlers, *frames, *window, 100*share)
		ok = share <= 0.05 && ok
	}
	if !ok {
		fmt.Println("livenessbench: a target was missed")
		os.Exit(1)
	}
	fmt.Println("livenessbench: all targets hold")
}

// report prints the percentiles of ds and says whether p99 is within
// target.
func report(what string, ds []time.Duration, target time.Duration) bool {
	slices.Sort(ds)
	// The nearest-rank percentile: the smallest value that p of the trials
	// do not exceed.
	pct := func(p float64) time.Duration { return ds[max(0, int(math.Ceil(p*float64(len(ds))))-1)] }
	p99 := pct(0.99)
	fmt.Printf("%-52s n=%d p50=%v p99=%v max=%v (target p99 <= %v)\n", what, len(ds),
		round(pct(0.50)), round(p99), round(ds[len(ds)-1]), target)
	return p99 <= target
}

func round(d time.Duration) time.Duration {
	if d < 10*time.Millisecond {
		return d.Round(10 * time.Microsecond)
	}
	return d.Round(time.Millisecond)
}
