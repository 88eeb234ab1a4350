package ledger_test

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tomdist/ledger"
)

// TestServerHeartbeatOnlyOfParticipants: every heartbeat through the
// server is a beat file in the operation's liveness directory, so a
// client that sent heartbeats in the names of processes the operation
// does not know filled the directory with files (one per made-up pid,
// without end), each read by every later request for the vitals. Only
// the operation's participants may beat; others get 409 not_participant
// and leave nothing.
func TestServerHeartbeatOnlyOfParticipants(t *testing.T) {
	dir := t.TempDir()
	base := startHTTPTestServer(t, ledger.ServerOptions{BasePath: dir, Token: "tok"})
	r := rawRequest{path: "/operation/create", token: badToken, body: `{` + whoJSON("alice") + `,"operationId":"` + hardeningOp + `"}`}.do(t, base)
	require.Equal(t, http.StatusOK, r.status, "create: %s", r.body)
	beat := func(who string) rawReply {
		return rawRequest{path: "/operation/heartbeat", token: badToken, body: `{` + who + `,"operationId":"` + hardeningOp + `"}`}.do(t, base)
	}
	r = beat(whoJSON("alice"))
	require.Equal(t, http.StatusOK, r.status, "the initiator's heartbeat: %s", r.body)

	for pid := 1000; pid < 1050; pid++ {
		r := beat(fmt.Sprintf(`"participantId":"mallory","participantPid":%d,"host":"h1"`, pid))
		assert.Equal(t, http.StatusConflict, r.status, "pid %d: %s", pid, r.body)
		assert.Equal(t, "not_participant", r.code, "pid %d", pid)
	}
	r = beat(fmt.Sprintf(`"participantId":"alice","participantPid":%d,"host":"h1"`, 101))
	assert.Equal(t, http.StatusConflict, r.status, "another process of a participant: %s", r.body)

	ents, err := os.ReadDir(filepath.Join(dir, hardeningOp+".live"))
	require.NoError(t, err)
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	assert.Len(t, names, 1, "beat files: %v", names)
}
