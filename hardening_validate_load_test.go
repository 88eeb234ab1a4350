package ledger_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tomdist/ledger"
)

// dartState is a state file as the Dart package writes it: offset-less
// times, null timestamps, no participants, description or failure.
const dartStateFull = `{
  "operationId": "20240115T10:30:00.123-dart-0a1b2c3d",
  "initiatorId": "dart",
  "startTime": "2024-01-15T10:30:00.123456",
  "operationState": "running",
  "aborted": false,
  "lastHeartbeat": "2024-01-15T10:30:05.000",
  "callFrames": [
    {"participantId": "dart", "callId": "call_dart_1_abcd", "pid": 9, "startTime": "2024-01-15T10:30:01.5",
     "lastHeartbeat": "2024-01-15T10:30:05", "state": "active", "description": "x", "resources": [], "failOnCrash": true}
  ],
  "tempResources": [{"path": "/tmp/d", "owner": 9, "registeredAt": "2024-01-15T10:30:02"}],
  "detectionTimestamp": null,
  "removalTimestamp": null
}`

// TestStateValidatedOnLoad changes one field of a valid state at a time:
// every missing or invalid required field makes the file corrupt, named
// with the field, and the file keeps its bytes; what Dart writes is valid.
func TestStateValidatedOnLoad(t *testing.T) {
	const id = "20240115T10:30:00.123-dart-0a1b2c3d"
	frame := func(k string, v any) func(m map[string]any) {
		return func(m map[string]any) { m["callFrames"].([]any)[0].(map[string]any)[k] = v }
	}
	participant := func(k string, v any) func(m map[string]any) {
		return func(m map[string]any) {
			// Heard of just now, so that the orphan sweep of the ledger that
			// joins does not sweep the operation meanwhile.
			now := time.Now().UTC().Format(time.RFC3339)
			p := map[string]any{"participantId": "dart", "pid": 9, "host": "h", "sessions": 1,
				"joinedAt": now, "lastHeartbeat": now, "state": "active"}
			if v == nil {
				delete(p, k)
			} else {
				p[k] = v
			}
			m["participants"] = []any{p}
		}
	}
	drop := func(k string) func(m map[string]any) { return func(m map[string]any) { delete(m, k) } }
	set := func(k string, v any) func(m map[string]any) { return func(m map[string]any) { m[k] = v } }
	for _, c := range []struct {
		name, field string // field "" means valid
		change      func(m map[string]any)
	}{
		{"dart as written", "", func(m map[string]any) {}},
		{"dart without callFrames and tempResources", "", func(m map[string]any) { delete(m, "callFrames"); delete(m, "tempResources") }},
		{"with a valid participant", "", participant("x", "ignored")},
		{"cleanup with failure", "", func(m map[string]any) {
			m["operationState"] = "cleanup"
			m["failure"] = map[string]any{"failedAt": "2024-01-15T10:30:00Z", "reason": "r", "crashedCallIds": []any{}}
		}},
		{"no operationState", "operationState", drop("operationState")},
		{"operationState exploded", "operationState", set("operationState", "exploded")},
		{"operationState null", "operationState", set("operationState", nil)},
		{"no startTime", "startTime", drop("startTime")},
		{"startTime null", "startTime", set("startTime", nil)},
		{"no initiatorId", "initiatorId", drop("initiatorId")},
		{"no operationId", "operationId", drop("operationId")},
		{"frame without participantId", "callFrames[0].participantId", frame("participantId", "")},
		{"frame with a bad participantId", "callFrames[0].participantId", frame("participantId", "../x")},
		{"frame without callId", "callFrames[0].callId", frame("callId", nil)},
		{"frame state bad", "callFrames[0].state", frame("state", "sleeping")},
		{"frame without pid", "callFrames[0].pid", frame("pid", 0)},
		{"frame with a negative pid", "callFrames[0].pid", frame("pid", -3)},
		{"frame without startTime", "callFrames[0].startTime", frame("startTime", nil)},
		{"frame without lastHeartbeat", "callFrames[0].lastHeartbeat", frame("lastHeartbeat", nil)},
		{"participant without id", "participants[0].participantId", participant("participantId", nil)},
		{"participant state bad", "participants[0].state", participant("state", "zombie")},
		{"participant without pid", "participants[0].pid", participant("pid", nil)},
		{"participant with negative sessions", "participants[0].sessions", participant("sessions", -1)},
		{"participant without joinedAt", "participants[0].joinedAt", participant("joinedAt", nil)},
		{"participant without lastHeartbeat", "participants[0].lastHeartbeat", participant("lastHeartbeat", nil)},
		{"temp resource without path", "tempResources[0].path", func(m map[string]any) {
			m["tempResources"].([]any)[0].(map[string]any)["path"] = ""
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			var m map[string]any
			require.NoError(t, json.Unmarshal([]byte(dartStateFull), &m))
			c.change(m)
			raw, err := json.MarshalIndent(m, "", "  ")
			require.NoError(t, err)
			dir := t.TempDir()
			path := filepath.Join(dir, id+".operation.json")
			require.NoError(t, os.WriteFile(path, raw, 0o644))
			v, err := ledger.OpenViewer(ledger.Options{BasePath: dir})
			require.NoError(t, err)
			defer v.Close()
			_, rerr := v.State(context.Background(), id)
			l, err := ledger.NewLocalLedger(ledger.Options{BasePath: dir, ParticipantID: "go", NoSignalHandler: true})
			require.NoError(t, err)
			defer l.Close()
			_, jerr := l.JoinOperation(context.Background(), id, ledger.JoinOptions{})
			if c.field == "" {
				assert.NoError(t, rerr)
				assert.NoError(t, jerr)
				return
			}
			for what, err := range map[string]error{"State": rerr, "JoinOperation": jerr} {
				var ce *ledger.CorruptError
				if assert.ErrorIs(t, err, ledger.ErrCorruptLedger, what) && assert.ErrorAs(t, err, &ce, what) {
					assert.Equal(t, path, ce.Path, what)
					assert.Equal(t, c.field, ce.Field, what)
					assert.ErrorContains(t, err, c.field, what)
				}
			}
			after, err := os.ReadFile(path)
			require.NoError(t, err)
			assert.Equal(t, string(raw), string(after), "file changed")
			_, err = os.Stat(filepath.Join(dir, id+".operation.journal"))
			assert.ErrorIs(t, err, os.ErrNotExist, "an invalid document was given a journal")
		})
	}
}
