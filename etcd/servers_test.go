package etcd_test

import (
	"bufio"
	"context"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tomdist/ledger"
	"github.com/tomdist/ledger/etcd"
)

// startServe runs `ledger serve --etcd` on the ledger of c and returns
// the process and its URL; it is killed when the test ends.
func startServe(t *testing.T, c etcd.Config) (*exec.Cmd, string) {
	t.Helper()
	cmd := exec.Command(filepath.Join(commands(t), "ledger"), "serve",
		"--etcd", strings.Join(c.Client.Endpoints, ","), "--prefix", c.Prefix, "--addr", "127.0.0.1:0")
	out, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	line, err := bufio.NewReader(out).ReadString('\n')
	require.NoError(t, err, "reading from ledger serve")
	url, ok := strings.CutPrefix(strings.TrimSpace(line), "listening on ")
	require.True(t, ok, "ledger serve said %q", line)
	return cmd, url
}

// TestServersFailOver: two `ledger serve --etcd` processes front one
// ledger; clients that know both run calls through them, and one server
// is killed with SIGKILL under that load. The clients go on through the
// other: every acknowledged call is in the ledger once, no call is made
// twice, and nobody is declared crashed.
func TestServersFailOver(t *testing.T) {
	c := config(t)
	ctx := context.Background()
	srvA, urlA := startServe(t, c)
	_, urlB := startServe(t, c)

	open := func(name string, urls ...string) ledger.Ledger {
		l, err := ledger.Connect(ctx, ledger.Options{
			ParticipantID: name, ServerURL: urls[0], ServerURLs: urls[1:],
			HeartbeatInterval: 200 * time.Millisecond, StaleThreshold: 3 * time.Second,
			RequestTimeout: 2 * time.Second,
		})
		require.NoError(t, err)
		t.Cleanup(func() { l.Close() })
		return l
	}
	first := open("p0", urlA, urlB)
	op0, err := first.CreateOperation(ctx, ledger.CreateOptions{Description: "failover"})
	require.NoError(t, err)
	ops := []*ledger.Operation{op0}
	for i, urls := range [][]string{{urlB, urlA}, {urlA, urlB}, {urlB, urlA}} {
		op, err := open("p"+string(rune('1'+i)), urls...).JoinOperation(ctx, op0.ID(), ledger.JoinOptions{})
		require.NoError(t, err)
		ops = append(ops, op)
	}

	var (
		mu    sync.Mutex
		acked []string
		per   = make([]int, len(ops)) // calls acknowledged to each client
	)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i, op := range ops {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				call, err := ledger.StartCall[int](cctx, op, ledger.CallOptions[int]{Description: "step"})
				if err == nil {
					if err = call.End(cctx, 1); err != nil {
						err = call.End(cctx, 1) // not acknowledged: again
					}
				}
				cancel()
				if err == nil {
					mu.Lock()
					acked = append(acked, call.ID())
					per[i]++
					mu.Unlock()
				}
			}
		})
	}
	count := func() int { mu.Lock(); defer mu.Unlock(); return len(acked) }
	require.Eventually(t, func() bool { return count() >= 40 }, 30*time.Second, 10*time.Millisecond)
	require.NoError(t, srvA.Process.Kill())
	mu.Lock()
	before, perBefore := len(acked), slices.Clone(per)
	mu.Unlock()
	require.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		for i := range per {
			if per[i] < perBefore[i]+20 {
				return false
			}
		}
		return true
	}, 30*time.Second, 10*time.Millisecond, "every client goes on through the other server")
	close(stop)
	wg.Wait()
	for _, op := range ops {
		select {
		case <-op.Failed():
			f, _ := op.Failure()
			t.Fatalf("the operation failed: %+v", f)
		default:
		}
	}

	log, err := ledger.NewViewer(openStore(t, c)).Log(ctx, op0.ID(), false)
	require.NoError(t, err)
	started, ended := callEvents(string(log))
	mu.Lock()
	defer mu.Unlock()
	t.Logf("%d calls acknowledged, %d before the server was killed", len(acked), before)
	for _, id := range acked {
		assert.Equal(t, 1, started[id], "CALL_STARTED of %s", id)
		assert.Equal(t, 1, ended[id], "CALL_ENDED of %s", id)
	}
	for id, n := range started {
		assert.LessOrEqual(t, n, 1, "%s started %d times", id, n)
	}
	for id, n := range ended {
		assert.LessOrEqual(t, n, 1, "%s ended %d times", id, n)
	}
	assert.NotContains(t, string(log), "CRASH", "nobody was declared crashed")
}

// callEvents counts the CALL_STARTED and CALL_ENDED lines of each call
// in a log.
func callEvents(log string) (started, ended map[string]int) {
	started, ended = map[string]int{}, map[string]int{}
	for _, line := range strings.Split(log, "\n") {
		var m map[string]int
		switch {
		case strings.Contains(line, "CALL_STARTED"):
			m = started
		case strings.Contains(line, "CALL_ENDED"):
			m = ended
		default:
			continue
		}
		for _, f := range strings.Fields(line) {
			if i := strings.Index(f, "call_"); i >= 0 {
				m[strings.TrimRight(f[i:], ",;)")]++
			}
		}
	}
	return started, ended
}
