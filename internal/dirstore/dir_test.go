package dirstore_test

import (
	"os"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tomdist/ledger/internal/dirstore"
	"github.com/tomdist/ledger/journal/journaltest"
)

func open(t testing.TB, dir string, o dirstore.Options) *dirstore.Dir {
	t.Helper()
	d, err := dirstore.Open(dir, o)
	require.NoError(t, err)
	return d
}

func TestConformance(t *testing.T) {
	host, _ := os.Hostname()
	journaltest.Run(t, func(t testing.TB) journaltest.Pair {
		dir := t.TempDir()
		return journaltest.Pair{A: open(t, dir, dirstore.Options{}), B: open(t, dir, dirstore.Options{}), Host: host}
	})
}

func TestConformanceDurable(t *testing.T) {
	host, _ := os.Hostname()
	journaltest.Run(t, func(t testing.TB) journaltest.Pair {
		dir := t.TempDir()
		o := dirstore.Options{Durable: true, MaxTrail: 3, MaxBackups: 5}
		return journaltest.Pair{A: open(t, dir, o), B: open(t, dir, o), Host: host}
	})
}

func TestConformancePolling(t *testing.T) {
	host, _ := os.Hostname()
	journaltest.Run(t, func(t testing.TB) journaltest.Pair {
		dir := t.TempDir()
		o := dirstore.Options{Poll: 5e6}
		return journaltest.Pair{A: open(t, dir, o), B: open(t, dir, o), Host: host}
	})
}
