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

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

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

	require.NoError(t, ledger.Cleanup().Run(context.Background()), "Run")
	require.Equal(t, "third,first", strings.Join(ran, ","), "callbacks ran")
	require.NoError(t, ledger.Cleanup().Run(context.Background()), "second Run")
	require.Equal(t, "third,first", strings.Join(ran, ","), "after a second Run callbacks ran (each once)")
	add("fourth")
	require.NoError(t, ledger.Cleanup().Run(context.Background()), "third Run")
	assert.Equal(t, "third,first,fourth", strings.Join(ran, ","), "callbacks ran")
}

func TestCleanupRunCollectsErrors(t *testing.T) {
	errA, errB := errors.New("a failed"), errors.New("b failed")
	var ran []string
	registerCleanup(t, func(context.Context) error { ran = append(ran, "a"); return errA })
	registerCleanup(t, func(context.Context) error { ran = append(ran, "panic"); panic("boom") })
	registerCleanup(t, func(context.Context) error { ran = append(ran, "b"); return errB })
	registerCleanup(t, func(context.Context) error { ran = append(ran, "ok"); return nil })

	err := ledger.Cleanup().Run(context.Background())
	assert.Equal(t, "ok,b,panic,a", strings.Join(ran, ","), "callbacks ran: an error must not stop the rest")
	assert.ErrorIs(t, err, errA, "Run must return both callback errors")
	assert.ErrorIs(t, err, errB, "Run must return both callback errors")
	var pe *ledger.PanicError
	require.ErrorAs(t, err, &pe, "Run must return the panic")
	assert.Equal(t, "boom", pe.Value, "the panic's value")
}

func TestCleanupPassesContext(t *testing.T) {
	type key struct{}
	ctx := context.WithValue(context.Background(), key{}, "mine")
	var got any
	registerCleanup(t, func(ctx context.Context) error { got = ctx.Value(key{}); return nil })
	require.NoError(t, ledger.Cleanup().Run(ctx))
	assert.Equal(t, "mine", got, "the callback must see the context given to Run")
}

func TestCleanupRegisterNilAndUnknownIDs(t *testing.T) {
	assert.Zero(t, ledger.Cleanup().Register(nil), "Register(nil)")
	ledger.Cleanup().Unregister(0)
	ledger.Cleanup().Unregister(1 << 40)
	require.NoError(t, ledger.Cleanup().Run(context.Background()), "Run")
}

// tempLedger opens a local ledger in a temp directory with the signal
// handler off (the unit tests run in the test process itself).
func tempLedger(t testing.TB, participant string) ledger.Ledger {
	t.Helper()
	l, err := ledger.NewLocalLedger(ledger.Options{BasePath: t.TempDir(), ParticipantID: participant, NoSignalHandler: true})
	require.NoError(t, err)
	t.Cleanup(func() { l.Close() })
	return l
}

func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}

func writeFile(t testing.TB, path string) {
	t.Helper()
	require.NoError(t, os.MkdirAll(filepath.Dir(path), 0o755))
	require.NoError(t, os.WriteFile(path, []byte("x"), 0o644))
}

func TestCleanupRunRemovesTempResources(t *testing.T) {
	ctx := context.Background()
	l := tempLedger(t, "alice")
	op, err := l.CreateOperation(ctx, ledger.CreateOptions{})
	require.NoError(t, err)
	work := t.TempDir()
	file := filepath.Join(work, "file")
	dir := filepath.Join(work, "dir")
	kept := filepath.Join(work, "kept")
	writeFile(t, file)
	writeFile(t, filepath.Join(dir, "sub", "inner"))
	writeFile(t, kept)
	missing := filepath.Join(work, "never-created")
	for _, p := range []string{file, dir, kept, missing, filepath.Join(dir, "sub")} {
		require.NoError(t, op.RegisterTempResource(ctx, p))
	}
	require.NoError(t, op.UnregisterTempResource(ctx, kept))

	require.NoError(t, ledger.Cleanup().Run(ctx), "Run (missing paths must be skipped)")
	for _, p := range []string{file, dir} {
		assert.Falsef(t, exists(p), "%s still exists after Run", p)
	}
	assert.Truef(t, exists(kept), "unregistered %s was deleted", kept)
}

func TestCleanupTempResourcesFollowTheirOperations(t *testing.T) {
	ctx := context.Background()
	a, b := tempLedger(t, "alice"), tempLedger(t, "bob")
	opA, err := a.CreateOperation(ctx, ledger.CreateOptions{})
	require.NoError(t, err)
	opB, err := b.CreateOperation(ctx, ledger.CreateOptions{})
	require.NoError(t, err)
	work := t.TempDir()
	shared, onlyA := filepath.Join(work, "shared"), filepath.Join(work, "onlyA")
	for _, reg := range []struct {
		op   *ledger.Operation
		path string
	}{{opA, shared}, {opB, shared}, {opA, onlyA}} {
		require.NoError(t, reg.op.RegisterTempResource(ctx, reg.path))
	}
	// Registering twice on one operation and unregistering once forgets it
	// for that operation; bob still holds shared.
	require.NoError(t, opA.RegisterTempResource(ctx, shared))
	require.NoError(t, opA.UnregisterTempResource(ctx, shared))
	// Once alice leaves, her temp resources are no longer this process's
	// to delete.
	require.NoError(t, opA.Leave(ctx, ledger.LeaveOptions{}))
	writeFile(t, shared)
	writeFile(t, onlyA)

	require.NoError(t, ledger.Cleanup().Run(ctx), "Run")
	assert.Falsef(t, exists(shared), "%s, still registered by bob, was not deleted", shared)
	assert.Truef(t, exists(onlyA), "%s, registered only by an operation that was left, was deleted", onlyA)
}

func TestCleanupRelativeTempPathIsAbsolute(t *testing.T) {
	ctx := context.Background()
	l := tempLedger(t, "alice")
	op, err := l.CreateOperation(ctx, ledger.CreateOptions{})
	require.NoError(t, err)
	first, second := t.TempDir(), t.TempDir()
	writeFile(t, filepath.Join(first, "out.tmp"))
	writeFile(t, filepath.Join(second, "out.tmp"))
	t.Chdir(first)
	require.NoError(t, op.RegisterTempResource(ctx, "out.tmp"))
	t.Chdir(second)
	require.NoError(t, ledger.Cleanup().Run(ctx))
	assert.False(t, exists(filepath.Join(first, "out.tmp")), "the registered relative path was not deleted")
	assert.True(t, exists(filepath.Join(second, "out.tmp")), "a change of directory made Run delete another file")
}

func TestOptionsSignalGraceNegative(t *testing.T) {
	_, err := ledger.NewLocalLedger(ledger.Options{BasePath: t.TempDir(), SignalGrace: -time.Second})
	assert.ErrorContains(t, err, "Options.SignalGrace", "NewLocalLedger with negative SignalGrace must name the field")
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
	require.NoError(t, err)
	stdin, err := cmd.StdinPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
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
			require.Truef(t, ok, "child ended before printing %q", want)
			if line == want {
				return before
			}
			before = append(before, line)
		case <-deadline:
			require.Failf(t, "timed out", "child did not print %q within %v", want, childWait)
		}
	}
}

// signal sends sig to the child.
func (p *childProc) signal(t *testing.T, sig syscall.Signal) {
	t.Helper()
	require.NoError(t, p.cmd.Process.Signal(sig))
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
			require.Failf(t, "timed out", "child still running %v after the signal", childWait)
		}
	}
	p.cmd.Wait()
	p.state = p.cmd.ProcessState
	ws, ok := p.state.Sys().(syscall.WaitStatus)
	require.Truef(t, ok, "child ended with %v", p.state)
	require.Truef(t, ws.Signaled(), "child ended with %v, want killed by %v", p.state, sig)
	require.Equalf(t, sig, ws.Signal(), "child ended with %v", p.state)
}

// signalSurvivor creates the operation the child joins, as a participant whose
// stale threshold is far longer than the tests wait.
func signalSurvivor(t *testing.T) (dir string, op *ledger.Operation) {
	t.Helper()
	dir = t.TempDir()
	l, err := ledger.NewLocalLedger(ledger.Options{
		BasePath: dir, ParticipantID: "survivor",
		HeartbeatInterval: time.Second, StaleThreshold: childStale,
		// Temp roots of its own: the survivor may delete the temp
		// resources of a crashed child (the rule allows it), which would
		// hide whether the child deleted them itself.
		TempRoots: []string{t.TempDir()},
	})
	require.NoError(t, err)
	t.Cleanup(func() { l.Close() })
	op, err = l.CreateOperation(context.Background(), ledger.CreateOptions{Description: "signals"})
	require.NoError(t, err)
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
		require.ErrorIs(t, err, fs.ErrNotExist)
	}
	require.Failf(t, "no log", "no log of %s", id)
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
				assert.Falsef(t, exists(path), "temp resource %s survived the signal", path)
			}
			marker, err := os.ReadFile(filepath.Join(work, "marker"))
			require.NoError(t, err, "the cleanup callback did not run")
			assert.Equal(t, "temps present: true", string(marker), "the callback must run before the temp resources are deleted")

			var d *ledger.Data
			waitFor(t, childWait, "the survivor to see the child crashed", func() bool {
				d, err = op.State(ctx)
				require.NoError(t, err)
				return participantState(d, "child") == "crashed"
			})
			// The child reported itself: the crash is logged in its name.
			assert.Contains(t, operationLog(t, dir, op.ID()), "child CRASH_DETECTED child/", "no CRASH_DETECTED by the child in the log")
			if tc.failing {
				waitClosed(t, op.Failed(), childWait, "the operation to fail")
				info, _ := op.Failure()
				assert.Equalf(t, "child", info.ParticipantID, "failure %+v, want the child's call", info)
				return
			}
			assert.False(t, op.IsAborted(), "aborted after a contained call's crash")
			assert.Empty(t, d.CallFrames, "frames after a contained call's crash")
			assert.Equal(t, "running", d.OperationState, "state after a contained call's crash")
			select {
			case <-op.Failed():
				assert.Fail(t, "a contained call's crash failed the operation")
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

	assert.False(t, exists(filepath.Join(work, "slow-done")), "the slow callback completed")
	assert.False(t, exists(filepath.Join(work, "marker")), "the callback after the slow one ran")
	assert.True(t, exists(filepath.Join(work, "tmp-000")), "the cleanup went on after the second signal")
}

func TestSignalGraceBoundsCleanup(t *testing.T) {
	dir, op := signalSurvivor(t)
	work := t.TempDir()
	p := startSignalChild(t, modeStuck, dir, op.ID(), work)

	p.signal(t, syscall.SIGTERM)
	p.expect(t, "cleaning")
	p.diesFrom(t, syscall.SIGTERM)

	assert.False(t, exists(filepath.Join(work, "slow-done")), "the stuck callback completed")
	for _, path := range childTempPaths(work) {
		assert.Falsef(t, exists(path), "temp resource %s survived a cleanup past its grace", path)
	}
	waitFor(t, childWait, "the survivor to see the child crashed", func() bool {
		d, err := op.State(context.Background())
		require.NoError(t, err)
		return participantState(d, "child") == "crashed"
	})
}

func TestIgnoredSignalStaysIgnored(t *testing.T) {
	dir, op := signalSurvivor(t)
	work := t.TempDir()
	p := startSignalChild(t, modeIgnoreInt, dir, op.ID(), work)
	// Taking SIGINT would have made it no longer ignored.
	require.Equal(t, "SIGINT ignored: true", strings.Join(p.started, "\n"), "the child's first lines")

	p.signal(t, syscall.SIGTERM)
	p.diesFrom(t, syscall.SIGTERM)
	assert.True(t, exists(filepath.Join(work, "marker")), "SIGTERM did not run the cleanup")
}

func TestNoSignalHandlerLeavesSignalsAlone(t *testing.T) {
	dir, op := signalSurvivor(t)
	work := t.TempDir()
	p := startSignalChild(t, modeNoHandler, dir, op.ID(), work)

	p.signal(t, syscall.SIGTERM)
	p.diesFrom(t, syscall.SIGTERM)

	assert.False(t, exists(filepath.Join(work, "marker")), "the cleanup callback ran despite NoSignalHandler")
	for _, path := range childTempPaths(work) {
		assert.Truef(t, exists(path), "temp resource %s was deleted despite NoSignalHandler", path)
	}
}

func TestSignalAfterLastOperationEnds(t *testing.T) {
	dir, op := signalSurvivor(t)
	work := t.TempDir()
	p := startSignalChild(t, modeLeft, dir, op.ID(), work)

	p.signal(t, syscall.SIGTERM)
	p.diesFrom(t, syscall.SIGTERM)

	assert.False(t, exists(filepath.Join(work, "marker")), "the cleanup callback ran after the last operation was left")
	assert.True(t, exists(filepath.Join(work, "tmp-000")), "temp resources were deleted after the last operation was left")
	d, err := op.State(context.Background())
	require.NoError(t, err)
	assert.Equal(t, "left", participantState(d, "child"), "the child's record")
}
