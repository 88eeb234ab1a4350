package ledger_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tomdist/ledger"
)

// A Dart process guards {id}.operation.json with an exclusive-create lock
// file, {id}.operation.json.lock (testdata/dart/PROTOCOL.md §4). With no
// Dart SDK at hand, the role dart-locker follows that protocol to the
// letter, as a separate process, on the fixtures of testdata/dart/dir.

func init() { roles["dart-locker"] = runDartLocker }

// Dart's lock settings (PROTOCOL.md §4).
const (
	dartLockTimeout    = 2 * time.Second  // give up; and a lock older than this may be stale
	dartStaleThreshold = 15 * time.Second // a holder whose frames are older is gone
	dartPollFirst      = 50 * time.Millisecond
	dartPollMax        = 500 * time.Millisecond
)

// runDartLocker is a Dart process at the operation $DART_OP of the
// ledger directory $DART_DIR, as participant dart_cli. In mode "once" it
// takes the lock, says "locked", reads the state document, waits
// $DART_HOLD ms, writes it back with the abort flag set (in place, in two
// writes, as Dart's writeAsString may), releases the lock and says
// "released". In mode "loop" it beats as Dart's heartbeat does until the
// file $DART_STOP exists: lock, read the document (if it is gone, Dart's
// "No ledger": it says "noledger"; else it says "holding"), wait $DART_HOLD ms, write it back with a
// new lastHeartbeat, release, wait $DART_GAP ms; then it says how often
// it beat and found no ledger.
func runDartLocker() {
	dir, op := os.Getenv("DART_DIR"), os.Getenv("DART_OP")
	hold := envMillis("DART_HOLD")
	doc := filepath.Join(dir, op+".operation.json")
	lock := doc + ".lock"
	switch os.Getenv("DART_MODE") {
	case "once":
		if !dartAcquire(lock, doc) {
			fmt.Println("gave up")
			os.Exit(1)
		}
		fmt.Println("locked")
		b, err := os.ReadFile(doc)
		if err != nil {
			fmt.Println("no ledger")
			os.Exit(1)
		}
		time.Sleep(hold)
		dartWrite(doc, b, func(m map[string]any) { m["aborted"] = true })
		dartRelease(lock)
		fmt.Println("released")
	case "loop":
		gap := envMillis("DART_GAP")
		beats, noLedger, gaveUp := 0, 0, 0
		fmt.Println("started")
		for {
			if _, err := os.Stat(os.Getenv("DART_STOP")); err == nil {
				break
			}
			if !dartAcquire(lock, doc) {
				gaveUp++
				continue
			}
			if b, err := os.ReadFile(doc); err != nil {
				noLedger++ // {"success": false, "reason": "No ledger"}
				fmt.Println("noledger")
			} else {
				fmt.Println("holding")
				time.Sleep(hold)
				dartWrite(doc, b, func(m map[string]any) { m["lastHeartbeat"] = time.Now().Format("2006-01-02T15:04:05.000000") })
				beats++
			}
			dartRelease(lock)
			time.Sleep(gap)
		}
		fmt.Printf("beats %d noledger %d gaveup %d\n", beats, noLedger, gaveUp)
	}
}

func envMillis(k string) time.Duration {
	n, _ := strconv.Atoi(os.Getenv(k))
	return time.Duration(n) * time.Millisecond
}

// dartAcquire is Dart's _acquireLock: while the file exists and is not
// stale, wait with a backoff, giving up after dartLockTimeout; then
// create it exclusively and, separately, write its content.
func dartAcquire(lock, doc string) bool {
	start, wait := time.Now(), dartPollFirst
	backoff := func() bool {
		if time.Since(start) > dartLockTimeout {
			return false
		}
		time.Sleep(wait)
		wait = min(wait*3/2, dartPollMax)
		return true
	}
	for {
		if _, err := os.Stat(lock); err == nil {
			if dartStale(lock, doc) {
				os.Remove(lock)
			} else if !backoff() {
				return false
			}
			continue
		}
		f, err := os.OpenFile(lock, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
		if err != nil {
			if !backoff() {
				return false
			}
			continue
		}
		f.Close()
		content := fmt.Sprintf(`{"participantId": "dart_cli", "pid": %d, "timestamp": "%s"}`, os.Getpid(), time.Now().Format("2006-01-02T15:04:05.000000"))
		os.WriteFile(lock, []byte(content), 0o644)
		return true
	}
}

// dartStale is Dart's _handleStaleLock: a lock older than dartLockTimeout
// is stale if its content is not JSON or names no participant, if the
// state document is gone, or if that participant has no frame, or none
// that beat within dartStaleThreshold.
func dartStale(lock, doc string) bool {
	fi, err := os.Stat(lock)
	if err != nil || time.Since(fi.ModTime()) <= dartLockTimeout {
		return false
	}
	var c struct {
		ParticipantID string `json:"participantId"`
	}
	b, err := os.ReadFile(lock)
	if err != nil || json.Unmarshal(b, &c) != nil || c.ParticipantID == "" {
		return true
	}
	var d struct {
		CallFrames []struct {
			ParticipantID string `json:"participantId"`
			LastHeartbeat string `json:"lastHeartbeat"`
		} `json:"callFrames"`
	}
	b, err = os.ReadFile(doc)
	if err != nil || json.Unmarshal(b, &d) != nil {
		return true
	}
	for _, f := range d.CallFrames {
		t, err := time.ParseInLocation("2006-01-02T15:04:05.999999", f.LastHeartbeat, time.Local)
		if f.ParticipantID == c.ParticipantID && err == nil && time.Since(t) < dartStaleThreshold {
			return false
		}
	}
	return true
}

// dartRelease is Dart's _releaseLock: delete the file if it exists.
func dartRelease(lock string) { os.Remove(lock) }

// dartWrite writes the state document b, read under the lock, back with
// edit applied, as Dart writes it (File.writeAsString): the whole
// document, indented, in place (created if gone, truncated), here in two
// writes with a pause between them.
func dartWrite(doc string, b []byte, edit func(map[string]any)) {
	var m map[string]any
	if json.Unmarshal(b, &m) != nil {
		fmt.Println("torn document read by the Dart process")
		os.Exit(1)
	}
	edit(m)
	out, _ := json.MarshalIndent(m, "", "  ")
	f, err := os.OpenFile(doc, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return
	}
	defer f.Close()
	f.Write(out[:len(out)/2])
	time.Sleep(10 * time.Millisecond)
	f.Write(out[len(out)/2:])
}

// dartLocker runs the role on dir; it is killed if the test ends first.
type dartLocker struct {
	cmd *exec.Cmd
	out *bufio.Reader
}

func startDartLocker(t *testing.T, dir, mode string, hold, gap time.Duration, stop string) *dartLocker {
	t.Helper()
	cmd := child(t, "dart-locker", "DART_DIR="+dir, "DART_OP="+dartLiveOp, "DART_MODE="+mode,
		"DART_HOLD="+strconv.Itoa(int(hold.Milliseconds())), "DART_GAP="+strconv.Itoa(int(gap.Milliseconds())), "DART_STOP="+stop)
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	p := &dartLocker{cmd: cmd, out: bufio.NewReader(stdout)}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	return p
}

// summary reads lines up to the summary of a loop, and returns it.
func (p *dartLocker) summary(t *testing.T) string {
	t.Helper()
	for {
		if l := p.line(t); strings.HasPrefix(l, "beats ") {
			return l
		}
	}
}

func (p *dartLocker) line(t *testing.T) string {
	t.Helper()
	l, err := p.out.ReadString('\n')
	require.NoError(t, err)
	return strings.TrimSpace(l)
}

// A Go participant that joins while a Dart process holds its lock waits
// for it: the Go journal starts from the document as the Dart process
// left it (here with the abort flag it set before it let go).
func TestDartLockHonouredByJoin(t *testing.T) {
	dir := dartDir(t)
	p := startDartLocker(t, dir, "once", 500*time.Millisecond, 0, "")
	require.Equal(t, "locked", p.line(t))

	ctx := context.Background()
	op, err := openLocal(t, dir, "go_worker").JoinOperation(ctx, dartLiveOp, ledger.JoinOptions{})
	require.NoError(t, err)
	d, err := op.State(ctx)
	require.NoError(t, err)
	assert.True(t, d.Aborted, "the join read the document before the Dart process was done with it")
	waitClosed(t, op.Aborted(), 10*time.Second, "the session hears of the Dart abort")
	assert.Equal(t, "released", p.line(t))
	require.NoError(t, p.cmd.Wait())
	require.NoError(t, op.Leave(ctx, ledger.LeaveOptions{}))
}

// A Dart lock that is not released is reported when the wait is over:
// ErrLockTimeout and ErrDartLocked, with the file and its holder; the
// operation is left as it is, and can still be read.
func TestDartLockNotReleased(t *testing.T) {
	dir := dartDir(t)
	lock := filepath.Join(dir, dartLiveOp+".operation.json.lock")
	fixture := filepath.Join("testdata", "dart", "lockfile", "local", strings.ReplaceAll(dartLiveOp, ":", "%3A")+".operation.json.lock")
	require.NoError(t, os.WriteFile(lock, []byte(readFile(t, fixture)), 0o644))
	docBefore := readFile(t, filepath.Join(dir, dartLiveOp+".operation.json"))

	l, err := ledger.Connect(context.Background(), ledger.Options{BasePath: dir, ParticipantID: "go_worker", LockTimeout: 300 * time.Millisecond})
	require.NoError(t, err)
	defer l.Close()
	_, err = l.JoinOperation(context.Background(), dartLiveOp, ledger.JoinOptions{})
	require.Error(t, err)
	assert.ErrorIs(t, err, ledger.ErrLockTimeout)
	assert.ErrorIs(t, err, ledger.ErrDartLocked)
	assert.Contains(t, err.Error(), lock)
	assert.Contains(t, err.Error(), "dart_cli (pid 31337)")

	assert.FileExists(t, lock, "a Dart lock is never deleted")
	assert.Equal(t, docBefore, readFile(t, filepath.Join(dir, dartLiveOp+".operation.json")))
	_, err = os.Stat(filepath.Join(dir, dartLiveOp+".operation.journal"))
	assert.ErrorIs(t, err, fs.ErrNotExist)
	assert.Equal(t, ledger.StateRunning, viewState(t, dir, dartLiveOp).OperationState, "a complete document reads while the lock is held")
}

// A Dart process rewrites its state document in place, in more than one
// write: a Go reader never takes what it finds in between for the state.
func TestDartTornWritesNeverRead(t *testing.T) {
	dir := dartDir(t)
	stop := filepath.Join(t.TempDir(), "stop")
	p := startDartLocker(t, dir, "loop", 0, time.Millisecond, stop)
	require.Equal(t, "started", p.line(t))

	v, err := ledger.OpenViewer(ledger.Options{BasePath: dir})
	require.NoError(t, err)
	defer v.Close()
	reads := 0
	for deadline := time.Now().Add(1500 * time.Millisecond); time.Now().Before(deadline); reads++ {
		_, err := v.State(context.Background(), dartLiveOp)
		require.NoError(t, err, "read %d", reads)
	}
	require.NoError(t, os.WriteFile(stop, nil, 0o644))
	summary := p.summary(t)
	require.NoError(t, p.cmd.Wait())
	t.Logf("%d reads; Dart process: %s", reads, summary)
	assert.NotContains(t, summary, "beats 0 ", "the Dart process never wrote")
}

// While a Dart process keeps beating on an operation (its heartbeat
// reads the state document under its lock and writes it back), a Go
// participant adopts and completes it, the completion starting while the
// Dart process holds the document: the archive waits for the Dart lock
// and holds it while it moves the files, so the Dart process finds no
// ledger afterwards instead of writing the document back (which would
// bring the operation back to life).
func TestDartProcessNeverRevivesArchivedOperation(t *testing.T) {
	dir := dartDir(t)
	stop := filepath.Join(t.TempDir(), "stop")
	p := startDartLocker(t, dir, "loop", 100*time.Millisecond, 30*time.Millisecond, stop)
	require.Equal(t, "started", p.line(t))

	ctx := context.Background()
	op, err := openLocal(t, dir, "dart_cli").JoinOperation(ctx, dartLiveOp, ledger.JoinOptions{})
	require.NoError(t, err)
	for p.line(t) != "holding" {
	}
	require.NoError(t, op.Complete(ctx))
	for seen := 0; seen < 3; { // beats of the Dart process that find no ledger
		if p.line(t) == "noledger" {
			seen++
		}
	}
	require.NoError(t, os.WriteFile(stop, nil, 0o644))
	summary := p.summary(t)
	require.NoError(t, p.cmd.Wait())
	t.Logf("Dart process: %s", summary)

	_, err = os.Stat(filepath.Join(dir, dartLiveOp+".operation.json"))
	assert.True(t, errors.Is(err, fs.ErrNotExist), "the archived operation's document is back: %v", err)
	v, err := ledger.OpenViewer(ledger.Options{BasePath: dir})
	require.NoError(t, err)
	defer v.Close()
	live, err := v.List(ctx, false)
	require.NoError(t, err)
	assert.Empty(t, live)
	assert.NotContains(t, summary, "noledger 0 ", "the Dart process saw the operation gone")
	assert.Equal(t, ledger.StateCompleted, viewState(t, dir, dartLiveOp).OperationState)
}
