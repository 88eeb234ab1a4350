package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tomdist/ledger"
	"github.com/tomdist/ledger/internal/store"
)

const testOp = "20260101T00:00:00.000-sup-00000000"

func write(t *testing.T, path, content string) {
	t.Helper()
	require.NoError(t, os.MkdirAll(filepath.Dir(path), 0o755))
	require.NoError(t, os.WriteFile(path, []byte(content), 0o644))
}

// TestFileCheckerPassesARealLedger: what the ledger writes (live and
// archived operations, logs, trail) parses.
func TestFileCheckerPassesARealLedger(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	l, err := ledger.NewLocalLedger(ledger.Options{BasePath: dir, ParticipantID: "p", NoSignalHandler: true})
	require.NoError(t, err)
	for range 2 {
		op, err := l.CreateOperation(ctx, ledger.CreateOptions{Description: "x"})
		require.NoError(t, err)
		call, err := ledger.StartCall[int](ctx, op, ledger.CallOptions[int]{Description: "multi\nline"})
		require.NoError(t, err)
		require.NoError(t, call.End(ctx, 1))
		require.NoError(t, op.Log(ctx, ledger.LogDebug, "debug line"))
		require.NoError(t, op.Complete(ctx))
	}
	_, err = l.CreateOperation(ctx, ledger.CreateOptions{}) // stays live
	require.NoError(t, err)
	require.NoError(t, l.Close())
	fc := newFileChecker(dir)
	fc.scan(true)
	assert.Empty(t, fc.problems)
	assert.GreaterOrEqual(t, len(fc.done), 2, "the two backups were checked")
}

// TestFileCheckerFindsCorruption: each kind of bad file is reported.
func TestFileCheckerFindsCorruption(t *testing.T) {
	state := `{"operationId":"` + testOp + `","operationState":"running","startTime":"2026-01-01T00:00:00.000Z"}`
	line := "2026-01-01T00:00:00.000Z [INFO] w1 CALL_STARTED c1 t1\n"
	cases := map[string]struct {
		file, content string
	}{
		"state not JSON":           {testOp + ".operation.json", `{"operationId":`},
		"state in no known state":  {testOp + ".operation.json", strings.Replace(state, "running", "exploded", 1)},
		"state of another id":      {"20260101T00:00:00.000-x-00000000.operation.json", state},
		"state without startTime":  {testOp + ".operation.json", strings.Replace(state, "2026-01-01T00:00:00.000Z", "", 1)},
		"log line of another form": {testOp + ".operation.log", line + "CALL_ENDED c1\n"},
		"log time not UTC":         {testOp + ".operation.log", strings.Replace(line, ".000Z", ".000+01:00", 1)},
		"DEBUG in the info log":    {testOp + ".operation.log", strings.Replace(line, "INFO", "DEBUG", 1)},
		"INFO in the debug log":    {testOp + ".operation.debug.log", line},
		"partial last line":        {testOp + ".operation.log", strings.TrimSuffix(line, "\n")},
		"corrupt trail snapshot":   {testOp + "_trail/000000000001_" + testOp + ".json", "{"},
		"foreign trail file":       {testOp + "_trail/notes.txt", "hello"},
		"backup not finished":      {"backup/" + testOp + "/operation.json", state},
		"corrupt backup log":       {"backup/" + testOp + "/operation.log", "x\n"},
		"foreign file":             {"notes.txt", "hello"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			write(t, filepath.Join(dir, c.file), c.content)
			if strings.HasPrefix(c.file, "backup/") && !strings.HasSuffix(c.file, "operation.json") {
				write(t, filepath.Join(dir, "backup", testOp, "operation.json"), strings.Replace(state, "running", "completed", 1))
			}
			fc := newFileChecker(dir)
			fc.scan(true)
			assert.Len(t, fc.problems, 1, "%q", fc.problems)
		})
	}
}

// TestFileCheckerFindsAShrunkLog: a log is append-only.
func TestFileCheckerFindsAShrunkLog(t *testing.T) {
	path := filepath.Join(t.TempDir(), testOp+".operation.log")
	line := "2026-01-01T00:00:00.000Z [INFO] w1 CALL_STARTED c1 t1\n"
	write(t, path, line+line)
	fc := newFileChecker(filepath.Dir(path))
	fc.scan(false)
	require.Empty(t, fc.problems)
	write(t, path, line)
	fc.scan(false)
	assert.Len(t, fc.problems, 1)
}

// scenario is a finished campaign made by hand: the journal of worker w1,
// the log, the final participant records and the kills.
type scenario struct {
	journal      string
	log          []string // events, as "participant EVENT args"
	participants []store.Participant
	frames       []store.CallFrame
	killed       bool // w1 was killed
}

func (s scenario) check(t *testing.T) tally {
	t.Helper()
	dir := t.TempDir()
	write(t, filepath.Join(dir, "w1.journal"), s.journal)
	var log strings.Builder
	for _, l := range s.log {
		p, ev, _ := strings.Cut(l, " ")
		log.WriteString("2026-01-01T00:00:01.000Z [INFO] " + p + " " + ev + "\n")
	}
	write(t, filepath.Join(dir, "operation.log"), log.String())
	c, err := readJournals(dir)
	require.NoError(t, err)
	ev, err := parseLog(filepath.Join(dir, "operation.log"))
	require.NoError(t, err)
	final := &store.Data{OperationID: testOp, InitiatorID: "sup", Participants: s.participants, CallFrames: s.frames}
	var kills []kill
	if s.killed {
		kills = []kill{{id: "w1", pid: 1, at: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}}
	}
	var tl tally
	_, _, ids := tl.checkDetection(kills, ev, final)
	tl.checkCalls(c, ev, final, ids)
	return tl
}

func rec(id, state string) store.Participant {
	return store.Participant{ParticipantID: id, PID: 1, Host: "h", State: state}
}

// TestTallyFindsViolations: each violation is counted where it belongs, and
// a clean run counts nothing.
func TestTallyFindsViolations(t *testing.T) {
	left, crashed := []store.Participant{rec("w1", store.ParticipantLeft)}, []store.Participant{rec("w1", store.ParticipantCrashed)}
	joined := "w1 PARTICIPANT_JOINED pid=1 host=h session=1"
	started, ended := "w1 CALL_STARTED call_w1_1_ab w1-1", "w1 CALL_ENDED call_w1_1_ab"
	acked := "J 1\nB w1-1\nS w1-1 call_w1_1_ab\nA w1-1\n"
	verdict := "sup CRASH_DETECTED w1/1@h calls=call_w1_1_ab"
	bare := "sup CRASH_DETECTED w1/1@h calls="
	cases := map[string]struct {
		s    scenario
		want tally
	}{
		"clean":                              {scenario{acked, []string{joined, started, ended}, left, nil, false}, tally{}},
		"clean kill":                         {scenario{"B w1-1\nS w1-1 call_w1_1_ab\n", []string{joined, started, verdict}, crashed, nil, true}, tally{}},
		"End acknowledged, not logged":       {scenario{acked, []string{joined, started}, left, nil, false}, tally{lost: 1, inconsistent: 1}},
		"StartCall acknowledged, not logged": {scenario{"B w1-1\nS w1-1 call_w1_1_ab\n", []string{joined}, left, nil, false}, tally{lost: 1}},
		"acknowledged call keeps its frame":  {scenario{acked, []string{joined, started, ended}, left, []store.CallFrame{{CallID: "call_w1_1_ab"}}, false}, tally{lost: 1, inconsistent: 1}},
		"End logged twice":                   {scenario{acked, []string{joined, started, ended, ended}, left, nil, false}, tally{doubled: 1}},
		"ended and crashed":                  {scenario{acked, []string{joined, started, ended, verdict}, crashed, nil, true}, tally{doubled: 1}},
		"started twice":                      {scenario{acked, []string{joined, started, started, ended}, left, nil, false}, tally{doubled: 2}},
		"nobody started it":                  {scenario{"", []string{joined, started, verdict}, crashed, nil, true}, tally{inconsistent: 1}},
		"killed, not detected":               {scenario{"", []string{joined}, []store.Participant{rec("w1", store.ParticipantActive)}, nil, true}, tally{undetected: 1}},
		"detected twice":                     {scenario{"", []string{joined, bare, bare}, crashed, nil, true}, tally{doubled: 1}},
		"false verdict":                      {scenario{acked, []string{joined, started, ended, bare}, crashed, nil, false}, tally{falseCrash: 1}},
		"never ended, not killed":            {scenario{"B w1-1\nS w1-1 call_w1_1_ab\n", []string{joined, started}, left, nil, false}, tally{inconsistent: 1}},
		"never ended, killed: a gap":         {scenario{"B w1-1\nS w1-1 call_w1_1_ab\n", []string{joined, started, bare}, crashed, nil, true}, tally{gaps: 1}},
		"verdict line cut off":               {scenario{"", []string{joined}, crashed, nil, true}, tally{gaps: 1}},
		"join line cut off":                  {scenario{"", []string{bare}, crashed, nil, true}, tally{gaps: 1}},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			got := c.s.check(t)
			details := strings.Join(append(got.details, got.gapDetails...), "\n")
			got.details, got.gapDetails = nil, nil
			assert.Equal(t, c.want, got, details)
		})
	}
}
