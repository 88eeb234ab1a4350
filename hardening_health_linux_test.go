package ledger_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// setNofile sets the soft RLIMIT_NOFILE of process pid (and the hard one
// to hard, if not 0).
func setNofile(t *testing.T, pid int, soft, hard uint64) {
	t.Helper()
	var cur unix.Rlimit
	require.NoError(t, unix.Prlimit(pid, unix.RLIMIT_NOFILE, nil, &cur))
	if hard == 0 {
		hard = cur.Max
	}
	require.NoError(t, unix.Prlimit(pid, unix.RLIMIT_NOFILE, &unix.Rlimit{Cur: soft, Max: hard}, nil))
}

// lowestFreeFD returns the lowest descriptor number process pid has free:
// with the soft limit set to it, the process can open nothing more.
func lowestFreeFD(t *testing.T, pid int) uint64 {
	t.Helper()
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	require.NoError(t, err)
	used := map[uint64]bool{}
	for _, de := range ents {
		n, err := strconv.ParseUint(de.Name(), 10, 64)
		require.NoError(t, err)
		used[n] = true
	}
	n := uint64(0)
	for used[n] {
		n++
	}
	return n
}

// TestServerUnderLowFDLimit runs `ledger serve` with 64 descriptors and
// leaves 100 operations abandoned on it: every request keeps working, as
// the server keeps no descriptor per operation. When the server cannot
// open files any more, /health says 503, and ok again once it can.
func TestServerUnderLowFDLimit(t *testing.T) {
	url, bs := startBinaryServer(t, t.TempDir())
	pid := bs.cmd.Process.Pid
	setNofile(t, pid, 64, 64)
	// One connection, kept alive: with its descriptors exhausted, the
	// server could accept no other.
	client := &http.Client{Transport: &http.Transport{MaxConnsPerHost: 1, MaxIdleConnsPerHost: 1}}
	t.Cleanup(client.CloseIdleConnections)
	call := func(method, path string, body any) (int, string) {
		t.Helper()
		var rd io.Reader
		if body != nil {
			b, err := json.Marshal(body)
			require.NoError(t, err)
			rd = bytes.NewReader(b)
		}
		req, err := http.NewRequest(method, url+path, rd)
		require.NoError(t, err)
		req.Header.Set("Content-Type", "application/json")
		resp, err := client.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		return resp.StatusCode, string(b)
	}
	for i := range 100 {
		q := map[string]any{
			"operationId":   fmt.Sprintf("20250101T00:00:00.000-ghost-%08x", i),
			"participantId": "ghost", "participantPid": 4_000_000 + i, "host": "elsewhere",
		}
		status, body := call("POST", "/operation/create", q)
		require.Equal(t, http.StatusOK, status, "create #%d: %s", i, body)
		status, body = call("POST", "/operation/heartbeat", q)
		require.Equal(t, http.StatusOK, status, "heartbeat #%d: %s", i, body)
	}
	status, body := call("GET", "/health", nil)
	require.Equal(t, http.StatusOK, status, body)

	setNofile(t, pid, lowestFreeFD(t, pid), 0)
	status, body = call("GET", "/health", nil)
	assert.Equal(t, http.StatusServiceUnavailable, status, "health with no descriptor left: %s", body)
	status, body = call("POST", "/operation/heartbeat", map[string]any{
		"operationId":   "20250101T00:00:00.000-ghost-00000000",
		"participantId": "ghost", "participantPid": 4_000_000, "host": "elsewhere",
	})
	assert.NotEqual(t, http.StatusOK, status, "a change with no descriptor left: %s", body)

	setNofile(t, pid, 64, 0)
	status, body = call("GET", "/health", nil)
	assert.Equal(t, http.StatusOK, status, body)
}
