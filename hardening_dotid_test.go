package ledger_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tomdist/ledger"
	"github.com/tomdist/ledger/internal/wire"
)

// TestIDWithADotFirst: an operation or participant id that starts with
// "." is a bad request on every route (the directory store holds no such
// names, and its refusal was answered 500), and a Viewer refuses it too.
func TestIDWithADotFirst(t *testing.T) {
	dir := t.TempDir()
	url := startHTTPTestServer(t, ledger.ServerOptions{BasePath: dir})
	for _, c := range []struct{ method, path, body string }{
		{http.MethodPost, wire.PathState, `{"participantId":"a","participantPid":1,"host":"h","operationId":".0"}`},
		{http.MethodPost, wire.PathCreate, `{"participantId":"a","participantPid":1,"host":"h","operationId":".0"}`},
		{http.MethodPost, wire.PathCreate, `{"participantId":".a","participantPid":1,"host":"h","operationId":"op-1"}`},
		{http.MethodGet, wire.PathViewLog + "?operationId=.0", ""},
		{http.MethodGet, "/ui/timeline.svg?operationId=.0", ""},
	} {
		req, err := http.NewRequest(c.method, url+c.path, strings.NewReader(c.body))
		require.NoError(t, err)
		if c.body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		res, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		var e wire.Error
		json.NewDecoder(res.Body).Decode(&e)
		res.Body.Close()
		assert.Equal(t, http.StatusBadRequest, res.StatusCode, "%s %s", c.method, c.path)
		assert.Equal(t, wire.CodeInvalidID, e.Code, "%s %s: %s", c.method, c.path, e.Error)
	}
	v, err := ledger.OpenViewer(ledger.Options{BasePath: dir})
	require.NoError(t, err)
	defer v.Close()
	_, err = v.Log(t.Context(), ".0", false)
	assert.ErrorIs(t, err, ledger.ErrInvalidID)
}
