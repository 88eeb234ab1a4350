package ledger_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tomdist/ledger"
	"github.com/tomdist/ledger/internal/wire"
)

// TestServerRefusesSettingsThatOverflow: a client's heartbeat settings
// are in milliseconds and the server turns them into nanoseconds. Values
// whose nanoseconds overflow an int64 wrapped around: 18446744073710 ms
// was recorded as a stale threshold of 1 ms, 9223372036855 ms as a
// negative one, whatever the client meant. They are refused, naming the
// field; the largest accepted value is recorded as sent.
func TestServerRefusesSettingsThatOverflow(t *testing.T) {
	base := startHTTPTestServer(t, ledger.ServerOptions{BasePath: t.TempDir(), Token: "tok"})
	create := func(n int, field string, ms int64) rawReply {
		who := fmt.Sprintf(`"participantId":"bob","participantPid":100,"host":"h1",%q:%d`, field, ms)
		op := fmt.Sprintf("20240101T00:00:00.000-bob-%08x", n)
		return rawRequest{path: "/operation/create", token: badToken, body: `{` + who + `,"operationId":"` + op + `"}`}.do(t, base)
	}
	n := 0
	for _, field := range []string{"staleThresholdMs", "heartbeatIntervalMs"} {
		for _, ms := range []int64{18446744073710, 9223372036855, wire.MaxSettingMs + 1} {
			n++
			r := create(n, field, ms)
			assert.Equal(t, http.StatusBadRequest, r.status, "%s %d: %s", field, ms, r.body)
			assert.Contains(t, string(r.body), field)
		}
		n++
		r := create(n, field, wire.MaxSettingMs)
		require.Equal(t, http.StatusOK, r.status, "%s", r.body)
		var got struct {
			Data struct{ Participants []map[string]any }
		}
		require.NoError(t, json.Unmarshal(r.body, &got), "%s", r.body)
		require.Len(t, got.Data.Participants, 1)
		assert.EqualValues(t, wire.MaxSettingMs, got.Data.Participants[0][field], "%s as recorded", field)
	}
}
