package ledger_test

import (
	"context"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tomdist/ledger"
)

// copyDartTree copies a fixture tree of testdata/dart into dst, turning
// "%3A" in file and directory names back into ":" (the fixtures store
// Dart's operation ids so, as ':' is not allowed in Go module files).
// Files get mode 0644, directories 0755; README.md files are left out.
func copyDartTree(t testing.TB, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		to := filepath.Join(dst, strings.ReplaceAll(rel, "%3A", ":"))
		if d.IsDir() {
			return os.MkdirAll(to, 0o755)
		}
		if d.Name() == "README.md" {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(to, b, 0o644)
	})
	require.NoError(t, err)
}

// The operations of testdata/dart/dir, as the Dart package wrote them.
const (
	dartLiveOp     = "20260314T09:15:02.417-dart_cli-5e0c9a3b"
	dartArchivedOp = "20260313T17:42:10.055-dart_remote-9b1d44e0"
)

// dartDir copies testdata/dart/dir into a new directory and returns it.
func dartDir(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	copyDartTree(t, filepath.Join("testdata", "dart", "dir"), dir)
	return dir
}

// readFile reads a file of the test, failing it if it cannot.
func readFile(t testing.TB, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	return string(b)
}

// A directory written by the Dart package is listed and read by Go: its
// live and archived operations, their states (Dart's times, which have
// no offset, in the local zone) and their logs as Dart wrote them.
func TestDartDirectoryRead(t *testing.T) {
	dir := dartDir(t)
	ctx := context.Background()
	v, err := ledger.OpenViewer(ledger.Options{BasePath: dir})
	require.NoError(t, err)
	defer v.Close()

	live, err := v.List(ctx, false)
	require.NoError(t, err)
	assert.Equal(t, []string{dartLiveOp}, live)
	archived, err := v.List(ctx, true)
	require.NoError(t, err)
	assert.Equal(t, []string{dartArchivedOp}, archived)

	d, err := v.State(ctx, dartLiveOp)
	require.NoError(t, err)
	assert.Equal(t, "dart_cli", d.InitiatorID)
	assert.Equal(t, ledger.StateRunning, d.OperationState)
	assert.True(t, d.StartTime.Equal(time.Date(2026, 3, 14, 9, 15, 2, 418958000, time.Local)), "startTime %v", d.StartTime)
	require.Len(t, d.CallFrames, 2)
	assert.Equal(t, ledger.CallFrame{
		ParticipantID: "dart_worker", CallID: "call_dart_worker_1_0c7d", PID: 31400,
		StartTime: time.Date(2026, 3, 14, 9, 15, 3, 104420000, time.Local).UTC(), LastHeartbeat: time.Date(2026, 3, 14, 9, 15, 13, 84739000, time.Local).UTC(),
		State: ledger.FrameActive, Description: "compile shard 1", FailOnCrash: false,
	}, d.CallFrames[1])
	assert.True(t, d.CallFrames[0].FailOnCrash)
	require.Len(t, d.TempResources, 1)
	assert.Equal(t, 31337, d.TempResources[0].Owner)
	assert.Empty(t, d.Participants, "Dart writes no participant records")

	a, err := v.State(ctx, dartArchivedOp)
	require.NoError(t, err)
	assert.Equal(t, ledger.StateCompleted, a.OperationState)
	assert.Equal(t, "dart_remote", a.InitiatorID)

	for _, tc := range []struct {
		op    string
		debug bool
		file  string
	}{
		{dartLiveOp, false, dartLiveOp + ".operation.log"},
		{dartLiveOp, true, dartLiveOp + ".operation.debug.log"},
		{dartArchivedOp, false, filepath.Join("backup", dartArchivedOp, "operation.log")},
		{dartArchivedOp, true, filepath.Join("backup", dartArchivedOp, "operation.debug.log")},
	} {
		b, err := v.Log(ctx, tc.op, tc.debug)
		require.NoError(t, err)
		assert.Equal(t, readFile(t, filepath.Join(dir, tc.file)), string(b), "log %s", tc.file)
	}
	assert.Len(t, dirNames(t, filepath.Join(dir, dartLiveOp+"_trail")), 11, "reading keeps the trail")
	assert.NoFileExists(t, filepath.Join(dir, dartLiveOp+".operation.journal"), "reading gives no journal")
}

// The ledger command lists and shows a Dart directory; a Dart time (no
// offset) is read in the zone of TZ.
func TestDartDirectoryCommand(t *testing.T) {
	dir := dartDir(t)
	bin := ledgerBinary(t)
	run := func(tz string, args ...string) string {
		t.Helper()
		cmd := exec.Command(bin, append(args, "--dir", dir)...)
		cmd.Env = append(os.Environ(), "TZ="+tz)
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "ledger %v: %s", args, out)
		return string(out)
	}
	ls := run("UTC", "ls", "--all")
	assert.Contains(t, ls, dartLiveOp)
	assert.Contains(t, ls, dartArchivedOp)
	assert.Contains(t, run("UTC", "show", "--json", dartLiveOp), `"startTime": "2026-03-14T09:15:02.418Z"`)
	assert.Contains(t, run("Asia/Kolkata", "show", "--json", dartLiveOp), `"startTime": "2026-03-14T03:45:02.418Z"`, "09:15 in India is 03:45 UTC")
	assert.Contains(t, run("UTC", "show", "--json", dartArchivedOp), `"operationState": "completed"`)
	assert.Equal(t, readFile(t, filepath.Join(dir, dartLiveOp+".operation.log")), run("UTC", "log", dartLiveOp))
}

// A Go participant joins a live Dart operation: the Dart state document
// becomes the start of a journal, the Dart log and trail are kept and
// continued, and the operation, once completed, is archived with Dart's
// files (its log lines first, its debug log, its trail snapshots).
func TestDartDirectoryJoined(t *testing.T) {
	dir := dartDir(t)
	ctx := context.Background()
	dartLog := readFile(t, filepath.Join(dir, dartLiveOp+".operation.log"))
	dartDebug := readFile(t, filepath.Join(dir, dartLiveOp+".operation.debug.log"))
	dartTrail := dirNames(t, filepath.Join(dir, dartLiveOp+"_trail"))

	// The Go successor of the Dart tool that created the operation.
	l := openLocal(t, dir, "dart_cli")
	op, err := l.JoinOperation(ctx, dartLiveOp, ledger.JoinOptions{})
	require.NoError(t, err)
	assert.True(t, op.IsInitiator(), "the initiator is known by its participant id")
	d, err := op.State(ctx)
	require.NoError(t, err)
	assert.Len(t, d.CallFrames, 2, "the Dart calls are kept")
	require.Len(t, d.Participants, 1)
	assert.Equal(t, "dart_cli", d.Participants[0].ParticipantID)
	c, err := ledger.StartCall(ctx, op, ledger.CallOptions[int]{Description: "go shard"})
	require.NoError(t, err)
	require.NoError(t, c.End(ctx, 2))
	require.NoError(t, op.Log(ctx, ledger.LogWarning, "a Go line"))
	require.NoError(t, op.Log(ctx, ledger.LogDebug, "a Go debug line"))

	v, err := ledger.OpenViewer(ledger.Options{BasePath: dir})
	require.NoError(t, err)
	defer v.Close()
	log, err := v.Log(ctx, dartLiveOp, false)
	require.NoError(t, err)
	assert.True(t, strings.HasPrefix(string(log), dartLog), "the Dart lines come first:\n%s", log)
	assert.Contains(t, string(log), "[WARNING] dart_cli a Go line")
	debug, err := v.Log(ctx, dartLiveOp, true)
	require.NoError(t, err)
	assert.True(t, strings.HasPrefix(string(debug), dartDebug), "the Dart debug lines come first:\n%s", debug)
	assert.Contains(t, string(debug), "a Go debug line")

	require.NoError(t, op.Complete(ctx))
	backup := filepath.Join(dir, "backup", dartLiveOp)
	arch := readFile(t, filepath.Join(backup, "operation.log"))
	assert.True(t, strings.HasPrefix(arch, dartLog), "the archived log starts with the Dart lines:\n%s", arch)
	assert.Contains(t, arch, "OPERATION_COMPLETED")
	assert.True(t, strings.HasPrefix(readFile(t, filepath.Join(backup, "operation.debug.log")), dartDebug))
	trail := dirNames(t, filepath.Join(backup, "trail"))
	for _, n := range dartTrail {
		assert.Contains(t, trail, n, "the archive keeps the Dart trail")
	}
	assert.FileExists(t, filepath.Join(backup, "operation.json"))
	left, err := filepath.Glob(filepath.Join(dir, dartLiveOp+"*"))
	require.NoError(t, err)
	assert.Empty(t, left, "nothing of the operation is left in place")
	s, err := v.State(ctx, dartLiveOp)
	require.NoError(t, err)
	assert.Equal(t, ledger.StateCompleted, s.OperationState)
}

// dirNames returns the names in a directory.
func dirNames(t testing.TB, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	require.NoError(t, err)
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

// A Dart server writes pid -1 into the frames and temp resources of a
// client that gave no pid: such an operation is read and joined.
func TestDartDirectoryUnknownPID(t *testing.T) {
	dir := dartDir(t)
	doc := filepath.Join(dir, dartLiveOp+".operation.json")
	b := strings.ReplaceAll(readFile(t, doc), `"pid": 31400`, `"pid": -1`)
	b = strings.ReplaceAll(b, `"owner": 31337`, `"owner": -1`)
	require.NoError(t, os.WriteFile(doc, []byte(b), 0o644))

	d := viewState(t, dir, dartLiveOp)
	require.Len(t, d.CallFrames, 2)
	assert.Equal(t, -1, d.CallFrames[1].PID)
	assert.Equal(t, -1, d.TempResources[0].Owner)
	op, err := openLocal(t, dir, "go_worker").JoinOperation(context.Background(), dartLiveOp, ledger.JoinOptions{})
	require.NoError(t, err)
	require.NoError(t, op.Leave(context.Background(), ledger.LeaveOptions{}))
	assert.Equal(t, -1, viewState(t, dir, dartLiveOp).CallFrames[1].PID)
}
