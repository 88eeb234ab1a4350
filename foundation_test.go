package ledger_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gofrs/flock"
	"github.com/tomdist/ledger"
)

// Helpers of the foundation tests carry an "f" prefix: other test files of
// the package are written in parallel.

// fStatePath is the file that holds the live state of id in dir: its
// journal.
func fStatePath(dir, id string) string { return filepath.Join(dir, id+".operation.journal") }

// fDirState reads the state of id in dir, live or archived, through a
// Viewer; it fails the test if the state cannot be read.
func fDirState(t testing.TB, dir, id string) *ledger.Data {
	t.Helper()
	d, err := fReadState(dir, id)
	require.NoErrorf(t, err, "state of %s", id)
	return d
}

// fReadState reads the state of id in dir through a Viewer.
func fReadState(dir, id string) (*ledger.Data, error) {
	v, err := ledger.OpenViewer(ledger.Options{BasePath: dir})
	if err != nil {
		return nil, err
	}
	defer v.Close()
	return v.State(context.Background(), id)
}

// fBackupDir is where id is archived.
func fBackupDir(dir, id string) string { return filepath.Join(dir, "backup", id) }

// fLockPath is the lock file of the live operation id in dir.
func fLockPath(dir, id string) string { return filepath.Join(dir, id+".operation.lock") }

// fParse parses a state file; it fails the test if it does not parse.
func fParse(t testing.TB, path string) *ledger.Data {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	d := new(ledger.Data)
	require.NoErrorf(t, json.Unmarshal(b, d), "%s does not parse:\n%s", path, b)
	return d
}

// fLog returns the INFO log of id in dir, live or archived.
func fLog(t testing.TB, dir, id string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, id+".operation.log"))
	if errors.Is(err, fs.ErrNotExist) {
		b, err = os.ReadFile(filepath.Join(fBackupDir(dir, id), "operation.log"))
	}
	require.NoError(t, err)
	return string(b)
}

// fLogLine is one parsed log line.
type fLogLine struct{ time, level, participant, event, rest string }

var fLogRE = regexp.MustCompile(`^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z) \[(DEBUG|INFO|WARNING|ERROR)\] ([A-Za-z0-9_.-]+) (\S+) ?(.*)$`)

// fLines parses a log, failing the test on a line that does not have the
// documented form.
func fLines(t testing.TB, log string) []fLogLine {
	t.Helper()
	var out []fLogLine
	for _, l := range strings.Split(strings.TrimSuffix(log, "\n"), "\n") {
		if l == "" {
			continue
		}
		m := fLogRE.FindStringSubmatch(l)
		require.NotNilf(t, m, "log line %q is not `<RFC3339 UTC> [LEVEL] <participantId> <EVENT or message>`", l)
		out = append(out, fLogLine{m[1], m[2], m[3], m[4], m[5]})
	}
	return out
}

// fFiles lists every path under dir, relative to it.
func fFiles(t testing.TB, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p != dir {
			rel, _ := filepath.Rel(dir, p)
			out = append(out, rel)
		}
		return nil
	})
	require.NoError(t, err)
	return out
}

func fCallIDs(fs []ledger.CallFrame) []string {
	ids := make([]string, len(fs))
	for i, f := range fs {
		ids[i] = f.CallID
	}
	slices.Sort(ids)
	return ids
}

func fParticipant(d *ledger.Data, id string) *ledger.Participant {
	for i := range d.Participants {
		if d.Participants[i].ParticipantID == id {
			return &d.Participants[i]
		}
	}
	return nil
}

func fCreate(t testing.TB, l ledger.Ledger, o ledger.CreateOptions) *ledger.Operation {
	t.Helper()
	op, err := l.CreateOperation(context.Background(), o)
	require.NoError(t, err)
	return op
}

func fJoin(t testing.TB, l ledger.Ledger, id string, o ledger.JoinOptions) *ledger.Operation {
	t.Helper()
	op, err := l.JoinOperation(context.Background(), id, o)
	require.NoError(t, err)
	return op
}

func fState(t testing.TB, op *ledger.Operation) *ledger.Data {
	t.Helper()
	d, err := op.State(context.Background())
	require.NoError(t, err)
	return d
}

func fStart(t testing.TB, op *ledger.Operation, o ledger.CallOptions[int]) *ledger.Call[int] {
	t.Helper()
	c, err := ledger.StartCall[int](context.Background(), op, o)
	require.NoError(t, err)
	return c
}

var (
	fOperationIDRE = regexp.MustCompile(`^\d{8}T\d\d:\d\d:\d\d\.\d{3}-alice-[0-9a-f]{8}$`)
	fCallIDRE      = regexp.MustCompile(`^call_alice_\d+_[0-9a-f]{4}$`)
)

func TestIdentityAndSessions(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		alice, bob := e.Open("alice", ledger.Options{}), e.Open("bob", ledger.Options{})
		op := fCreate(t, alice, ledger.CreateOptions{Description: "nightly build"})
		assert.Regexp(t, fOperationIDRE, op.ID(), "operation id")
		assert.Equal(t, "alice", op.ParticipantID(), "creator's participant")
		assert.True(t, op.IsInitiator(), "creator is not the initiator")
		assert.Equal(t, 1, op.SessionID(), "creator's session")
		assert.False(t, op.StartTime().IsZero(), "creator's start time")
		assert.GreaterOrEqual(t, op.Elapsed(), time.Duration(0), "creator's Elapsed")
		assert.Equal(t, "alice", alice.ParticipantID(), "creator's ledger participant")
		op2 := fJoin(t, alice, op.ID(), ledger.JoinOptions{})
		op3 := fJoin(t, alice, op.ID(), ledger.JoinOptions{})
		b1 := fJoin(t, bob, op.ID(), ledger.JoinOptions{})
		assert.Equal(t, 2, op2.SessionID(), "alice's second session")
		assert.Equal(t, 3, op3.SessionID(), "alice's third session")
		assert.True(t, op3.IsInitiator(), "alice's third session is not the initiator")
		assert.Equal(t, 1, b1.SessionID(), "bob's session")
		assert.False(t, b1.IsInitiator(), "bob is the initiator")
		assert.Equal(t, "bob", b1.ParticipantID(), "bob's participant")
		assert.Truef(t, b1.StartTime().Equal(op.StartTime()), "bob's start time %v", b1.StartTime())
		d := fState(t, op)
		assert.Equal(t, "nightly build", d.Description, "state")
		assert.Equal(t, "alice", d.InitiatorID, "state")
		assert.Equal(t, "running", d.OperationState, "state")
		host, _ := os.Hostname()
		if a := fParticipant(d, "alice"); assert.NotNil(t, a, "alice's record") {
			assert.Equal(t, 3, a.Sessions, "alice's sessions")
			assert.Equal(t, "active", a.State, "alice's state")
			assert.Equal(t, os.Getpid(), a.PID, "alice's pid")
			assert.Equal(t, host, a.Host, "alice's host")
		}
		if b := fParticipant(d, "bob"); assert.NotNil(t, b, "bob's record") {
			assert.Equal(t, 1, b.Sessions, "bob's sessions")
			assert.Equal(t, "active", b.State, "bob's state")
		}

		// Leaving one of several sessions keeps the participant.
		require.NoError(t, op3.Leave(ctx, ledger.LeaveOptions{}))
		assert.ErrorIs(t, op3.Leave(ctx, ledger.LeaveOptions{}), ledger.ErrSessionLeft, "second Leave")
		assert.ErrorIs(t, op3.Log(ctx, ledger.LogInfo, "x"), ledger.ErrSessionLeft, "Log after Leave")
		_, err := ledger.StartCall[int](ctx, op3, ledger.CallOptions[int]{})
		assert.ErrorIs(t, err, ledger.ErrSessionLeft, "StartCall after Leave")
		// The other sessions go on.
		c := fStart(t, op2, ledger.CallOptions[int]{})
		require.NoError(t, c.End(ctx, 0))
		d = fState(t, op)
		rec := fParticipant(d, "alice")
		assert.Equal(t, 2, rec.Sessions, "alice's sessions after one leave")
		assert.Equal(t, "active", rec.State, "alice after one leave")
		// The last session of a process marks the participant left.
		require.NoError(t, b1.Leave(ctx, ledger.LeaveOptions{}))
		d = fState(t, op)
		rec = fParticipant(d, "bob")
		assert.Equal(t, 0, rec.Sessions, "bob's sessions after his last leave")
		assert.Equal(t, "left", rec.State, "bob after his last leave")
		var left []string
		for _, l := range fLines(t, fLog(t, e.dir, op.ID())) {
			if l.event == "PARTICIPANT_LEFT" {
				left = append(left, l.participant)
			}
		}
		assert.Equal(t, []string{"bob"}, left, "PARTICIPANT_LEFT logged by")
	})
}

func TestManyGoroutinesStartAndEndCalls(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		alice, bob := e.Open("alice", ledger.Options{}), e.Open("bob", ledger.Options{})
		op := fCreate(t, alice, ledger.CreateOptions{})
		ops := []*ledger.Operation{op, fJoin(t, alice, op.ID(), ledger.JoinOptions{}), fJoin(t, bob, op.ID(), ledger.JoinOptions{})}
		const workers, perWorker = 12, 8
		var (
			mu           sync.Mutex
			started      []string
			ended        []string
			open         []*ledger.Call[int]
			wg           sync.WaitGroup
			completedSum int
		)
		for w := range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				sess := ops[w%len(ops)]
				for i := range perWorker {
					c, err := ledger.StartCall[int](ctx, sess, ledger.CallOptions[int]{
						Description: fmt.Sprintf("w%d-%d", w, i),
						Callback: ledger.CallCallback[int]{OnCompletion: func(r int) {
							mu.Lock()
							completedSum += r
							mu.Unlock()
						}},
					})
					if !assert.NoError(t, err) {
						return
					}
					mu.Lock()
					started = append(started, c.ID())
					mu.Unlock()
					if i%4 == 3 {
						mu.Lock()
						open = append(open, c)
						mu.Unlock()
						continue
					}
					if !assert.NoError(t, c.End(ctx, 1)) {
						return
					}
					mu.Lock()
					ended = append(ended, c.ID())
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		if t.Failed() {
			return
		}
		require.Equal(t, workers*perWorker, len(started), "calls started")
		require.Equal(t, len(ended), completedSum, "OnCompletion calls for the calls ended")
		var openIDs []string
		for _, c := range open {
			openIDs = append(openIDs, c.ID())
		}
		slices.Sort(openIDs)
		assert.Equal(t, openIDs, fCallIDs(fState(t, op).CallFrames), "frames in the ledger, want the calls still open")
		for _, c := range open {
			require.NoError(t, c.End(ctx, 1))
			ended = append(ended, c.ID())
		}
		assert.Empty(t, fState(t, op).CallFrames, "frames left after every call ended")
		byEvent := map[string][]string{}
		for _, l := range fLines(t, fLog(t, e.dir, op.ID())) {
			if id, _, _ := strings.Cut(l.rest, " "); strings.HasPrefix(l.event, "CALL_") {
				byEvent[l.event] = append(byEvent[l.event], id)
			}
		}
		slices.Sort(started)
		slices.Sort(ended)
		for ev, want := range map[string][]string{"CALL_STARTED": started, "CALL_ENDED": ended} {
			got := slices.Sorted(slices.Values(byEvent[ev]))
			assert.Equalf(t, want, got, "the calls %s was logged for", ev)
		}
	})
}

func init() { roles["fnd-caller"] = fCallerRole }

// fCallerRole joins the operation $FND_OP in $FND_DIR as $FND_NAME, runs
// $FND_CALLS calls with up to three open at a time, checks after each step
// that the state file parses, prints "started <id>" and "ended <id>", then
// leaves.
func fCallerRole() {
	fail := func(err error) {
		fmt.Fprintln(os.Stderr, "fnd-caller:", err)
		os.Exit(1)
	}
	dir, id, name := os.Getenv("FND_DIR"), os.Getenv("FND_OP"), os.Getenv("FND_NAME")
	calls, _ := strconv.Atoi(os.Getenv("FND_CALLS"))
	ctx := context.Background()
	l, err := ledger.Connect(ctx, ledger.Options{BasePath: dir, ParticipantID: name, NoSignalHandler: true})
	if err != nil {
		fail(err)
	}
	defer l.Close()
	op, err := l.JoinOperation(ctx, id, ledger.JoinOptions{})
	if err != nil {
		fail(err)
	}
	parses := func() {
		d, err := fReadState(dir, id)
		if err == nil && d.OperationID != id {
			err = fmt.Errorf("operationId %q", d.OperationID)
		}
		if err != nil {
			fail(fmt.Errorf("state file after a step: %w", err))
		}
	}
	var open []*ledger.Call[int]
	end := func() {
		c := open[0]
		open = open[1:]
		if err := c.End(ctx, 0); err != nil {
			fail(err)
		}
		fmt.Println("ended", c.ID())
		parses()
	}
	for i := range calls {
		c, err := ledger.StartCall[int](ctx, op, ledger.CallOptions[int]{Description: fmt.Sprintf("%s-%d", name, i)})
		if err != nil {
			fail(err)
		}
		fmt.Println("started", c.ID())
		parses()
		if open = append(open, c); len(open) == 3 {
			end()
		}
	}
	for len(open) > 0 {
		end()
	}
	if err := op.Leave(ctx, ledger.LeaveOptions{}); err != nil {
		fail(err)
	}
}

func TestChildProcessesShareAnOperation(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		alice := e.Open("alice", ledger.Options{})
		op := fCreate(t, alice, ledger.CreateOptions{})
		const children, calls = 4, 12
		type result struct {
			name           string
			started, ended []string
			err            error
		}
		results := make(chan result, children)
		for i := range children {
			name := fmt.Sprintf("child%d", i)
			cmd := child(t, "fnd-caller", "FND_DIR="+e.dir, "FND_OP="+op.ID(), "FND_NAME="+name, fmt.Sprintf("FND_CALLS=%d", calls))
			out, err := cmd.StdoutPipe()
			require.NoError(t, err)
			require.NoError(t, cmd.Start())
			go func() {
				r := result{name: name}
				sc := bufio.NewScanner(out)
				for sc.Scan() {
					kind, id, _ := strings.Cut(sc.Text(), " ")
					if kind == "started" {
						r.started = append(r.started, id)
					} else {
						r.ended = append(r.ended, id)
					}
				}
				r.err = cmd.Wait()
				results <- r
			}()
		}
		var started, ended []string
		for range children {
			select {
			case r := <-results:
				assert.NoErrorf(t, r.err, "%s", r.name)
				assert.Lenf(t, r.started, calls, "%s: calls started", r.name)
				assert.Lenf(t, r.ended, calls, "%s: calls ended", r.name)
				started = append(started, r.started...)
				ended = append(ended, r.ended...)
			case <-time.After(60 * time.Second):
				require.Fail(t, "children did not finish")
			}
		}
		d := fDirState(t, e.dir, op.ID())
		assert.Emptyf(t, d.CallFrames, "frames left: %v", fCallIDs(d.CallFrames))
		for i := range children {
			if p := fParticipant(d, fmt.Sprintf("child%d", i)); assert.NotNilf(t, p, "child%d's record", i) {
				assert.Equalf(t, "left", p.State, "child%d's record", i)
			}
		}
		counts := map[string]map[string]int{}
		for _, l := range fLines(t, fLog(t, e.dir, op.ID())) {
			id, _, _ := strings.Cut(l.rest, " ")
			if counts[l.event] == nil {
				counts[l.event] = map[string]int{}
			}
			counts[l.event][id]++
		}
		for ev, ids := range map[string][]string{"CALL_STARTED": started, "CALL_ENDED": ended} {
			for _, id := range ids {
				assert.Equalf(t, 1, counts[ev][id], "%s logged for %s", ev, id)
			}
			assert.Equalf(t, children*calls, len(counts[ev]), "calls %s was logged for", ev)
		}
	})
}

func TestDocumentedErrors(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		alice, bob := e.Open("alice", ledger.Options{}), e.Open("bob", ledger.Options{})

		t.Run("unknown operation", func(t *testing.T) {
			before := fFiles(t, e.dir)
			_, err := bob.JoinOperation(ctx, "20240101T00:00:00.000-nobody-deadbeef", ledger.JoinOptions{})
			assert.ErrorIs(t, err, ledger.ErrOperationNotFound, "join")
			assert.Equal(t, before, fFiles(t, e.dir), "files changed by a failed join")
		})

		t.Run("invalid ids", func(t *testing.T) {
			op := fCreate(t, alice, ledger.CreateOptions{})
			before := fFiles(t, e.dir)
			for _, id := range []string{"../x", "/", "", strings.Repeat("x", 1<<20), "a\x00b", "a/b", "..", "a b"} {
				_, err := bob.JoinOperation(ctx, id, ledger.JoinOptions{})
				assert.ErrorIsf(t, err, ledger.ErrInvalidID, "JoinOperation(%.20q)", id)
				assert.ErrorIsf(t, op.CreateCallFrame(ctx, id), ledger.ErrInvalidID, "CreateCallFrame(%.20q)", id)
				assert.ErrorIsf(t, op.DeleteCallFrame(ctx, id), ledger.ErrInvalidID, "DeleteCallFrame(%.20q)", id)
			}
			var ie *ledger.IDError
			_, err := bob.JoinOperation(ctx, "../x", ledger.JoinOptions{})
			if assert.ErrorAs(t, err, &ie, "JoinOperation(\"../x\")") {
				assert.Equal(t, "operation", ie.Kind, "IDError.Kind")
			}
			assert.Equal(t, before, fFiles(t, e.dir), "files changed by invalid ids")
		})

		t.Run("corrupt state", func(t *testing.T) {
			op := fCreate(t, alice, ledger.CreateOptions{})
			path := fStatePath(e.dir, op.ID())
			garbage := []byte(`{"operationId": "` + op.ID() + `", "callFrames": [{"callId": 42`)
			require.NoError(t, os.WriteFile(path, garbage, 0o644))
			_, err := op.State(ctx)
			var ce *ledger.CorruptError
			assert.ErrorIs(t, err, ledger.ErrCorruptLedger, "State")
			if e.remote {
				// The server names the file but keeps its directory to itself.
				assert.ErrorContains(t, err, filepath.Base(path), "State: the error must name the file")
			} else if assert.ErrorAs(t, err, &ce, "State: want a CorruptError") {
				assert.Equal(t, path, ce.Path, "CorruptError.Path")
			}
			_, err = ledger.StartCall[int](ctx, op, ledger.CallOptions[int]{})
			assert.ErrorIs(t, err, ledger.ErrCorruptLedger, "StartCall")
			_, err = bob.JoinOperation(ctx, op.ID(), ledger.JoinOptions{})
			assert.ErrorIs(t, err, ledger.ErrCorruptLedger, "JoinOperation")
			assert.ErrorIs(t, op.SetAbortFlag(ctx, true), ledger.ErrCorruptLedger, "SetAbortFlag")
			b, _ := os.ReadFile(path)
			assert.Equal(t, string(garbage), string(b), "corrupt file was changed")
		})

		t.Run("calls end once", func(t *testing.T) {
			op := fCreate(t, alice, ledger.CreateOptions{})
			c := fStart(t, op, ledger.CallOptions[int]{})
			assert.False(t, c.IsCompleted(), "completed before End")
			require.NoError(t, c.End(ctx, 1))
			assert.True(t, c.IsCompleted(), "not completed after End")
			assert.ErrorIs(t, c.End(ctx, 1), ledger.ErrCallCompleted, "second End")
			assert.ErrorIs(t, c.Fail(ctx, errors.New("late")), ledger.ErrCallCompleted, "Fail after End")
			f := fStart(t, op, ledger.CallOptions[int]{Contained: true})
			require.NoError(t, f.Fail(ctx, errors.New("broken")))
			assert.ErrorIs(t, f.End(ctx, 1), ledger.ErrCallCompleted, "End after Fail")
			assert.ErrorIs(t, op.DeleteCallFrame(ctx, c.ID()), ledger.ErrCallNotFound, "DeleteCallFrame of an ended call")
		})

		t.Run("only the initiator completes", func(t *testing.T) {
			op := fCreate(t, alice, ledger.CreateOptions{})
			joined := fJoin(t, bob, op.ID(), ledger.JoinOptions{})
			assert.ErrorIs(t, joined.Complete(ctx), ledger.ErrNotInitiator, "bob's Complete")
			assert.Equal(t, "running", fState(t, op).OperationState, "state after a refused Complete")
		})

		t.Run("joining a finished operation", func(t *testing.T) {
			done := fCreate(t, alice, ledger.CreateOptions{})
			require.NoError(t, done.Complete(ctx))
			_, err := bob.JoinOperation(ctx, done.ID(), ledger.JoinOptions{})
			assert.ErrorIs(t, err, ledger.ErrOperationCompleted, "join of a completed operation")
			failed := fCreate(t, alice, ledger.CreateOptions{})
			c := fStart(t, failed, ledger.CallOptions[int]{})
			require.NoError(t, c.Fail(ctx, errors.New("disk full")))
			_, err = bob.JoinOperation(ctx, failed.ID(), ledger.JoinOptions{})
			var fe *ledger.OperationFailedError
			assert.ErrorIs(t, err, ledger.ErrOperationFailed, "join of a failed operation")
			if assert.ErrorAs(t, err, &fe, "join of a failed operation: want an OperationFailedError") {
				assert.Equal(t, "disk full", fe.Info.Reason, "the OperationFailedError must say why")
			}
		})

		t.Run("closed ledger", func(t *testing.T) {
			carol := e.Open("carol", ledger.Options{})
			op := fCreate(t, carol, ledger.CreateOptions{})
			require.NoError(t, carol.Close())
			_, err := carol.CreateOperation(ctx, ledger.CreateOptions{})
			assert.ErrorIs(t, err, ledger.ErrClosed, "CreateOperation after Close")
			assert.ErrorIs(t, op.Log(ctx, ledger.LogInfo, "x"), ledger.ErrClosed, "Log after Close")
			assert.NoError(t, carol.Close(), "second Close")
		})
	})
}

func TestCompleteArchivesAndEndsEveryHandle(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		alice, bob := e.Open("alice", ledger.Options{}), e.Open("bob", ledger.Options{})
		op := fCreate(t, alice, ledger.CreateOptions{Description: "release"})
		other := fJoin(t, alice, op.ID(), ledger.JoinOptions{})
		joined := fJoin(t, bob, op.ID(), ledger.JoinOptions{})
		c := fStart(t, joined, ledger.CallOptions[int]{Description: "package"})
		require.NoError(t, c.End(ctx, 1))
		require.NoError(t, op.Complete(ctx))
		dst := fBackupDir(e.dir, op.ID())
		d := fParse(t, filepath.Join(dst, "operation.json"))
		assert.Equal(t, "completed", d.OperationState, "archived state")
		assert.Equal(t, "release", d.Description, "archived description")
		for _, name := range []string{op.ID() + ".operation.json", op.ID() + ".operation.log"} {
			_, err := os.Stat(filepath.Join(e.dir, name))
			assert.ErrorIsf(t, err, fs.ErrNotExist, "%s still live", name)
		}
		lines := fLines(t, fLog(t, e.dir, op.ID()))
		last := lines[len(lines)-1]
		assert.Equalf(t, "OPERATION_COMPLETED", last.event, "last log line %+v", last)
		assert.Equalf(t, "alice", last.participant, "last log line %+v", last)
		select {
		case <-op.Context().Done():
			assert.ErrorIs(t, context.Cause(op.Context()), ledger.ErrOperationCompleted, "operation context cause")
		default:
			assert.Fail(t, "operation context not cancelled by Complete")
		}
		for name, s := range map[string]*ledger.Operation{"alice's": op, "alice's other": other, "bob's": joined} {
			_, err := ledger.StartCall[int](ctx, s, ledger.CallOptions[int]{})
			assert.ErrorIsf(t, err, ledger.ErrOperationCompleted, "StartCall on %s session", name)
			assert.ErrorIsf(t, s.Log(ctx, ledger.LogInfo, "late"), ledger.ErrOperationCompleted, "Log on %s session", name)
			assert.ErrorIsf(t, s.SetAbortFlag(ctx, true), ledger.ErrOperationCompleted, "SetAbortFlag on %s session", name)
			assert.ErrorIsf(t, s.RegisterTempResource(ctx, "/tmp/x"), ledger.ErrOperationCompleted, "RegisterTempResource on %s session", name)
			err = s.Complete(ctx)
			assert.Truef(t, errors.Is(err, ledger.ErrOperationCompleted) || errors.Is(err, ledger.ErrNotInitiator),
				"Complete on %s session: %v", name, err)
		}
		_, err := bob.JoinOperation(ctx, op.ID(), ledger.JoinOptions{})
		assert.ErrorIs(t, err, ledger.ErrOperationCompleted, "join after Complete")
	})
}

func TestAbortFlag(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		alice, bob, carol := e.Open("alice", ledger.Options{}), e.Open("bob", ledger.Options{}), e.Open("carol", ledger.Options{})
		var mu sync.Mutex
		aborts := map[string]int{}
		onAbort := func(name string) ledger.OperationCallback {
			return ledger.OperationCallback{OnAbort: func(*ledger.Operation) {
				mu.Lock()
				aborts[name]++
				mu.Unlock()
			}}
		}
		abortCount := func(name string) int {
			mu.Lock()
			defer mu.Unlock()
			return aborts[name]
		}
		op := fCreate(t, alice, ledger.CreateOptions{Callback: onAbort("alice")})
		joined := fJoin(t, bob, op.ID(), ledger.JoinOptions{Callback: onAbort("bob")})
		require.False(t, op.IsAborted(), "aborted from the start")
		v, err := joined.CheckAbort(ctx)
		require.NoError(t, err, "CheckAbort before")
		require.False(t, v, "CheckAbort before")

		require.NoError(t, op.SetAbortFlag(ctx, true))
		waitClosed(t, op.Aborted(), time.Second, "alice's Aborted")
		waitFor(t, time.Second, "alice's OnAbort", func() bool { return abortCount("alice") == 1 })
		assert.True(t, op.IsAborted(), "alice not aborted")
		assert.Equal(t, 1, abortCount("alice"), "alice's OnAbort calls")
		assert.ErrorIs(t, context.Cause(op.Context()), ledger.ErrAborted, "alice's context cause")
		v, err = joined.CheckAbort(ctx)
		require.NoError(t, err, "bob's CheckAbort")
		require.True(t, v, "bob's CheckAbort")
		waitClosed(t, joined.Aborted(), time.Second, "bob's Aborted")
		waitFor(t, time.Second, "bob's OnAbort", func() bool { return abortCount("bob") == 1 })
		require.NoError(t, op.SetAbortFlag(ctx, true))
		// Clearing the flag does not undo an abort already seen.
		require.NoError(t, op.SetAbortFlag(ctx, false))
		v, err = joined.CheckAbort(ctx)
		assert.NoError(t, err, "CheckAbort after clearing")
		assert.False(t, v, "CheckAbort after clearing")
		assert.True(t, op.IsAborted(), "clearing the flag undid alice's seen abort")
		assert.True(t, joined.IsAborted(), "clearing the flag undid bob's seen abort")
		assert.Equal(t, 1, abortCount("alice"), "alice's OnAbort calls")
		assert.Equal(t, 1, abortCount("bob"), "bob's OnAbort calls")
		var sets []string
		for _, l := range fLines(t, fLog(t, e.dir, op.ID())) {
			if l.event == "ABORT_SET" {
				sets = append(sets, l.level+" "+l.participant+" "+l.rest)
			}
		}
		assert.Equal(t, []string{"WARNING alice true", "WARNING alice false"}, sets, "ABORT_SET lines")

		// TriggerAbort aborts this process only.
		op2 := fCreate(t, alice, ledger.CreateOptions{})
		local := fJoin(t, carol, op2.ID(), ledger.JoinOptions{Callback: onAbort("carol")})
		local.TriggerAbort()
		local.TriggerAbort()
		waitFor(t, time.Second, "carol's OnAbort", func() bool { return abortCount("carol") == 1 })
		assert.True(t, local.IsAborted(), "carol not aborted by TriggerAbort")
		assert.Equal(t, 1, abortCount("carol"), "carol's OnAbort calls")
		assert.ErrorIs(t, context.Cause(local.Context()), ledger.ErrAborted, "carol's context cause")
		v, err = op2.CheckAbort(ctx)
		assert.NoError(t, err, "alice's CheckAbort")
		assert.False(t, v, "TriggerAbort reached the ledger")
		assert.False(t, op2.IsAborted(), "TriggerAbort reached alice")
	})
}

func TestLogLines(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		alice, bob := e.Open("alice", ledger.Options{}), e.Open("bob", ledger.Options{})
		op := fCreate(t, alice, ledger.CreateOptions{Description: "deploy"})
		joined := fJoin(t, bob, op.ID(), ledger.JoinOptions{})
		for _, lv := range []ledger.LogLevel{ledger.LogDebug, ledger.LogInfo, ledger.LogWarning, ledger.LogError} {
			require.NoError(t, joined.Log(ctx, lv, "message at "+lv.String()+"\nsecond line"))
		}
		ok := fStart(t, joined, ledger.CallOptions[int]{Description: "fetch"})
		require.NoError(t, ok.End(ctx, 1))
		bad := fStart(t, op, ledger.CallOptions[int]{Contained: true})
		require.NoError(t, bad.Fail(ctx, errors.New("timeout")))
		require.NoError(t, op.SetAbortFlag(ctx, true))
		require.NoError(t, joined.Leave(ctx, ledger.LeaveOptions{}))
		require.NoError(t, op.Complete(ctx))
		var got []string
		for _, l := range fLines(t, fLog(t, e.dir, op.ID())) {
			_, err := time.Parse(time.RFC3339Nano, l.time)
			assert.NoErrorf(t, err, "time %q", l.time)
			got = append(got, l.level+" "+l.participant+" "+l.event)
		}
		want := []string{
			"INFO alice OPERATION_CREATED", "INFO bob PARTICIPANT_JOINED",
			"INFO bob message", "WARNING bob message", "ERROR bob message",
			"INFO bob CALL_STARTED", "INFO bob CALL_ENDED",
			"INFO alice CALL_STARTED", "ERROR alice CALL_FAILED",
			"WARNING alice ABORT_SET", "INFO bob PARTICIPANT_LEFT", "INFO alice OPERATION_COMPLETED",
		}
		// Other lines may come between (heartbeats, later features): want
		// must appear in order.
		i := 0
		for _, g := range got {
			if i < len(want) && g == want[i] {
				i++
			}
		}
		if i < len(want) {
			assert.Failf(t, "log lacks a line", "%q (in order) at position %d; log:\n%s", want[i], i, strings.Join(got, "\n"))
		}
		debug, err := os.ReadFile(filepath.Join(fBackupDir(e.dir, op.ID()), "operation.debug.log"))
		require.NoError(t, err)
		dl := fLines(t, string(debug))
		assert.Truef(t, slices.ContainsFunc(dl, func(l fLogLine) bool {
			return l.level == "DEBUG" && l.participant == "bob" && l.event+" "+l.rest == `message at DEBUG\nsecond line`
		}), "debug log lacks bob's debug line:\n%s", debug)
		assert.NotContains(t, fLog(t, e.dir, op.ID()), "[DEBUG]", "a DEBUG line went to the INFO log")
	})
}

func TestTempResourcesAndCallFrames(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		alice := e.Open("alice", ledger.Options{})
		op := fCreate(t, alice, ledger.CreateOptions{})
		kept := filepath.Join(t.TempDir(), "kept")
		require.NoError(t, os.WriteFile(kept, nil, 0o644))
		for range 2 {
			require.NoError(t, op.RegisterTempResource(ctx, kept))
		}
		host, _ := os.Hostname()
		d := fState(t, op)
		require.Len(t, d.TempResources, 1, "temp resources after registering one path twice")
		r := d.TempResources[0]
		assert.Equal(t, kept, r.Path, "temp resource")
		assert.Equal(t, os.Getpid(), r.Owner, "temp resource owner")
		assert.Equal(t, "alice", r.ParticipantID, "temp resource participant")
		assert.Equal(t, host, r.Host, "temp resource host")
		assert.False(t, r.RegisteredAt.IsZero(), "temp resource without RegisteredAt")
		assert.Error(t, op.RegisterTempResource(ctx, ""), "empty temp path accepted")
		require.NoError(t, op.UnregisterTempResource(ctx, kept))
		assert.Empty(t, fState(t, op).TempResources, "temp resources after unregistering")
		_, err := os.Stat(kept)
		assert.NoError(t, err, "unregistering deleted the path")

		require.NoError(t, op.CreateCallFrame(ctx, "frame-1"))
		assert.Error(t, op.CreateCallFrame(ctx, "frame-1"), "duplicate call frame accepted")
		d = fState(t, op)
		if assert.Len(t, d.CallFrames, 1, "frames") {
			f := d.CallFrames[0]
			assert.Equal(t, "frame-1", f.CallID, "frame")
			assert.Equal(t, "alice", f.ParticipantID, "frame participant")
			assert.Equal(t, os.Getpid(), f.PID, "frame pid")
			assert.Equal(t, "active", f.State, "frame state")
		}
		require.NoError(t, op.DeleteCallFrame(ctx, "frame-1"))
		assert.ErrorIs(t, op.DeleteCallFrame(ctx, "frame-1"), ledger.ErrCallNotFound, "deleting a deleted frame")

		// What State and CachedData return is the caller's to change.
		d = fState(t, op)
		d.CallFrames = append(d.CallFrames, ledger.CallFrame{CallID: "mine"})
		d.Participants[0].State = "scribbled"
		d2 := fState(t, op)
		assert.Empty(t, d2.CallFrames, "State shares memory with the ledger")
		assert.Equal(t, "active", d2.Participants[0].State, "State shares memory with the ledger")
		c := op.CachedData()
		c.Participants[0].State = "scribbled"
		assert.Equal(t, "active", op.CachedData().Participants[0].State, "CachedData shares memory")
	})
}

func TestCallOutcomes(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		alice := e.Open("alice", ledger.Options{})
		var mu sync.Mutex
		var events []string
		note := func(s string) {
			mu.Lock()
			events = append(events, s)
			mu.Unlock()
		}
		noted := func() []string {
			mu.Lock()
			defer mu.Unlock()
			return slices.Clone(events)
		}
		cb := ledger.CallCallback[string]{
			OnCompletion:      func(r string) { note("completion " + r) },
			OnCleanup:         func() { note("cleanup") },
			OnOperationFailed: func(info ledger.OperationFailedInfo) { note("operation failed " + info.Reason) },
		}
		op := fCreate(t, alice, ledger.CreateOptions{Callback: ledger.OperationCallback{
			OnFailure: func(_ *ledger.Operation, info ledger.OperationFailedInfo) { note("failure " + info.Reason) },
		}})

		ok, err := ledger.StartCall[string](ctx, op, ledger.CallOptions[string]{Description: "fetch", Callback: cb})
		require.NoError(t, err)
		assert.Regexp(t, fCallIDRE, ok.ID(), "call id")
		assert.Equal(t, "fetch", ok.Description(), "call description")
		assert.False(t, ok.StartedAt().IsZero(), "call start time")
		require.NoError(t, ok.End(ctx, "42"))
		// A contained failure stays with its call.
		contained, err := ledger.StartCall[string](ctx, op, ledger.CallOptions[string]{Contained: true, Callback: cb})
		require.NoError(t, err)
		if frames := fState(t, op).CallFrames; assert.Len(t, frames, 1, "contained call's frame") {
			assert.False(t, frames[0].FailOnCrash, "contained call's frame fails on crash")
		}
		require.NoError(t, contained.Fail(ctx, errors.New("flaky")))
		st := fState(t, op)
		assert.Equal(t, "running", st.OperationState, "state after a contained failure")
		assert.Empty(t, st.CallFrames, "frames after a contained failure")
		assert.Nil(t, st.Failure, "failure after a contained failure")
		select {
		case <-op.Failed():
			require.Fail(t, "a contained failure failed the operation")
		default:
		}
		assert.Equal(t, []string{"completion 42", "cleanup"}, noted(), "callbacks")

		// A call that fails on crash fails the operation.
		temp := filepath.Join(t.TempDir(), "scratch")
		require.NoError(t, os.WriteFile(temp, nil, 0o644))
		require.NoError(t, op.RegisterTempResource(ctx, temp))
		fatal, err := ledger.StartCall[string](ctx, op, ledger.CallOptions[string]{Callback: cb})
		require.NoError(t, err)
		require.NoError(t, fatal.Fail(ctx, errors.New("disk full")))
		waitClosed(t, op.Failed(), time.Second, "Failed")
		info, ok2 := op.Failure()
		assert.True(t, ok2, "no Failure()")
		assert.Equal(t, "disk full", info.Reason, "Failure()")
		assert.Equal(t, "alice", info.ParticipantID, "Failure()")
		assert.Equal(t, []string{fatal.ID()}, info.CrashedCallIDs, "Failure()")
		assert.Equal(t, op.ID(), info.OperationID, "Failure()")
		assert.False(t, info.FailedAt.IsZero(), "Failure() without FailedAt")
		var fe *ledger.OperationFailedError
		if assert.ErrorAs(t, context.Cause(op.Context()), &fe, "context cause") {
			assert.Equal(t, "disk full", fe.Info.Reason, "context cause")
		}
		waitFor(t, time.Second, "OnFailure", func() bool { return slices.Contains(noted(), "failure disk full") })
		got := noted()
		assert.Containsf(t, got[2:], "cleanup", "OnCleanup did not run after Fail: %q", got)
		_, err = os.Stat(temp)
		assert.ErrorIs(t, err, fs.ErrNotExist, "registered temp resource survived the failure")
		d := fParse(t, filepath.Join(fBackupDir(e.dir, op.ID()), "operation.json"))
		assert.Equal(t, "failed", d.OperationState, "archived state")
		if assert.NotNil(t, d.Failure, "archived failure") {
			assert.Equal(t, "disk full", d.Failure.Reason, "archived failure")
			assert.Equal(t, []string{fatal.ID()}, d.Failure.CrashedCallIDs, "archived failure")
		}
		_, err = ledger.StartCall[string](ctx, op, ledger.CallOptions[string]{})
		assert.ErrorIs(t, err, ledger.ErrOperationFailed, "StartCall on a failed operation")
	})
}

func TestLockWaitEndsWithContext(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		alice := e.Open("alice", ledger.Options{})
		op := fCreate(t, alice, ledger.CreateOptions{})
		holder := child(t, "fnd-flock", "FND_LOCK="+fLockPath(e.dir, op.ID()))
		stdin, err := holder.StdinPipe()
		require.NoError(t, err)
		stdout, err := holder.StdoutPipe()
		require.NoError(t, err)
		require.NoError(t, holder.Start())
		t.Cleanup(func() { stdin.Close(); holder.Wait() })
		line, err := bufio.NewReader(stdout).ReadString('\n')
		require.NoError(t, err, "the lock holder's answer")
		require.Equal(t, "locked\n", line, "the lock holder's answer")
		before, _ := os.ReadFile(fStatePath(e.dir, op.ID()))
		// Each call gets its own deadline: a remote call leaves the server
		// a part of it to answer lock_timeout in.
		short := func() context.Context {
			c, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
			t.Cleanup(cancel)
			return c
		}
		_, err = ledger.StartCall[int](short(), op, ledger.CallOptions[int]{})
		assert.ErrorIs(t, err, ledger.ErrLockTimeout, "StartCall while another process holds the lock")
		assert.ErrorIs(t, op.Log(short(), ledger.LogInfo, "x"), ledger.ErrLockTimeout, "Log while another process holds the lock")
		after, _ := os.ReadFile(fStatePath(e.dir, op.ID()))
		assert.Equal(t, string(before), string(after), "state changed while another process held the lock")
		// Without a deadline the call waits for the lock.
		done := make(chan error, 1)
		go func() {
			c, err := ledger.StartCall[int](ctx, op, ledger.CallOptions[int]{})
			if err == nil {
				err = c.End(ctx, 0)
			}
			done <- err
		}()
		stdin.Close()
		select {
		case err := <-done:
			require.NoError(t, err)
		case <-time.After(20 * time.Second):
			require.Fail(t, "call did not get the lock after the holder let go")
		}
	})
}

func init() { roles["fnd-flock"] = fFlockRole }

// fFlockRole holds an exclusive flock on $FND_LOCK, says "locked", and
// lets go when its stdin closes.
func fFlockRole() {
	// The lock file of a live operation exists: do not make one.
	err := flock.New(os.Getenv("FND_LOCK"), flock.SetFlag(os.O_RDWR)).Lock()
	if err != nil {
		fmt.Fprintln(os.Stderr, "fnd-flock:", err)
		os.Exit(1)
	}
	fmt.Println("locked")
	io.Copy(io.Discard, os.Stdin)
}

func TestOptionsValidation(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	for _, c := range []struct {
		name  string
		o     ledger.Options
		field string
		is    error
	}{
		{"stale below interval", ledger.Options{HeartbeatInterval: 5 * time.Second, StaleThreshold: 2 * time.Second}, "Options.StaleThreshold", nil},
		{"stale equals interval", ledger.Options{HeartbeatInterval: time.Second, StaleThreshold: time.Second}, "Options.StaleThreshold", nil},
		{"stale below default interval", ledger.Options{StaleThreshold: time.Second}, "Options.StaleThreshold", nil},
		{"negative interval", ledger.Options{HeartbeatInterval: -time.Second}, "Options.HeartbeatInterval", nil},
		{"negative liveness poll", ledger.Options{LivenessPoll: -1}, "Options.LivenessPoll", nil},
		{"negative lock timeout", ledger.Options{LockTimeout: -1}, "Options.LockTimeout", nil},
		{"negative pid", ledger.Options{ParticipantPID: -1}, "Options.ParticipantPID", nil},
		{"bad participant", ledger.Options{ParticipantID: "a:b"}, "Options.ParticipantID", ledger.ErrInvalidID},
		{"traversal participant", ledger.Options{ParticipantID: "../x"}, "Options.ParticipantID", ledger.ErrInvalidID},
		{"long participant", ledger.Options{ParticipantID: strings.Repeat("p", 65)}, "Options.ParticipantID", ledger.ErrInvalidID},
		{"both backends", ledger.Options{ServerURL: "http://127.0.0.1:1"}, "Options.ServerURL", nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			o := c.o
			o.BasePath = dir
			l, err := ledger.Connect(ctx, o)
			if err == nil {
				l.Close()
				require.Failf(t, "invalid options accepted", "Connect accepted %+v", c.o)
			}
			assert.ErrorContains(t, err, c.field, "the error must name the field")
			assert.Truef(t, strings.HasPrefix(err.Error(), "ledger: "), "error %q lacks the ledger: prefix", err)
			if c.is != nil {
				assert.ErrorIs(t, err, c.is)
			}
			_, err = ledger.NewLocalLedger(o)
			assert.Error(t, err, "NewLocalLedger accepted it")
		})
	}
	_, err := ledger.NewLocalLedger(ledger.Options{})
	assert.ErrorContains(t, err, "Options.BasePath", "NewLocalLedger without BasePath")
	// Zero values are valid: the participant is named after host and pid.
	l, err := ledger.Connect(ctx, ledger.Options{BasePath: dir, NoSignalHandler: true})
	require.NoError(t, err)
	defer l.Close()
	assert.Regexp(t, regexp.MustCompile(`^[A-Za-z0-9_-]+-`+strconv.Itoa(os.Getpid())+`$`), l.ParticipantID(), "default participant id")
	if ll, ok := l.(*ledger.LocalLedger); assert.Truef(t, ok, "Connect with BasePath gave %T", l) {
		assert.Equal(t, dir, ll.BasePath(), "BasePath")
	}
}

// TestLocalOptionsReachTheStore checks MaxBackups, MaxTrail, Durable and
// the ledger callbacks of a local ledger.
func TestLocalOptionsReachTheStore(t *testing.T) {
	ctx := context.Background()
	t.Run("MaxBackups and callbacks", func(t *testing.T) {
		dir := t.TempDir()
		var mu sync.Mutex
		var backups, lines []string
		l, err := ledger.NewLocalLedger(ledger.Options{BasePath: dir, ParticipantID: "alice", MaxBackups: 2, NoSignalHandler: true,
			Callback: ledger.LedgerCallback{
				OnBackupCreated: func(id, d string) { mu.Lock(); backups = append(backups, d); mu.Unlock() },
				OnLogLine:       func(id, line string) { mu.Lock(); lines = append(lines, line); mu.Unlock() },
			}})
		require.NoError(t, err)
		defer l.Close()
		var ids []string
		for range 4 {
			op := fCreate(t, l, ledger.CreateOptions{})
			require.NoError(t, op.Complete(ctx))
			ids = append(ids, op.ID())
		}
		ents, _ := os.ReadDir(filepath.Join(dir, "backup"))
		var kept []string
		for _, de := range ents {
			kept = append(kept, de.Name())
		}
		assert.Equal(t, slices.Sorted(slices.Values(ids[2:])), kept, "backups kept, want the newest two")
		mu.Lock()
		defer mu.Unlock()
		if assert.Len(t, backups, 4, "OnBackupCreated") {
			assert.Equal(t, fBackupDir(dir, ids[3]), backups[3], "OnBackupCreated")
		}
		log := fLines(t, fLog(t, dir, ids[3]))
		var fromFile []string
		for _, ln := range log {
			fromFile = append(fromFile, ln.time+" ["+ln.level+"] "+ln.participant+" "+strings.TrimSpace(ln.event+" "+ln.rest))
		}
		var fromCallback []string
		for _, ln := range lines[len(lines)-len(log):] {
			fromCallback = append(fromCallback, strings.TrimSpace(ln))
		}
		assert.Equal(t, fromFile, fromCallback, "what OnLogLine saw, against the log")
	})
	t.Run("default MaxBackups", func(t *testing.T) {
		dir := t.TempDir()
		l, err := ledger.NewLocalLedger(ledger.Options{BasePath: dir, ParticipantID: "alice", NoSignalHandler: true})
		require.NoError(t, err)
		defer l.Close()
		for range ledger.DefaultMaxBackups + 2 {
			require.NoError(t, fCreate(t, l, ledger.CreateOptions{}).Complete(ctx))
		}
		ents, _ := os.ReadDir(filepath.Join(dir, "backup"))
		assert.Len(t, ents, ledger.DefaultMaxBackups, "backups kept")
	})
	t.Run("MaxTrail", func(t *testing.T) {
		dir := t.TempDir()
		l, err := ledger.NewLocalLedger(ledger.Options{BasePath: dir, ParticipantID: "alice", MaxTrail: 2,
			HeartbeatInterval: 20 * time.Millisecond, StaleThreshold: time.Second, NoSignalHandler: true})
		require.NoError(t, err)
		defer l.Close()
		op := fCreate(t, l, ledger.CreateOptions{})
		trail := filepath.Join(dir, op.ID()+"_trail")
		snapshots := func() int {
			ents, _ := os.ReadDir(trail)
			require.LessOrEqual(t, len(ents), 2, "trail snapshots, MaxTrail is 2")
			return len(ents)
		}
		change := func() {
			c := fStart(t, op, ledger.CallOptions[int]{})
			require.NoError(t, c.End(ctx, 0))
		}
		waitFor(t, 10*time.Second, "two trail snapshots", func() bool { change(); return snapshots() == 2 })
		for range 20 {
			change()
			snapshots()
		}
		ents, _ := os.ReadDir(trail)
		for _, de := range ents {
			d := fParse(t, filepath.Join(trail, de.Name()))
			assert.Equalf(t, op.ID(), d.OperationID, "the operation of snapshot %s", de.Name())
		}
	})
	t.Run("no trail, durable", func(t *testing.T) {
		dir := t.TempDir()
		l, err := ledger.NewLocalLedger(ledger.Options{BasePath: dir, ParticipantID: "alice", MaxTrail: -1, MaxBackups: -1,
			Durable: true, NoSignalHandler: true})
		require.NoError(t, err)
		defer l.Close()
		op := fCreate(t, l, ledger.CreateOptions{})
		for range 5 {
			c := fStart(t, op, ledger.CallOptions[int]{})
			require.NoError(t, c.End(ctx, 0))
		}
		require.NoError(t, op.Complete(ctx))
		_, err = os.Stat(filepath.Join(fBackupDir(dir, op.ID()), "trail"))
		assert.ErrorIs(t, err, fs.ErrNotExist, "trail kept with MaxTrail -1")
		assert.Equal(t, "completed", fParse(t, filepath.Join(fBackupDir(dir, op.ID()), "operation.json")).OperationState,
			"durable ledger archived state")
	})
}
