package main

import (
	"bufio"
	"context"
	"fmt"
	"log"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"github.com/tomdist/ledger"
)

// bench holds what the trials share: the directory and the server on it.
type bench struct {
	name      string // "" or what sets the directory apart
	dir       string
	url       string // the server's, once serve ran
	survivors int

	local, remote struct{ crash, abort []time.Duration } // the trials' figures
	idleShare     float64                                // the idle measure's
}

// serve starts a ledger server on dir, on 127.0.0.1, and returns its stop.
func (b *bench) serve() (stop func()) {
	srv := ledger.NewServer(ledger.ServerOptions{BasePath: b.dir, MaxBackups: -1})
	if err := srv.Err(); err != nil {
		log.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	b.url = "http://" + ln.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	return func() {
		cancel()
		if err := <-done; err != nil {
			log.Print("server: ", err)
		}
	}
}

func (b *bench) openLocal(name string) ledger.Ledger {
	l, err := ledger.NewLocalLedger(ledger.Options{BasePath: b.dir, ParticipantID: name, NoSignalHandler: true, MaxBackups: -1})
	if err != nil {
		log.Fatal(err)
	}
	return l
}

func (b *bench) openRemote(name string) ledger.Ledger {
	l, err := ledger.NewRemoteClient(context.Background(), ledger.Options{ServerURL: b.url, ParticipantID: name, NoSignalHandler: true})
	if err != nil {
		log.Fatal(err)
	}
	return l
}

// group creates an operation and joins b.survivors participants, each in
// a ledger of its own with a fail-on-crash call running. close closes
// them all.
func (b *bench) group(open func(string) ledger.Ledger) (init *ledger.Operation, ops []*ledger.Operation, close func()) {
	ctx := context.Background()
	l := open("init")
	ledgers := []ledger.Ledger{l}
	init, err := l.CreateOperation(ctx, ledger.CreateOptions{})
	if err != nil {
		log.Fatal(err)
	}
	for i := range b.survivors {
		l := open(fmt.Sprintf("s%d", i))
		ledgers = append(ledgers, l)
		op, err := l.JoinOperation(ctx, init.ID(), ledger.JoinOptions{})
		if err != nil {
			log.Fatal(err)
		}
		if _, err := ledger.StartCall(ctx, op, ledger.CallOptions[int]{}); err != nil {
			log.Fatal(err)
		}
		ops = append(ops, op)
	}
	return init, ops, func() {
		for _, l := range ledgers {
			l.Close()
		}
	}
}

// crashTrial starts a victim process in role, which joins and starts a
// fail-on-crash call, kills it and returns the time to the last
// survivor's Failed().
func (b *bench) crashTrial(open func(string) ledger.Ledger, role string) time.Duration {
	init, ops, close := b.group(open)
	defer close()
	target := b.dir
	if role == "remote-victim" {
		target = b.url
	}
	victim := b.child(role, target, init.ID())
	var chans []<-chan struct{}
	for _, op := range ops {
		chans = append(chans, op.Failed())
	}
	settle()
	start := time.Now()
	victim.cmd.Process.Signal(syscall.SIGKILL)
	d := lastClosed(chans, start)
	victim.cmd.Wait()
	return d
}

// abortTrial sets the abort flag from the initiator and returns the time
// from its return to the last survivor's Aborted().
func (b *bench) abortTrial(open func(string) ledger.Ledger) time.Duration {
	init, ops, close := b.group(open)
	defer close()
	var chans []<-chan struct{}
	for _, op := range ops {
		chans = append(chans, op.Aborted())
	}
	settle()
	if err := init.SetAbortFlag(context.Background(), true); err != nil {
		log.Fatal(err)
	}
	return lastClosed(chans, time.Now())
}

func lastClosed(chans []<-chan struct{}, start time.Time) time.Duration {
	deadline := time.After(60 * time.Second)
	for _, ch := range chans {
		select {
		case <-ch:
		case <-deadline:
			log.Fatal("a participant did not notice within 60s")
		}
	}
	return time.Since(start)
}

// settle waits a random while, so that the event does not fall in step
// with anything the trial started.
func settle() { time.Sleep(rand.N(200 * time.Millisecond)) }

// child is a process of this program in a role; it has said "ready".
type child struct {
	cmd *exec.Cmd
	in  *os.File      // its stdin; closing it ends an idler
	out *bufio.Reader // its stdout
}

func (b *bench) child(role, target, op string) *child {
	cmd := exec.Command(os.Args[0], "-role", role, "-target", target, "-op", op)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		log.Fatal(err)
	}
	r, w, err := os.Pipe()
	if err != nil {
		log.Fatal(err)
	}
	cmd.Stdin = r
	if err := cmd.Start(); err != nil {
		log.Fatal(err)
	}
	r.Close()
	c := &child{cmd: cmd, in: w, out: bufio.NewReader(out)}
	if line, err := c.out.ReadString('\n'); err != nil || strings.TrimSpace(line) != "ready" {
		log.Fatalf("%s: %q %v", role, line, err)
	}
	return c
}

// runChild is the main of a child process.
func runChild(role, target, id string) {
	ctx := context.Background()
	o := ledger.Options{ParticipantID: role, NoSignalHandler: true, MaxBackups: -1}
	var l ledger.Ledger
	var err error
	if role == "remote-victim" {
		o.ServerURL = target
		l, err = ledger.NewRemoteClient(ctx, o)
	} else {
		o.BasePath = target
		l, err = ledger.NewLocalLedger(o)
	}
	if err != nil {
		log.Fatal(err)
	}
	op, err := l.JoinOperation(ctx, id, ledger.JoinOptions{})
	if err != nil {
		log.Fatal(err)
	}
	if _, err := ledger.StartCall(ctx, op, ledger.CallOptions[int]{}); err != nil {
		log.Fatal(err)
	}
	fmt.Println("ready")
	if role != "idler" {
		select {} // until killed
	}
	// An idler answers "cpu" with the CPU time it used so far, in
	// nanoseconds, and ends when its stdin closes.
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		fmt.Println(int64(cpuTime()))
	}
	l.Close()
}
