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
	if err != nil {
		t.Fatalf("state of %s: %v", id, err)
	}
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
	if err != nil {
		t.Fatal(err)
	}
	d := new(ledger.Data)
	if err := json.Unmarshal(b, d); err != nil {
		t.Fatalf("%s does not parse: %v\n%s", path, err, b)
	}
	return d
}

// fLog returns the INFO log of id in dir, live or archived.
func fLog(t testing.TB, dir, id string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, id+".operation.log"))
	if errors.Is(err, fs.ErrNotExist) {
		b, err = os.ReadFile(filepath.Join(fBackupDir(dir, id), "operation.log"))
	}
	if err != nil {
		t.Fatal(err)
	}
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
		if m == nil {
			t.Fatalf("log line %q is not `<RFC3339 UTC> [LEVEL] <participantId> <EVENT or message>`", l)
		}
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
	if err != nil {
		t.Fatal(err)
	}
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
	if err != nil {
		t.Fatal(err)
	}
	return op
}

func fJoin(t testing.TB, l ledger.Ledger, id string, o ledger.JoinOptions) *ledger.Operation {
	t.Helper()
	op, err := l.JoinOperation(context.Background(), id, o)
	if err != nil {
		t.Fatal(err)
	}
	return op
}

func fState(t testing.TB, op *ledger.Operation) *ledger.Data {
	t.Helper()
	d, err := op.State(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func fStart(t testing.TB, op *ledger.Operation, o ledger.CallOptions[int]) *ledger.Call[int] {
	t.Helper()
	c, err := ledger.StartCall[int](context.Background(), op, o)
	if err != nil {
		t.Fatal(err)
	}
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
		if !fOperationIDRE.MatchString(op.ID()) {
			t.Errorf("operation id %q", op.ID())
		}
		if op.ParticipantID() != "alice" || !op.IsInitiator() || op.SessionID() != 1 ||
			op.StartTime().IsZero() || op.Elapsed() < 0 || alice.ParticipantID() != "alice" {
			t.Errorf("creator: participant %s, initiator %t, session %d, start %v",
				op.ParticipantID(), op.IsInitiator(), op.SessionID(), op.StartTime())
		}
		op2 := fJoin(t, alice, op.ID(), ledger.JoinOptions{})
		op3 := fJoin(t, alice, op.ID(), ledger.JoinOptions{})
		b1 := fJoin(t, bob, op.ID(), ledger.JoinOptions{})
		if op2.SessionID() != 2 || op3.SessionID() != 3 || !op3.IsInitiator() {
			t.Errorf("alice's sessions %d, %d (initiator %t), want 2, 3", op2.SessionID(), op3.SessionID(), op3.IsInitiator())
		}
		if b1.SessionID() != 1 || b1.IsInitiator() || b1.ParticipantID() != "bob" || !b1.StartTime().Equal(op.StartTime()) {
			t.Errorf("bob: session %d, initiator %t, participant %s, start %v", b1.SessionID(), b1.IsInitiator(), b1.ParticipantID(), b1.StartTime())
		}
		d := fState(t, op)
		if d.Description != "nightly build" || d.InitiatorID != "alice" || d.OperationState != "running" {
			t.Errorf("state: %+v", d)
		}
		host, _ := os.Hostname()
		if a := fParticipant(d, "alice"); a == nil || a.Sessions != 3 || a.State != "active" || a.PID != os.Getpid() || a.Host != host {
			t.Errorf("alice's record: %+v", a)
		}
		if b := fParticipant(d, "bob"); b == nil || b.Sessions != 1 || b.State != "active" {
			t.Errorf("bob's record: %+v", b)
		}

		// Leaving one of several sessions keeps the participant.
		if err := op3.Leave(ctx, ledger.LeaveOptions{}); err != nil {
			t.Fatal(err)
		}
		if err := op3.Leave(ctx, ledger.LeaveOptions{}); !errors.Is(err, ledger.ErrSessionLeft) {
			t.Errorf("second Leave: %v, want ErrSessionLeft", err)
		}
		if err := op3.Log(ctx, ledger.LogInfo, "x"); !errors.Is(err, ledger.ErrSessionLeft) {
			t.Errorf("Log after Leave: %v, want ErrSessionLeft", err)
		}
		if _, err := ledger.StartCall[int](ctx, op3, ledger.CallOptions[int]{}); !errors.Is(err, ledger.ErrSessionLeft) {
			t.Errorf("StartCall after Leave: %v, want ErrSessionLeft", err)
		}
		// The other sessions go on.
		c := fStart(t, op2, ledger.CallOptions[int]{})
		if err := c.End(ctx, 0); err != nil {
			t.Fatal(err)
		}
		d = fState(t, op)
		if a := fParticipant(d, "alice"); a.Sessions != 2 || a.State != "active" {
			t.Errorf("alice after one leave: %+v", a)
		}
		// The last session of a process marks the participant left.
		if err := b1.Leave(ctx, ledger.LeaveOptions{}); err != nil {
			t.Fatal(err)
		}
		d = fState(t, op)
		if b := fParticipant(d, "bob"); b.Sessions != 0 || b.State != "left" {
			t.Errorf("bob after his last leave: %+v", b)
		}
		var left []string
		for _, l := range fLines(t, fLog(t, e.dir, op.ID())) {
			if l.event == "PARTICIPANT_LEFT" {
				left = append(left, l.participant)
			}
		}
		if !slices.Equal(left, []string{"bob"}) {
			t.Errorf("PARTICIPANT_LEFT logged by %v, want only bob", left)
		}
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
					if err != nil {
						t.Error(err)
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
					if err := c.End(ctx, 1); err != nil {
						t.Error(err)
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
		if len(started) != workers*perWorker || completedSum != len(ended) {
			t.Fatalf("%d calls started, %d OnCompletion for %d ended", len(started), completedSum, len(ended))
		}
		var openIDs []string
		for _, c := range open {
			openIDs = append(openIDs, c.ID())
		}
		slices.Sort(openIDs)
		if got := fCallIDs(fState(t, op).CallFrames); !slices.Equal(got, openIDs) {
			t.Errorf("frames in the ledger:\n%v\nwant the calls still open:\n%v", got, openIDs)
		}
		for _, c := range open {
			if err := c.End(ctx, 1); err != nil {
				t.Fatal(err)
			}
			ended = append(ended, c.ID())
		}
		if n := len(fState(t, op).CallFrames); n != 0 {
			t.Errorf("%d frames left after every call ended", n)
		}
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
			if !slices.Equal(got, want) {
				t.Errorf("%s logged for %d calls, want %d:\n%v\n%v", ev, len(got), len(want), got, want)
			}
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
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
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
				if r.err != nil {
					t.Errorf("%s: %v", r.name, r.err)
				}
				if len(r.started) != calls || len(r.ended) != calls {
					t.Errorf("%s started %d and ended %d calls, want %d", r.name, len(r.started), len(r.ended), calls)
				}
				started = append(started, r.started...)
				ended = append(ended, r.ended...)
			case <-time.After(60 * time.Second):
				t.Fatal("children did not finish")
			}
		}
		d := fDirState(t, e.dir, op.ID())
		if len(d.CallFrames) != 0 {
			t.Errorf("frames left: %v", fCallIDs(d.CallFrames))
		}
		for i := range children {
			if p := fParticipant(d, fmt.Sprintf("child%d", i)); p == nil || p.State != "left" {
				t.Errorf("child%d's record: %+v", i, p)
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
				if counts[ev][id] != 1 {
					t.Errorf("%s logged %d times for %s", ev, counts[ev][id], id)
				}
			}
			if len(counts[ev]) != children*calls {
				t.Errorf("%s logged for %d calls, want %d", ev, len(counts[ev]), children*calls)
			}
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
			if !errors.Is(err, ledger.ErrOperationNotFound) {
				t.Errorf("join: %v, want ErrOperationNotFound", err)
			}
			if after := fFiles(t, e.dir); !slices.Equal(before, after) {
				t.Errorf("files changed by a failed join: %v → %v", before, after)
			}
		})

		t.Run("invalid ids", func(t *testing.T) {
			op := fCreate(t, alice, ledger.CreateOptions{})
			before := fFiles(t, e.dir)
			for _, id := range []string{"../x", "/", "", strings.Repeat("x", 1<<20), "a\x00b", "a/b", "..", "a b"} {
				if _, err := bob.JoinOperation(ctx, id, ledger.JoinOptions{}); !errors.Is(err, ledger.ErrInvalidID) {
					t.Errorf("JoinOperation(%.20q): %v, want ErrInvalidID", id, err)
				}
				if err := op.CreateCallFrame(ctx, id); !errors.Is(err, ledger.ErrInvalidID) {
					t.Errorf("CreateCallFrame(%.20q): %v, want ErrInvalidID", id, err)
				}
				if err := op.DeleteCallFrame(ctx, id); !errors.Is(err, ledger.ErrInvalidID) {
					t.Errorf("DeleteCallFrame(%.20q): %v, want ErrInvalidID", id, err)
				}
			}
			var ie *ledger.IDError
			if _, err := bob.JoinOperation(ctx, "../x", ledger.JoinOptions{}); !errors.As(err, &ie) || ie.Kind != "operation" {
				t.Errorf("not an IDError: %v", err)
			}
			if after := fFiles(t, e.dir); !slices.Equal(before, after) {
				t.Errorf("files changed by invalid ids: %v → %v", before, after)
			}
		})

		t.Run("corrupt state", func(t *testing.T) {
			op := fCreate(t, alice, ledger.CreateOptions{})
			path := fStatePath(e.dir, op.ID())
			garbage := []byte(`{"operationId": "` + op.ID() + `", "callFrames": [{"callId": 42`)
			if err := os.WriteFile(path, garbage, 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := op.State(ctx)
			var ce *ledger.CorruptError
			switch {
			case e.remote:
				// The server names the file but keeps its directory to itself.
				if !errors.Is(err, ledger.ErrCorruptLedger) || !strings.Contains(err.Error(), filepath.Base(path)) {
					t.Errorf("State: %v, want ErrCorruptLedger naming %s", err, filepath.Base(path))
				}
			case !errors.Is(err, ledger.ErrCorruptLedger) || !errors.As(err, &ce) || ce.Path != path:
				t.Errorf("State: %v, want a CorruptError naming %s", err, path)
			}
			if _, err := ledger.StartCall[int](ctx, op, ledger.CallOptions[int]{}); !errors.Is(err, ledger.ErrCorruptLedger) {
				t.Errorf("StartCall: %v, want ErrCorruptLedger", err)
			}
			if _, err := bob.JoinOperation(ctx, op.ID(), ledger.JoinOptions{}); !errors.Is(err, ledger.ErrCorruptLedger) {
				t.Errorf("JoinOperation: %v, want ErrCorruptLedger", err)
			}
			if err := op.SetAbortFlag(ctx, true); !errors.Is(err, ledger.ErrCorruptLedger) {
				t.Errorf("SetAbortFlag: %v, want ErrCorruptLedger", err)
			}
			if b, _ := os.ReadFile(path); string(b) != string(garbage) {
				t.Errorf("corrupt file was changed to %q", b)
			}
		})

		t.Run("calls end once", func(t *testing.T) {
			op := fCreate(t, alice, ledger.CreateOptions{})
			c := fStart(t, op, ledger.CallOptions[int]{})
			if c.IsCompleted() {
				t.Error("completed before End")
			}
			if err := c.End(ctx, 1); err != nil {
				t.Fatal(err)
			}
			if !c.IsCompleted() {
				t.Error("not completed after End")
			}
			if err := c.End(ctx, 1); !errors.Is(err, ledger.ErrCallCompleted) {
				t.Errorf("second End: %v", err)
			}
			if err := c.Fail(ctx, errors.New("late")); !errors.Is(err, ledger.ErrCallCompleted) {
				t.Errorf("Fail after End: %v", err)
			}
			f := fStart(t, op, ledger.CallOptions[int]{Contained: true})
			if err := f.Fail(ctx, errors.New("broken")); err != nil {
				t.Fatal(err)
			}
			if err := f.End(ctx, 1); !errors.Is(err, ledger.ErrCallCompleted) {
				t.Errorf("End after Fail: %v", err)
			}
			if err := op.DeleteCallFrame(ctx, c.ID()); !errors.Is(err, ledger.ErrCallNotFound) {
				t.Errorf("DeleteCallFrame of an ended call: %v, want ErrCallNotFound", err)
			}
		})

		t.Run("only the initiator completes", func(t *testing.T) {
			op := fCreate(t, alice, ledger.CreateOptions{})
			joined := fJoin(t, bob, op.ID(), ledger.JoinOptions{})
			if err := joined.Complete(ctx); !errors.Is(err, ledger.ErrNotInitiator) {
				t.Errorf("bob's Complete: %v, want ErrNotInitiator", err)
			}
			if d := fState(t, op); d.OperationState != "running" {
				t.Errorf("state %s after a refused Complete", d.OperationState)
			}
		})

		t.Run("joining a finished operation", func(t *testing.T) {
			done := fCreate(t, alice, ledger.CreateOptions{})
			if err := done.Complete(ctx); err != nil {
				t.Fatal(err)
			}
			if _, err := bob.JoinOperation(ctx, done.ID(), ledger.JoinOptions{}); !errors.Is(err, ledger.ErrOperationCompleted) {
				t.Errorf("join of a completed operation: %v, want ErrOperationCompleted", err)
			}
			failed := fCreate(t, alice, ledger.CreateOptions{})
			c := fStart(t, failed, ledger.CallOptions[int]{})
			if err := c.Fail(ctx, errors.New("disk full")); err != nil {
				t.Fatal(err)
			}
			_, err := bob.JoinOperation(ctx, failed.ID(), ledger.JoinOptions{})
			var fe *ledger.OperationFailedError
			if !errors.Is(err, ledger.ErrOperationFailed) || !errors.As(err, &fe) || fe.Info.Reason != "disk full" {
				t.Errorf("join of a failed operation: %v, want an OperationFailedError saying why", err)
			}
		})

		t.Run("closed ledger", func(t *testing.T) {
			carol := e.Open("carol", ledger.Options{})
			op := fCreate(t, carol, ledger.CreateOptions{})
			if err := carol.Close(); err != nil {
				t.Fatal(err)
			}
			if _, err := carol.CreateOperation(ctx, ledger.CreateOptions{}); !errors.Is(err, ledger.ErrClosed) {
				t.Errorf("CreateOperation after Close: %v, want ErrClosed", err)
			}
			if err := op.Log(ctx, ledger.LogInfo, "x"); !errors.Is(err, ledger.ErrClosed) {
				t.Errorf("Log after Close: %v, want ErrClosed", err)
			}
			if err := carol.Close(); err != nil {
				t.Errorf("second Close: %v", err)
			}
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
		if err := c.End(ctx, 1); err != nil {
			t.Fatal(err)
		}
		if err := op.Complete(ctx); err != nil {
			t.Fatal(err)
		}
		dst := fBackupDir(e.dir, op.ID())
		d := fParse(t, filepath.Join(dst, "operation.json"))
		if d.OperationState != "completed" || d.Description != "release" {
			t.Errorf("archived state: %s %q", d.OperationState, d.Description)
		}
		for _, name := range []string{op.ID() + ".operation.json", op.ID() + ".operation.log"} {
			if _, err := os.Stat(filepath.Join(e.dir, name)); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("%s still live: %v", name, err)
			}
		}
		lines := fLines(t, fLog(t, e.dir, op.ID()))
		if last := lines[len(lines)-1]; last.event != "OPERATION_COMPLETED" || last.participant != "alice" {
			t.Errorf("last log line %+v, want alice's OPERATION_COMPLETED", last)
		}
		select {
		case <-op.Context().Done():
			if !errors.Is(context.Cause(op.Context()), ledger.ErrOperationCompleted) {
				t.Errorf("operation context cause: %v", context.Cause(op.Context()))
			}
		default:
			t.Error("operation context not cancelled by Complete")
		}
		for name, s := range map[string]*ledger.Operation{"alice's": op, "alice's other": other, "bob's": joined} {
			if _, err := ledger.StartCall[int](ctx, s, ledger.CallOptions[int]{}); !errors.Is(err, ledger.ErrOperationCompleted) {
				t.Errorf("StartCall on %s session: %v, want ErrOperationCompleted", name, err)
			}
			if err := s.Log(ctx, ledger.LogInfo, "late"); !errors.Is(err, ledger.ErrOperationCompleted) {
				t.Errorf("Log on %s session: %v, want ErrOperationCompleted", name, err)
			}
			if err := s.SetAbortFlag(ctx, true); !errors.Is(err, ledger.ErrOperationCompleted) {
				t.Errorf("SetAbortFlag on %s session: %v, want ErrOperationCompleted", name, err)
			}
			if err := s.RegisterTempResource(ctx, "/tmp/x"); !errors.Is(err, ledger.ErrOperationCompleted) {
				t.Errorf("RegisterTempResource on %s session: %v, want ErrOperationCompleted", name, err)
			}
			if err := s.Complete(ctx); !errors.Is(err, ledger.ErrOperationCompleted) && !errors.Is(err, ledger.ErrNotInitiator) {
				t.Errorf("Complete on %s session: %v", name, err)
			}
		}
		if _, err := bob.JoinOperation(ctx, op.ID(), ledger.JoinOptions{}); !errors.Is(err, ledger.ErrOperationCompleted) {
			t.Errorf("join after Complete: %v, want ErrOperationCompleted", err)
		}
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
		if op.IsAborted() {
			t.Fatal("aborted from the start")
		}
		if v, err := joined.CheckAbort(ctx); err != nil || v {
			t.Fatalf("CheckAbort before: %t, %v", v, err)
		}

		if err := op.SetAbortFlag(ctx, true); err != nil {
			t.Fatal(err)
		}
		waitClosed(t, op.Aborted(), time.Second, "alice's Aborted")
		waitFor(t, time.Second, "alice's OnAbort", func() bool { return abortCount("alice") == 1 })
		if !op.IsAborted() || abortCount("alice") != 1 || !errors.Is(context.Cause(op.Context()), ledger.ErrAborted) {
			t.Errorf("alice: aborted %t, OnAbort %d times, cause %v", op.IsAborted(), abortCount("alice"), context.Cause(op.Context()))
		}
		if v, err := joined.CheckAbort(ctx); err != nil || !v {
			t.Fatalf("bob's CheckAbort: %t, %v", v, err)
		}
		waitClosed(t, joined.Aborted(), time.Second, "bob's Aborted")
		waitFor(t, time.Second, "bob's OnAbort", func() bool { return abortCount("bob") == 1 })
		if err := op.SetAbortFlag(ctx, true); err != nil {
			t.Fatal(err)
		}
		// Clearing the flag does not undo an abort already seen.
		if err := op.SetAbortFlag(ctx, false); err != nil {
			t.Fatal(err)
		}
		if v, err := joined.CheckAbort(ctx); err != nil || v {
			t.Errorf("CheckAbort after clearing: %t, %v", v, err)
		}
		if !op.IsAborted() || !joined.IsAborted() {
			t.Error("clearing the flag undid a seen abort")
		}
		if abortCount("alice") != 1 || abortCount("bob") != 1 {
			t.Errorf("OnAbort ran %v times, want once each", aborts)
		}
		var sets []string
		for _, l := range fLines(t, fLog(t, e.dir, op.ID())) {
			if l.event == "ABORT_SET" {
				sets = append(sets, l.level+" "+l.participant+" "+l.rest)
			}
		}
		if !slices.Equal(sets, []string{"WARNING alice true", "WARNING alice false"}) {
			t.Errorf("ABORT_SET lines %q", sets)
		}

		// TriggerAbort aborts this process only.
		op2 := fCreate(t, alice, ledger.CreateOptions{})
		local := fJoin(t, carol, op2.ID(), ledger.JoinOptions{Callback: onAbort("carol")})
		local.TriggerAbort()
		local.TriggerAbort()
		waitFor(t, time.Second, "carol's OnAbort", func() bool { return abortCount("carol") == 1 })
		if !local.IsAborted() || abortCount("carol") != 1 || !errors.Is(context.Cause(local.Context()), ledger.ErrAborted) {
			t.Errorf("carol after TriggerAbort: aborted %t, OnAbort %d", local.IsAborted(), abortCount("carol"))
		}
		if v, err := op2.CheckAbort(ctx); err != nil || v || op2.IsAborted() {
			t.Errorf("TriggerAbort reached the ledger or alice: flag %t, %v, alice aborted %t", v, err, op2.IsAborted())
		}
	})
}

func TestLogLines(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		alice, bob := e.Open("alice", ledger.Options{}), e.Open("bob", ledger.Options{})
		op := fCreate(t, alice, ledger.CreateOptions{Description: "deploy"})
		joined := fJoin(t, bob, op.ID(), ledger.JoinOptions{})
		for _, lv := range []ledger.LogLevel{ledger.LogDebug, ledger.LogInfo, ledger.LogWarning, ledger.LogError} {
			if err := joined.Log(ctx, lv, "message at "+lv.String()+"\nsecond line"); err != nil {
				t.Fatal(err)
			}
		}
		ok := fStart(t, joined, ledger.CallOptions[int]{Description: "fetch"})
		if err := ok.End(ctx, 1); err != nil {
			t.Fatal(err)
		}
		bad := fStart(t, op, ledger.CallOptions[int]{Contained: true})
		if err := bad.Fail(ctx, errors.New("timeout")); err != nil {
			t.Fatal(err)
		}
		if err := op.SetAbortFlag(ctx, true); err != nil {
			t.Fatal(err)
		}
		if err := joined.Leave(ctx, ledger.LeaveOptions{}); err != nil {
			t.Fatal(err)
		}
		if err := op.Complete(ctx); err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, l := range fLines(t, fLog(t, e.dir, op.ID())) {
			if _, err := time.Parse(time.RFC3339Nano, l.time); err != nil {
				t.Errorf("time %q: %v", l.time, err)
			}
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
			t.Errorf("log lacks %q (in order) at position %d; log:\n%s", want[i], i, strings.Join(got, "\n"))
		}
		debug, err := os.ReadFile(filepath.Join(fBackupDir(e.dir, op.ID()), "operation.debug.log"))
		if err != nil {
			t.Fatal(err)
		}
		dl := fLines(t, string(debug))
		if !slices.ContainsFunc(dl, func(l fLogLine) bool {
			return l.level == "DEBUG" && l.participant == "bob" && l.event+" "+l.rest == `message at DEBUG\nsecond line`
		}) {
			t.Errorf("debug log lacks bob's debug line:\n%s", debug)
		}
		if strings.Contains(fLog(t, e.dir, op.ID()), "[DEBUG]") {
			t.Error("a DEBUG line went to the INFO log")
		}
	})
}

func TestTempResourcesAndCallFrames(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		alice := e.Open("alice", ledger.Options{})
		op := fCreate(t, alice, ledger.CreateOptions{})
		kept := filepath.Join(t.TempDir(), "kept")
		if err := os.WriteFile(kept, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		for range 2 {
			if err := op.RegisterTempResource(ctx, kept); err != nil {
				t.Fatal(err)
			}
		}
		host, _ := os.Hostname()
		d := fState(t, op)
		if len(d.TempResources) != 1 {
			t.Fatalf("temp resources after registering one path twice: %+v", d.TempResources)
		}
		if r := d.TempResources[0]; r.Path != kept || r.Owner != os.Getpid() || r.ParticipantID != "alice" || r.Host != host || r.RegisteredAt.IsZero() {
			t.Errorf("temp resource record %+v", r)
		}
		if err := op.RegisterTempResource(ctx, ""); err == nil {
			t.Error("empty temp path accepted")
		}
		if err := op.UnregisterTempResource(ctx, kept); err != nil {
			t.Fatal(err)
		}
		if d := fState(t, op); len(d.TempResources) != 0 {
			t.Errorf("temp resources after unregistering: %+v", d.TempResources)
		}
		if _, err := os.Stat(kept); err != nil {
			t.Errorf("unregistering deleted the path: %v", err)
		}

		if err := op.CreateCallFrame(ctx, "frame-1"); err != nil {
			t.Fatal(err)
		}
		if err := op.CreateCallFrame(ctx, "frame-1"); err == nil {
			t.Error("duplicate call frame accepted")
		}
		d = fState(t, op)
		if len(d.CallFrames) != 1 || d.CallFrames[0].CallID != "frame-1" || d.CallFrames[0].ParticipantID != "alice" ||
			d.CallFrames[0].PID != os.Getpid() || d.CallFrames[0].State != "active" {
			t.Errorf("frames %+v", d.CallFrames)
		}
		if err := op.DeleteCallFrame(ctx, "frame-1"); err != nil {
			t.Fatal(err)
		}
		if err := op.DeleteCallFrame(ctx, "frame-1"); !errors.Is(err, ledger.ErrCallNotFound) {
			t.Errorf("deleting a deleted frame: %v, want ErrCallNotFound", err)
		}

		// What State and CachedData return is the caller's to change.
		d = fState(t, op)
		d.CallFrames = append(d.CallFrames, ledger.CallFrame{CallID: "mine"})
		d.Participants[0].State = "scribbled"
		if d2 := fState(t, op); len(d2.CallFrames) != 0 || d2.Participants[0].State != "active" {
			t.Errorf("State shares memory with the ledger: %+v", d2)
		}
		c := op.CachedData()
		c.Participants[0].State = "scribbled"
		if op.CachedData().Participants[0].State != "active" {
			t.Error("CachedData shares memory")
		}
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
		if err != nil {
			t.Fatal(err)
		}
		if !fCallIDRE.MatchString(ok.ID()) || ok.Description() != "fetch" || ok.StartedAt().IsZero() {
			t.Errorf("call id %q, description %q, started %v", ok.ID(), ok.Description(), ok.StartedAt())
		}
		if err := ok.End(ctx, "42"); err != nil {
			t.Fatal(err)
		}
		// A contained failure stays with its call.
		contained, err := ledger.StartCall[string](ctx, op, ledger.CallOptions[string]{Contained: true, Callback: cb})
		if err != nil {
			t.Fatal(err)
		}
		if f := fState(t, op).CallFrames; len(f) != 1 || f[0].FailOnCrash {
			t.Errorf("contained call's frame: %+v", f)
		}
		if err := contained.Fail(ctx, errors.New("flaky")); err != nil {
			t.Fatal(err)
		}
		if d := fState(t, op); d.OperationState != "running" || len(d.CallFrames) != 0 || d.Failure != nil {
			t.Errorf("after a contained failure: state %s, frames %d, failure %+v", d.OperationState, len(d.CallFrames), d.Failure)
		}
		select {
		case <-op.Failed():
			t.Fatal("a contained failure failed the operation")
		default:
		}
		if got := noted(); !slices.Equal(got, []string{"completion 42", "cleanup"}) {
			t.Errorf("callbacks %q", got)
		}

		// A call that fails on crash fails the operation.
		temp := filepath.Join(t.TempDir(), "scratch")
		if err := os.WriteFile(temp, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := op.RegisterTempResource(ctx, temp); err != nil {
			t.Fatal(err)
		}
		fatal, err := ledger.StartCall[string](ctx, op, ledger.CallOptions[string]{Callback: cb})
		if err != nil {
			t.Fatal(err)
		}
		if err := fatal.Fail(ctx, errors.New("disk full")); err != nil {
			t.Fatal(err)
		}
		waitClosed(t, op.Failed(), time.Second, "Failed")
		info, ok2 := op.Failure()
		if !ok2 || info.Reason != "disk full" || info.ParticipantID != "alice" || !slices.Equal(info.CrashedCallIDs, []string{fatal.ID()}) ||
			info.OperationID != op.ID() || info.FailedAt.IsZero() {
			t.Errorf("Failure() = %+v, %t", info, ok2)
		}
		var fe *ledger.OperationFailedError
		if cause := context.Cause(op.Context()); !errors.As(cause, &fe) || fe.Info.Reason != "disk full" {
			t.Errorf("context cause %v", cause)
		}
		waitFor(t, time.Second, "OnFailure", func() bool { return slices.Contains(noted(), "failure disk full") })
		if got := noted(); !slices.Contains(got[2:], "cleanup") {
			t.Errorf("OnCleanup did not run after Fail: %q", got)
		}
		if _, err := os.Stat(temp); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("registered temp resource survived the failure: %v", err)
		}
		d := fParse(t, filepath.Join(fBackupDir(e.dir, op.ID()), "operation.json"))
		if d.OperationState != "failed" || d.Failure == nil || d.Failure.Reason != "disk full" || !slices.Equal(d.Failure.CrashedCallIDs, []string{fatal.ID()}) {
			t.Errorf("archived state %s, failure %+v", d.OperationState, d.Failure)
		}
		if _, err := ledger.StartCall[string](ctx, op, ledger.CallOptions[string]{}); !errors.Is(err, ledger.ErrOperationFailed) {
			t.Errorf("StartCall on a failed operation: %v", err)
		}
	})
}

func TestLockWaitEndsWithContext(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		alice := e.Open("alice", ledger.Options{})
		op := fCreate(t, alice, ledger.CreateOptions{})
		holder := child(t, "fnd-flock", "FND_LOCK="+fLockPath(e.dir, op.ID()))
		stdin, err := holder.StdinPipe()
		if err != nil {
			t.Fatal(err)
		}
		stdout, err := holder.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := holder.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { stdin.Close(); holder.Wait() })
		if line, err := bufio.NewReader(stdout).ReadString('\n'); err != nil || line != "locked\n" {
			t.Fatalf("holder said %q, %v", line, err)
		}
		before, _ := os.ReadFile(fStatePath(e.dir, op.ID()))
		// Each call gets its own deadline: a remote call leaves the server
		// a part of it to answer lock_timeout in.
		short := func() context.Context {
			c, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
			t.Cleanup(cancel)
			return c
		}
		if _, err := ledger.StartCall[int](short(), op, ledger.CallOptions[int]{}); !errors.Is(err, ledger.ErrLockTimeout) {
			t.Errorf("StartCall while another process holds the lock: %v, want ErrLockTimeout", err)
		}
		if err := op.Log(short(), ledger.LogInfo, "x"); !errors.Is(err, ledger.ErrLockTimeout) {
			t.Errorf("Log while another process holds the lock: %v, want ErrLockTimeout", err)
		}
		if after, _ := os.ReadFile(fStatePath(e.dir, op.ID())); string(after) != string(before) {
			t.Error("state changed while another process held the lock")
		}
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
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(20 * time.Second):
			t.Fatal("call did not get the lock after the holder let go")
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
				t.Fatalf("Connect accepted %+v", c.o)
			}
			if !strings.Contains(err.Error(), c.field) || !strings.HasPrefix(err.Error(), "ledger: ") {
				t.Errorf("error %q does not name %s", err, c.field)
			}
			if c.is != nil && !errors.Is(err, c.is) {
				t.Errorf("error %v is not %v", err, c.is)
			}
			if _, err := ledger.NewLocalLedger(o); err == nil {
				t.Error("NewLocalLedger accepted it")
			}
		})
	}
	if _, err := ledger.NewLocalLedger(ledger.Options{}); err == nil || !strings.Contains(err.Error(), "Options.BasePath") {
		t.Errorf("NewLocalLedger without BasePath: %v", err)
	}
	// Zero values are valid: the participant is named after host and pid.
	l, err := ledger.Connect(ctx, ledger.Options{BasePath: dir, NoSignalHandler: true})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if id := l.ParticipantID(); !regexp.MustCompile(`^[A-Za-z0-9_-]+-` + strconv.Itoa(os.Getpid()) + `$`).MatchString(id) {
		t.Errorf("default participant id %q", id)
	}
	if ll, ok := l.(*ledger.LocalLedger); !ok || ll.BasePath() != dir {
		t.Errorf("Connect with BasePath gave %T", l)
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
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		var ids []string
		for range 4 {
			op := fCreate(t, l, ledger.CreateOptions{})
			if err := op.Complete(ctx); err != nil {
				t.Fatal(err)
			}
			ids = append(ids, op.ID())
		}
		ents, _ := os.ReadDir(filepath.Join(dir, "backup"))
		var kept []string
		for _, de := range ents {
			kept = append(kept, de.Name())
		}
		if want := slices.Sorted(slices.Values(ids[2:])); !slices.Equal(kept, want) {
			t.Errorf("backups kept %v, want the newest two %v", kept, want)
		}
		mu.Lock()
		defer mu.Unlock()
		if len(backups) != 4 || backups[3] != fBackupDir(dir, ids[3]) {
			t.Errorf("OnBackupCreated: %v", backups)
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
		if !slices.Equal(fromFile, fromCallback) {
			t.Errorf("OnLogLine saw %q, the log holds %q", fromCallback, fromFile)
		}
	})
	t.Run("default MaxBackups", func(t *testing.T) {
		dir := t.TempDir()
		l, err := ledger.NewLocalLedger(ledger.Options{BasePath: dir, ParticipantID: "alice", NoSignalHandler: true})
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		for range ledger.DefaultMaxBackups + 2 {
			if err := fCreate(t, l, ledger.CreateOptions{}).Complete(ctx); err != nil {
				t.Fatal(err)
			}
		}
		if ents, _ := os.ReadDir(filepath.Join(dir, "backup")); len(ents) != ledger.DefaultMaxBackups {
			t.Errorf("%d backups kept, want %d", len(ents), ledger.DefaultMaxBackups)
		}
	})
	t.Run("MaxTrail", func(t *testing.T) {
		dir := t.TempDir()
		l, err := ledger.NewLocalLedger(ledger.Options{BasePath: dir, ParticipantID: "alice", MaxTrail: 2,
			HeartbeatInterval: 20 * time.Millisecond, StaleThreshold: time.Second, NoSignalHandler: true})
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		op := fCreate(t, l, ledger.CreateOptions{})
		trail := filepath.Join(dir, op.ID()+"_trail")
		snapshots := func() int {
			ents, _ := os.ReadDir(trail)
			if len(ents) > 2 {
				t.Fatalf("%d trail snapshots, MaxTrail is 2", len(ents))
			}
			return len(ents)
		}
		change := func() {
			c := fStart(t, op, ledger.CallOptions[int]{})
			if err := c.End(ctx, 0); err != nil {
				t.Fatal(err)
			}
		}
		waitFor(t, 10*time.Second, "two trail snapshots", func() bool { change(); return snapshots() == 2 })
		for range 20 {
			change()
			snapshots()
		}
		ents, _ := os.ReadDir(trail)
		for _, de := range ents {
			if d := fParse(t, filepath.Join(trail, de.Name())); d.OperationID != op.ID() {
				t.Errorf("snapshot %s holds %s", de.Name(), d.OperationID)
			}
		}
	})
	t.Run("no trail, durable", func(t *testing.T) {
		dir := t.TempDir()
		l, err := ledger.NewLocalLedger(ledger.Options{BasePath: dir, ParticipantID: "alice", MaxTrail: -1, MaxBackups: -1,
			Durable: true, NoSignalHandler: true})
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		op := fCreate(t, l, ledger.CreateOptions{})
		for range 5 {
			c := fStart(t, op, ledger.CallOptions[int]{})
			if err := c.End(ctx, 0); err != nil {
				t.Fatal(err)
			}
		}
		if err := op.Complete(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(filepath.Join(fBackupDir(dir, op.ID()), "trail")); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("trail kept with MaxTrail -1: %v", err)
		}
		if d := fParse(t, filepath.Join(fBackupDir(dir, op.ID()), "operation.json")); d.OperationState != "completed" {
			t.Errorf("durable ledger archived state %s", d.OperationState)
		}
	})
}
