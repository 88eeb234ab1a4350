package etcd_test

import (
	"encoding/json"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// The behavioural suite of package ledger (its tests that run over every
// backend through forEachBackend, in package ledger_test) runs over etcd
// too, unchanged: TestCoreBehaviour runs `go test` in the core module
// with two files that exist only for that run, so that the core's go.mod
// never names etcd:
//
//   - an overlay (go test -overlay) adds etcdbackend_test.go to package
//     ledger_test, whose init replaces the table of backends by one
//     backend, "etcd", that opens every ledger with etcd.Connect on the
//     cluster of this test binary, under a fresh prefix per test;
//   - a module file (go test -modfile) is the core's go.mod with the
//     requirements of this module added, and this module replaced by its
//     directory.
//
// The tests that look behind the Ledger interface at the files of a
// ledger directory, or start child processes that reach the ledger by
// LEDGER_DIR or SERVER_URL, cannot run over etcd: they are listed in
// notOverEtcd with the reason. This module's own tests cover what they
// check (kills of child processes, logs, archives) on etcd.

// notOverEtcd are the behavioural tests that cannot run over etcd, and why.
var notOverEtcd = map[string]string{
	"TestAbortFlag":                                 readsFiles,
	"TestCallOutcomes":                              readsFiles,
	"TestCompleteArchivesAndEndsEveryHandle":        readsFiles,
	"TestCompleteRefusedOnceFailing":                readsFiles,
	"TestDocumentedErrors":                          readsFiles,
	"TestDotOperationIDRefused":                     readsFiles,
	"TestHeartbeatErrorTypes":                       readsFiles,
	"TestIdentityAndSessions":                       readsFiles,
	"TestLockWaitEndsWithContext":                   readsFiles,
	"TestLogLines":                                  readsFiles,
	"TestManyGoroutinesStartAndEndCalls":            readsFiles,
	"TestRecordWithoutSettingsGetsDefaults":         readsFiles,
	"TestRemoteOperationLifecycle":                  readsFiles,
	"TestSpawnCallCancel":                           readsFiles,
	"TestSpawnCallContained":                        readsFiles,
	"TestSpawnCallErrorFailsOperation":              readsFiles,
	"TestSpawnCallFallback":                         readsFiles,
	"TestSpawnCallOnAbortedOperation":               readsFiles,
	"TestSpawnCallSuccess":                          readsFiles,
	"TestStdioWorkerResult":                         readsFiles,
	"TestSyncThousandCalls":                         readsFiles,
	"TestAbortReachesOtherProcesses":                childProcesses,
	"TestCallFailureReachesOtherProcess":            childProcesses,
	"TestChildProcessesShareAnOperation":            childProcesses,
	"TestKill9OfContainedCallLetsOperationComplete": childProcesses,
	"TestPausedParticipant":                         childProcesses,
	"TestPeerJudgedByItsOwnSettings":                childProcesses,
	"TestSkewedClocksCauseNoVerdict":                childProcesses,
	"TestJoinFromEnv":                               workerEnv,
	"TestWorkerLedgerEnv":                           workerEnv,
}

const (
	readsFiles     = "reads the files of a ledger directory (logs, archived state, lock or journal files), which etcd has not"
	childProcesses = "starts child processes of the core's test binary, which reach the ledger by LEDGER_DIR or SERVER_URL only (TestKillReachesSurvivors and TestPartitionedParticipant kill and stop children on etcd)"
	workerEnv      = "checks the worker environment of a directory or server, or joins with ledger.JoinFromEnv, which cannot open etcd (TestWorkerJoinsFromEnv checks etcd's)"
)

// overlaySource is the file the overlay adds to package ledger_test.
const overlaySource = `package ledger_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"testing"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/tomdist/ledger"
	"github.com/tomdist/ledger/etcd"
)

var etcdPrefixes atomic.Int64

func init() {
	eps := os.Getenv("LEDGER_TEST_ETCD_ENDPOINTS")
	if eps == "" {
		return
	}
	backends = []testBackend{{name: "etcd", setup: func(t testing.TB) (func(testing.TB, ledger.Options) ledger.Ledger, location) {
		c := etcd.Config{
			Client: clientv3.Config{Endpoints: strings.Split(eps, ",")},
			Prefix: fmt.Sprintf("/core/%d-%d/", os.Getpid(), etcdPrefixes.Add(1)),
		}
		return func(t testing.TB, o ledger.Options) ledger.Ledger {
			t.Helper()
			l, err := etcd.Connect(context.Background(), c, o)
			if err != nil {
				t.Fatalf("connect: %v", err)
			}
			t.Cleanup(func() { l.Close() })
			return l
		}, location{}
	}}}
}
`

func TestCoreBehaviour(t *testing.T) {
	core, err := filepath.Abs("..")
	require.NoError(t, err)
	tests := backendTests(t, core)
	require.NotEmpty(t, tests, "no test of the core calls forEachBackend")
	var run []string
	for _, name := range tests {
		if _, ok := notOverEtcd[name]; !ok {
			run = append(run, name)
		}
	}
	t.Logf("running %d of the core's %d behavioural tests over etcd", len(run), len(tests))

	tmp := t.TempDir()
	overlayFile := filepath.Join(tmp, "etcdbackend_test.go")
	require.NoError(t, os.WriteFile(overlayFile, []byte(overlaySource), 0o644))
	overlay, err := json.Marshal(map[string]map[string]string{
		"Replace": {filepath.Join(core, "etcdbackend_test.go"): overlayFile},
	})
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(tmp, "overlay.json"), overlay, 0o644))
	modfile := coreModfile(t, core, tmp)

	args := []string{"test", "-count=1", "-modfile=" + modfile, "-overlay=" + filepath.Join(tmp, "overlay.json"),
		"-run", "^(" + strings.Join(run, "|") + ")$"}
	if raceEnabled {
		args = append(args, "-race")
	}
	if testing.Verbose() {
		args = append(args, "-v")
	}
	cmd := exec.Command("go", append(args, ".")...)
	cmd.Dir = core
	cmd.Env = append(os.Environ(), "LEDGER_TEST_ETCD_ENDPOINTS="+strings.Join(cluster.Endpoints(), ","))
	out, err := cmd.CombinedOutput()
	if err != nil || testing.Verbose() {
		t.Logf("go %s\n%s", strings.Join(args, " "), out)
	}
	require.NoError(t, err, "the core's behavioural tests failed over etcd")
	require.Regexp(t, regexp.MustCompile(`(?m)^ok\s`), string(out))
}

// backendTests returns the names of the core's tests that call
// forEachBackend.
func backendTests(t *testing.T, core string) []string {
	files, err := filepath.Glob(filepath.Join(core, "*_test.go"))
	require.NoError(t, err)
	fset := token.NewFileSet()
	var names []string
	for _, f := range files {
		af, err := parser.ParseFile(fset, f, nil, 0)
		require.NoError(t, err)
		if af.Name.Name != "ledger_test" {
			continue
		}
		for _, d := range af.Decls {
			fd, ok := d.(*ast.FuncDecl)
			if !ok || fd.Recv != nil || !strings.HasPrefix(fd.Name.Name, "Test") || fd.Body == nil {
				continue
			}
			if callsForEachBackend(fd.Body) {
				names = append(names, fd.Name.Name)
			}
		}
	}
	slices.Sort(names)
	return names
}

func callsForEachBackend(body *ast.BlockStmt) bool {
	found := false
	ast.Inspect(body, func(n ast.Node) bool {
		if c, ok := n.(*ast.CallExpr); ok {
			if id, ok := c.Fun.(*ast.Ident); ok && id.Name == "forEachBackend" {
				found = true
			}
		}
		return !found
	})
	return found
}

// coreModfile writes the core's go.mod with this module's requirements
// added and this module replaced by its directory, with the union of both
// go.sum files beside it, and returns its path.
func coreModfile(t *testing.T, core, tmp string) string {
	self, err := filepath.Abs(".")
	require.NoError(t, err)
	mod := filepath.Join(tmp, "core.mod")
	b, err := os.ReadFile(filepath.Join(core, "go.mod"))
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(mod, b, 0o644))
	var sum []byte
	for _, dir := range []string{core, self} {
		s, err := os.ReadFile(filepath.Join(dir, "go.sum"))
		require.NoError(t, err)
		sum = append(sum, s...)
	}
	require.NoError(t, os.WriteFile(filepath.Join(tmp, "core.sum"), sum, 0o644))

	out, err := exec.Command("go", "mod", "edit", "-json", filepath.Join(self, "go.mod")).Output()
	require.NoError(t, err)
	var m struct {
		Require []struct{ Path, Version string }
	}
	require.NoError(t, json.Unmarshal(out, &m))
	edits := []string{"mod", "edit", "-modfile=" + mod,
		"-require=github.com/tomdist/ledger/etcd@v0.0.0-00010101000000-000000000000",
		"-replace=github.com/tomdist/ledger/etcd=" + self}
	for _, r := range m.Require {
		if r.Path != "github.com/tomdist/ledger" {
			edits = append(edits, "-require="+r.Path+"@"+r.Version)
		}
	}
	cmd := exec.Command("go", edits...)
	cmd.Dir = core
	out, err = cmd.CombinedOutput()
	require.NoError(t, err, "%s", out)
	return mod
}
