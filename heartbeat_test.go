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
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

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
			archive := os.Getenv("FAIL_ARCHIVE") == ""
			if !archive {
				// The failure's records are appended, its archive marker
				// is not: as if this process were killed in between.
				var appends atomic.Int32
				ledger.SetWriteFault(func(string) error {
					if appends.Add(1) > 1 {
						return errors.New("injected: no archive marker")
					}
					return nil
				})
			}
			if err := calls[0].Fail(ctx, errors.New("child work broke")); err != nil && archive {
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
	require.NoErrorf(t, json.Unmarshal([]byte(line), &p.ready), "child ready line %q", line)
	return p
}

// startProc starts cmd with pipes to its stdin and stdout; the test's
// cleanup kills and reaps it.
func startProc(t *testing.T, cmd *exec.Cmd) *proc {
	t.Helper()
	stdin, err := cmd.StdinPipe()
	require.NoError(t, err)
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
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
	require.NoError(t, err, "reading from child")
	return strings.TrimSpace(line)
}

func (p *proc) kill9(t *testing.T) {
	t.Helper()
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGKILL))
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
	require.NoError(t, err)
	s.op = op
	s.call, err = ledger.StartCall[int](ctx, op, ledger.CallOptions[int]{
		Description: name + " work",
		Callback: ledger.CallCallback[int]{
			OnOperationFailed: func(ledger.OperationFailedInfo) { s.opFailed.Add(1) },
			OnCleanup:         func() { s.cleanups.Add(1) },
		},
	})
	require.NoError(t, err)
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
	require.NoError(t, err)
	var d ledger.Data
	require.NoError(t, json.Unmarshal(b, &d))
	return &d
}

func archivedLog(t *testing.T, dir, id string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "backup", id, "operation.log"))
	require.NoError(t, err)
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
	require.NoError(t, err)
	var survivors []*proc
	for i := range 3 {
		s := startProc(t, child(t, "survivor", e.childEnv(), "LEDGER_OP="+op.ID(),
			fmt.Sprintf("PARTICIPANT=s%d", i), "TEMP_DIR="+t.TempDir(), "STALE=30s"))
		require.NoError(t, json.Unmarshal([]byte(s.readLine(t)), &s.ready))
		survivors = append(survivors, s)
	}
	victim := startParticipant(t, e, op.ID(), "victim", "CALLS=2", "TEMPS=3", "STALE=30s")
	for _, p := range victim.ready.Temps {
		_, err := os.Stat(p)
		require.NoError(t, err)
	}
	victim.kill9(t)

	// Each survivor process reports once its Failed() has closed (or after
	// its own 20s deadline, reported as not failed).
	for i, s := range survivors {
		var rep survivorReport
		require.NoError(t, json.Unmarshal([]byte(s.readLine(t)), &rep))
		assert.Truef(t, rep.Failed, "survivor %d did not see the failure: %+v", i, rep)
		assert.Equalf(t, int32(1), rep.OpFailed, "survivor %d: OnOperationFailed calls", i)
		assert.Equalf(t, int32(1), rep.Cleanups, "survivor %d: OnCleanup calls", i)
		assert.Equalf(t, int32(1), rep.OnFailure, "survivor %d: OnFailure calls", i)
		assert.Containsf(t, rep.Reason, "victim", "survivor %d: reason", i)
		assert.Equalf(t, "operation failed", rep.Cause, "survivor %d: context cause", i)
		_, err := os.Stat(s.ready.Temps[0])
		assert.ErrorIsf(t, err, os.ErrNotExist, "survivor %d's own temp file %s still there", i, s.ready.Temps[0])
	}
	waitClosed(t, op.Failed(), 10*time.Second, "the initiator's Failed()")
	d := archived(t, e.dir, op.ID())
	assert.Equal(t, "failed", d.OperationState, "archived state")
	assert.False(t, d.DetectionTimestamp.IsZero(), "no detection timestamp")
	assert.False(t, d.RemovalTimestamp.IsZero(), "no removal timestamp")
	require.NotNil(t, d.Failure, "failure")
	assert.ElementsMatch(t, victim.ready.Calls, d.Failure.CrashedCallIDs, "crashed calls")
	for _, p := range victim.ready.Temps {
		_, err := os.Stat(p)
		assert.ErrorIsf(t, err, os.ErrNotExist, "temp file %s still there", p)
	}
	evs := count(logEvents(archivedLog(t, e.dir, op.ID())))
	for _, ev := range []string{"CRASH_DETECTED", "CLEANUP_STARTED", "OPERATION_FAILED"} {
		assert.Equalf(t, 1, evs[ev], "%s in the log (events %v)", ev, evs)
	}
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
		require.NoError(t, err)
		victim := startParticipant(t, e, op.ID(), "victim", "CONTAINED=1", stale)
		victim.kill9(t)
		waitFor(t, 10*time.Second, "the contained frame to go", func() bool {
			d, err := op.State(ctx)
			require.NoError(t, err)
			return len(d.CallFrames) == 0 && d.Participants[1].State == "crashed"
		})
		select {
		case <-op.Failed():
			require.Fail(t, "operation failed after a contained crash")
		default:
		}
		require.NoError(t, op.Complete(ctx))
		assert.Equal(t, "completed", archived(t, e.dir, op.ID()).OperationState, "archived state")
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
		require.NoError(t, err)
		startParticipant(t, e, op.ID(), "ahead", "CALLS=1", "SKEW=60s")
		startParticipant(t, e, op.ID(), "behind", "CALLS=1", "SKEW=-60s")
		// Three stale thresholds (400ms) worth of our beats (50ms).
		waitFor(t, 20*time.Second, "24 heartbeats", func() bool { return beats.Load() >= 24 })
		d, err := op.State(ctx)
		require.NoError(t, err)
		assert.Equal(t, "running", d.OperationState, "state after skewed heartbeats")
		for _, p := range d.Participants {
			assert.Equalf(t, "active", p.State, "participant %s", p.ParticipantID)
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
	assert.Equal(t, "failed", d.OperationState, "swept state")
	assert.NotNil(t, d.Failure, "swept failure")
	for _, p := range a.ready.Temps {
		_, err := os.Stat(p)
		assert.ErrorIsf(t, err, os.ErrNotExist, "temp file %s still there", p)
	}
}

// TestFinishedOrphanSweptByNextOpen: an operation whose failure was
// recorded but not archived, its writer killed in between, with nobody
// left, is archived by the next ledger that opens the directory.
func TestFinishedOrphanSweptByNextOpen(t *testing.T) {
	e := localEnv(t)
	a := startParticipant(t, e, "", "a", "CALLS=1", "FAIL=1", "FAIL_ARCHIVE=1")
	io.WriteString(a.stdin, "go\n")
	require.Equal(t, "failed", a.readLine(t), "the child's answer")
	a.kill9(t)
	_, err := os.Stat(filepath.Join(e.dir, a.opID+".operation.journal"))
	require.NoError(t, err, "the failed operation is not archived before the sweep")
	e.Open("sweeper", ledger.Options{})
	d := archived(t, e.dir, a.opID)
	assert.Equal(t, "failed", d.OperationState, "swept state")
	assert.Contains(t, d.Failure.Reason, "child work broke", "the failure is the one recorded")
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
		require.NoError(t, err)
		work := ledger.SpawnCall(op, func(ctx context.Context, _ *ledger.SpawnedCall[error]) (error, error) {
			<-ctx.Done()
			return context.Cause(ctx), nil
		}, ledger.CallOptions[error]{})
		p := startParticipant(t, e, op.ID(), "aborter", "ABORT=1")
		io.WriteString(p.stdin, "go\n")
		require.Equal(t, "aborted", p.readLine(t), "the child's answer")
		waitClosed(t, op.Aborted(), 10*time.Second, "Aborted()")
		waitFor(t, 5*time.Second, "OnAbort", func() bool { return onAbort.Load() == 1 })
		require.ErrorIs(t, context.Cause(op.Context()), ledger.ErrAborted, "context cause")
		waitClosed(t, work.Done(), 5*time.Second, "the spawned call to end")
		if cause, ok := work.Result(); ok {
			require.ErrorIs(t, cause, ledger.ErrAborted, "the cause the spawned call saw")
		} else {
			require.ErrorIs(t, work.Err(), ledger.ErrAborted, "the error the spawned call ended with")
		}
		waitFor(t, 5*time.Second, "the abortFlagSet heartbeat error", func() bool {
			_, ok := hbErrs.Load(ledger.HeartbeatAbortFlagSet)
			return ok
		})
		// Several more beats: abortFlagSet is reported once.
		for range 3 {
			_, err := op.Heartbeat(ctx)
			require.NoError(t, err)
		}
		n, _ := hbErrs.Load(ledger.HeartbeatAbortFlagSet)
		assert.Equal(t, int32(1), n.(*atomic.Int32).Load(), "abortFlagSet reports")
	})
}
