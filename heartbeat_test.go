package ledger_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/tomdist/ledger"
)

// A participant child process: joins $LEDGER_OP in $LEDGER_DIR as
// $PARTICIPANT, starts $CALLS fail-on-crash and $CONTAINED contained calls,
// registers $TEMPS temp files, prints a readyLine as JSON and waits until
// its stdin closes (or it is killed). With $SKEW its wall clock is shifted.
// With $ABORT it sets the abort flag after reading a line from stdin.
func init() {
	roles["participant"] = runParticipant
}

type readyLine struct {
	Calls []string `json:"calls"`
	Temps []string `json:"temps"`
	PID   int      `json:"pid"`
}

func envDuration(name string, def time.Duration) time.Duration {
	if v := os.Getenv(name); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			panic(err)
		}
		return d
	}
	return def
}

func envInt(name string) int {
	n, _ := strconv.Atoi(os.Getenv(name))
	return n
}

func runParticipant() {
	ctx := context.Background()
	if skew := envDuration("SKEW", 0); skew != 0 {
		ledger.SetClockSkew(skew)
	}
	l, err := ledger.Connect(ctx, ledger.Options{
		BasePath:          os.Getenv("LEDGER_DIR"),
		ServerURL:         os.Getenv("SERVER_URL"),
		ParticipantID:     os.Getenv("PARTICIPANT"),
		HeartbeatInterval: envDuration("HB", 50*time.Millisecond),
		StaleThreshold:    envDuration("STALE", 400*time.Millisecond),
		LivenessPoll:      20 * time.Millisecond,
		NoSignalHandler:   true,
	})
	if err != nil {
		panic(err)
	}
	defer l.Close()
	var op *ledger.Operation
	if id := os.Getenv("LEDGER_OP"); id != "" {
		op, err = l.JoinOperation(ctx, id, ledger.JoinOptions{})
	} else {
		op, err = l.CreateOperation(ctx, ledger.CreateOptions{Description: "child-created"})
	}
	if err != nil {
		panic(err)
	}
	var ready readyLine
	var calls []*ledger.Call[int]
	ready.PID = os.Getpid()
	for i := range envInt("CALLS") + envInt("CONTAINED") {
		c, err := ledger.StartCall[int](ctx, op, ledger.CallOptions[int]{
			Description: "child call", Contained: i >= envInt("CALLS"),
		})
		if err != nil {
			panic(err)
		}
		ready.Calls = append(ready.Calls, c.ID())
		calls = append(calls, c)
	}
	for i := range envInt("TEMPS") {
		p := filepath.Join(os.Getenv("TEMP_DIR"), fmt.Sprintf("%s-%d.tmp", os.Getenv("PARTICIPANT"), i))
		if err := os.WriteFile(p, []byte("x"), 0o644); err != nil {
			panic(err)
		}
		if err := op.RegisterTempResource(ctx, p); err != nil {
			panic(err)
		}
		ready.Temps = append(ready.Temps, p)
	}
	if os.Getenv("LEDGER_OP") == "" {
		fmt.Printf("op %s\n", op.ID())
	}
	b, _ := json.Marshal(ready)
	fmt.Printf("%s\n", b)
	in := bufio.NewReader(os.Stdin)
	if os.Getenv("FAIL") != "" {
		if _, err := in.ReadString('\n'); err == nil {
			if err := calls[0].Fail(ctx, errors.New("child work broke")); err != nil {
				panic(err)
			}
			fmt.Println("failed")
		}
	}
	if os.Getenv("ABORT") != "" {
		if _, err := in.ReadString('\n'); err == nil {
			if err := op.SetAbortFlag(ctx, true); err != nil {
				panic(err)
			}
			fmt.Println("aborted")
		}
	}
	io.Copy(io.Discard, in)
}

// proc is a running participant child.
type proc struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	out   *bufio.Reader
	ready readyLine
	opID  string // set when the child created the operation
}

// startParticipant starts a participant child on the ledger of e and
// waits for its ready line.
func startParticipant(t *testing.T, e *env, opID, name string, env ...string) *proc {
	t.Helper()
	p := startProc(t, child(t, "participant", append([]string{
		e.childEnv(), "LEDGER_OP=" + opID, "PARTICIPANT=" + name, "TEMP_DIR=" + t.TempDir(),
	}, env...)...))
	line := p.readLine(t)
	if id, ok := strings.CutPrefix(line, "op "); ok {
		p.opID = id
		line = p.readLine(t)
	}
	if err := json.Unmarshal([]byte(line), &p.ready); err != nil {
		t.Fatalf("child ready line %q: %v", line, err)
	}
	return p
}

// startProc starts cmd with pipes to its stdin and stdout; the test's
// cleanup kills and reaps it.
func startProc(t *testing.T, cmd *exec.Cmd) *proc {
	t.Helper()
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proc{cmd: cmd, stdin: stdin, out: bufio.NewReader(stdout)}
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		p.cmd.Wait()
	})
	return p
}

func (p *proc) readLine(t *testing.T) string {
	t.Helper()
	line, err := p.out.ReadString('\n')
	if err != nil {
		t.Fatalf("reading from child: %v", err)
	}
	return strings.TrimSpace(line)
}

func (p *proc) kill9(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	p.cmd.Wait()
}

// survivor is an in-process participant with one fail-on-crash call whose
// callbacks are counted.
type survivor struct {
	op                                  *ledger.Operation
	call                                *ledger.Call[int]
	opFailed, cleanups, onFailure, stop atomic.Int32
}

func newSurvivor(t *testing.T, e *env, name, opID string, o ledger.Options) *survivor {
	t.Helper()
	ctx := context.Background()
	s := &survivor{}
	l := e.Open(name, o)
	op, err := l.JoinOperation(ctx, opID, ledger.JoinOptions{Callback: ledger.OperationCallback{
		OnFailure: func(*ledger.Operation, ledger.OperationFailedInfo) { s.onFailure.Add(1) },
	}})
	if err != nil {
		t.Fatal(err)
	}
	s.op = op
	s.call, err = ledger.StartCall[int](ctx, op, ledger.CallOptions[int]{
		Description: name + " work",
		Callback: ledger.CallCallback[int]{
			OnOperationFailed: func(ledger.OperationFailedInfo) { s.opFailed.Add(1) },
			OnCleanup:         func() { s.cleanups.Add(1) },
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// archived waits for the operation to be archived and returns its state.
func archived(t *testing.T, dir, id string) *ledger.Data {
	t.Helper()
	path := filepath.Join(dir, "backup", id, "operation.json")
	waitFor(t, 15*time.Second, "the operation to be archived", func() bool {
		_, err := os.Stat(path)
		return err == nil
	})
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var d ledger.Data
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatal(err)
	}
	return &d
}

func archivedLog(t *testing.T, dir, id string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "backup", id, "operation.log"))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// A survivor child process: joins $LEDGER_OP, starts one fail-on-crash
// call and registers one temp file, prints a readyLine, then waits for the
// operation to fail and prints a survivorReport.
func init() {
	roles["survivor"] = runSurvivor
}

type survivorReport struct {
	Failed    bool   `json:"failed"`
	OpFailed  int32  `json:"opFailed"`
	Cleanups  int32  `json:"cleanups"`
	OnFailure int32  `json:"onFailure"`
	Reason    string `json:"reason"`
	Cause     string `json:"cause"`
}

func runSurvivor() {
	ctx := context.Background()
	var rep survivorReport
	var opFailed, cleanups, onFailure atomic.Int32
	l, err := ledger.Connect(ctx, ledger.Options{
		BasePath: os.Getenv("LEDGER_DIR"), ServerURL: os.Getenv("SERVER_URL"),
		ParticipantID:     os.Getenv("PARTICIPANT"),
		HeartbeatInterval: 50 * time.Millisecond,
		StaleThreshold:    envDuration("STALE", 400*time.Millisecond),
		LivenessPoll:      20 * time.Millisecond,
		NoSignalHandler:   true,
	})
	if err != nil {
		panic(err)
	}
	defer l.Close()
	op, err := l.JoinOperation(ctx, os.Getenv("LEDGER_OP"), ledger.JoinOptions{Callback: ledger.OperationCallback{
		OnFailure: func(*ledger.Operation, ledger.OperationFailedInfo) { onFailure.Add(1) },
	}})
	if err != nil {
		panic(err)
	}
	if _, err := ledger.StartCall[int](ctx, op, ledger.CallOptions[int]{Callback: ledger.CallCallback[int]{
		OnOperationFailed: func(ledger.OperationFailedInfo) { opFailed.Add(1) },
		OnCleanup:         func() { cleanups.Add(1) },
	}}); err != nil {
		panic(err)
	}
	temp := filepath.Join(os.Getenv("TEMP_DIR"), os.Getenv("PARTICIPANT")+".tmp")
	if err := os.WriteFile(temp, []byte("x"), 0o644); err != nil {
		panic(err)
	}
	if err := op.RegisterTempResource(ctx, temp); err != nil {
		panic(err)
	}
	b, _ := json.Marshal(readyLine{Temps: []string{temp}, PID: os.Getpid()})
	fmt.Printf("%s\n", b)
	select {
	case <-op.Failed():
		rep.Failed = true
		// OnFailure runs right after Failed closes.
		for deadline := time.Now().Add(5 * time.Second); onFailure.Load() == 0 && time.Now().Before(deadline); {
			time.Sleep(5 * time.Millisecond)
		}
	case <-time.After(20 * time.Second):
	}
	info, _ := op.Failure()
	rep.OpFailed, rep.Cleanups, rep.OnFailure = opFailed.Load(), cleanups.Load(), onFailure.Load()
	rep.Reason = info.Reason
	if c := context.Cause(op.Context()); c != nil && errors.Is(c, ledger.ErrOperationFailed) {
		rep.Cause = "operation failed"
	}
	b, _ = json.Marshal(rep)
	fmt.Printf("%s\n", b)
}

func TestKill9FailsOperationAndCleansUp(t *testing.T) {
	ctx := context.Background()
	e := localEnv(t)
	// A long threshold: only the liveness lock can explain a fast verdict.
	o := ledger.Options{StaleThreshold: 30 * time.Second}
	init := e.Open("init", o)
	op, err := init.CreateOperation(ctx, ledger.CreateOptions{Description: "kill -9"})
	if err != nil {
		t.Fatal(err)
	}
	var survivors []*proc
	for i := range 3 {
		s := startProc(t, child(t, "survivor", e.childEnv(), "LEDGER_OP="+op.ID(),
			fmt.Sprintf("PARTICIPANT=s%d", i), "TEMP_DIR="+t.TempDir(), "STALE=30s"))
		if err := json.Unmarshal([]byte(s.readLine(t)), &s.ready); err != nil {
			t.Fatal(err)
		}
		survivors = append(survivors, s)
	}
	victim := startParticipant(t, e, op.ID(), "victim", "CALLS=2", "TEMPS=3", "STALE=30s")
	for _, p := range victim.ready.Temps {
		if _, err := os.Stat(p); err != nil {
			t.Fatal(err)
		}
	}
	victim.kill9(t)

	// Each survivor process reports once its Failed() has closed (or after
	// its own 20s deadline, reported as not failed).
	for i, s := range survivors {
		var rep survivorReport
		if err := json.Unmarshal([]byte(s.readLine(t)), &rep); err != nil {
			t.Fatal(err)
		}
		if !rep.Failed || rep.OpFailed != 1 || rep.Cleanups != 1 || rep.OnFailure != 1 {
			t.Fatalf("survivor %d: %+v; want Failed and each callback once", i, rep)
		}
		if !strings.Contains(rep.Reason, "victim") || rep.Cause != "operation failed" {
			t.Fatalf("survivor %d: reason %q, context cause %q", i, rep.Reason, rep.Cause)
		}
		if _, err := os.Stat(s.ready.Temps[0]); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("survivor %d's own temp file %s still there (%v)", i, s.ready.Temps[0], err)
		}
	}
	waitClosed(t, op.Failed(), 10*time.Second, "the initiator's Failed()")
	d := archived(t, e.dir, op.ID())
	if d.OperationState != "failed" {
		t.Fatalf("archived state %q, want failed", d.OperationState)
	}
	if d.DetectionTimestamp.IsZero() || d.RemovalTimestamp.IsZero() {
		t.Fatalf("timestamps: detection %v removal %v", d.DetectionTimestamp, d.RemovalTimestamp)
	}
	if d.Failure == nil || !slices.Equal(sorted(d.Failure.CrashedCallIDs), sorted(victim.ready.Calls)) {
		t.Fatalf("failure %+v, want crashed calls %v", d.Failure, victim.ready.Calls)
	}
	for _, p := range victim.ready.Temps {
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("temp file %s still there (%v)", p, err)
		}
	}
	evs := count(logEvents(archivedLog(t, e.dir, op.ID())))
	for _, ev := range []string{"CRASH_DETECTED", "CLEANUP_STARTED", "OPERATION_FAILED"} {
		if evs[ev] != 1 {
			t.Fatalf("log has %d %s, want 1 (events %v)", evs[ev], ev, evs)
		}
	}
}

func sorted(xs []string) []string {
	xs = slices.Clone(xs)
	slices.Sort(xs)
	return xs
}

func TestKill9OfContainedCallLetsOperationComplete(t *testing.T) {
	ctx := context.Background()
	forEachBackend(t, func(t *testing.T, e *env) {
		// Locally the liveness lock tells at once (a long threshold proves
		// it); a remote participant is judged by its heartbeat alone.
		o, stale := ledger.Options{StaleThreshold: 30 * time.Second}, "STALE=30s"
		if e.remote {
			o, stale = ledger.Options{}, "STALE=400ms"
		}
		init := e.Open("init", o)
		op, err := init.CreateOperation(ctx, ledger.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		victim := startParticipant(t, e, op.ID(), "victim", "CONTAINED=1", stale)
		victim.kill9(t)
		waitFor(t, 10*time.Second, "the contained frame to go", func() bool {
			d, err := op.State(ctx)
			if err != nil {
				t.Fatal(err)
			}
			return len(d.CallFrames) == 0 && d.Participants[1].State == "crashed"
		})
		select {
		case <-op.Failed():
			t.Fatal("operation failed after a contained crash")
		default:
		}
		if err := op.Complete(ctx); err != nil {
			t.Fatal(err)
		}
		if d := archived(t, e.dir, op.ID()); d.OperationState != "completed" {
			t.Fatalf("archived state %q, want completed", d.OperationState)
		}
	})
}

func TestSkewedClocksCauseNoVerdict(t *testing.T) {
	ctx := context.Background()
	forEachBackend(t, func(t *testing.T, e *env) {
		var beats atomic.Int32
		init := e.Open("init", ledger.Options{})
		op, err := init.CreateOperation(ctx, ledger.CreateOptions{Callback: ledger.OperationCallback{
			OnHeartbeatSuccess: func(*ledger.Operation, ledger.HeartbeatResult) { beats.Add(1) },
		}})
		if err != nil {
			t.Fatal(err)
		}
		startParticipant(t, e, op.ID(), "ahead", "CALLS=1", "SKEW=60s")
		startParticipant(t, e, op.ID(), "behind", "CALLS=1", "SKEW=-60s")
		// Three stale thresholds (400ms) worth of our beats (50ms).
		waitFor(t, 20*time.Second, "24 heartbeats", func() bool { return beats.Load() >= 24 })
		d, err := op.State(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if d.OperationState != "running" {
			t.Fatalf("state %s after skewed heartbeats", d.OperationState)
		}
		for _, p := range d.Participants {
			if p.State != "active" {
				t.Fatalf("participant %s is %s", p.ParticipantID, p.State)
			}
		}
	})
}

func TestOrphanSweptByNextOpen(t *testing.T) {
	e := localEnv(t)
	a := startParticipant(t, e, "", "a", "CALLS=1", "TEMPS=2")
	b := startParticipant(t, e, a.opID, "b", "CALLS=1")
	a.kill9(t)
	b.kill9(t)
	e.Open("sweeper", ledger.Options{})
	d := archived(t, e.dir, a.opID)
	if d.OperationState != "failed" || d.Failure == nil {
		t.Fatalf("swept state %s failure %+v", d.OperationState, d.Failure)
	}
	for _, p := range a.ready.Temps {
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("temp file %s still there", p)
		}
	}
}

func TestAbortReachesOtherProcesses(t *testing.T) {
	ctx := context.Background()
	forEachBackend(t, func(t *testing.T, e *env) {
		var onAbort atomic.Int32
		var hbErrs sync.Map
		init := e.Open("init", ledger.Options{})
		op, err := init.CreateOperation(ctx, ledger.CreateOptions{Callback: ledger.OperationCallback{
			OnAbort: func(*ledger.Operation) { onAbort.Add(1) },
			OnHeartbeatError: func(_ *ledger.Operation, err *ledger.HeartbeatError) {
				n, _ := hbErrs.LoadOrStore(err.Type, new(atomic.Int32))
				n.(*atomic.Int32).Add(1)
			},
		}})
		if err != nil {
			t.Fatal(err)
		}
		work := ledger.SpawnCall(op, func(ctx context.Context, _ *ledger.SpawnedCall[error]) (error, error) {
			<-ctx.Done()
			return context.Cause(ctx), nil
		}, ledger.CallOptions[error]{})
		p := startParticipant(t, e, op.ID(), "aborter", "ABORT=1")
		io.WriteString(p.stdin, "go\n")
		if line := p.readLine(t); line != "aborted" {
			t.Fatalf("child said %q", line)
		}
		waitClosed(t, op.Aborted(), 10*time.Second, "Aborted()")
		waitFor(t, 5*time.Second, "OnAbort", func() bool { return onAbort.Load() == 1 })
		if !errors.Is(context.Cause(op.Context()), ledger.ErrAborted) {
			t.Fatalf("context cause %v", context.Cause(op.Context()))
		}
		waitClosed(t, work.Done(), 5*time.Second, "the spawned call to end")
		if cause, ok := work.Result(); ok && !errors.Is(cause, ledger.ErrAborted) {
			t.Fatalf("spawned call saw cause %v", cause)
		} else if !ok && !errors.Is(work.Err(), ledger.ErrAborted) {
			t.Fatalf("spawned call ended with %v", work.Err())
		}
		waitFor(t, 5*time.Second, "the abortFlagSet heartbeat error", func() bool {
			_, ok := hbErrs.Load(ledger.HeartbeatAbortFlagSet)
			return ok
		})
		// Several more beats: abortFlagSet is reported once.
		for range 3 {
			if _, err := op.Heartbeat(ctx); err != nil {
				t.Fatal(err)
			}
		}
		n, _ := hbErrs.Load(ledger.HeartbeatAbortFlagSet)
		if got := n.(*atomic.Int32).Load(); got != 1 {
			t.Fatalf("abortFlagSet reported %d times", got)
		}
	})
}
