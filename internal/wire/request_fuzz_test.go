package wire_test

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tomdist/ledger/internal/store"
	"github.com/tomdist/ledger/internal/wire"
)

// request is what every request type of the protocol is.
type request interface{ Validate() error }

// fuzzRequests make a fresh value of each request type, by index.
var fuzzRequests = []func() request{
	func() request { return new(wire.OperationRequest) },
	func() request { return new(wire.CreateRequest) },
	func() request { return new(wire.LogRequest) },
	func() request { return new(wire.AbortRequest) },
	func() request { return new(wire.CallStartRequest) },
	func() request { return new(wire.CallEndRequest) },
	func() request { return new(wire.CallFailRequest) },
	func() request { return new(wire.TempRequest) },
	func() request { return new(wire.CrashRequest) },
	func() request { return new(wire.DartCreateRequest) },
	func() request { return new(wire.DartJoinRequest) },
	func() request { return new(wire.DartOperationRequest) },
	func() request { return new(wire.DartAbortRequest) },
	func() request { return new(wire.DartLogRequest) },
	func() request { return new(wire.DartCallStartRequest) },
	func() request { return new(wire.DartCallRequest) },
	func() request { return new(wire.DartCallFailRequest) },
}

// FuzzRequest decodes an arbitrary body into a request type (by index)
// as the server does and validates it. Neither panics; a request that
// validates names its operation, call and participants by ids the store
// accepts (they become parts of file names), hosts of the allowed bytes,
// and heartbeat settings within MaxSettingMs; and it validates again
// after a round trip through JSON, so that what a server forwards or
// records means the same to the next reader.
func FuzzRequest(f *testing.F) {
	who := `"participantId":"alice","participantPid":7,"host":"h1"`
	op := `"operationId":"20240115T10:30:00.123-alice-0a1b2c3d"`
	for i := range fuzzRequests {
		f.Add(uint8(i), []byte(`{`+who+`,`+op+`}`))
		f.Add(uint8(i), []byte(`{`+who+`,`+op+`,"callId":"call_alice_1_ab12","path":"/tmp/x","message":"m","level":"INFO","victim":{`+who+`},"after":3}`))
	}
	f.Add(uint8(0), []byte(`{"participantId":"../x","participantPid":7,"host":"h1",`+op+`}`))
	f.Add(uint8(0), []byte(`{`+who+`,"staleThresholdMs":18446744073710,`+op+`}`))
	f.Add(uint8(7), []byte(`{`+who+`,`+op+`,"path":"a\u0000b"}`))
	f.Add(uint8(8), []byte(`{`+who+`,`+op+`,"victim":{"participantId":"b","participantPid":-1,"host":"h"}}`))
	f.Add(uint8(1), []byte(`{"participantId":"alice","participantPid":1e99,"host":"h1"}`))
	f.Add(uint8(9), []byte(`{"participantId":"alice","participantPid":null}`))

	f.Fuzz(func(t *testing.T, kind uint8, body []byte) {
		mk := fuzzRequests[int(kind)%len(fuzzRequests)]
		q := mk()
		dec := json.NewDecoder(bytes.NewReader(body))
		if dec.Decode(q) != nil || q.Validate() != nil {
			return
		}
		checkRequest(t, q)
		b, err := json.Marshal(q)
		require.NoError(t, err)
		again := mk()
		require.NoError(t, json.Unmarshal(b, again))
		require.NoError(t, again.Validate(), "a valid request is not valid after a round trip: %s", b)
	})
}

// checkRequest checks the fields of a request that validated.
func checkRequest(t *testing.T, q request) {
	if m, ok := q.(interface{ Member() *wire.Participant }); ok {
		checkParticipant(t, m.Member())
	}
	var ids struct {
		OperationID   string `json:"operationId"`
		CallID        string `json:"callId"`
		ParticipantID string `json:"participantId"`
		Path          *string
		Victim        *wire.Participant `json:"victim"`
	}
	b, err := json.Marshal(q)
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(b, &ids))
	if ids.OperationID != "" {
		require.NoError(t, store.CheckOperationID(ids.OperationID))
	}
	if ids.CallID != "" {
		require.NoError(t, store.CheckCallID(ids.CallID))
	}
	if ids.ParticipantID != "" {
		require.NoError(t, store.CheckParticipantID(ids.ParticipantID))
	}
	if ids.Path != nil {
		require.NotContains(t, *ids.Path, "\x00")
	}
	if v, ok := q.(*wire.CrashRequest); ok {
		checkParticipant(t, &v.Victim)
	}
}

func checkParticipant(t *testing.T, p *wire.Participant) {
	require.NoError(t, store.CheckParticipantID(p.ParticipantID))
	require.Positive(t, p.ParticipantPID)
	require.NotEmpty(t, p.Host)
	require.LessOrEqual(t, len(p.Host), 255)
	require.Equal(t, -1, strings.IndexFunc(p.Host, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("_.:-%", r))
	}), "host %q", p.Host)
	require.True(t, p.HeartbeatIntervalMs >= 0 && p.HeartbeatIntervalMs <= wire.MaxSettingMs)
	require.True(t, p.StaleThresholdMs >= 0 && p.StaleThresholdMs <= wire.MaxSettingMs)
}
