package ledger_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tomdist/ledger"
)

// The rule these tests hold the ledger to: a process deletes a temp
// resource only if its own user registered it through a LocalLedger on
// this host (or the process registered it itself), below a temp root,
// owned by that user, and never through a symbolic link.

func init() {
	roles["temps-noop"] = func() {}
	roles["temps-registrant"] = runTempRegistrant
}

// runTempRegistrant joins $LEDGER_OP in $LEDGER_DIR as $PARTICIPANT with
// temp roots $TEMP_ROOTS, starts a call that fails the operation on crash,
// registers the paths in $REGISTER (both lists separated by
// os.PathListSeparator), says "ready" and waits until it is killed or its
// stdin closes.
func runTempRegistrant() {
	ctx := context.Background()
	l, err := ledger.NewLocalLedger(ledger.Options{
		BasePath: os.Getenv("LEDGER_DIR"), ParticipantID: os.Getenv("PARTICIPANT"),
		TempRoots:         filepath.SplitList(os.Getenv("TEMP_ROOTS")),
		HeartbeatInterval: 50 * time.Millisecond, StaleThreshold: 400 * time.Millisecond,
		LivenessPoll: 20 * time.Millisecond, NoSignalHandler: true,
	})
	if err != nil {
		panic(err)
	}
	defer l.Close()
	op, err := l.JoinOperation(ctx, os.Getenv("LEDGER_OP"), ledger.JoinOptions{})
	if err != nil {
		panic(err)
	}
	if _, err := ledger.StartCall[int](ctx, op, ledger.CallOptions[int]{Description: "registrant"}); err != nil {
		panic(err)
	}
	for _, p := range filepath.SplitList(os.Getenv("REGISTER")) {
		if err := op.RegisterTempResource(ctx, p); err != nil {
			panic(err)
		}
	}
	fmt.Println("ready")
	io.Copy(io.Discard, os.Stdin)
}

// thisHost is the host name the ledger writes for processes of this host.
func thisHost(t *testing.T) string {
	h, err := os.Hostname()
	require.NoError(t, err)
	return h
}

// deadPID returns the pid of a process that has ended.
func deadPID(t *testing.T) int {
	cmd := child(t, "temps-noop")
	require.NoError(t, cmd.Run())
	return cmd.ProcessState.Pid()
}

// canary creates a directory at path holding a file, and returns path.
func canary(t *testing.T, path string) string {
	writeFile(t, filepath.Join(path, "precious"))
	return path
}

// assertAlive checks that a canary directory and its file still exist.
func assertAlive(t *testing.T, path, why string) {
	t.Helper()
	assert.FileExists(t, filepath.Join(path, "precious"), why)
}

// wireParticipant is a participant as a client of the server names it,
// with the heartbeat settings it claims.
type wireParticipant struct {
	ParticipantID       string `json:"participantId"`
	ParticipantPID      int    `json:"participantPid"`
	Host                string `json:"host"`
	HeartbeatIntervalMs int    `json:"heartbeatIntervalMs,omitempty"`
	StaleThresholdMs    int    `json:"staleThresholdMs,omitempty"`
}

// post sends a request to the server at url as p, with the fields of
// extra, and fails the test unless it is answered 200.
func post(t *testing.T, url, path string, p wireParticipant, extra map[string]any) {
	t.Helper()
	body := map[string]any{
		"participantId": p.ParticipantID, "participantPid": p.ParticipantPID, "host": p.Host,
	}
	if p.HeartbeatIntervalMs != 0 {
		body["heartbeatIntervalMs"], body["staleThresholdMs"] = p.HeartbeatIntervalMs, p.StaleThresholdMs
	}
	for k, v := range extra {
		body[k] = v
	}
	b, err := json.Marshal(body)
	require.NoError(t, err)
	res, err := http.Post(url+path, "application/json", bytes.NewReader(b))
	require.NoError(t, err)
	defer res.Body.Close()
	answer, _ := io.ReadAll(res.Body)
	require.Equal(t, http.StatusOK, res.StatusCode, "%s: %s", path, answer)
}

// A client of a token-less loopback server makes up a participant of this
// host with a dead pid, and registers a directory outside the temp roots
// and one inside them. Neither the orphan sweep of a LocalLedger that
// opens the directory nor a live coordinator that declares the made-up
// participant crashed deletes either: paths registered through a server
// are deleted only by their registrant.
func TestServerClientCannotMakeOthersDeleteItsPaths(t *testing.T) {
	for _, how := range []string{"orphan sweep", "crash cleanup"} {
		t.Run(how, func(t *testing.T) {
			ctx := context.Background()
			dir, roots := t.TempDir(), t.TempDir()
			url := startHTTPTestServer(t, ledger.ServerOptions{BasePath: dir})
			outside := canary(t, filepath.Join(t.TempDir(), "outside"))
			inside := canary(t, filepath.Join(roots, "inside"))

			// Tiny heartbeat settings: every observer takes it for stale at once.
			ghost := wireParticipant{"ghost", deadPID(t), thisHost(t), 1, 2}
			id := "20260101T00:00:00.000-ghost-0a1b2c3d"
			post(t, url, "/operation/create", ghost, map[string]any{"operationId": id})
			post(t, url, "/call/start", ghost, map[string]any{"operationId": id, "callId": "call_ghost_1_ab12"})
			for _, p := range []string{outside, inside} {
				post(t, url, "/temp/register", ghost, map[string]any{"operationId": id, "path": p})
			}

			o := ledger.Options{
				BasePath: dir, TempRoots: []string{roots}, HeartbeatInterval: 50 * time.Millisecond,
				StaleThreshold: 400 * time.Millisecond, LivenessPoll: 20 * time.Millisecond,
			}
			if how == "orphan sweep" {
				o.ParticipantID = "sweeper"
				l, err := ledger.NewLocalLedger(o)
				require.NoError(t, err)
				d := archived(t, dir, id)
				require.Equal(t, ledger.StateFailed, d.OperationState)
				require.NoError(t, l.Close()) // waits for the sweep, deletions included
			} else {
				// A participant of another host keeps the operation from
				// being an orphan: a live observer must judge the ghost.
				post(t, url, "/operation/join", wireParticipant{"keeper", 1, "elsewhere", 0, 0}, map[string]any{"operationId": id})
				o.ParticipantID = "coordinator"
				l, err := ledger.NewLocalLedger(o)
				require.NoError(t, err)
				t.Cleanup(func() { l.Close() })
				op, err := l.JoinOperation(ctx, id, ledger.JoinOptions{})
				require.NoError(t, err)
				// Failed closes after the coordinator's deletions.
				waitClosed(t, op.Failed(), 20*time.Second, "the ghost's crash to fail the operation")
				archived(t, dir, id)
				assert.Contains(t, operationLog(t, dir, id), "coordinator CRASH_DETECTED ghost/")
			}
			assertAlive(t, outside, "a path outside the temp roots, registered through the server, was deleted")
			assertAlive(t, inside, "a path registered through the server was deleted by another process")
		})
	}
}

// forgedTemps is the temp registry a forger writes next to a dead
// liveness file, in the form a LocalLedger writes it.
type forgedTemps struct {
	OperationID   string   `json:"operationId"`
	ParticipantID string   `json:"participantId"`
	PID           int      `json:"pid"`
	Host          string   `json:"host"`
	Paths         []string `json:"paths"`
}

// A writer of the ledger directory forges an operation of a dead process
// of this host, with its liveness file and a temp registry, listing
// canaries in the state too. The orphan sweep of a LocalLedger deletes a
// path only if the registry and the path belong to its own user, the
// registry is the one of that process, and the path lies below a temp
// root; the legitimate case proves the forgery complete.
func TestForgedRecordsInTheDirectoryDeleteNothing(t *testing.T) {
	const otherUID = 4242
	for _, tc := range []struct {
		name    string
		forge   func(t *testing.T, registry, path string, list *forgedTemps)
		outside bool // the path lies outside the temp roots
		deleted bool
	}{
		{name: "legitimate", deleted: true},
		{name: "registry of another user", forge: func(t *testing.T, registry, _ string, _ *forgedTemps) {
			requireRoot(t)
			require.NoError(t, os.Chown(registry, otherUID, otherUID))
		}},
		{name: "path of another user", forge: func(t *testing.T, _, path string, _ *forgedTemps) {
			requireRoot(t)
			require.NoError(t, os.Chown(path, otherUID, otherUID))
		}},
		{name: "registry writable by others", forge: func(t *testing.T, registry, _ string, _ *forgedTemps) {
			require.NoError(t, os.Chmod(registry, 0o666))
		}},
		{name: "registry of another process", forge: func(t *testing.T, _, _ string, list *forgedTemps) {
			list.PID++
		}},
		{name: "path outside the temp roots", outside: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir, roots := t.TempDir(), t.TempDir()
			path := canary(t, filepath.Join(roots, "canary"))
			if tc.outside {
				path = canary(t, filepath.Join(t.TempDir(), "canary"))
			}
			pid, host := deadPID(t), thisHost(t)
			id := "20260101T00:00:00.000-forger-0a1b2c3d"
			writeForgedState(t, dir, id, pid, host, path)
			live := filepath.Join(dir, id+".live")
			require.NoError(t, os.MkdirAll(live, 0o755))
			require.NoError(t, os.WriteFile(filepath.Join(live, fmt.Sprintf("forger.%d.lock", pid)), nil, 0o644))
			list := forgedTemps{OperationID: id, ParticipantID: "forger", PID: pid, Host: host, Paths: []string{path}}
			registry := filepath.Join(live, fmt.Sprintf("forger.%d.temps", pid))
			require.NoError(t, os.WriteFile(registry, nil, 0o600))
			if tc.forge != nil {
				tc.forge(t, registry, path, &list)
			}
			b, err := json.Marshal(list)
			require.NoError(t, err)
			f, err := os.OpenFile(registry, os.O_WRONLY|os.O_TRUNC, 0)
			require.NoError(t, err)
			_, err = f.Write(b)
			require.NoError(t, errors.Join(err, f.Close()))

			l, err := ledger.NewLocalLedger(ledger.Options{
				BasePath: dir, ParticipantID: "sweeper", TempRoots: []string{roots},
				HeartbeatInterval: 50 * time.Millisecond, StaleThreshold: 400 * time.Millisecond,
			})
			require.NoError(t, err)
			archived(t, dir, id)
			require.NoError(t, l.Close()) // waits for the sweep, deletions included
			if tc.deleted {
				assert.False(t, exists(path), "the legitimate temp resource was not deleted")
				return
			}
			assertAlive(t, path, "a forged temp resource was deleted")
		})
	}
}

// requireRoot fails the test unless it runs as root, which it needs to
// give a file to another user.
func requireRoot(t *testing.T) {
	t.Helper()
	require.Zero(t, os.Geteuid(), "this case gives a file to another user and must run as root")
}

// writeForgedState writes a running operation of participant forger (pid,
// host) with a call that fails on crash and path as its temp resource.
func writeForgedState(t *testing.T, dir, id string, pid int, host, path string) {
	now := time.Now().UTC().Format("2006-01-02T15:04:05.000Z")
	state := map[string]any{
		"operationId": id, "initiatorId": "forger", "startTime": now, "operationState": "running",
		"aborted": false, "lastHeartbeat": now,
		"callFrames": []map[string]any{{
			"participantId": "forger", "callId": "call_forger_1_ab12", "pid": pid, "host": host,
			"startTime": now, "lastHeartbeat": now, "state": "active", "failOnCrash": true,
		}},
		"tempResources": []map[string]any{{
			"path": path, "owner": pid, "registeredAt": now, "participantId": "forger", "host": host,
			"registeredVia": "local",
		}},
		"participants": []map[string]any{{
			"participantId": "forger", "pid": pid, "host": host, "sessions": 1,
			"joinedAt": now, "lastHeartbeat": now, "state": "active",
		}},
	}
	b, err := json.MarshalIndent(state, "", "  ")
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, id+".operation.json"), b, 0o644))
}

// A participant process registers a symbolic link to a directory outside
// the temp roots, a path below a symbolically linked directory, and a
// plain file, and is killed. The survivor deletes the plain file and the
// link itself, and follows neither link.
func TestCrashCleanupFollowsNoSymlink(t *testing.T) {
	ctx := context.Background()
	e := localEnv(t)
	roots := t.TempDir()
	elsewhere := canary(t, filepath.Join(t.TempDir(), "elsewhere"))
	link := filepath.Join(roots, "link")
	require.NoError(t, os.Symlink(elsewhere, link))
	linkedDir := filepath.Join(roots, "linked-dir")
	require.NoError(t, os.Symlink(elsewhere, linkedDir))
	plain := filepath.Join(roots, "plain")
	writeFile(t, plain)

	survivor := e.Open("survivor", ledger.Options{TempRoots: []string{roots}})
	op, err := survivor.CreateOperation(ctx, ledger.CreateOptions{})
	require.NoError(t, err)
	registered := strings.Join([]string{link, filepath.Join(linkedDir, "precious"), plain}, string(os.PathListSeparator))
	p := startProc(t, child(t, "temps-registrant", "LEDGER_DIR="+e.dir, "LEDGER_OP="+op.ID(),
		"PARTICIPANT=victim", "TEMP_ROOTS="+roots, "REGISTER="+registered))
	require.Equal(t, "ready", p.readLine(t))
	p.kill9(t)

	waitClosed(t, op.Failed(), 20*time.Second, "the victim's crash to fail the operation")
	waitFor(t, 10*time.Second, "the victim's plain temp file to be deleted", func() bool { return !exists(plain) })
	assertAlive(t, elsewhere, "a temp resource was deleted through a symbolic link")
}

// This process's own temp resources are deleted without following a
// symbolic link below the temp root either.
func TestOwnTempCleanupFollowsNoSymlink(t *testing.T) {
	ctx := context.Background()
	e := localEnv(t)
	roots := t.TempDir()
	elsewhere := canary(t, filepath.Join(t.TempDir(), "elsewhere"))
	linkedDir := filepath.Join(roots, "linked-dir")
	require.NoError(t, os.Symlink(elsewhere, linkedDir))
	l := e.Open("alice", ledger.Options{TempRoots: []string{roots}})
	op, err := l.CreateOperation(ctx, ledger.CreateOptions{})
	require.NoError(t, err)
	require.NoError(t, op.RegisterTempResource(ctx, filepath.Join(linkedDir, "precious")))

	err = ledger.Cleanup().Run(ctx)
	assert.Error(t, err, "Run did not report the path it refused")
	assertAlive(t, elsewhere, "Run deleted through a symbolic link")
}

// A client of the server registers a canary in the name of a participant
// process of the local backend. When that process is signalled, it
// deletes its own temp resources, not what the ledger lists in its name.
func TestSignalDeletesOnlyOwnTemps(t *testing.T) {
	dir, op := signalSurvivor(t)
	url := startHTTPTestServer(t, ledger.ServerOptions{BasePath: dir})
	work := t.TempDir()
	p := startSignalChild(t, modeFailing, dir, op.ID(), work)
	forged := canary(t, filepath.Join(t.TempDir(), "forged"))
	impostor := wireParticipant{"child", p.cmd.Process.Pid, thisHost(t), 0, 0}
	post(t, url, "/temp/register", impostor, map[string]any{"operationId": op.ID(), "path": forged})

	p.signal(t, syscall.SIGTERM)
	p.diesFrom(t, syscall.SIGTERM)
	for _, path := range childTempPaths(work) {
		assert.False(t, exists(path), "the child's own temp resource %s survived", path)
	}
	assertAlive(t, forged, "a path registered in the child's name through the server was deleted")
}

// Registration is refused for a path that is not below a temp root, on
// every backend.
func TestTempRootsBoundRegistration(t *testing.T) {
	ctx := context.Background()
	forEachBackend(t, func(t *testing.T, e *env) {
		roots := t.TempDir()
		l := e.Open("alice", ledger.Options{TempRoots: []string{roots}})
		op, err := l.CreateOperation(ctx, ledger.CreateOptions{})
		require.NoError(t, err)
		require.NoError(t, op.RegisterTempResource(ctx, filepath.Join(roots, "ok")))
		for _, bad := range []string{
			roots,                                   // the root itself
			filepath.Join(t.TempDir(), "elsewhere"), // another directory
			filepath.Join(roots, "..", "escape"),    // out by ..
			roots + "-sibling",                      // a prefix, not a parent
			filepath.Join(string(filepath.Separator), "no-such-root", "x"),
		} {
			err := op.RegisterTempResource(ctx, bad)
			assert.ErrorIs(t, err, ledger.ErrInvalidArgument, "registering %s", bad)
		}
		d, err := op.State(ctx)
		require.NoError(t, err)
		require.Len(t, d.TempResources, 1)
		want := "local"
		if e.remote {
			want = "server"
		}
		assert.Equal(t, want, d.TempResources[0].RegisteredVia, "how the path was registered")
	})
}

// The zero TempRoots is the system temp directory; an empty root is
// refused by name.
func TestTempRootsOption(t *testing.T) {
	ctx := context.Background()
	e := localEnv(t)
	l := e.Open("alice", ledger.Options{})
	op, err := l.CreateOperation(ctx, ledger.CreateOptions{})
	require.NoError(t, err)
	require.NoError(t, op.RegisterTempResource(ctx, filepath.Join(os.TempDir(), "ledger-test-scratch")))
	assert.ErrorIs(t, op.RegisterTempResource(ctx, filepath.Join(string(filepath.Separator), "ledger-not-temp", "x")), ledger.ErrInvalidArgument)

	_, err = ledger.NewLocalLedger(ledger.Options{BasePath: t.TempDir(), TempRoots: []string{""}})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "Options.TempRoots")
}
