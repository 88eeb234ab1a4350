//go:build linux

package ledger_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tomdist/ledger"
)

// The roles a worker process plays in these tests. Each is the test binary
// re-executed (see TestMain); the W_ variables steer it.
const (
	// roleEcho writes $W_STDOUT and $W_STDERR, writes $W_FILE_CONTENT to
	// $W_FILE (by rename) if $W_FILE is set, then blocks if $W_LINGER is
	// set, else exits with status $W_EXIT.
	roleEcho = "worker-echo"
	// roleBlock prints "pid <pid>" (unless $W_QUIET) and blocks until a
	// signal ends it; with $W_TERM_FILE it writes that file on SIGTERM and
	// exits, else with $W_IGNORE_TERM it ignores SIGTERM; with
	// $W_MOVE it first moves to its parent's process group.
	roleBlock = "worker-block"
	// roleTree starts a roleBlock grandchild that ignores SIGTERM and shares
	// its stdout, then prints "pid <pid>" and blocks. With $W_ESCAPE the
	// grandchild runs in a session of its own (outside the worker's process
	// group) and prints nothing, and the worker prints {"grandchild": pid}
	// and exits 0. With $W_LEAVE the worker passes on the
	// grandchild's pid line, prints its own and exits 0, leaving the
	// grandchild behind.
	roleTree = "worker-tree"
	// roleJoin joins the operation with JoinFromEnv, runs a tracked call
	// and prints a joinReport.
	roleJoin = "worker-join"
	// roleEnvDump prints the ledger variables it got as a JSON object.
	roleEnvDump = "worker-env"
	// roleOrchestrator opens the ledger $W_DIR, creates an operation and
	// runs a roleBlock worker ($W_TREE: a roleTree worker) with KillGrace
	// $W_GRACE, printing the worker's stdout lines, then blocks. Its
	// Options.SignalGrace is $W_SIGNAL_GRACE.
	roleOrchestrator = "worker-orchestrator"
)

func init() {
	roles[roleEcho] = echoWorker
	roles[roleBlock] = blockWorker
	roles[roleTree] = treeWorker
	roles[roleJoin] = joinWorker
	roles[roleEnvDump] = envWorker
	roles[roleOrchestrator] = orchestrator
}

// block keeps a child process alive until a signal ends it, or exits with
// status 3 after a minute should nobody end it.
func block() {
	time.Sleep(time.Minute)
	os.Exit(3)
}

func echoWorker() {
	os.Stdout.WriteString(os.Getenv("W_STDOUT"))
	os.Stderr.WriteString(os.Getenv("W_STDERR"))
	if path := os.Getenv("W_FILE"); path != "" {
		tmp := path + ".tmp"
		if err := os.WriteFile(tmp, []byte(os.Getenv("W_FILE_CONTENT")), 0o644); err != nil {
			panic(err)
		}
		if err := os.Rename(tmp, path); err != nil {
			panic(err)
		}
	}
	if os.Getenv("W_LINGER") != "" {
		fmt.Printf("pid %d\n", os.Getpid())
		block()
	}
	code, _ := strconv.Atoi(os.Getenv("W_EXIT"))
	os.Exit(code)
}

func blockWorker() {
	if os.Getenv("W_MOVE") != "" {
		// The worker leads its group and may not setsid; it may move to
		// the group of its parent, in the same session.
		pg, err := syscall.Getpgid(os.Getppid())
		if err == nil {
			err = syscall.Setpgid(0, pg)
		}
		if err != nil {
			panic(err)
		}
	}
	if path := os.Getenv("W_TERM_FILE"); path != "" {
		term := make(chan os.Signal, 1)
		signal.Notify(term, syscall.SIGTERM)
		go func() {
			<-term
			os.WriteFile(path, []byte("SIGTERM"), 0o644)
			os.Exit(0)
		}()
	} else if os.Getenv("W_IGNORE_TERM") != "" {
		signal.Ignore(syscall.SIGTERM)
	}
	if os.Getenv("W_QUIET") == "" {
		fmt.Printf("pid %d\n", os.Getpid())
	}
	block()
}

func treeWorker() {
	gc := exec.Command(os.Args[0], "-test.run=^$")
	gc.Env = append(os.Environ(), roleEnv+"="+roleBlock, "W_IGNORE_TERM=1")
	gc.Stdout, gc.Stderr = os.Stdout, os.Stderr
	if os.Getenv("W_LEAVE") != "" {
		// Pass on the grandchild's pid once it ignores SIGTERM, then leave
		// it behind in the group.
		gc.Stdout = nil
		out, err := gc.StdoutPipe()
		if err != nil {
			panic(err)
		}
		if err := gc.Start(); err != nil {
			panic(err)
		}
		line, err := bufio.NewReader(out).ReadString('\n')
		if err != nil {
			panic(err)
		}
		fmt.Print(line)
		fmt.Printf("pid %d\n", os.Getpid())
		os.Exit(0)
	}
	escape := os.Getenv("W_ESCAPE") != ""
	if escape {
		gc.Env = append(gc.Env, "W_QUIET=1")
	}
	gc.SysProcAttr = &syscall.SysProcAttr{Setsid: escape}
	if err := gc.Start(); err != nil {
		panic(err)
	}
	if escape {
		fmt.Printf("{\"grandchild\": %d}\n", gc.Process.Pid)
		os.Exit(0)
	}
	fmt.Printf("pid %d\n", os.Getpid())
	block()
}

// joinReport is what roleJoin prints.
type joinReport struct {
	Operation   string `json:"operation"`
	Call        string `json:"call"`
	Participant string `json:"participant"`
	SawFrame    bool   `json:"sawFrame"`
	Initiator   bool   `json:"initiator"`
}

func joinWorker() {
	if err := runJoinWorker(); err != nil {
		fmt.Fprintln(os.Stderr, "join worker:", err)
		os.Exit(1)
	}
}

func runJoinWorker() error {
	ctx := context.Background()
	l, op, err := ledger.JoinFromEnv(ctx, ledger.Options{ParticipantID: "joiner"}, ledger.JoinOptions{})
	if err != nil {
		return err
	}
	defer l.Close()
	call, err := ledger.StartCall[int](ctx, op, ledger.CallOptions[int]{Description: "inside the worker"})
	if err != nil {
		return err
	}
	d, err := op.State(ctx)
	if err != nil {
		return err
	}
	r := joinReport{
		Operation: op.ID(), Call: os.Getenv(ledger.EnvCallID), Participant: op.ParticipantID(), Initiator: op.IsInitiator(),
		SawFrame: slices.ContainsFunc(d.CallFrames, func(f ledger.CallFrame) bool { return f.CallID == call.ID() }),
	}
	if err := call.End(ctx, 1); err != nil {
		return err
	}
	if err := op.Leave(ctx, ledger.LeaveOptions{}); err != nil {
		return err
	}
	return json.NewEncoder(os.Stdout).Encode(r)
}

func envWorker() {
	m := map[string]string{}
	for _, k := range []string{ledger.EnvOperationID, ledger.EnvCallID, ledger.EnvBasePath, ledger.EnvServerURL} {
		m[k] = os.Getenv(k)
	}
	if v := os.Getenv(ledger.TokenEnv); v != "" {
		m[ledger.TokenEnv] = v
	}
	json.NewEncoder(os.Stdout).Encode(m)
}

func orchestrator() {
	ctx := context.Background()
	signalGrace, _ := time.ParseDuration(os.Getenv("W_SIGNAL_GRACE"))
	l, err := ledger.Connect(ctx, ledger.Options{BasePath: os.Getenv("W_DIR"), ParticipantID: "orchestrator", SignalGrace: signalGrace})
	if err != nil {
		panic(err)
	}
	op, err := l.CreateOperation(ctx, ledger.CreateOptions{})
	if err != nil {
		panic(err)
	}
	role := roleBlock
	if os.Getenv("W_TREE") != "" {
		role = roleTree
	}
	grace, _ := time.ParseDuration(os.Getenv("W_GRACE"))
	ledger.ExecStdioWorker(op, ledger.StdioWorker[string]{
		Process: ledger.Process{
			Executable: os.Args[0],
			Args:       []string{"-test.run=^$"},
			Env:        []string{"LEDGER_TEST_ROLE=" + role},
			KillGrace:  grace,
			OnStdout:   func(line string) { fmt.Println(line) },
		},
	})
	block()
}

// workerWait is how long a test waits for an event of a worker process.
const workerWait = 10 * time.Second

// testWorker returns the executable, arguments and environment that run
// the test binary as a worker in role, with extra variables kv. (A race
// build sleeps a second before a clean exit unless told not to.)
func testWorker(role string, kv ...string) (string, []string, []string) {
	env := []string{roleEnv + "=" + role, "GORACE=" + os.Getenv("GORACE") + " atexit_sleep_ms=0"}
	return os.Args[0], []string{"-test.run=^$"}, append(env, kv...)
}

// workerOp opens a ledger for the orchestrator on e and creates an
// operation.
func workerOp(t *testing.T, e *env) (ledger.Ledger, *ledger.Operation) {
	t.Helper()
	l := e.Open("orchestrator", ledger.Options{})
	op, err := l.CreateOperation(context.Background(), ledger.CreateOptions{Description: "worker test"})
	require.NoError(t, err)
	return l, op
}

// pidLines collects the "pid N" lines of worker output.
type pidLines chan int

func newPidLines() pidLines { return make(pidLines, 16) }

// hook is an OnStdout that passes the pids on.
func (p pidLines) hook(line string) {
	if s, ok := strings.CutPrefix(line, "pid "); ok {
		if pid, err := strconv.Atoi(s); err == nil {
			p <- pid
		}
	}
}

// next waits for the next pid.
func (p pidLines) next(t *testing.T) int {
	t.Helper()
	select {
	case pid := <-p:
		return pid
	case <-time.After(workerWait):
		require.Failf(t, "timed out", "no pid from the worker after %v", workerWait)
		return 0
	}
}

// procStat returns the state and parent of process pid from /proc.
func procStat(pid int) (state byte, ppid int, ok bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, false
	}
	i := strings.LastIndexByte(string(b), ')')
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 2 {
		return 0, 0, false
	}
	ppid, _ = strconv.Atoi(f[1])
	return f[0][0], ppid, true
}

// gone reports whether process pid has ended: kill(pid, 0) fails with
// ESRCH, or the process is a zombie that is not ours (an orphan waiting for
// init, which reaps at its own pace, to collect it). A zombie of this
// process is not gone: the library must reap its workers.
func gone(pid int) bool {
	if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
		return true
	}
	state, ppid, ok := procStat(pid)
	return ok && state == 'Z' && ppid != os.Getpid()
}

// waitGone waits until every pid has ended.
func waitGone(t *testing.T, pids ...int) {
	t.Helper()
	for _, pid := range pids {
		waitFor(t, workerWait, fmt.Sprintf("process %d to end", pid), func() bool { return gone(pid) })
	}
}

// killAtEnd makes sure a process the test started indirectly is gone when
// the test ends, whatever happened: if pid still runs the test binary, it
// gets SIGKILL.
func killAtEnd(t *testing.T, pid int) {
	t.Cleanup(func() {
		self, err1 := os.Readlink("/proc/self/exe")
		exe, err2 := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
		if err1 == nil && err2 == nil && exe == self {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	})
}

// myZombies returns the children of this process that are zombies.
func myZombies(t *testing.T) []int {
	t.Helper()
	ents, err := os.ReadDir("/proc")
	require.NoError(t, err)
	var zs []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if state, ppid, ok := procStat(pid); ok && ppid == os.Getpid() && state == 'Z' {
			zs = append(zs, pid)
		}
	}
	return zs
}

type result struct {
	N int    `json:"n"`
	S string `json:"s"`
}

func TestStdioWorkerResult(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		_, op := workerOp(t, e)
		exe, args, env := testWorker(roleEcho, `W_STDOUT={"n": 7, "s": "seven"}`+"\n")
		call := ledger.ExecStdioWorker(op, ledger.StdioWorker[result]{Process: ledger.Process{Executable: exe, Args: args, Env: env}})
		v, err := call.Wait(ctx)
		require.NoError(t, err)
		require.Equal(t, result{7, "seven"}, v, "Wait")
		assert.Equal(t, filepath.Base(exe), call.Description(), "description, want the executable's base name")
		assert.Equal(t, []string{"CALL_SPAWNED", "CALL_COMPLETED"}, callEvents(t, e, op.ID(), call.ID()), "events")
	})
}

func TestStdioWorkerRawResults(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		_, op := workerOp(t, e)
		exe, args, env := testWorker(roleEcho, "W_STDOUT=two\nlines\r\n\n")
		s, err := ledger.ExecStdioWorker(op, ledger.StdioWorker[string]{Process: ledger.Process{Executable: exe, Args: args, Env: env}, CallOptions: ledger.CallOptions[string]{Description: "text"}}).Wait(ctx)
		require.NoError(t, err, "string result")
		require.Equal(t, "two\nlines", s, "string result, want the text without trailing line breaks")
		b, err := ledger.ExecStdioWorker(op, ledger.StdioWorker[[]byte]{Process: ledger.Process{Executable: exe, Args: args, Env: env}}).Wait(ctx)
		require.NoError(t, err, "[]byte result")
		require.Equal(t, "two\nlines\r\n\n", string(b), "[]byte result, want the bytes")
		up, err := ledger.ExecStdioWorker(op, ledger.StdioWorker[string]{
			Process: ledger.Process{
				Executable: exe,
				Args:       args,
				Env:        env,
			},
			Decode: func(b []byte) (string, error) { return strings.ToUpper(string(b)), nil },
		}).Wait(ctx)
		require.NoError(t, err, "custom decoder result")
		assert.Equal(t, "TWO\nLINES\r\n\n", up, "custom decoder result")
	})
}

func TestFileWorkerResult(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		_, op := workerOp(t, e)
		dir := t.TempDir()
		path := filepath.Join(dir, "out.json")
		for _, keep := range []bool{false, true} {
			exe, args, env := testWorker(roleEcho, "W_FILE="+path, `W_FILE_CONTENT={"n": 3, "s": "file"}`, "W_STDOUT=not the result\n")
			v, err := ledger.ExecFileResultWorker(op, ledger.FileWorker[result]{
				Process: ledger.Process{
					Executable: exe,
					Args:       args,
					Env:        env,
					Dir:        dir,
				},
				ResultFile:     "out.json", // relative to Dir
				KeepResultFile: keep,
			}).Wait(ctx)
			require.NoErrorf(t, err, "keep=%t: Wait", keep)
			require.Equalf(t, result{3, "file"}, v, "keep=%t: Wait", keep)
			_, err = os.Stat(path)
			require.Equalf(t, keep, err == nil, "keep=%t: result file stat: %v", keep, err)
		}
	})
}

func TestFileWorkerIgnoresAnOldFile(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		_, op := workerOp(t, e)
		path := filepath.Join(t.TempDir(), "out.json")
		require.NoError(t, os.WriteFile(path, []byte(`{"n": 1}`), 0o644))
		exe, args, env := testWorker(roleEcho) // writes no file
		v, err := ledger.ExecFileResultWorker(op, ledger.FileWorker[result]{
			Process: ledger.Process{
				Executable: exe,
				Args:       args,
				Env:        env,
			},
			ResultFile:  path,
			CallOptions: ledger.CallOptions[result]{Contained: true},
		}).Wait(ctx)
		var we *ledger.WorkerError
		require.ErrorAsf(t, err, &we, "Wait = %+v", v)
		assert.Equal(t, path, we.MissingResultFile, "want a *WorkerError for the missing file, not the old one")
	})
}

func TestFileWorkerResultWhileRunning(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		_, op := workerOp(t, e)
		path := filepath.Join(t.TempDir(), "out.json")
		pids := newPidLines()
		exit := make(chan int, 1)
		exe, args, env := testWorker(roleEcho, "W_FILE="+path, `W_FILE_CONTENT={"n": 5}`, "W_LINGER=1")
		call := ledger.ExecFileResultWorker(op, ledger.FileWorker[result]{
			Process: ledger.Process{
				Executable: exe,
				Args:       args,
				Env:        env,
				KillGrace:  100 * time.Millisecond,
				OnStdout:   pids.hook,
				OnExit:     func(code int) { exit <- code },
			},
			ResultFile:   path,
			PollInterval: 10 * time.Millisecond,
		})
		pid := pids.next(t)
		killAtEnd(t, pid)
		v, err := call.Wait(ctx)
		require.NoError(t, err, "Wait: want the file's result although the worker lingered")
		require.Equal(t, 5, v.N, "Wait: want the file's result although the worker lingered")
		require.Equal(t, -1, <-exit, "OnExit: the lingering worker is ended by a signal")
		waitGone(t, pid)
	})
}

func TestWorkerDecodeError(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		_, op := workerOp(t, e)
		exe, args, env := testWorker(roleEcho, "W_STDOUT={broken")
		_, err := ledger.ExecStdioWorker(op, ledger.StdioWorker[result]{
			Process: ledger.Process{
				Executable: exe,
				Args:       args,
				Env:        env,
			},
			CallOptions: ledger.CallOptions[result]{Contained: true},
		}).Wait(ctx)
		var syn *json.SyntaxError
		require.ErrorAs(t, err, &syn, "stdio: want a failure wrapping the *json.SyntaxError")
		require.ErrorContains(t, err, "decoding its standard output", "stdio")

		path := filepath.Join(t.TempDir(), "out.json")
		exe, args, env = testWorker(roleEcho, "W_FILE="+path, "W_FILE_CONTENT=[1, 2")
		bad := errors.New("not my format")
		_, err = ledger.ExecFileResultWorker(op, ledger.FileWorker[result]{
			Process: ledger.Process{
				Executable: exe,
				Args:       args,
				Env:        env,
			},
			ResultFile:  path,
			Decode:      func([]byte) (result, error) { return result{}, bad },
			CallOptions: ledger.CallOptions[result]{Contained: true},
		}).Wait(ctx)
		require.ErrorIs(t, err, bad, "file: want a failure wrapping the decoder's error")
		require.ErrorContains(t, err, path, "file: the failure must name the file")
		b, err := os.ReadFile(path)
		require.NoError(t, err, "the file that did not decode must be kept")
		assert.Equal(t, "[1, 2", string(b), "the file that did not decode")
	})
}

func TestStdioWorkerNonZeroExit(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		_, op := workerOp(t, e)
		long := strings.Repeat("x", 5000)
		exe, args, env := testWorker(roleEcho, `W_STDOUT={"n": 1}`, "W_STDERR="+long+"\nfirst\nlast words\n", "W_EXIT=3")
		call := ledger.ExecStdioWorker(op, ledger.StdioWorker[result]{Process: ledger.Process{Executable: exe, Args: args, Env: env}})
		_, err := call.Wait(ctx)
		var we *ledger.WorkerError
		require.ErrorAs(t, err, &we, "Wait")
		assert.Equal(t, 3, we.ExitCode, "WorkerError status")
		assert.Nil(t, we.Signal, "WorkerError signal")
		assert.False(t, we.TimedOut, "WorkerError TimedOut")
		assert.Equal(t, "first\nlast words", we.Stderr, "WorkerError: the tail of stderr from a line start")
		var ee *exec.ExitError
		require.ErrorAs(t, err, &ee, "the WorkerError must unwrap to the *exec.ExitError")
		assert.Equal(t, 3, ee.ExitCode(), "the *exec.ExitError's status")
		assert.Contains(t, err.Error(), "status 3", "message")
		assert.Contains(t, err.Error(), "last words", "message")
		assert.True(t, call.IsFailed(), "call not failed")
		waitClosed(t, op.Failed(), workerWait, "the operation to fail with its worker")
	})
}

func TestFileWorkerExitsWithoutFile(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		_, op := workerOp(t, e)
		path := filepath.Join(t.TempDir(), "never.json")
		for _, code := range []int{0, 5} {
			exe, args, env := testWorker(roleEcho, "W_STDERR=no result for you\n", fmt.Sprint("W_EXIT=", code))
			_, err := ledger.ExecFileResultWorker(op, ledger.FileWorker[result]{
				Process: ledger.Process{
					Executable: exe,
					Args:       args,
					Env:        env,
				},
				ResultFile:   path,
				PollInterval: time.Hour, // the exit, not the poll, ends the wait
				CallOptions:  ledger.CallOptions[result]{Contained: true},
			}).Wait(ctx)
			var we *ledger.WorkerError
			require.ErrorAsf(t, err, &we, "exit %d", code)
			assert.Equalf(t, code, we.ExitCode, "exit %d: status", code)
			assert.Equalf(t, path, we.MissingResultFile, "exit %d: missing result file", code)
			assert.Equalf(t, "no result for you", we.Stderr, "exit %d: stderr tail", code)
		}
	})
}

func TestWorkerTimeout(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		_, op := workerOp(t, e)
		exe, args, env := testWorker(roleBlock, "W_IGNORE_TERM=1")
		resultFile := filepath.Join(t.TempDir(), "never.json")
		for _, kind := range []string{"stdio", "file"} {
			pids := newPidLines()
			var call ledger.Spawned
			if kind == "stdio" {
				call = ledger.ExecStdioWorker(op, ledger.StdioWorker[string]{
					Process: ledger.Process{
						Executable: exe,
						Args:       args,
						Env:        env,
						OnStdout:   pids.hook,
						Timeout:    300 * time.Millisecond,
						KillGrace:  50 * time.Millisecond,
					},
					CallOptions: ledger.CallOptions[string]{Contained: true},
				})
			} else {
				call = ledger.ExecFileResultWorker(op, ledger.FileWorker[string]{
					Process: ledger.Process{
						Executable: exe,
						Args:       args,
						Env:        env,
						OnStdout:   pids.hook,
						Timeout:    300 * time.Millisecond,
						KillGrace:  50 * time.Millisecond,
					},
					ResultFile:  resultFile,
					CallOptions: ledger.CallOptions[string]{Contained: true},
				})
			}
			pid := pids.next(t)
			killAtEnd(t, pid)
			waitClosed(t, call.Done(), workerWait, "the call to time out")
			err := call.Err()
			var we *ledger.WorkerError
			require.ErrorIsf(t, err, ledger.ErrWorkerTimeout, "%s", kind)
			require.ErrorAsf(t, err, &we, "%s", kind)
			assert.Equalf(t, syscall.SIGKILL, we.Signal, "%s: want the worker killed by SIGKILL after ignoring SIGTERM", kind)
			assert.Truef(t, call.IsFailed(), "%s: a timed-out call is not failed", kind)
			waitGone(t, pid)
		}
	})
}

func TestWorkerCancelEndsProcessTree(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		_, op := workerOp(t, e)
		pids := newPidLines()
		exited := make(chan int, 1)
		exe, args, env := testWorker(roleTree)
		call := ledger.ExecStdioWorker(op, ledger.StdioWorker[string]{
			Process: ledger.Process{
				Executable: exe,
				Args:       args,
				Env:        env,
				OnStdout:   pids.hook,
				KillGrace:  200 * time.Millisecond,
				OnExit:     func(code int) { exited <- code },
			},
		})
		tree := []int{pids.next(t), pids.next(t)} // the worker and its grandchild, in either order
		for _, pid := range tree {
			killAtEnd(t, pid)
		}
		call.Cancel()
		_, err := call.Wait(ctx)
		require.ErrorIs(t, err, ledger.ErrCancelled, "Wait")
		require.True(t, call.IsCancelled(), "call not cancelled")
		require.Equal(t, -1, <-exited, "OnExit, want -1 (a signal)")
		// The grandchild ignores SIGTERM: only the SIGKILL to the group
		// after KillGrace ends it.
		waitGone(t, tree...)
		assert.False(t, op.IsAborted(), "cancelling a worker aborted the operation")
		assert.False(t, isClosed(op.Failed()), "cancelling a worker failed the operation")
	})
}

// TestWorkerLeftoversEnded runs a worker that exits well but leaves a
// process behind in its group: the call succeeds and the leftover is ended,
// by SIGTERM if it heeds it, else by SIGKILL after KillGrace.
func TestWorkerLeftoversEnded(t *testing.T) {
	for _, tc := range []struct {
		name  string
		heeds bool
		grace time.Duration
	}{
		{"heeds SIGTERM", true, workerWait},
		{"ignores SIGTERM", false, 100 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			forEachBackend(t, func(t *testing.T, e *env) {
				ctx := context.Background()
				_, op := workerOp(t, e)
				pids := newPidLines()
				mark := filepath.Join(t.TempDir(), "term")
				kv := []string{"W_LEAVE=1"}
				if tc.heeds {
					kv = append(kv, "W_TERM_FILE="+mark)
				}
				exe, args, env := testWorker(roleTree, kv...)
				call := ledger.ExecStdioWorker(op, ledger.StdioWorker[string]{
					Process: ledger.Process{
						Executable: exe,
						Args:       args,
						Env:        env,
						OnStdout:   pids.hook,
						KillGrace:  tc.grace,
					},
				})
				leftover, worker := pids.next(t), pids.next(t)
				killAtEnd(t, leftover)
				_, err := call.Wait(ctx)
				require.NoError(t, err)
				waitGone(t, worker, leftover)
				_, err = os.Stat(mark)
				assert.Equalf(t, tc.heeds, err == nil, "SIGTERM mark: %v; want it written only by a leftover that heeds SIGTERM", err)
			})
		})
	}
}

// TestWorkerLeavingItsGroup cancels a worker that moved to a process group
// of its own: it must be ended all the same.
func TestWorkerLeavingItsGroup(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		_, op := workerOp(t, e)
		pids := newPidLines()
		exe, args, env := testWorker(roleBlock, "W_MOVE=1")
		call := ledger.ExecStdioWorker(op, ledger.StdioWorker[string]{Process: ledger.Process{Executable: exe, Args: args, Env: env, OnStdout: pids.hook}})
		pid := pids.next(t)
		killAtEnd(t, pid)
		call.Cancel()
		waitClosed(t, call.Done(), workerWait, "the call to end")
		require.Truef(t, call.IsCancelled(), "call error %v, want cancelled", call.Err())
		waitGone(t, pid)
	})
}

func TestWorkerEndsWithTheOperation(t *testing.T) {
	for _, tc := range []struct {
		name  string
		end   func(t *testing.T, l ledger.Ledger, op *ledger.Operation)
		cause error
	}{
		{"abort", func(t *testing.T, _ ledger.Ledger, op *ledger.Operation) {
			require.NoError(t, op.SetAbortFlag(context.Background(), true))
		}, ledger.ErrAborted},
		{"failure", func(t *testing.T, _ ledger.Ledger, op *ledger.Operation) {
			c, err := ledger.StartCall[int](context.Background(), op, ledger.CallOptions[int]{})
			require.NoError(t, err)
			require.NoError(t, c.Fail(context.Background(), errors.New("boom")))
		}, ledger.ErrOperationFailed},
		{"leave", func(t *testing.T, _ ledger.Ledger, op *ledger.Operation) {
			require.NoError(t, op.Leave(context.Background(), ledger.LeaveOptions{CancelPendingCalls: true}))
		}, ledger.ErrCancelled},
		{"close", func(t *testing.T, l ledger.Ledger, _ *ledger.Operation) {
			require.NoError(t, l.Close())
		}, ledger.ErrClosed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			forEachBackend(t, func(t *testing.T, e *env) {
				l, op := workerOp(t, e)
				pids := newPidLines()
				exe, args, env := testWorker(roleBlock)
				call := ledger.ExecStdioWorker(op, ledger.StdioWorker[string]{Process: ledger.Process{Executable: exe, Args: args, Env: env, OnStdout: pids.hook}})
				pid := pids.next(t)
				killAtEnd(t, pid)
				tc.end(t, l, op)
				waitClosed(t, call.Done(), workerWait, "the call to end")
				require.ErrorIs(t, call.Err(), ledger.ErrCancelled, "call error")
				require.ErrorIs(t, call.Err(), tc.cause, "call error: the cause")
				waitGone(t, pid)
			})
		})
	}
}

func TestWorkerKill(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		_, op := workerOp(t, e)
		pids := newPidLines()
		exe, args, env := testWorker(roleBlock)
		call := ledger.ExecStdioWorker(op, ledger.StdioWorker[string]{
			Process: ledger.Process{
				Executable: exe,
				Args:       args,
				Env:        env,
				OnStdout:   pids.hook,
			},
			CallOptions: ledger.CallOptions[string]{Contained: true},
		})
		pid := pids.next(t)
		killAtEnd(t, pid)
		require.True(t, call.Kill(syscall.SIGHUP), "Kill failed")
		_, err := call.Wait(ctx)
		var we *ledger.WorkerError
		require.ErrorAs(t, err, &we, "Wait: want a *WorkerError for SIGHUP")
		assert.Equal(t, syscall.SIGHUP, we.Signal, "WorkerError signal")
		assert.Equal(t, -1, we.ExitCode, "WorkerError status")
		assert.False(t, call.Kill(syscall.SIGKILL), "Kill succeeded after the call ended")
		assert.False(t, isClosed(op.Failed()), "a contained worker's death failed the operation")

		// A worker that ignores the signal is killed KillGrace later.
		exe, args, env = testWorker(roleBlock, "W_IGNORE_TERM=1")
		stubborn := ledger.ExecStdioWorker(op, ledger.StdioWorker[string]{
			Process: ledger.Process{
				Executable: exe, Args: args, Env: env, OnStdout: pids.hook,
				KillGrace: 100 * time.Millisecond,
			},
			CallOptions: ledger.CallOptions[string]{Contained: true},
		})
		killAtEnd(t, pids.next(t))
		require.True(t, stubborn.Kill(syscall.SIGTERM), "Kill failed")
		waitClosed(t, stubborn.Done(), workerWait, "a worker ignoring SIGTERM to be killed")
		require.ErrorAs(t, stubborn.Err(), &we, "stubborn worker: want a *WorkerError")
		assert.Equal(t, syscall.SIGKILL, we.Signal, "the signal that ended the stubborn worker")
	})
}

func TestWorkerHooks(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		_, op := workerOp(t, e)
		var mu sync.Mutex
		var out, errs []string
		var codes []int
		exe, args, env := testWorker(roleEcho,
			"W_STDOUT=one\r\ntwo\n\nlast without break",
			"W_STDERR=warn 1\nwarn 2\n",
			"W_EXIT=4")
		_, err := ledger.ExecStdioWorker(op, ledger.StdioWorker[string]{
			Process: ledger.Process{
				Executable: exe,
				Args:       args,
				Env:        env,
				OnStdout:   func(l string) { mu.Lock(); out = append(out, l); mu.Unlock() },
				OnStderr:   func(l string) { mu.Lock(); errs = append(errs, l); mu.Unlock() },
				OnExit:     func(c int) { mu.Lock(); codes = append(codes, c); mu.Unlock() },
			},
			CallOptions: ledger.CallOptions[string]{Contained: true},
		}).Wait(ctx)
		var we *ledger.WorkerError
		require.ErrorAs(t, err, &we, "Wait")
		require.Equal(t, 4, we.ExitCode, "Wait: status")
		mu.Lock()
		defer mu.Unlock()
		assert.Equal(t, []string{"one", "two", "", "last without break"}, out, "OnStdout")
		assert.Equal(t, []string{"warn 1", "warn 2"}, errs, "OnStderr")
		assert.Equal(t, []int{4}, codes, "OnExit")
	})
}

func TestWorkerGrandchildHoldingStdout(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		_, op := workerOp(t, e)
		exe, args, env := testWorker(roleTree, "W_ESCAPE=1")
		call := ledger.ExecStdioWorker(op, ledger.StdioWorker[map[string]int]{
			Process: ledger.Process{
				Executable: exe,
				Args:       args,
				Env:        env,
				KillGrace:  100 * time.Millisecond,
			},
		})
		waitClosed(t, call.Done(), workerWait, "the call to end while a process outside the group holds stdout")
		v, err := call.Wait(ctx)
		require.NoError(t, err)
		require.NotZerof(t, v["grandchild"], "Wait = %v", v)
		gc := v["grandchild"]
		require.Falsef(t, gone(gc), "the grandchild %d in its own session is gone; the test proves nothing", gc)
		syscall.Kill(gc, syscall.SIGKILL)
		waitGone(t, gc)
	})
}

// TestWorkerOrchestratorKilled kills an orchestrator with SIGKILL: nothing
// in it can react, and its worker must die anyway (parent-death signal).
func TestWorkerOrchestratorKilled(t *testing.T) {
	orch := child(t, roleOrchestrator, "W_DIR="+t.TempDir())
	lines := startOrchestrator(t, orch)
	pid := nextPid(t, lines)
	killAtEnd(t, pid)
	require.NoError(t, orch.Process.Kill())
	orch.Wait()
	waitGone(t, pid)
}

// TestWorkerOrchestratorSignalled sends SIGTERM to an orchestrator: its
// signal handler ends the worker's whole process group before it dies, a
// grandchild that ignores SIGTERM included, even when KillGrace is longer
// than the time the handler has (SignalGrace).
func TestWorkerOrchestratorSignalled(t *testing.T) {
	for _, tc := range []struct {
		name                   string
		killGrace, signalGrace string
	}{
		{"kill grace first", "200ms", "10s"},
		{"signal grace first", "1m", "300ms"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			orch := child(t, roleOrchestrator, "W_DIR="+t.TempDir(), "W_TREE=1", "W_GRACE="+tc.killGrace, "W_SIGNAL_GRACE="+tc.signalGrace)
			lines := startOrchestrator(t, orch)
			tree := []int{nextPid(t, lines), nextPid(t, lines)}
			for _, pid := range tree {
				killAtEnd(t, pid)
			}
			require.NoError(t, orch.Process.Signal(syscall.SIGTERM))
			err := orch.Wait()
			var ee *exec.ExitError
			require.ErrorAs(t, err, &ee, "the orchestrator's end")
			require.Equalf(t, syscall.SIGTERM, ee.Sys().(syscall.WaitStatus).Signal(), "orchestrator ended with %v, want death by SIGTERM", err)
			waitGone(t, tree...)
		})
	}
}

// startOrchestrator starts cmd and returns its stdout lines.
func startOrchestrator(t *testing.T, cmd *exec.Cmd) <-chan string {
	t.Helper()
	out, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	lines := make(chan string, 16)
	go func() {
		defer close(lines)
		s := bufio.NewScanner(out)
		for s.Scan() {
			lines <- s.Text()
		}
	}()
	return lines
}

// nextPid waits for the next "pid N" line.
func nextPid(t *testing.T, lines <-chan string) int {
	t.Helper()
	p := newPidLines()
	deadline := time.After(workerWait)
	for {
		select {
		case l, ok := <-lines:
			require.True(t, ok, "the orchestrator's output ended before a pid")
			p.hook(l)
			select {
			case pid := <-p:
				return pid
			default:
			}
		case <-deadline:
			require.Failf(t, "timed out", "no pid from the orchestrator after %v", workerWait)
		}
	}
}

// TestWorkerSpawnCancelNoZombies runs 200 workers and cancels each, some
// before the process started, some while it runs: every process must be
// reaped.
func TestWorkerSpawnCancelNoZombies(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		_, op := workerOp(t, e)
		exe, args, env := testWorker(roleBlock)
		const cycles, parallel = 200, 8
		var mu sync.Mutex
		var pids []int
		sem := make(chan struct{}, parallel)
		var wg sync.WaitGroup
		for i := range cycles {
			sem <- struct{}{}
			wg.Add(1)
			go func() {
				defer func() { <-sem; wg.Done() }()
				started := newPidLines()
				call := ledger.ExecStdioWorker(op, ledger.StdioWorker[string]{
					Process: ledger.Process{
						Executable: exe,
						Args:       args,
						Env:        env,
						OnStdout:   started.hook,
					},
				})
				if i%2 == 1 {
					select {
					case pid := <-started:
						mu.Lock()
						pids = append(pids, pid)
						mu.Unlock()
					case <-call.Done():
					}
				}
				call.Cancel()
				_, err := call.Wait(ctx)
				assert.ErrorIsf(t, err, ledger.ErrCancelled, "cycle %d", i)
			}()
		}
		wg.Wait()
		require.GreaterOrEqualf(t, len(pids), cycles/2, "only %d of %d workers reported their pid", len(pids), cycles/2)
		assert.Empty(t, myZombies(t), "zombies left")
		for _, pid := range pids {
			if state, ppid, ok := procStat(pid); ok {
				assert.NotEqualf(t, os.Getpid(), ppid, "worker %d is still a child of this process (state %c)", pid, state)
			}
		}
		assert.Zero(t, op.PendingCallCount(), "calls still pending")
	})
}

func TestJoinFromEnv(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		_, op := workerOp(t, e)
		exe, args, env := testWorker(roleJoin)
		call := ledger.ExecStdioWorker(op, ledger.StdioWorker[joinReport]{Process: ledger.Process{Executable: exe, Args: args, Env: env}})
		r, err := call.Wait(ctx)
		require.NoError(t, err)
		want := joinReport{Operation: op.ID(), Call: call.ID(), Participant: "joiner", SawFrame: true}
		assert.Equal(t, want, r, "the worker's report")
		d, err := op.State(ctx)
		require.NoError(t, err)
		assert.Truef(t, slices.ContainsFunc(d.Participants, func(p ledger.Participant) bool { return p.ParticipantID == "joiner" }),
			"participants %+v lack the worker", d.Participants)
	})
}

func TestWorkerLedgerEnv(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		_, op := workerOp(t, e)
		// Values this process may have inherited as a worker itself are
		// replaced, or, with NoLedgerEnv, left alone.
		t.Setenv(ledger.EnvOperationID, "inherited")
		t.Setenv(ledger.EnvServerURL, "http://127.0.0.1:1")
		exe, args, env := testWorker(roleEnvDump)
		call := ledger.ExecStdioWorker(op, ledger.StdioWorker[map[string]string]{Process: ledger.Process{Executable: exe, Args: args, Env: env}})
		got, err := call.Wait(ctx)
		require.NoError(t, err)
		want := map[string]string{
			ledger.EnvOperationID: op.ID(), ledger.EnvCallID: call.ID(),
			ledger.EnvBasePath: "", ledger.EnvServerURL: "",
		}
		if e.remote {
			want[ledger.EnvServerURL] = e.url
		} else {
			want[ledger.EnvBasePath], _ = filepath.Abs(e.dir)
		}
		require.Equal(t, want, got, "worker environment")
		got, err = ledger.ExecStdioWorker(op, ledger.StdioWorker[map[string]string]{
			Process: ledger.Process{
				Executable:  exe,
				Args:        args,
				Env:         env,
				NoLedgerEnv: true,
			},
		}).Wait(ctx)
		want = map[string]string{
			ledger.EnvOperationID: "inherited", ledger.EnvCallID: "",
			ledger.EnvBasePath: "", ledger.EnvServerURL: "http://127.0.0.1:1",
		}
		require.NoError(t, err, "NoLedgerEnv")
		assert.Equal(t, want, got, "NoLedgerEnv: worker environment")
	})
}

func TestJoinFromEnvWithoutEnv(t *testing.T) {
	t.Setenv(ledger.EnvOperationID, "")
	l, op, err := ledger.JoinFromEnv(context.Background(), ledger.Options{BasePath: t.TempDir()}, ledger.JoinOptions{})
	require.ErrorIs(t, err, ledger.ErrNoWorkerEnv, "JoinFromEnv")
	// l == nil, not require.Nil: a nil pointer in the interface is a bug too.
	require.Truef(t, l == nil, "JoinFromEnv returned a ledger (%#v) with its error", l)
	require.Nil(t, op, "JoinFromEnv returned an operation with its error")
	t.Setenv(ledger.EnvOperationID, "20240101T00:00:00.000-nobody-00000000")
	t.Setenv(ledger.EnvBasePath, t.TempDir())
	_, _, err = ledger.JoinFromEnv(context.Background(), ledger.Options{}, ledger.JoinOptions{})
	assert.ErrorIs(t, err, ledger.ErrOperationNotFound, "JoinFromEnv of an unknown operation")
}

func TestWorkerInvalid(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		_, op := workerOp(t, e)
		exe, args, env := testWorker(roleEcho)
		for _, tc := range []struct {
			name  string
			call  ledger.Spawned
			field string
		}{
			{"no executable", ledger.ExecStdioWorker(op, ledger.StdioWorker[int]{}), "StdioWorker.Executable"},
			{"negative timeout", ledger.ExecStdioWorker(op, ledger.StdioWorker[int]{Process: ledger.Process{Executable: exe, Timeout: -1}}), "StdioWorker.Timeout"},
			{"negative grace", ledger.ExecFileResultWorker(op, ledger.FileWorker[int]{Process: ledger.Process{Executable: exe, KillGrace: -1}, ResultFile: "x"}), "FileWorker.KillGrace"},
			{"negative poll", ledger.ExecFileResultWorker(op, ledger.FileWorker[int]{Process: ledger.Process{Executable: exe}, ResultFile: "x", PollInterval: -1}), "FileWorker.PollInterval"},
			{"no result file", ledger.ExecFileResultWorker(op, ledger.FileWorker[int]{Process: ledger.Process{Executable: exe, Args: args, Env: env}}), "FileWorker.ResultFile"},
			{"negative max output", ledger.ExecStdioWorker(op, ledger.StdioWorker[int]{Process: ledger.Process{Executable: exe}, MaxOutput: -1}), "StdioWorker.MaxOutput"},
			{"nil operation", ledger.ExecStdioWorker(nil, ledger.StdioWorker[int]{Process: ledger.Process{Executable: exe}}), "nil *Operation"},
		} {
			assert.ErrorIsf(t, tc.call.Err(), ledger.ErrInvalidArgument, "%s", tc.name)
			assert.ErrorContainsf(t, tc.call.Err(), tc.field, "%s: the error must name the field", tc.name)
			assert.Truef(t, tc.call.IsFailed(), "%s: call not failed", tc.name)
		}
		d, err := op.State(ctx)
		require.NoError(t, err)
		require.Empty(t, d.CallFrames, "invalid workers left frames")
		require.False(t, isClosed(op.Failed()), "invalid workers failed the operation")
		call := ledger.ExecStdioWorker(op, ledger.StdioWorker[int]{
			Process: ledger.Process{
				Executable: filepath.Join(t.TempDir(), "missing"),
			},
			CallOptions: ledger.CallOptions[int]{Contained: true},
		})
		_, err = call.Wait(ctx)
		assert.ErrorIs(t, err, os.ErrNotExist, "missing executable")
	})
}

// BenchmarkStdioWorker measures a worker round trip: ExecStdioWorker of a
// program that prints a JSON number and exits, until Wait returns. The
// "raw" case runs the same program with exec.Command(...).Output() and
// json.Unmarshal in the same run: the difference is what the ledger adds
// (two ledger writes, the process group, the /proc look for leftovers).
func BenchmarkStdioWorker(b *testing.B) {
	sh, err := exec.LookPath("sh")
	require.NoError(b, err, "this benchmark needs sh")
	args := []string{"-c", "echo 42"}
	b.Run("raw", func(b *testing.B) {
		for b.Loop() {
			out, err := exec.Command(sh, args...).Output()
			var v int
			if err == nil {
				err = json.Unmarshal(out, &v)
			}
			require.NoError(b, err)
			require.Equal(b, 42, v)
		}
	})
	b.Run("worker", func(b *testing.B) {
		op := benchOp(b)
		ctx := context.Background()
		for b.Loop() {
			v, err := ledger.ExecStdioWorker(op, ledger.StdioWorker[int]{Process: ledger.Process{Executable: sh, Args: args}}).Wait(ctx)
			require.NoError(b, err)
			require.Equal(b, 42, v)
		}
	})
}

// TestFileWorkerDecodePanics: a Decode that panics while the worker still
// runs is a decode failure carrying a *PanicError; the worker is still
// supervised, so it is ended and reaped, not leaked.
func TestFileWorkerDecodePanics(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		_, op := workerOp(t, e)
		path := filepath.Join(t.TempDir(), "out.json")
		pids := newPidLines()
		decoded := make(chan struct{}, 16)
		exe, args, env := testWorker(roleEcho, "W_FILE="+path, `W_FILE_CONTENT={"n": 5}`, "W_LINGER=1")
		call := ledger.ExecFileResultWorker(op, ledger.FileWorker[result]{
			Process: ledger.Process{
				Executable: exe,
				Args:       args,
				Env:        env,
				KillGrace:  100 * time.Millisecond,
				OnStdout:   pids.hook,
			},
			ResultFile:   path,
			PollInterval: 10 * time.Millisecond,
			Decode: func([]byte) (result, error) {
				decoded <- struct{}{}
				panic("decoder bug")
			},
			CallOptions: ledger.CallOptions[result]{Contained: true},
		})
		pid := pids.next(t)
		killAtEnd(t, pid)
		select {
		case <-decoded:
		case <-time.After(workerWait):
			require.Failf(t, "timed out", "Decode not called after %v", workerWait)
		}
		// The poll's decode failed; the worker still runs and is still the
		// call's: Kill reaches it, and the final read decides.
		require.True(t, call.Kill(syscall.SIGTERM), "Kill failed: the call ended while its worker ran")
		waitClosed(t, call.Done(), workerWait, "the call to end")
		_, err := call.Wait(ctx)
		var pe *ledger.PanicError
		require.ErrorAs(t, err, &pe, "Wait: want a failure carrying the decoder's *PanicError")
		assert.Equal(t, "decoder bug", pe.Value, "the panic's value")
		waitGone(t, pid)
	})
}

// TestWorkerHookPanics: a hook that panics fails the call with a
// *PanicError and ends the worker, instead of crashing this process.
func TestWorkerHookPanics(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		_, op := workerOp(t, e)
		pids := newPidLines()
		exe, args, env := testWorker(roleBlock)
		call := ledger.ExecStdioWorker(op, ledger.StdioWorker[string]{
			Process: ledger.Process{
				Executable: exe,
				Args:       args,
				Env:        env,
				KillGrace:  100 * time.Millisecond,
				OnStdout: func(line string) {
					pids.hook(line)
					panic("hook bug")
				},
			},
			CallOptions: ledger.CallOptions[string]{Contained: true},
		})
		pid := pids.next(t)
		killAtEnd(t, pid)
		waitClosed(t, call.Done(), workerWait, "the call to end after its hook panicked")
		_, err := call.Wait(ctx)
		var pe *ledger.PanicError
		require.ErrorAs(t, err, &pe, "Wait: want the hook's *PanicError")
		assert.Equal(t, "hook bug", pe.Value, "the panic's value")
		waitGone(t, pid)
	})
}

// TestWorkerBlockingHook: a hook that never returns does not keep Cancel
// or Timeout from ending the call and the worker.
func TestWorkerBlockingHook(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		_, op := workerOp(t, e)
		release := make(chan struct{})
		t.Cleanup(func() { close(release) }) // the abandoned hook returns before goleak looks
		exe, args, env := testWorker(roleBlock)
		for _, how := range []string{"cancel", "timeout"} {
			pids := newPidLines()
			w := ledger.StdioWorker[string]{
				Process: ledger.Process{
					Executable: exe,
					Args:       args,
					Env:        env,
					KillGrace:  100 * time.Millisecond,
					OnStdout: func(line string) {
						pids.hook(line)
						<-release
					},
				},
				CallOptions: ledger.CallOptions[string]{Contained: true},
			}
			if how == "timeout" {
				w.Timeout = 300 * time.Millisecond
			}
			call := ledger.ExecStdioWorker(op, w)
			pid := pids.next(t)
			killAtEnd(t, pid)
			if how == "cancel" {
				call.Cancel()
			}
			waitClosed(t, call.Done(), workerWait, how+" to end the call while its hook blocks")
			_, err := call.Wait(ctx)
			want := map[string]error{"cancel": ledger.ErrCancelled, "timeout": ledger.ErrWorkerTimeout}[how]
			require.ErrorIsf(t, err, want, "%s: Wait", how)
			waitGone(t, pid)
		}
		// A full queue: the worker's output waits for the blocked hook.
		called := make(chan struct{}, 1)
		exe, args, env = testWorker(roleEcho, "W_STDOUT="+strings.Repeat("line\n", 2000), "W_LINGER=1")
		call := ledger.ExecStdioWorker(op, ledger.StdioWorker[string]{
			Process: ledger.Process{
				Executable: exe,
				Args:       args,
				Env:        env,
				KillGrace:  100 * time.Millisecond,
				OnStdout: func(string) {
					select {
					case called <- struct{}{}:
					default:
					}
					<-release
				},
			},
		})
		select {
		case <-called:
		case <-time.After(workerWait):
			require.Failf(t, "timed out", "no line after %v", workerWait)
		}
		call.Cancel()
		waitClosed(t, call.Done(), workerWait, "cancel to end the call while its hook blocks on a full queue")
		_, err := call.Wait(ctx)
		assert.ErrorIs(t, err, ledger.ErrCancelled, "full queue: Wait")
	})
}

// TestJoinFromEnvWithToken: a worker of an orchestrator connected to a
// token-protected server gets the token and can join.
func TestJoinFromEnvWithToken(t *testing.T) {
	t.Setenv(ledger.TokenEnv, "") // the token comes from Options.Token only
	const token = "worker-s3cret"
	url := startHTTPTestServer(t, ledger.ServerOptions{BasePath: t.TempDir(), Token: token})
	l := remoteOpener(url, token)(t, ledger.Options{ParticipantID: "orchestrator"})
	ctx := context.Background()
	op, err := l.CreateOperation(ctx, ledger.CreateOptions{})
	require.NoError(t, err)
	exe, args, env := testWorker(roleJoin)
	call := ledger.ExecStdioWorker(op, ledger.StdioWorker[joinReport]{Process: ledger.Process{Executable: exe, Args: args, Env: env}})
	r, err := call.Wait(ctx)
	require.NoError(t, err)
	want := joinReport{Operation: op.ID(), Call: call.ID(), Participant: "joiner", SawFrame: true}
	require.Equal(t, want, r, "the worker's report")
	// NoLedgerEnv passes no token either.
	exe, args, env = testWorker(roleEnvDump)
	got, err := ledger.ExecStdioWorker(op, ledger.StdioWorker[map[string]string]{
		Process: ledger.Process{
			Executable:  exe,
			Args:        args,
			Env:         env,
			NoLedgerEnv: true,
		},
	}).Wait(ctx)
	require.NoError(t, err, "NoLedgerEnv")
	assert.Emptyf(t, got[ledger.TokenEnv], "NoLedgerEnv: worker environment %v has a token", got)
}

// TestWorkerEnvOverridesLocation: Env naming one location variable keeps
// the other out, so that the worker has one location, as Connect needs.
func TestWorkerEnvOverridesLocation(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		_, op := workerOp(t, e)
		for _, kv := range [][2]string{{ledger.EnvServerURL, "http://127.0.0.1:1"}, {ledger.EnvBasePath, t.TempDir()}} {
			exe, args, env := testWorker(roleEnvDump, kv[0]+"="+kv[1])
			call := ledger.ExecStdioWorker(op, ledger.StdioWorker[map[string]string]{Process: ledger.Process{Executable: exe, Args: args, Env: env}})
			got, err := call.Wait(ctx)
			require.NoError(t, err)
			want := map[string]string{
				ledger.EnvOperationID: op.ID(), ledger.EnvCallID: call.ID(),
				ledger.EnvBasePath: "", ledger.EnvServerURL: "",
			}
			want[kv[0]] = kv[1]
			require.Equalf(t, want, got, "Env %s: worker environment", kv[0])
		}
	})
}

// TestWorkerStderrTailFromLineStart: however the kept tail of stderr was
// trimmed, the error's Stderr starts at a line.
func TestWorkerStderrTailFromLineStart(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		_, op := workerOp(t, e)
		var b strings.Builder
		for i := range 900 { // 9000 bytes, written at once: the tail is trimmed to 4 KiB exactly
			fmt.Fprintf(&b, "line %04d\n", i)
		}
		exe, args, env := testWorker(roleEcho, "W_STDERR="+b.String(), "W_EXIT=2")
		_, err := ledger.ExecStdioWorker(op, ledger.StdioWorker[string]{
			Process: ledger.Process{
				Executable: exe,
				Args:       args,
				Env:        env,
			},
			CallOptions: ledger.CallOptions[string]{Contained: true},
		}).Wait(ctx)
		var we *ledger.WorkerError
		require.ErrorAs(t, err, &we, "Wait")
		require.NotEmpty(t, we.Stderr, "Wait: want a *WorkerError with a stderr tail")
		lines := strings.Split(we.Stderr, "\n")
		for _, l := range lines {
			require.Lenf(t, l, 9, "stderr tail has the partial line %q; want whole lines only", l)
			require.Truef(t, strings.HasPrefix(l, "line "), "stderr tail has the partial line %q; want whole lines only", l)
		}
		assert.Equal(t, "line 0899", lines[len(lines)-1], "stderr tail must end with the last line")
	})
}

// TestStdioWorkerMaxOutput: a worker writing more than MaxOutput is ended
// and its call fails with ErrWorkerOutputLimit; output within the limit is
// the result as before.
func TestStdioWorkerMaxOutput(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		_, op := workerOp(t, e)
		// The worker writes 5000 bytes, then blocks for a minute: only
		// ending it ends the call in time.
		exe, args, env := testWorker(roleEcho, "W_STDOUT="+strings.Repeat("y", 5000), "W_LINGER=1")
		call := ledger.ExecStdioWorker(op, ledger.StdioWorker[string]{
			Process: ledger.Process{
				Executable: exe,
				Args:       args,
				Env:        env,
				KillGrace:  100 * time.Millisecond,
			},
			MaxOutput:   1000,
			CallOptions: ledger.CallOptions[string]{Contained: true},
		})
		waitClosed(t, call.Done(), workerWait, "the call to end once the output passed MaxOutput")
		_, err := call.Wait(ctx)
		require.ErrorIs(t, err, ledger.ErrWorkerOutputLimit, "Wait")
		require.ErrorContains(t, err, "1000", "Wait: the error must name the limit")
		require.Empty(t, myZombies(t), "zombies left")
		exe, args, env = testWorker(roleEcho, "W_STDOUT="+strings.Repeat("y", 1000))
		v, err := ledger.ExecStdioWorker(op, ledger.StdioWorker[string]{Process: ledger.Process{Executable: exe, Args: args, Env: env}, MaxOutput: 1000}).Wait(ctx)
		require.NoError(t, err, "output at the limit")
		assert.Equal(t, 1000, len(v), "output at the limit: want the 1000 bytes")
	})
}
