package ledger_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The transcripts of testdata/dart/transcript are request sequences as the
// Dart RemoteLedgerClient builds them, with what the Dart LedgerServer
// answers (format: testdata/dart/transcript/README.md). TestDartTranscripts
// replays each against a real `ledger serve` on 127.0.0.1 and checks every
// answer as the Dart client reads it: the status, every field the Dart
// server sends with its type, the exact values, and the Dart server's own
// values where this server gives the same (goDiffers lists where it does
// not, and why).

// transcript is one file of testdata/dart/transcript.
type transcript struct {
	Name    string `json:"name"`
	Clients map[string]struct {
		ParticipantID string `json:"participantId"`
	} `json:"clients"`
	Setup *struct {
		CopyDir string `json:"copy_dir"`
	} `json:"setup"`
	Steps []transcriptStep `json:"steps"`
}

type transcriptStep struct {
	Name    string `json:"name"`
	Client  string `json:"client"`
	Request struct {
		Method  string            `json:"method"`
		Path    string            `json:"path"`
		Headers map[string]string `json:"headers"`
		Body    string            `json:"body"`
	} `json:"request"`
	Response struct {
		Status         int                        `json:"status"`
		AcceptStatus   []int                      `json:"accept_status"`
		Fields         map[string]string          `json:"fields"`
		ClientRequires []string                   `json:"client_requires"`
		Values         map[string]json.RawMessage `json:"values"`
		DartValues     map[string]json.RawMessage `json:"dart_values"`
		Capture        map[string]string          `json:"capture"`
	} `json:"response"`
}

// goDiffers are the answers in which this server differs from the Dart
// server, by "file/step index/field", with the reason. A field listed
// here as missing may be absent; a dart value listed here is not
// compared.
var goDiffers = map[string]string{
	// GET /status says no more than service, version and port (DESIGN
	// §6): never the directory. The Dart client reads only "service".
	"status_health/0/basePath":  "the server never shows its directory",
	"status_health/0/status":    "not read by the Dart client",
	"status_health/0/timestamp": "not read by the Dart client",
	// Error texts are this server's ("ledger: ..."); the Dart client shows
	// them and looks only at the status, which is Dart's.
	"create_heartbeat_log_complete/7/error": "this server's error text",
	"errors/0/error":                        "this server's error text",
	"errors/2/error":                        "this server's error text",
	"errors/3/error":                        "this server's error text",
	"errors/4/error":                        "this server's error text",
	"errors/5/error":                        "this server's error text",
	"errors/6/error":                        "this server's error text",
	// Joining an unknown operation: Dart answers 500 (its exception),
	// which its client retries for about a minute; this server answers
	// 404 at once (accept_status allows both).
	"errors/1/error": "404 instead of Dart's 500",
}

func TestDartTranscripts(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "dart", "transcript", "*.json"))
	require.NoError(t, err)
	require.NotEmpty(t, files)
	for _, f := range files {
		b, err := os.ReadFile(f)
		require.NoError(t, err)
		var tr transcript
		require.NoError(t, json.Unmarshal(b, &tr), f)
		name := strings.TrimSuffix(filepath.Base(f), ".json")
		t.Run(name, func(t *testing.T) { replayTranscript(t, name, &tr) })
	}
}

func replayTranscript(t *testing.T, name string, tr *transcript) {
	dir := t.TempDir()
	if tr.Setup != nil && tr.Setup.CopyDir != "" {
		copyDartTree(t, filepath.FromSlash(tr.Setup.CopyDir), dir)
	}
	url, _ := startBinaryServer(t, dir)
	tp := &http.Transport{}
	defer tp.CloseIdleConnections()
	client := &http.Client{Transport: tp, Timeout: 30 * time.Second}
	captured := map[string]string{}
	for i, st := range tr.Steps {
		where := fmt.Sprintf("%s/%d", name, i)
		t.Run(fmt.Sprintf("%02d_%s", i, st.Name), func(t *testing.T) {
			status, body := sendDartRequest(t, client, url, st, captured)
			checkDartAnswer(t, where, st, status, body, captured)
		})
	}
}

// sendDartRequest sends the request of st, with the captured values in
// place of its placeholders, and returns the status and body.
func sendDartRequest(t *testing.T, client *http.Client, url string, st transcriptStep, captured map[string]string) (int, []byte) {
	t.Helper()
	var body io.Reader = http.NoBody
	if st.Request.Body != "" {
		body = strings.NewReader(substitute(st.Request.Body, captured))
	}
	req, err := http.NewRequest(st.Request.Method, url+st.Request.Path, body)
	require.NoError(t, err)
	for k, v := range st.Request.Headers {
		req.Header.Set(k, v)
	}
	resp, err := client.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, b
}

// substitute replaces {{name}} by the captured text.
func substitute(s string, captured map[string]string) string {
	for k, v := range captured {
		s = strings.ReplaceAll(s, "{{"+k+"}}", v)
	}
	return s
}

// checkDartAnswer checks an answer as the step says, and captures what it
// names.
func checkDartAnswer(t *testing.T, where string, st transcriptStep, status int, body []byte, captured map[string]string) {
	t.Helper()
	want := st.Response
	if len(want.AcceptStatus) > 0 {
		assert.Contains(t, want.AcceptStatus, status, "status; body %s", body)
	} else {
		assert.Equal(t, want.Status, status, "status; body %s", body)
	}
	// The Dart client decodes every body before it looks at the status.
	var got map[string]json.RawMessage
	require.NoError(t, json.Unmarshal(body, &got), "the answer is not a JSON object: %s", body)
	require.NotNil(t, got, "the answer is null")
	for field, typ := range want.Fields {
		v, ok := got[field]
		if !ok {
			if _, differs := goDiffers[where+"/"+field]; !differs {
				t.Errorf("field %s missing: %s", field, body)
			}
			continue
		}
		assert.NoError(t, checkDartType(typ, v), "field %s", field)
	}
	for _, field := range want.ClientRequires {
		if _, ok := got[field]; !ok {
			t.Errorf("field %s missing: the Dart client requires it", field)
		}
	}
	for field, v := range want.Values {
		if g, ok := got[field]; ok {
			assert.JSONEq(t, substitute(string(v), captured), string(g), "value of %s", field)
		}
	}
	for path, v := range want.DartValues {
		if _, differs := goDiffers[where+"/"+path]; differs {
			continue
		}
		g, ok := lookupPath(got, path)
		if assert.True(t, ok, "%s missing: %s", path, body) {
			assert.NoError(t, dartEqual(v, g), "%s: got %s, the Dart server answers %s", path, g, v)
		}
	}
	for name, field := range want.Capture {
		v := got[field]
		var s string
		if json.Unmarshal(v, &s) == nil {
			captured[name] = s
		} else {
			captured[name] = string(v)
		}
	}
}

// lookupPath finds a dotted path ("data.callFrames") in an answer.
func lookupPath(m map[string]json.RawMessage, path string) (json.RawMessage, bool) {
	first, rest, nested := strings.Cut(path, ".")
	v, ok := m[first]
	if !ok || !nested {
		return v, ok
	}
	var inner map[string]json.RawMessage
	if json.Unmarshal(v, &inner) != nil {
		return nil, false
	}
	return lookupPath(inner, rest)
}

// dartEqual compares a value the Dart server answers with ours as the
// Dart client reads them: a key of an expected object whose value is
// null or [] may be missing (LedgerData.fromJson gives it that default),
// and a key the Dart value does not name is not compared (times, ids and
// additions of this server).
func dartEqual(want, got json.RawMessage) error {
	var w, g any
	if err := json.Unmarshal(want, &w); err != nil {
		return err
	}
	if err := json.Unmarshal(got, &g); err != nil {
		return err
	}
	return dartEqualValue(w, g)
}

func dartEqualValue(w, g any) error {
	switch w := w.(type) {
	case map[string]any:
		gm, ok := g.(map[string]any)
		if !ok {
			return fmt.Errorf("want an object, got %v", g)
		}
		for k, wv := range w {
			gv, present := gm[k]
			if !present {
				if l, isList := wv.([]any); wv == nil || isList && len(l) == 0 {
					continue // the Dart default
				}
				return fmt.Errorf("key %s missing", k)
			}
			if err := dartEqualValue(wv, gv); err != nil {
				return fmt.Errorf("%s: %w", k, err)
			}
		}
		return nil
	case []any:
		gl, ok := g.([]any)
		if !ok || len(gl) != len(w) {
			return fmt.Errorf("want %d elements, got %v", len(w), g)
		}
		for i := range w {
			if err := dartEqualValue(w[i], gl[i]); err != nil {
				return fmt.Errorf("[%d]: %w", i, err)
			}
		}
		return nil
	}
	if fmt.Sprint(w) != fmt.Sprint(g) {
		return fmt.Errorf("want %v, got %v", w, g)
	}
	return nil
}

// checkDartType checks that v has the type the transcript names, as the
// Dart client casts it (see the transcript README).
func checkDartType(typ string, v json.RawMessage) error {
	isNull := bytes.Equal(bytes.TrimSpace(v), []byte("null"))
	if base, nullable := strings.CutSuffix(typ, "|null"); nullable {
		if isNull {
			return nil
		}
		typ = base
	}
	if isNull {
		return fmt.Errorf("null, want %s", typ)
	}
	switch typ {
	case "string":
		var s string
		return json.Unmarshal(v, &s)
	case "bool":
		var b bool
		return json.Unmarshal(v, &b)
	case "int":
		var n int64
		if err := json.Unmarshal(v, &n); err != nil {
			return fmt.Errorf("%s is not an integer (Dart casts it as int): %w", v, err)
		}
		return nil
	case "string[]":
		var l []string
		if err := json.Unmarshal(v, &l); err != nil {
			return err
		}
		if l == nil {
			return fmt.Errorf("null, want a list")
		}
		return nil
	case "timestamp":
		var s string
		if err := json.Unmarshal(v, &s); err != nil {
			return err
		}
		return dartParses(s)
	case "ledgerdata":
		return dartLedgerData(v)
	}
	return fmt.Errorf("unknown type %q in the transcript", typ)
}

// dartParses checks that DateTime.parse reads s: ISO 8601 with or
// without an offset.
func dartParses(s string) error {
	if _, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return nil
	}
	_, err := time.Parse("2006-01-02T15:04:05.999999999", s)
	return err
}

// dartLedgerData checks that Dart's LedgerData.fromJson reads v: the
// required keys with their types, and the enum names it knows (an unknown
// name throws in Dart).
func dartLedgerData(v json.RawMessage) error {
	var d struct {
		OperationID    *string `json:"operationId"`
		OperationState *string `json:"operationState"`
		CallFrames     []struct {
			ParticipantID *string `json:"participantId"`
			CallID        *string `json:"callId"`
			PID           *int    `json:"pid"`
			StartTime     *string `json:"startTime"`
			State         *string `json:"state"`
		} `json:"callFrames"`
		TempResources []struct {
			Path         *string `json:"path"`
			Owner        *int    `json:"owner"`
			RegisteredAt *string `json:"registeredAt"`
		} `json:"tempResources"`
	}
	if err := json.Unmarshal(v, &d); err != nil {
		return err
	}
	if d.OperationID == nil {
		return fmt.Errorf("operationId missing")
	}
	if s := d.OperationState; s != nil && !slices.Contains([]string{"running", "cleanup", "failed", "completed"}, *s) {
		return fmt.Errorf("operationState %q is not a Dart OperationState", *s)
	}
	for i, f := range d.CallFrames {
		if f.ParticipantID == nil || f.CallID == nil || f.PID == nil || f.StartTime == nil {
			return fmt.Errorf("callFrames[%d] lacks a required key", i)
		}
		if err := dartParses(*f.StartTime); err != nil {
			return err
		}
		if s := f.State; s != nil && !slices.Contains([]string{"active", "crashed", "cleaningUp", "cleanedUp"}, *s) {
			return fmt.Errorf("callFrames[%d].state %q is not a Dart FrameState", i, *s)
		}
	}
	for i, r := range d.TempResources {
		if r.Path == nil || r.Owner == nil || r.RegisteredAt == nil {
			return fmt.Errorf("tempResources[%d] lacks a required key", i)
		}
	}
	return nil
}
