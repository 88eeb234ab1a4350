package main

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

// TestMain runs the test binary as a campaign's worker when the campaign
// re-executes it (the same way as the command re-executes itself).
func TestMain(m *testing.M) {
	if cfg, ok, err := workerFromEnv(); ok {
		if err != nil {
			fmt.Fprintln(os.Stderr, "crashtest worker:", err)
			os.Exit(2)
		}
		os.Exit(runWorker(cfg))
	}
	goleak.VerifyTestMain(m)
}

// smallCampaign is a campaign of a few kills that runs in seconds.
func smallCampaign(t *testing.T, kills int) config {
	return config{
		kills: kills, workers: 3, life: 100 * time.Millisecond, check: 50 * time.Millisecond,
		detect: 15 * time.Second, parent: t.TempDir(), exe: os.Args[0],
	}
}

func requirePass(t *testing.T, res *result, kills int) {
	t.Helper()
	t.Log(res.verdict())
	for _, n := range res.notes {
		t.Log(n)
	}
	assert.False(t, res.failed(), "%s\n%s", strings.Join(res.details, "\n"), res.verdict())
	assert.Equal(t, kills, res.kills, "kills")
	assert.Positive(t, res.acked, "acknowledged calls")
	assert.GreaterOrEqual(t, res.calls, res.acked, "calls")
}

// TestCampaignLocal runs the command's core: workers on a LocalLedger,
// killed with SIGKILL, every file and every journal checked.
func TestCampaignLocal(t *testing.T) {
	res, err := run(smallCampaign(t, 20))
	require.NoError(t, err)
	requirePass(t, res, 20)
}

// TestCampaignRemote runs it through a real `ledger serve` process; the
// kills are seen by heartbeat staleness, so the intervals are short, but
// long enough that a loaded machine does not starve a live worker past
// the threshold.
func TestCampaignRemote(t *testing.T) {
	cfg := smallCampaign(t, 6)
	cfg.remote, cfg.heartbeat, cfg.stale = true, 250*time.Millisecond, 3*time.Second
	cfg.life = 300 * time.Millisecond // a remote worker takes longer to join
	cfg.detect = detectTime(cfg)
	res, err := run(cfg)
	require.NoError(t, err)
	requirePass(t, res, 6)
}
