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

// TestMain runs the test binary as a worker when measure re-executes it.
func TestMain(m *testing.M) {
	if cfg, ok, err := workerFromEnv(); ok {
		if err != nil {
			fmt.Fprintln(os.Stderr, "contention worker:", err)
			os.Exit(2)
		}
		os.Exit(runWorker(cfg))
	}
	goleak.VerifyTestMain(m)
}

// TestMeasureFewProcesses runs the command's core with real processes on
// one operation: they all get calls through, and nobody is declared
// crashed.
func TestMeasureFewProcesses(t *testing.T) {
	cfg := config{d: time.Second, parent: t.TempDir(), exe: os.Args[0]}
	r, err := measure(cfg, 3)
	require.NoError(t, err)
	t.Logf("P=3: %.0f calls/s, p50 %v, p99 %v, heartbeat errors %v", r.Rate, r.P50, r.P99, r.HB)
	assert.Positive(t, r.Calls)
	assert.InDelta(t, float64(r.Calls), r.Rate*cfg.d.Seconds(), 0.5)
	assert.Positive(t, r.P50)
	assert.LessOrEqual(t, r.P50, r.P99)
	assert.Zero(t, r.Verdicts, "false verdicts")
	assert.Zero(t, r.FailedWorkers)
	assert.Zero(t, r.Errors, "%q", r.Details)
}

// TestReport: the targets are judged from the rows.
func TestReport(t *testing.T) {
	good := []row{{P: 1, Rate: 1000}, {P: 16, Rate: 700}, {P: 32, Rate: 500}, {P: 64, Rate: 100}}
	slow := []row{{P: 1, Rate: 1000}, {P: 32, Rate: 499}}
	falseVerdict := []row{{P: 1, Rate: 1000}, {P: 64, Rate: 900, Verdicts: 2}}
	cases := map[string]struct {
		rows []row
		ok   bool
		want string
	}{
		"met":           {good, true, "= 500 / 1000 = 0.500 (target >= 0.5)"},
		"slow at 32":    {slow, false, "targets MISSED: ratio 0.499 < 0.5"},
		"false verdict": {falseVerdict, false, "targets MISSED: 2 false verdicts at P=64"},
		"no P=1":        {[]row{{P: 16, Rate: 10}}, true, "targets MET"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			var b strings.Builder
			assert.Equal(t, c.ok, report(&b, c.rows))
			assert.Contains(t, b.String(), c.want)
		})
	}
}

func TestParsePs(t *testing.T) {
	ps, err := parsePs("1, 16,32,64")
	require.NoError(t, err)
	assert.Equal(t, []int{1, 16, 32, 64}, ps)
	for _, bad := range []string{"", "0", "1,x", "-4"} {
		_, err := parsePs(bad)
		assert.Error(t, err, bad)
	}
}
