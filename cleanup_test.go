package ledger_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tomdist/ledger"
)

// registerCleanup registers fn with the process-wide handler and
// unregisters it when the test ends, so that no test leaves callbacks to
// another.
func registerCleanup(t testing.TB, fn func(context.Context) error) ledger.CleanupID {
	t.Helper()
	id := ledger.Cleanup().Register(fn)
	t.Cleanup(func() { ledger.Cleanup().Unregister(id) })
	return id
}

func TestCleanupRunsNewestFirstOnce(t *testing.T) {
	var ran []string
	add := func(name string) ledger.CleanupID {
		return registerCleanup(t, func(context.Context) error {
			ran = append(ran, name)
			return nil
		})
	}
	add("first")
	second := add("second")
	add("third")
	ledger.Cleanup().Unregister(second)

	if err := ledger.Cleanup().Run(context.Background()); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if got, want := strings.Join(ran, ","), "third,first"; got != want {
		t.Fatalf("callbacks ran as %s, want %s", got, want)
	}
	if err := ledger.Cleanup().Run(context.Background()); err != nil {
		t.Fatalf("second Run: %v", err)
	}
	if got, want := strings.Join(ran, ","), "third,first"; got != want {
		t.Fatalf("after a second Run callbacks ran as %s, want %s (each once)", got, want)
	}
	add("fourth")
	if err := ledger.Cleanup().Run(context.Background()); err != nil {
		t.Fatalf("third Run: %v", err)
	}
	if got, want := strings.Join(ran, ","), "third,first,fourth"; got != want {
		t.Fatalf("callbacks ran as %s, want %s", got, want)
	}
}

func TestCleanupRunCollectsErrors(t *testing.T) {
	errA, errB := errors.New("a failed"), errors.New("b failed")
	var ran []string
	registerCleanup(t, func(context.Context) error { ran = append(ran, "a"); return errA })
	registerCleanup(t, func(context.Context) error { ran = append(ran, "panic"); panic("boom") })
	registerCleanup(t, func(context.Context) error { ran = append(ran, "b"); return errB })
	registerCleanup(t, func(context.Context) error { ran = append(ran, "ok"); return nil })

	err := ledger.Cleanup().Run(context.Background())
	if got, want := strings.Join(ran, ","), "ok,b,panic,a"; got != want {
		t.Fatalf("callbacks ran as %s, want %s: an error must not stop the rest", got, want)
	}
	if !errors.Is(err, errA) || !errors.Is(err, errB) {
		t.Fatalf("Run = %v, want both callback errors", err)
	}
	var pe *ledger.PanicError
	if !errors.As(err, &pe) || pe.Value != "boom" {
		t.Fatalf("Run = %v, want a *PanicError with value boom", err)
	}
}

func TestCleanupPassesContext(t *testing.T) {
	type key struct{}
	ctx := context.WithValue(context.Background(), key{}, "mine")
	var got any
	registerCleanup(t, func(ctx context.Context) error { got = ctx.Value(key{}); return nil })
	if err := ledger.Cleanup().Run(ctx); err != nil {
		t.Fatal(err)
	}
	if got != "mine" {
		t.Fatalf("callback saw context value %v, want the context given to Run", got)
	}
}

func TestCleanupRegisterNilAndUnknownIDs(t *testing.T) {
	if id := ledger.Cleanup().Register(nil); id != 0 {
		t.Fatalf("Register(nil) = %d, want 0", id)
	}
	ledger.Cleanup().Unregister(0)
	ledger.Cleanup().Unregister(1 << 40)
	if err := ledger.Cleanup().Run(context.Background()); err != nil {
		t.Fatalf("Run: %v", err)
	}
}

// tempLedger opens a local ledger in a temp directory with the signal
// handler off (the unit tests run in the test process itself).
func tempLedger(t testing.TB, participant string) ledger.Ledger {
	t.Helper()
	l, err := ledger.NewLocalLedger(ledger.Options{BasePath: t.TempDir(), ParticipantID: participant, NoSignalHandler: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}

func writeFile(t testing.TB, path string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestCleanupRunRemovesTempResources(t *testing.T) {
	ctx := context.Background()
	l := tempLedger(t, "alice")
	op, err := l.CreateOperation(ctx, ledger.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	work := t.TempDir()
	file := filepath.Join(work, "file")
	dir := filepath.Join(work, "dir")
	kept := filepath.Join(work, "kept")
	writeFile(t, file)
	writeFile(t, filepath.Join(dir, "sub", "inner"))
	writeFile(t, kept)
	missing := filepath.Join(work, "never-created")
	for _, p := range []string{file, dir, kept, missing, filepath.Join(dir, "sub")} {
		if err := op.RegisterTempResource(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	if err := op.UnregisterTempResource(ctx, kept); err != nil {
		t.Fatal(err)
	}

	if err := ledger.Cleanup().Run(ctx); err != nil {
		t.Fatalf("Run: %v (missing paths must be skipped)", err)
	}
	for _, p := range []string{file, dir} {
		if exists(p) {
			t.Errorf("%s still exists after Run", p)
		}
	}
	if !exists(kept) {
		t.Errorf("unregistered %s was deleted", kept)
	}
}

func TestCleanupTempResourcesFollowTheirOperations(t *testing.T) {
	ctx := context.Background()
	a, b := tempLedger(t, "alice"), tempLedger(t, "bob")
	opA, err := a.CreateOperation(ctx, ledger.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	opB, err := b.CreateOperation(ctx, ledger.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	work := t.TempDir()
	shared, onlyA := filepath.Join(work, "shared"), filepath.Join(work, "onlyA")
	for _, reg := range []struct {
		op   *ledger.Operation
		path string
	}{{opA, shared}, {opB, shared}, {opA, onlyA}} {
		if err := reg.op.RegisterTempResource(ctx, reg.path); err != nil {
			t.Fatal(err)
		}
	}
	// Registering twice on one operation and unregistering once forgets it
	// for that operation; bob still holds shared.
	if err := opA.RegisterTempResource(ctx, shared); err != nil {
		t.Fatal(err)
	}
	if err := opA.UnregisterTempResource(ctx, shared); err != nil {
		t.Fatal(err)
	}
	// Once alice leaves, her temp resources are no longer this process's
	// to delete.
	if err := opA.Leave(ctx, ledger.LeaveOptions{}); err != nil {
		t.Fatal(err)
	}
	writeFile(t, shared)
	writeFile(t, onlyA)

	if err := ledger.Cleanup().Run(ctx); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if exists(shared) {
		t.Errorf("%s, still registered by bob, was not deleted", shared)
	}
	if !exists(onlyA) {
		t.Errorf("%s, registered only by an operation that was left, was deleted", onlyA)
	}
}

func TestCleanupRelativeTempPathIsAbsolute(t *testing.T) {
	ctx := context.Background()
	l := tempLedger(t, "alice")
	op, err := l.CreateOperation(ctx, ledger.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	first, second := t.TempDir(), t.TempDir()
	writeFile(t, filepath.Join(first, "out.tmp"))
	writeFile(t, filepath.Join(second, "out.tmp"))
	t.Chdir(first)
	if err := op.RegisterTempResource(ctx, "out.tmp"); err != nil {
		t.Fatal(err)
	}
	t.Chdir(second)
	if err := ledger.Cleanup().Run(ctx); err != nil {
		t.Fatal(err)
	}
	if exists(filepath.Join(first, "out.tmp")) {
		t.Error("the registered relative path was not deleted")
	}
	if !exists(filepath.Join(second, "out.tmp")) {
		t.Error("a change of directory made Run delete another file")
	}
}

func TestOptionsSignalGraceNegative(t *testing.T) {
	_, err := ledger.NewLocalLedger(ledger.Options{BasePath: t.TempDir(), SignalGrace: -time.Second})
	if err == nil || !strings.Contains(err.Error(), "Options.SignalGrace") {
		t.Fatalf("NewLocalLedger with negative SignalGrace: %v, want an error naming the field", err)
	}
}

// The signal tests run a child process that joins an operation of the test
// process, holds a call, registers temp resources and a callback, prints
// "ready" and waits for a signal. The test process is the survivor: its
// stale threshold is long, so only the child's own report can make it see
// the child gone quickly.

const (
	childTemps     = 100
	childStale     = 30 * time.Second
	childWait      = 10 * time.Second // well below childStale
	signalChildRun = "signal-child"
)

// Child modes (env MODE).
const (
	modeFailing   = "failing"   // holds a fail-on-crash call
	modeContained = "contained" // holds a contained call
	modeSlow      = "slow"      // a callback that never returns; SignalGrace 1m
	modeStuck     = "stuck"     // a callback that never returns; SignalGrace 100ms
	modeNoHandler = "nohandler" // Options.NoSignalHandler
	modeLeft      = "left"      // leaves the operation before "ready"
	modeIgnoreInt = "ignoreint" // ignores SIGINT before joining
)

func init() { roles[signalChildRun] = signalChild }

func signalChild() {
	if err := runSignalChild(); err != nil {
		fmt.Fprintln(os.Stderr, "signal child:", err)
		os.Exit(2)
	}
	// Wait for the signal; should the test process go away, stdin ends.
	io.Copy(io.Discard, os.Stdin)
	os.Exit(3)
}

func runSignalChild() error {
	ctx := context.Background()
	mode, work := os.Getenv("MODE"), os.Getenv("WORK_DIR")
	o := ledger.Options{
		BasePath:          os.Getenv("LEDGER_DIR"),
		ParticipantID:     "child",
		HeartbeatInterval: time.Second,
		StaleThreshold:    childStale,
		NoSignalHandler:   mode == modeNoHandler,
	}
	switch mode {
	case modeSlow:
		o.SignalGrace = time.Minute
	case modeStuck:
		o.SignalGrace = 100 * time.Millisecond
	}
	l, err := ledger.NewLocalLedger(o)
	if err != nil {
		return err
	}
	if mode == modeIgnoreInt {
		signal.Ignore(syscall.SIGINT)
	}
	op, err := l.JoinOperation(ctx, os.Getenv("OP_ID"), ledger.JoinOptions{})
	if err != nil {
		return err
	}
	if mode == modeIgnoreInt {
		fmt.Printf("SIGINT ignored: %t\n", signal.Ignored(syscall.SIGINT))
	}
	if mode != modeLeft {
		if _, err := ledger.StartCall[int](ctx, op, ledger.CallOptions[int]{
			Description: "held by the child", Contained: mode == modeContained,
		}); err != nil {
			return err
		}
	}
	for i := range childTemps {
		p := filepath.Join(work, fmt.Sprintf("tmp-%03d", i))
		if err := os.WriteFile(p, []byte("temp"), 0o644); err != nil {
			return err
		}
		if err := op.RegisterTempResource(ctx, p); err != nil {
			return err
		}
	}
	dir := filepath.Join(work, "tmpdir")
	if err := os.MkdirAll(filepath.Join(dir, "sub"), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "sub", "inner"), []byte("temp"), 0o644); err != nil {
		return err
	}
	if err := op.RegisterTempResource(ctx, dir); err != nil {
		return err
	}
	ledger.Cleanup().Register(func(context.Context) error {
		// Callbacks run before the temp resources go.
		msg := fmt.Sprintf("temps present: %t", exists(filepath.Join(work, "tmp-000")))
		return os.WriteFile(filepath.Join(work, "marker"), []byte(msg), 0o644)
	})
	if mode == modeSlow || mode == modeStuck {
		ledger.Cleanup().Register(func(context.Context) error {
			fmt.Println("cleaning")
			<-make(chan struct{}) // until the process is killed
			return os.WriteFile(filepath.Join(work, "slow-done"), nil, 0o644)
		})
	}
	if mode == modeLeft {
		if err := op.Leave(ctx, ledger.LeaveOptions{}); err != nil {
			return err
		}
	}
	fmt.Println("ready")
	return nil
}

// childProc is a running signal child.
type childProc struct {
	cmd     *exec.Cmd
	lines   chan string // its stdout, line by line; closed when it ends
	started []string    // what it printed before "ready"
	state   *os.ProcessState
}

// startSignalChild runs the signal child in mode on operation opID of the
// ledger in ledgerDir, with its temp files in work, and waits until it is
// ready.
func startSignalChild(t *testing.T, mode, ledgerDir, opID, work string) *childProc {
	t.Helper()
	cmd := child(t, signalChildRun, "MODE="+mode, "LEDGER_DIR="+ledgerDir, "OP_ID="+opID, "WORK_DIR="+work)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &childProc{cmd: cmd, lines: make(chan string, 16)}
	go func() {
		defer close(p.lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			p.lines <- sc.Text()
		}
	}()
	t.Cleanup(func() {
		stdin.Close()
		if p.state == nil {
			cmd.Process.Kill()
			for range p.lines {
			}
			cmd.Wait()
		}
	})
	p.started = p.expect(t, "ready")
	return p
}

// expect waits for the child to print want, and returns the lines it
// printed before.
func (p *childProc) expect(t *testing.T, want string) (before []string) {
	t.Helper()
	deadline := time.After(childWait)
	for {
		select {
		case line, ok := <-p.lines:
			if !ok {
				t.Fatalf("child ended before printing %q", want)
			}
			if line == want {
				return before
			}
			before = append(before, line)
		case <-deadline:
			t.Fatalf("child did not print %q within %v", want, childWait)
		}
	}
}

// signal sends sig to the child.
func (p *childProc) signal(t *testing.T, sig syscall.Signal) {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
}

// diesFrom waits for the child to end and checks that sig killed it.
func (p *childProc) diesFrom(t *testing.T, sig syscall.Signal) {
	t.Helper()
	deadline := time.After(childWait)
	for open := true; open; {
		select {
		case line, ok := <-p.lines:
			if ok {
				t.Logf("child: %s", line)
			}
			open = ok
		case <-deadline:
			t.Fatalf("child still running %v after the signal", childWait)
		}
	}
	p.cmd.Wait()
	p.state = p.cmd.ProcessState
	ws, ok := p.state.Sys().(syscall.WaitStatus)
	if !ok || !ws.Signaled() || ws.Signal() != sig {
		t.Fatalf("child ended with %v, want killed by %v", p.state, sig)
	}
}

// signalSurvivor creates the operation the child joins, as a participant whose
// stale threshold is far longer than the tests wait.
func signalSurvivor(t *testing.T) (dir string, op *ledger.Operation) {
	t.Helper()
	dir = t.TempDir()
	l, err := ledger.NewLocalLedger(ledger.Options{
		BasePath: dir, ParticipantID: "survivor",
		HeartbeatInterval: time.Second, StaleThreshold: childStale,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	op, err = l.CreateOperation(context.Background(), ledger.CreateOptions{Description: "signals"})
	if err != nil {
		t.Fatal(err)
	}
	return dir, op
}

// participantState returns the state of participant id in d.
func participantState(d *ledger.Data, id string) string {
	for _, p := range d.Participants {
		if p.ParticipantID == id {
			return p.State
		}
	}
	return ""
}

// operationLog returns the operation log, live or archived.
func operationLog(t *testing.T, dir, id string) string {
	t.Helper()
	for _, p := range []string{
		filepath.Join(dir, id+".operation.log"),
		filepath.Join(dir, "backup", id, "operation.log"),
	} {
		b, err := os.ReadFile(p)
		if err == nil {
			return string(b)
		}
		if !errors.Is(err, fs.ErrNotExist) {
			t.Fatal(err)
		}
	}
	t.Fatalf("no log of %s", id)
	return ""
}

// childTempPaths returns the temp resources the child registers.
func childTempPaths(work string) []string {
	var paths []string
	for i := range childTemps {
		paths = append(paths, filepath.Join(work, fmt.Sprintf("tmp-%03d", i)))
	}
	return append(paths, filepath.Join(work, "tmpdir"))
}

func TestSignalRunsCleanupAndReportsParticipantGone(t *testing.T) {
	for _, tc := range []struct {
		name    string
		sig     syscall.Signal
		mode    string
		failing bool // the child's call fails the operation on crash
	}{
		{"SIGTERM/fail-on-crash call", syscall.SIGTERM, modeFailing, true},
		{"SIGINT/contained call", syscall.SIGINT, modeContained, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			dir, op := signalSurvivor(t)
			work := t.TempDir()
			p := startSignalChild(t, tc.mode, dir, op.ID(), work)

			p.signal(t, tc.sig)
			p.diesFrom(t, tc.sig)

			for _, path := range childTempPaths(work) {
				if exists(path) {
					t.Errorf("temp resource %s survived the signal", path)
				}
			}
			marker, err := os.ReadFile(filepath.Join(work, "marker"))
			if err != nil {
				t.Fatalf("the cleanup callback did not run: %v", err)
			}
			if got := string(marker); got != "temps present: true" {
				t.Errorf("callback saw %q, want it to run before the temp resources were deleted", got)
			}

			var d *ledger.Data
			waitFor(t, childWait, "the survivor to see the child crashed", func() bool {
				d, err = op.State(ctx)
				if err != nil {
					t.Fatal(err)
				}
				return participantState(d, "child") == "crashed"
			})
			// The child reported itself: the crash is logged in its name.
			if !strings.Contains(operationLog(t, dir, op.ID()), "child CRASH_DETECTED child/") {
				t.Errorf("no CRASH_DETECTED by the child in the log:\n%s", operationLog(t, dir, op.ID()))
			}
			if tc.failing {
				waitClosed(t, op.Failed(), childWait, "the operation to fail")
				if info, _ := op.Failure(); info.ParticipantID != "child" {
					t.Errorf("failure %+v, want the child's call", info)
				}
				return
			}
			if op.IsAborted() || len(d.CallFrames) != 0 || d.OperationState != "running" {
				t.Errorf("after a contained call's crash: state %s, frames %v; want running, no frames", d.OperationState, d.CallFrames)
			}
			select {
			case <-op.Failed():
				t.Error("a contained call's crash failed the operation")
			default:
			}
		})
	}
}

func TestSecondSignalEndsProcessAtOnce(t *testing.T) {
	dir, op := signalSurvivor(t)
	work := t.TempDir()
	p := startSignalChild(t, modeSlow, dir, op.ID(), work)

	p.signal(t, syscall.SIGINT)
	p.expect(t, "cleaning") // the slow callback runs, and would for a minute
	p.signal(t, syscall.SIGINT)
	p.diesFrom(t, syscall.SIGINT)

	if exists(filepath.Join(work, "slow-done")) {
		t.Error("the slow callback completed")
	}
	if exists(filepath.Join(work, "marker")) {
		t.Error("the callback after the slow one ran")
	}
	if !exists(filepath.Join(work, "tmp-000")) {
		t.Error("the cleanup went on after the second signal")
	}
}

func TestSignalGraceBoundsCleanup(t *testing.T) {
	dir, op := signalSurvivor(t)
	work := t.TempDir()
	p := startSignalChild(t, modeStuck, dir, op.ID(), work)

	p.signal(t, syscall.SIGTERM)
	p.expect(t, "cleaning")
	p.diesFrom(t, syscall.SIGTERM)

	if exists(filepath.Join(work, "slow-done")) {
		t.Error("the stuck callback completed")
	}
	for _, path := range childTempPaths(work) {
		if exists(path) {
			t.Errorf("temp resource %s survived a cleanup past its grace", path)
		}
	}
	waitFor(t, childWait, "the survivor to see the child crashed", func() bool {
		d, err := op.State(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		return participantState(d, "child") == "crashed"
	})
}

func TestIgnoredSignalStaysIgnored(t *testing.T) {
	dir, op := signalSurvivor(t)
	work := t.TempDir()
	p := startSignalChild(t, modeIgnoreInt, dir, op.ID(), work)
	// Taking SIGINT would have made it no longer ignored.
	if got, want := strings.Join(p.started, "\n"), "SIGINT ignored: true"; got != want {
		t.Fatalf("child printed %q, want %q", got, want)
	}

	p.signal(t, syscall.SIGTERM)
	p.diesFrom(t, syscall.SIGTERM)
	if !exists(filepath.Join(work, "marker")) {
		t.Error("SIGTERM did not run the cleanup")
	}
}

func TestNoSignalHandlerLeavesSignalsAlone(t *testing.T) {
	dir, op := signalSurvivor(t)
	work := t.TempDir()
	p := startSignalChild(t, modeNoHandler, dir, op.ID(), work)

	p.signal(t, syscall.SIGTERM)
	p.diesFrom(t, syscall.SIGTERM)

	if exists(filepath.Join(work, "marker")) {
		t.Error("the cleanup callback ran despite NoSignalHandler")
	}
	for _, path := range childTempPaths(work) {
		if !exists(path) {
			t.Errorf("temp resource %s was deleted despite NoSignalHandler", path)
		}
	}
}

func TestSignalAfterLastOperationEnds(t *testing.T) {
	dir, op := signalSurvivor(t)
	work := t.TempDir()
	p := startSignalChild(t, modeLeft, dir, op.ID(), work)

	p.signal(t, syscall.SIGTERM)
	p.diesFrom(t, syscall.SIGTERM)

	if exists(filepath.Join(work, "marker")) {
		t.Error("the cleanup callback ran after the last operation was left")
	}
	if !exists(filepath.Join(work, "tmp-000")) {
		t.Error("temp resources were deleted after the last operation was left")
	}
	d, err := op.State(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if got := participantState(d, "child"); got != "left" {
		t.Errorf("child's record is %q, want left", got)
	}
}
