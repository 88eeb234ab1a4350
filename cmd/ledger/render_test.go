package main

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/tomdist/ledger"
)

// TestWriteShow: show prints the head, a participants table with each
// heartbeat's age against the participant's own threshold (stale ones
// marked), the running calls by participant with their ages, the temp
// resources and the last log lines.
func TestWriteShow(t *testing.T) {
	now := time.Date(2024, 5, 1, 10, 5, 0, 0, time.UTC)
	start := now.Add(-5 * time.Minute)
	d := &ledger.Data{
		OperationID: "op-1", InitiatorID: "alice", Description: "nightly\nbuild", StartTime: start,
		OperationState: ledger.StateCleanup, Aborted: true,
		Participants: []ledger.Participant{
			{ParticipantID: "alice", PID: 11, Host: "h1", Sessions: 1, State: ledger.ParticipantActive, LastHeartbeat: now.Add(-2 * time.Second),
				HeartbeatInterval: time.Second, StaleThreshold: 3 * time.Second},
			{ParticipantID: "bob", PID: 22, Host: "h2", Sessions: 2, State: ledger.ParticipantActive, LastHeartbeat: now.Add(-5 * time.Second),
				HeartbeatInterval: time.Second, StaleThreshold: 3 * time.Second, Remote: true},
			{ParticipantID: "dart", PID: 33, Host: "h3", Sessions: 1, State: ledger.ParticipantActive, LastHeartbeat: now.Add(-30 * time.Second)},
			{ParticipantID: "carol", PID: 44, Host: "h4", State: ledger.ParticipantCrashed, LastHeartbeat: now.Add(-time.Minute)},
		},
		CallFrames: []ledger.CallFrame{
			{ParticipantID: "alice", PID: 11, Host: "h1", CallID: "call_a_1", Description: "compile", StartTime: now.Add(-90 * time.Second), State: ledger.FrameActive, FailOnCrash: true},
			{ParticipantID: "carol", PID: 44, Host: "h4", CallID: "call_c_1", Description: "upload", StartTime: now.Add(-2 * time.Minute), State: ledger.FrameCrashed, FailOnCrash: true},
			{ParticipantID: "alice", PID: 11, Host: "h1", CallID: "call_a_2", Description: "lint", StartTime: now.Add(-3 * time.Second), State: ledger.FrameActive},
		},
		TempResources: []ledger.TempResource{{Path: "/tmp/x.tmp", Owner: 11, ParticipantID: "alice", Host: "h1", RegisteredAt: now.Add(-time.Minute), RegisteredVia: "local"}},
		Failure: &ledger.Failure{FailedAt: now.Add(-10 * time.Second), Reason: "participant carol/44@h4 crashed", ParticipantID: "carol",
			CrashedCallIDs: []string{"call_c_1"}, Coordinator: "alice/11@h1"},
	}
	log := "l1\nl2\nl3\nl4\n"
	var b strings.Builder
	writeShow(&b, d, []byte(log), now, 2)
	out := b.String()
	for _, want := range []string{
		"operation op-1",
		"description nightly build",
		"state cleanup, abort flag set",
		"started 2024-05-01 10:00:00 UTC (5m0s ago)",
		"failure 2024-05-01 10:04:50 UTC by carol: participant carol/44@h4 crashed",
		"failed calls call_c_1",
		"coordinator alice/11@h1",
		"PARTICIPANTS (4)",
		"CALLS (3)",
		"TEMP RESOURCES (1)",
		"/tmp/x.tmp alice 11@h1 1m0s ago, via local",
		"LOG (last 2 of 4 lines) l3 l4",
	} {
		assert.Contains(t, squash(out), want)
	}
	assert.Contains(t, out, "LOG (last 2 of 4 lines)\n  l3\n  l4\n")
	line := func(prefix string) string {
		for _, l := range strings.Split(out, "\n") {
			if strings.HasPrefix(strings.TrimSpace(l), prefix) {
				return squash(l)
			}
		}
		t.Fatalf("no line %q in\n%s", prefix, out)
		return ""
	}
	assert.Contains(t, line("alice "), "2s ago, threshold 3s")
	assert.NotContains(t, line("alice "), "STALE", "2s is below 3s + 1.25s")
	assert.Contains(t, line("bob "), "5s ago, threshold 3s")
	assert.Contains(t, line("bob "), "STALE", "5s is past 3s + 1.25s")
	assert.Contains(t, line("bob "), "22@h2 (via server)")
	assert.Contains(t, line("dart "), "30s ago, threshold 15s", "a record without settings has the defaults")
	assert.Contains(t, line("dart "), "STALE")
	assert.NotContains(t, line("carol "), "ago", "a crashed participant has no heartbeat age")
	assert.Contains(t, line("call_a_1"), "1m30s")
	assert.Contains(t, line("call_a_2"), "contained")
	assert.Contains(t, line("call_c_1"), "crashed")
	assert.Less(t, strings.Index(out, "call_a_2"), strings.Index(out, "carol 44@h4"), "calls grouped by participant process")
}

// squash collapses runs of white space into one space.
func squash(s string) string { return strings.Join(strings.Fields(s), " ") }

func TestAge(t *testing.T) {
	for d, want := range map[time.Duration]string{
		-time.Second:                  "0s",
		1234 * time.Millisecond:       "1.2s",
		42 * time.Second:              "42s",
		192 * time.Second:             "3m12s",
		2*time.Hour + 5*time.Minute:   "2h5m",
		2 * time.Hour:                 "2h",
		76*time.Hour + 10*time.Minute: "3d4h",
	} {
		assert.Equal(t, want, age(d), "%v", d)
	}
}
