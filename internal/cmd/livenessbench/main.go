// Command livenessbench measures how fast participants learn of a crash and
// of an abort on one host, with the default intervals:
//
//	go run ./internal/cmd/livenessbench [-n 50] [-survivors 3]
//
// Crash: a victim process with a fail-on-crash call is killed with SIGKILL;
// the time from the kill to the last survivor's Failed() is recorded.
// Abort: one participant sets the abort flag; the time from its return to
// the last other participant's Aborted() is recorded. Every survivor is a
// LocalLedger of its own (its own monitor), as separate processes would be.
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"log"
	"math/rand/v2"
	"os"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/tomdist/ledger"
)

func main() {
	n := flag.Int("n", 50, "trials of each kind")
	survivors := flag.Int("survivors", 3, "participants that must notice")
	victim := flag.Bool("victim", false, "internal: run as the victim process")
	dir := flag.String("dir", "", "internal: ledger directory")
	opID := flag.String("op", "", "internal: operation id")
	flag.Parse()
	if *victim {
		runVictim(*dir, *opID)
		return
	}
	base, err := os.MkdirTemp("", "livenessbench-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(base)

	var crash, abort []time.Duration
	for i := range *n {
		crash = append(crash, crashTrial(base, *survivors))
		abort = append(abort, abortTrial(base, *survivors))
		if (i+1)%10 == 0 {
			fmt.Fprintf(os.Stderr, "%d/%d trials\n", i+1, *n)
		}
	}
	report("kill -9 -> every survivor's Failed()", crash)
	report("SetAbortFlag -> every participant's Aborted()", abort)
}

func report(what string, ds []time.Duration) {
	slices.Sort(ds)
	pct := func(p float64) time.Duration { return ds[min(len(ds)-1, int(p*float64(len(ds))))] }
	fmt.Printf("%-48s n=%d p50=%v p99=%v max=%v\n", what, len(ds),
		pct(0.50).Round(time.Millisecond), pct(0.99).Round(time.Millisecond), ds[len(ds)-1].Round(time.Millisecond))
}

func open(dir, name string) *ledger.LocalLedger {
	l, err := ledger.NewLocalLedger(ledger.Options{BasePath: dir, ParticipantID: name, NoSignalHandler: true})
	if err != nil {
		log.Fatal(err)
	}
	return l
}

// group creates an operation and joins k participants, each in its own
// ledger with a fail-on-crash call running.
func group(dir string, k int) (*ledger.Operation, []*ledger.Operation, func()) {
	ctx := context.Background()
	init := open(dir, "init")
	op, err := init.CreateOperation(ctx, ledger.CreateOptions{})
	if err != nil {
		log.Fatal(err)
	}
	ledgers := []*ledger.LocalLedger{init}
	var ops []*ledger.Operation
	for i := range k {
		l := open(dir, fmt.Sprintf("s%d", i))
		ledgers = append(ledgers, l)
		o, err := l.JoinOperation(ctx, op.ID(), ledger.JoinOptions{})
		if err != nil {
			log.Fatal(err)
		}
		if _, err := ledger.StartCall[int](ctx, o, ledger.CallOptions[int]{}); err != nil {
			log.Fatal(err)
		}
		ops = append(ops, o)
	}
	return op, ops, func() {
		for _, l := range ledgers {
			l.Close()
		}
	}
}

func lastClosed(chans []<-chan struct{}, start time.Time) time.Duration {
	deadline := time.After(30 * time.Second)
	for _, ch := range chans {
		select {
		case <-ch:
		case <-deadline:
			log.Fatal("a participant did not notice within 30s")
		}
	}
	return time.Since(start)
}

func crashTrial(dir string, k int) time.Duration {
	op, ops, done := group(dir, k)
	defer done()
	cmd := exec.Command(os.Args[0], "-victim", "-dir", dir, "-op", op.ID())
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		log.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		log.Fatal(err)
	}
	if line, err := bufio.NewReader(out).ReadString('\n'); err != nil || strings.TrimSpace(line) != "ready" {
		log.Fatalf("victim: %q %v", line, err)
	}
	var chans []<-chan struct{}
	for _, o := range ops {
		chans = append(chans, o.Failed())
	}
	settle()
	start := time.Now()
	cmd.Process.Signal(syscall.SIGKILL)
	d := lastClosed(chans, start)
	cmd.Wait()
	return d
}

func abortTrial(dir string, k int) time.Duration {
	op, ops, done := group(dir, k)
	defer done()
	var chans []<-chan struct{}
	for _, o := range ops {
		chans = append(chans, o.Aborted())
	}
	settle()
	if err := op.SetAbortFlag(context.Background(), true); err != nil {
		log.Fatal(err)
	}
	return lastClosed(chans, time.Now())
}

// settle waits a random part of a poll interval, so that the event does not
// fall in step with the pollers, which all started with the trial.
func settle() { time.Sleep(rand.N(ledger.DefaultLivenessPoll)) }

func runVictim(dir, id string) {
	ctx := context.Background()
	l := open(dir, "victim")
	op, err := l.JoinOperation(ctx, id, ledger.JoinOptions{})
	if err != nil {
		log.Fatal(err)
	}
	if _, err := ledger.StartCall[int](ctx, op, ledger.CallOptions[int]{}); err != nil {
		log.Fatal(err)
	}
	fmt.Println("ready")
	select {}
}
