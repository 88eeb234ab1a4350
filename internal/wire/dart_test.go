package wire_test

import (
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/tomdist/ledger/internal/wire"
)

// A body is a Dart client's exactly when it is a JSON object with neither
// "after" nor "host" at its top level.
func TestIsDart(t *testing.T) {
	for _, tc := range []struct {
		body string
		dart bool
	}{
		// As the Dart RemoteLedgerClient builds them.
		{`{"participantId":"dart_a","participantPid":4242}`, true},
		{`{"participantId":"dart_a","participantPid":-1,"description":"nightly build"}`, true},
		{`{"operationId":"x","sessionId":1,"description":null,"failOnCrash":true}`, true},
		{`{"operationId":"x","message":"after the host left","level":"INFO"}`, true},
		{` {"operationId":"x"}`, true},
		{`{}`, true},
		// As a Go RemoteClient builds them: both.
		{`{"participantId":"go","participantPid":7,"host":"h","after":0,"operationId":"x"}`, false},
		// One of them is enough to be served as a Go request (and be
		// refused for the other, if it is missing).
		{`{"participantId":"go","participantPid":7,"host":"h","operationId":"x"}`, false},
		{`{"after":3,"operationId":"x"}`, false},
		{`{"after":null,"operationId":"x"}`, false},
		{`{"HOST":"h","operationId":"x"}`, false}, // keys match as encoding/json matches them
		// Nested members do not count.
		{`{"operationId":"x","victim":{"host":"h"}}`, true},
		// Not a JSON object: not Dart's (a bad request either way).
		{``, false},
		{`null`, false},
		{`[{"operationId":"x"}]`, false},
		{`{"operationId":`, false},
		{`"after"`, false},
	} {
		assert.Equal(t, tc.dart, wire.IsDart([]byte(tc.body)), "%s", tc.body)
	}
}

// A Dart request that lacks a field the Dart server requires is refused
// with that field, in the Dart server's order; the others are optional.
func TestDartRequestsValidate(t *testing.T) {
	pid := -1
	msg := "m"
	for _, tc := range []struct {
		name    string
		req     wire.Request
		missing string // "" if valid
	}{
		{"create", &wire.DartCreateRequest{ParticipantID: "dart_a"}, ""},
		{"create with pid -1", &wire.DartCreateRequest{ParticipantID: "dart_a", ParticipantPID: &pid}, ""},
		{"create without participant", &wire.DartCreateRequest{}, "participantId"},
		{"join without anything", &wire.DartJoinRequest{}, "operationId"},
		{"join without participant", &wire.DartJoinRequest{OperationID: "op"}, "participantId"},
		{"heartbeat", &wire.DartOperationRequest{OperationID: "op"}, ""},
		{"heartbeat without operation", &wire.DartOperationRequest{}, "operationId"},
		{"log without message", &wire.DartLogRequest{OperationID: "op"}, "message"},
		{"log", &wire.DartLogRequest{OperationID: "op", Message: &msg}, ""},
		{"call end without call", &wire.DartCallRequest{OperationID: "op"}, "callId"},
		{"call fail without call", &wire.DartCallFailRequest{OperationID: "op"}, "callId"},
		{"call start", &wire.DartCallStartRequest{OperationID: "op"}, ""},
		{"abort", &wire.DartAbortRequest{OperationID: "op"}, ""},
	} {
		err := tc.req.Validate()
		if tc.missing == "" {
			assert.NoError(t, err, tc.name)
			continue
		}
		var fe *wire.FieldError
		if assert.ErrorAs(t, err, &fe, tc.name) {
			assert.Equal(t, tc.missing, fe.Field, tc.name)
			assert.Equal(t, "missing", fe.Reason, tc.name)
		}
	}
	assert.Error(t, (&wire.DartCreateRequest{ParticipantID: "../x"}).Validate(), "ids are checked")
	assert.Error(t, (&wire.DartCallRequest{OperationID: "op", CallID: "a/b"}).Validate(), "ids are checked")
}

// BenchmarkIsDart is what telling a request of a Go client from a Dart
// one costs the server: a Go call start.
func BenchmarkIsDart(b *testing.B) {
	body := []byte(`{"participantId":"bench","participantPid":12345,"host":"benchhost","heartbeatIntervalMs":5000,"staleThresholdMs":15000,"after":17,"operationId":"20240101T00:00:00.000-bench-0000beef","callId":"call_bench_1_abcd","description":"background work","failOnCrash":true}`)
	for b.Loop() {
		if wire.IsDart(body) {
			b.Fatal("a Go request taken for Dart's")
		}
	}
}
