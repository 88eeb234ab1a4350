package store

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func openStore(t testing.TB, dir string, o Options) *Store {
	t.Helper()
	s, err := Open(dir, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func newData(id string) *Data {
	now := Now()
	return &Data{
		OperationID: id, InitiatorID: "alice", StartTime: now, OperationState: StateRunning,
		LastHeartbeat: now, CallFrames: []CallFrame{}, TempResources: []TempResource{},
		Participants: []Participant{{ParticipantID: "alice", PID: 1, Host: "h", Sessions: 1, JoinedAt: now, LastHeartbeat: now, State: ParticipantActive}},
	}
}

func create(t testing.TB, s *Store, id string) {
	t.Helper()
	if err := s.Create(context.Background(), newData(id), func(tx *Tx) { tx.Log("INFO", "alice", "OPERATION_CREATED") }); err != nil {
		t.Fatal(err)
	}
}

func setDescription(v string) func(tx *Tx) error {
	return func(tx *Tx) error { tx.Data.Description = v; return nil }
}

// files lists every path under dir, relative to it.
func files(t testing.TB, dir string) []string {
	t.Helper()
	var out []string
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			t.Fatal(err)
		}
		if p != dir {
			rel, _ := filepath.Rel(dir, p)
			out = append(out, rel)
		}
		return nil
	})
	return out
}

func complete(tx *Tx) error {
	tx.Data.OperationState = StateCompleted
	tx.Log("INFO", "alice", "OPERATION_COMPLETED")
	return nil
}

func TestUpdateWritesIndentedStateAndLogs(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir, Options{})
	create(t, s, "op1")
	d, err := s.Update(context.Background(), "op1", func(tx *Tx) error {
		tx.Data.Description = "two\nlines"
		tx.Log("INFO", "alice", "first\nsecond")
		tx.Log("DEBUG", "alice", "details")
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(s.StatePath("op1"))
	if err != nil {
		t.Fatal(err)
	}
	if want := marshalIndent(t, d); !bytes.Equal(raw, want) {
		t.Fatalf("state file is not the indented JSON of the state:\n%s", raw)
	}
	line := `^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z \[(INFO|WARNING|ERROR|DEBUG)\] alice \S.*$`
	for _, f := range []string{"op1.operation.log", "op1.operation.debug.log"} {
		b, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range strings.Split(strings.TrimSuffix(string(b), "\n"), "\n") {
			if !regexp.MustCompile(line).MatchString(l) {
				t.Errorf("%s: line %q does not match %s", f, l, line)
			}
		}
	}
	log, _ := s.ReadLog("op1")
	if !strings.Contains(string(log), `[INFO] alice first\nsecond`) || strings.Contains(string(log), "details") {
		t.Errorf("INFO log:\n%s", log)
	}
	if fs := files(t, dir); slices.ContainsFunc(fs, func(f string) bool { return strings.Contains(f, ".tmp-") }) {
		t.Errorf("temp files left: %v", fs)
	}
}

func TestReadsDartTimestampsWritesRFC3339UTC(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"2024-01-15T10:30:00.123456", "2024-01-15T10:30:00.123456Z"},
		{"2024-01-15T10:30:00", "2024-01-15T10:30:00Z"},
		{"2024-01-15 10:30:00.5", "2024-01-15T10:30:00.5Z"},
		{"2024-01-15T10:30:00.123Z", "2024-01-15T10:30:00.123Z"},
		{"2024-01-15T10:30:00.123+02:00", "2024-01-15T08:30:00.123Z"},
	} {
		got, err := ParseTime(c.in)
		if err != nil {
			t.Errorf("ParseTime(%q): %v", c.in, err)
			continue
		}
		if s := got.Format(time.RFC3339Nano); s != c.want {
			t.Errorf("ParseTime(%q) = %s, want %s", c.in, s, c.want)
		}
	}
	for _, bad := range []string{"", "yesterday", "2024-13-01T00:00:00", "2024-01-15T10:30"} {
		if _, err := ParseTime(bad); err == nil {
			t.Errorf("ParseTime(%q) succeeded", bad)
		}
	}

	// A state file as the Dart ledger writes it: offset-less local times,
	// null timestamps, no lock file, none of the added keys.
	dir := t.TempDir()
	id := "20240115T10:30:00.123-dart-0a1b2c3d"
	dart := `{
  "operationId": "` + id + `",
  "initiatorId": "dart",
  "startTime": "2024-01-15T10:30:00.123456",
  "operationState": "running",
  "aborted": false,
  "lastHeartbeat": "2024-01-15T10:30:05.000",
  "callFrames": [
    {"participantId": "dart", "callId": "call_dart_1_abcd", "pid": 9, "startTime": "2024-01-15T10:30:01.5",
     "lastHeartbeat": "2024-01-15T10:30:05", "state": "active", "description": "x", "resources": [], "failOnCrash": true}
  ],
  "tempResources": [{"path": "/tmp/d", "owner": 9, "registeredAt": "2024-01-15T10:30:02"}],
  "detectionTimestamp": null,
  "removalTimestamp": null
}`
	if err := os.WriteFile(filepath.Join(dir, id+".operation.json"), []byte(dart), 0o644); err != nil {
		t.Fatal(err)
	}
	s := openStore(t, dir, Options{})
	d, err := s.Read(id)
	if err != nil {
		t.Fatal(err)
	}
	if want := time.Date(2024, 1, 15, 10, 30, 0, 123456000, time.UTC); !d.StartTime.Equal(want) {
		t.Errorf("startTime %v, want %v", d.StartTime, want)
	}
	if d.CallFrames[0].StartTime.Nanosecond() != 500e6 || d.DetectionTimestamp != nil {
		t.Errorf("frame startTime %v, detection %v", d.CallFrames[0].StartTime, d.DetectionTimestamp)
	}
	if _, err := s.Update(context.Background(), id, setDescription("touched")); err != nil {
		t.Fatal(err)
	}
	raw, _ := os.ReadFile(s.StatePath(id))
	var back map[string]any
	if err := json.Unmarshal(raw, &back); err != nil {
		t.Fatal(err)
	}
	if back["startTime"] != "2024-01-15T10:30:00.123Z" || back["lastHeartbeat"] != "2024-01-15T10:30:05.000Z" {
		t.Errorf("written times: startTime %v, lastHeartbeat %v", back["startTime"], back["lastHeartbeat"])
	}
	frame := back["callFrames"].([]any)[0].(map[string]any)
	if frame["startTime"] != "2024-01-15T10:30:01.500Z" {
		t.Errorf("frame startTime written as %v", frame["startTime"])
	}
}

func TestCorruptFileIsReportedAndKept(t *testing.T) {
	for _, c := range []struct{ name, content string }{
		{"empty", ""},
		{"truncated", `{"operationId": "op1", "initiatorId": "al`},
		{"not an object", `[1, 2, 3]`},
		{"null", `null`},
		{"bad time", `{"operationId": "op1", "startTime": "yesterday"}`},
		{"other id", `{"operationId": "../../elsewhere"}`},
		{"binary", "\x00\xff\x00\xfe"},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			s := openStore(t, dir, Options{})
			create(t, s, "op1")
			path := s.StatePath("op1")
			if err := os.WriteFile(path, []byte(c.content), 0o644); err != nil {
				t.Fatal(err)
			}
			before := files(t, dir)
			called := false
			_, err := s.Update(context.Background(), "op1", func(tx *Tx) error { called = true; return nil })
			var ce *CorruptError
			if !errors.Is(err, ErrCorrupt) || !errors.As(err, &ce) || ce.Path != path {
				t.Fatalf("Update: %v, want a CorruptError for %s", err, path)
			}
			if !strings.Contains(err.Error(), path) || called {
				t.Errorf("error %q does not name the file, or the change ran (%t)", err, called)
			}
			if _, err := s.Read("op1"); !errors.Is(err, ErrCorrupt) {
				t.Errorf("Read: %v, want ErrCorrupt", err)
			}
			if b, _ := os.ReadFile(path); string(b) != c.content {
				t.Errorf("corrupt file changed to %q", b)
			}
			if after := files(t, dir); !slices.Equal(before, after) {
				t.Errorf("files changed: %v → %v", before, after)
			}
		})
	}
}

func TestInvalidIDsTouchNothing(t *testing.T) {
	long := strings.Repeat("a", 1<<20)
	bad := map[string]string{
		"traversal": "../x", "slash": "/", "inner slash": "a/b", "empty": "",
		"1 MiB": long, "NUL": "a\x00b", "dot dot": "a..b", "only dots": "..",
		"space": "a b", "non-ascii": "é", "newline": "a\n",
	}
	for name, id := range bad {
		for kind, check := range map[string]func(string) error{
			"operation": CheckOperationID, "call": CheckCallID, "participant": CheckParticipantID,
		} {
			err := check(id)
			var ie *IDError
			if !errors.Is(err, ErrInvalidID) || !errors.As(err, &ie) || ie.Kind != kind {
				t.Errorf("%s id %s: %v, want an IDError", kind, name, err)
			}
			if err != nil && len(err.Error()) > 200 {
				t.Errorf("%s id %s: error of %d bytes", kind, name, len(err.Error()))
			}
		}
	}
	if err := CheckParticipantID("a:b"); !errors.Is(err, ErrInvalidID) {
		t.Errorf("participant id with a colon: %v", err)
	}
	if err := CheckOperationID("20240115T10:30:00.123-alice-0a1b2c3d"); err != nil {
		t.Errorf("operation id with colons: %v", err)
	}
	if err := CheckParticipantID(strings.Repeat("p", 65)); !errors.Is(err, ErrInvalidID) {
		t.Errorf("65-byte participant id: %v", err)
	}
	if err := CheckOperationID(strings.Repeat("o", 200)); err != nil {
		t.Errorf("200-byte operation id: %v", err)
	}

	dir := t.TempDir()
	s := openStore(t, dir, Options{MaxTrail: 5})
	ctx := context.Background()
	for name, id := range bad {
		calls := map[string]error{
			"Create": s.Create(ctx, newData(id), nil),
			"Log":    s.Log(ctx, id, "INFO", "alice", "x"),
		}
		_, calls["Update"] = s.Update(ctx, id, setDescription("x"))
		_, calls["Read"] = s.Read(id)
		_, calls["ReadLog"] = s.ReadLog(id)
		_, calls["HoldLiveness"] = s.HoldLiveness(id, "alice", 1)
		_, calls["HoldLiveness participant"] = s.HoldLiveness("op1", id, 1)
		for call, err := range calls {
			if !errors.Is(err, ErrInvalidID) {
				t.Errorf("%s with id %s: %v, want ErrInvalidID", call, name, err)
			}
		}
		s.RemoveLiveness("op1", id, 1)
		if s.Dead("op1", id, 1) {
			t.Errorf("Dead with participant %s", name)
		}
	}
	if fs := files(t, dir); len(fs) != 0 {
		t.Errorf("files created for invalid ids: %v", fs)
	}
}

func TestUnknownOperationCreatesNothing(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir, Options{})
	ctx := context.Background()
	if _, err := s.Update(ctx, "nope", setDescription("x")); !errors.Is(err, ErrNotFound) {
		t.Errorf("Update: %v", err)
	}
	if err := s.Log(ctx, "nope", "INFO", "a", "x"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Log: %v", err)
	}
	if _, err := s.Read("nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Read: %v", err)
	}
	l, err := s.HoldLiveness("nope", "alice", 1)
	if err != nil {
		t.Fatal(err)
	}
	l.Release()
	if fs := files(t, dir); len(fs) != 0 {
		t.Errorf("files created for an unknown operation: %v", fs)
	}
}

// holdFlock locks the lock file of id through a descriptor of its own, as
// another process would.
func holdFlock(t *testing.T, s *Store, id string) (release func()) {
	t.Helper()
	f, err := os.OpenFile(s.lockPath(id), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	release = func() { once.Do(func() { f.Close() }) }
	t.Cleanup(release)
	return release
}

func TestLockWaitHonoursContext(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir, Options{})
	create(t, s, "op1")
	before, _ := os.ReadFile(s.StatePath("op1"))
	release := holdFlock(t, s, "op1")

	cause := errors.New("test deadline")
	ctx, cancel := context.WithTimeoutCause(context.Background(), 50*time.Millisecond, cause)
	defer cancel()
	called := false
	_, err := s.Update(ctx, "op1", func(tx *Tx) error { called = true; return nil })
	if !errors.Is(err, ErrLockTimeout) || !errors.Is(err, cause) || called {
		t.Fatalf("Update under a held lock: %v (change ran: %t), want ErrLockTimeout with the cause", err, called)
	}
	ctx2, cancel2 := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel2()
	if err := s.Log(ctx2, "op1", "INFO", "a", "x"); !errors.Is(err, ErrLockTimeout) {
		t.Errorf("Log under a held lock: %v", err)
	}
	if err := s.Create(ctx2, newData("op1"), nil); !errors.Is(err, ErrLockTimeout) {
		t.Errorf("Create under a held lock: %v", err)
	}
	if after, _ := os.ReadFile(s.StatePath("op1")); !bytes.Equal(before, after) {
		t.Error("state changed while another holder had the lock")
	}

	// A waiter without a deadline gets the lock once it is released.
	done := make(chan error, 1)
	go func() {
		_, err := s.Update(context.Background(), "op1", setDescription("after"))
		done <- err
	}()
	release()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("waiter did not get the released lock")
	}

	// The in-process lock honours ctx as well.
	inside, leave := make(chan struct{}), make(chan struct{})
	go func() {
		s.Update(context.Background(), "op1", func(tx *Tx) error { close(inside); <-leave; return ErrNoChange })
	}()
	<-inside
	ctx3, cancel3 := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel3()
	if _, err := s.Update(ctx3, "op1", setDescription("x")); !errors.Is(err, ErrLockTimeout) {
		t.Errorf("Update while another goroutine changes: %v", err)
	}
	close(leave)
}

// TestStoresSeeEachOther alternates same-size changes between two Stores
// on one directory: neither may trust a cached decoding of a file the
// other replaced.
func TestStoresSeeEachOther(t *testing.T) {
	dir := t.TempDir()
	a, b := openStore(t, dir, Options{}), openStore(t, dir, Options{})
	create(t, a, "op1")
	stores := []*Store{a, b}
	prev := ""
	for i := range 200 {
		v := fmt.Sprintf("%04d", i)
		_, err := stores[i%2].Update(context.Background(), "op1", func(tx *Tx) error {
			if tx.Data.Description != prev {
				return fmt.Errorf("change %d saw description %q, want %q", i, tx.Data.Description, prev)
			}
			tx.Data.Description = v
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		prev = v
		if d, err := stores[(i+1)%2].Read("op1"); err != nil || d.Description != v {
			t.Fatalf("other store read %v, %v after change %d", d.Description, err, i)
		}
	}
}

func TestTrailBounded(t *testing.T) {
	t.Run("MaxTrail", func(t *testing.T) {
		dir := t.TempDir()
		s := openStore(t, dir, Options{MaxTrail: 3})
		create(t, s, "op1")
		deadline := time.Now().Add(10 * time.Second)
		for i := 0; i < 20 || s.TrailLen("op1") < 3; i++ {
			if _, err := s.Update(context.Background(), "op1", setDescription(fmt.Sprint(i))); err != nil {
				t.Fatal(err)
			}
			if n := s.TrailLen("op1"); n > 3 {
				t.Fatalf("%d trail snapshots, MaxTrail is 3", n)
			}
			if time.Now().After(deadline) {
				t.Fatalf("only %d snapshots after %d changes", s.TrailLen("op1"), i)
			}
		}
		// Snapshots are whole states of this operation. (Which ones: two
		// changes in one millisecond name the same snapshot, and the
		// second link is skipped.)
		ents, _ := os.ReadDir(filepath.Join(dir, "op1_trail"))
		for _, de := range ents {
			raw, err := os.ReadFile(filepath.Join(dir, "op1_trail", de.Name()))
			var d Data
			if err == nil {
				err = json.Unmarshal(raw, &d)
			}
			if err != nil || d.OperationID != "op1" {
				t.Errorf("snapshot %s: %v, %q", de.Name(), err, d.OperationID)
			}
		}
		if _, err := s.Update(context.Background(), "op1", complete); err != nil {
			t.Fatal(err)
		}
		if n := s.TrailLen("op1"); n != 3 {
			t.Errorf("archived trail has %d snapshots, want 3", n)
		}
	})
	t.Run("TrailInterval across stores", func(t *testing.T) {
		dir := t.TempDir()
		o := Options{MaxTrail: 100, TrailInterval: time.Hour}
		a, b := openStore(t, dir, o), openStore(t, dir, o)
		create(t, a, "op1")
		for i := range 20 {
			if _, err := []*Store{a, b}[i%2].Update(context.Background(), "op1", setDescription(fmt.Sprint(i))); err != nil {
				t.Fatal(err)
			}
		}
		if n := a.TrailLen("op1"); n != 1 {
			t.Errorf("%d snapshots within one interval from two stores, want 1", n)
		}
	})
	t.Run("none", func(t *testing.T) {
		dir := t.TempDir()
		s := openStore(t, dir, Options{})
		create(t, s, "op1")
		s.Update(context.Background(), "op1", setDescription("x"))
		if n := s.TrailLen("op1"); n != 0 {
			t.Errorf("%d snapshots with MaxTrail 0", n)
		}
	})
}

func TestArchiveAndPrune(t *testing.T) {
	dir := t.TempDir()
	var mu sync.Mutex
	var backups, lines []string
	s := openStore(t, dir, Options{MaxBackups: 3, MaxTrail: 5, OnBackupCreated: func(id, d string) {
		mu.Lock()
		backups = append(backups, id+" "+d)
		mu.Unlock()
	}, OnLogLine: func(id, line string) {
		mu.Lock()
		lines = append(lines, id+" "+line)
		mu.Unlock()
	}})
	ctx := context.Background()
	var ids []string
	for i := range 6 {
		id := fmt.Sprintf("op%d", i)
		ids = append(ids, id)
		create(t, s, id)
		if err := s.Log(ctx, id, "DEBUG", "alice", "debug line"); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Update(ctx, id, complete); err != nil {
			t.Fatal(err)
		}
		for _, f := range []string{"operation.json", "operation.log", "operation.debug.log", "trail"} {
			if _, err := os.Stat(filepath.Join(s.BackupDir(id), f)); err != nil {
				t.Errorf("%s not archived: %v", f, err)
			}
		}
		if _, err := os.Stat(s.StatePath(id)); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("live state of %s still there: %v", id, err)
		}
		if _, err := os.Stat(s.lockPath(id)); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("lock file of archived %s kept: %v", id, err)
		}
		d, err := s.Read(id)
		if err != nil || d.OperationState != StateCompleted {
			t.Errorf("archived %s reads as %v, %v", id, d, err)
		}
		if _, err := s.Update(ctx, id, setDescription("x")); !errors.Is(err, ErrNotFound) {
			t.Errorf("Update of archived %s: %v", id, err)
		}
	}
	got, err := s.ListArchived()
	if err != nil || !slices.Equal(got, ids[3:]) {
		t.Fatalf("archived %v (%v), want the newest three %v", got, err, ids[3:])
	}
	for _, id := range ids[:3] {
		if _, err := s.Read(id); !errors.Is(err, ErrNotFound) {
			t.Errorf("pruned %s still reads: %v", id, err)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(backups) != 6 || backups[0] != "op0 "+s.BackupDir("op0") {
		t.Errorf("OnBackupCreated calls: %q", backups)
	}
	want := 6 * 3 // created, debug line, completed
	if len(lines) != want || !strings.Contains(lines[1], "[DEBUG] alice debug line") {
		t.Errorf("OnLogLine got %d lines, want %d: %q", len(lines), want, lines)
	}
}

// TestCallbacksRunOutsideTheLock calls back into the store from the
// callbacks: under the lock that would deadlock.
func TestCallbacksRunOutsideTheLock(t *testing.T) {
	dir := t.TempDir()
	var s *Store
	var errs []error
	try := func(id string) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if err := s.Log(ctx, id, "INFO", "cb", "from a callback"); err != nil && !errors.Is(err, ErrNotFound) {
			errs = append(errs, err)
		}
	}
	inLog := false
	s = openStore(t, dir, Options{
		OnLogLine: func(id, line string) {
			if !inLog && !strings.Contains(line, "from a callback") {
				inLog = true
				try(id)
				inLog = false
			}
		},
		OnBackupCreated: func(id, d string) { try(id) },
	})
	create(t, s, "op1")
	if _, err := s.Update(context.Background(), "op1", complete); err != nil {
		t.Fatal(err)
	}
	if len(errs) > 0 {
		t.Fatalf("callbacks could not use the store: %v", errs)
	}
}

func TestFinishedLiveStateIsArchivedByNextWriter(t *testing.T) {
	dir := t.TempDir()
	var backups []string
	s := openStore(t, dir, Options{OnBackupCreated: func(id, d string) { backups = append(backups, id) }})
	create(t, s, "op1")
	// A writer that died between writing the final state and archiving it.
	d := newData("op1")
	d.OperationState = StateCompleted
	if err := os.WriteFile(s.StatePath("op1"), Encode(d), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Update(context.Background(), "op1", setDescription("x")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Update of a finished state: %v", err)
	}
	if got, _ := s.ListArchived(); !slices.Equal(got, []string{"op1"}) || !slices.Equal(backups, []string{"op1"}) {
		t.Fatalf("archived %v, callbacks %v", got, backups)
	}
}

func TestDurableSyncsFileAndDirectory(t *testing.T) {
	var mu sync.Mutex
	var synced []string
	old := syncFD
	syncFD = func(path string, fd int) error {
		mu.Lock()
		synced = append(synced, path)
		mu.Unlock()
		return old(path, fd)
	}
	t.Cleanup(func() { syncFD = old })
	for _, durable := range []bool{false, true} {
		synced = nil
		dir := t.TempDir()
		s := openStore(t, dir, Options{Durable: durable, MaxBackups: 5})
		create(t, s, "op1")
		if _, err := s.Update(context.Background(), "op1", setDescription("x")); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Update(context.Background(), "op1", complete); err != nil {
			t.Fatal(err)
		}
		if d, err := s.Read("op1"); err != nil || d.OperationState != StateCompleted {
			t.Fatalf("durable=%t: %v, %v", durable, d, err)
		}
		if !durable {
			if len(synced) != 0 {
				t.Errorf("synced %v without Durable", synced)
			}
			continue
		}
		var temps, dirs int
		for _, p := range synced {
			switch {
			case isTempName(filepath.Base(p)):
				temps++
			case p == dir:
				dirs++
			}
		}
		if temps != 3 || dirs < 3 || !slices.Contains(synced, s.BackupDir("op1")) {
			t.Errorf("Durable synced %d temp files and the directory %d times (want 3 and 3+), backup dir synced: %t: %v",
				temps, dirs, slices.Contains(synced, s.BackupDir("op1")), synced)
		}
	}
}

func TestStaleTempFilesRemovedOnOpen(t *testing.T) {
	dir := t.TempDir()
	stale := filepath.Join(dir, tempName("op1.operation.json"))
	fresh := filepath.Join(dir, tempName("op1.operation.json"))
	for _, p := range []string{stale, fresh} {
		if err := os.WriteFile(p, []byte("{"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	old := time.Now().Add(-2 * time.Minute)
	os.Chtimes(stale, old, old)
	openStore(t, dir, Options{})
	if _, err := os.Stat(stale); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("stale temp file kept: %v", err)
	}
	if _, err := os.Stat(fresh); err != nil {
		t.Errorf("fresh temp file (maybe a live writer's) removed: %v", err)
	}
}

func TestLivenessDirectoryGoesWithLastHolder(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir, Options{})
	a, err := s.HoldLiveness("op1", "alice", 1)
	if err != nil {
		t.Fatal(err)
	}
	b, err := s.HoldLiveness("op1", "bob", 2)
	if err != nil {
		t.Fatal(err)
	}
	if s.Dead("op1", "alice", 1) || s.Dead("op1", "bob", 2) {
		t.Fatal("a held liveness file reads as dead")
	}
	a.Release()
	if _, err := os.Stat(s.liveDir("op1")); err != nil {
		t.Fatalf("liveness directory removed while bob holds his: %v", err)
	}
	b.Release()
	if fs := files(t, dir); len(fs) != 0 {
		t.Fatalf("left after the last release: %v", fs)
	}
}

// TestReadsDuringChanges reads an operation from several goroutines while
// two Stores change it: every Read must return the state of the file it
// read, so the states a reader sees never go back. All states have the
// same size, so that a decoding cached for other bytes would be taken.
func TestReadsDuringChanges(t *testing.T) {
	dir := t.TempDir()
	a, b := openStore(t, dir, Options{}), openStore(t, dir, Options{})
	create(t, a, "op1")
	const changes = 300
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for r := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			last := ""
			for {
				select {
				case <-stop:
					return
				default:
				}
				d, err := []*Store{a, a, b}[r].Read("op1")
				if err != nil {
					t.Error(err)
					return
				}
				n := d.Description
				if n < last || n != "" && (len(d.CallFrames) != 3 || !strings.HasPrefix(d.CallFrames[2].CallID, "c"+n)) {
					t.Errorf("reader %d saw change %q with frames %v after change %q", r, n, d.CallFrames, last)
					return
				}
				last = n
			}
		}()
	}
	for i := 1; i <= changes; i++ {
		_, err := []*Store{a, b}[i%2].Update(context.Background(), "op1", func(tx *Tx) error {
			n := fmt.Sprintf("%06d", i)
			tx.Data.Description = n
			tx.Data.CallFrames = tx.Data.CallFrames[:0]
			for k := range 3 {
				tx.Data.CallFrames = append(tx.Data.CallFrames, validFrame(fmt.Sprintf("c%s-%d", n, k)))
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	wg.Wait()
}
