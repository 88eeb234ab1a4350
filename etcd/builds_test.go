package etcd_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
)

var (
	buildOnce sync.Once
	buildDir  string
	buildErr  error
)

// commands builds the core's ledger command and ledger-etcd into one
// directory, once per test binary, and returns it: `ledger serve --etcd`
// runs the ledger-etcd beside it.
func commands(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		if buildDir, buildErr = os.MkdirTemp("", "ledger-etcd-bin-"); buildErr != nil {
			return
		}
		for pkg, name := range map[string]string{
			"github.com/tomdist/ledger/cmd/ledger":           "ledger",
			"github.com/tomdist/ledger/etcd/cmd/ledger-etcd": "ledger-etcd",
		} {
			out, err := exec.Command("go", "build", "-o", filepath.Join(buildDir, name), pkg).CombinedOutput()
			if err != nil {
				buildErr = &buildError{pkg, err, out}
				return
			}
		}
	})
	require.NoError(t, buildErr)
	return buildDir
}

type buildError struct {
	pkg string
	err error
	out []byte
}

func (e *buildError) Error() string {
	return "build " + e.pkg + ": " + e.err.Error() + "\n" + string(e.out)
}

// removeBuilds removes what commands built.
func removeBuilds() {
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
}
