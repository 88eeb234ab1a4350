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
			assert.Equal(t, c.ok, report(&b, [][]row{c.rows}))
			assert.Contains(t, b.String(), c.want)
		})
	}
}

// TestReportRounds: with several rounds, the table holds the medians and
// the sums, and the target is judged on the median ratio, not on the best
// round.
func TestReportRounds(t *testing.T) {
	round := func(one, many float64, verdicts int) []row {
		return []row{{P: 1, Rate: one, P50: time.Millisecond}, {P: 32, Rate: many, P50: 2 * time.Millisecond, Verdicts: verdicts}}
	}
	var b strings.Builder
	assert.True(t, report(&b, [][]row{round(1000, 600, 0), round(1000, 450, 0), round(1000, 550, 0)}))
	assert.Contains(t, b.String(), "round by round: 600 / 1000 = 0.600, 450 / 1000 = 0.450, 550 / 1000 = 0.550; median 0.550")
	assert.Contains(t, b.String(), "medians of 3 rounds")
	assert.Regexp(t, `(?m)^32\s+550\s+2ms`, b.String())

	// An even number of rounds: the mean of the middle two.
	b.Reset()
	assert.False(t, report(&b, [][]row{round(1000, 600, 0), round(1000, 400, 1), round(1000, 500, 0), round(2000, 600, 0)}))
	assert.Contains(t, b.String(), "median 0.450")
	assert.Contains(t, b.String(), "targets MISSED: 1 false verdicts at P=32; ratio 0.450 < 0.5")

	// A round without a call at P=1 is a miss, not a round left out.
	b.Reset()
	assert.False(t, report(&b, [][]row{round(1000, 600, 0), round(1000, 600, 0), round(0, 0, 0)}))
	assert.Contains(t, b.String(), "0 / 0 = 0.000; median 0.600")
	assert.Contains(t, b.String(), "targets MISSED: no call through at P=1 or P=32 in round 3")
	b.Reset()
	assert.False(t, report(&b, [][]row{round(0, 0, 0)}))
	assert.Contains(t, b.String(), "targets MISSED: no call through at P=1 or P=32 in round 1; ratio 0.000 < 0.5")
}

func TestParseFlags(t *testing.T) {
	cfg, err := parseFlags([]string{"-p", "1,32", "-rounds", "3"})
	require.NoError(t, err)
	assert.Equal(t, []int{1, 32}, cfg.ps)
	assert.Equal(t, 3, cfg.rounds)
	_, err = parseFlags([]string{"-rounds", "0"})
	assert.Error(t, err)
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
