package ledger_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tomdist/ledger"
)

// hardeningOp is the operation the HTTP edge tests create.
const hardeningOp = "20240101T00:00:00.000-alice-0000cafe"

// logBody logs a line to hardeningOp as bob: a request that takes the
// operation's lock.
var logBody = `{` + whoJSON("bob") + `,"operationId":"` + hardeningOp + `","message":"m"}`

// startHardeningServer serves a fresh directory with token "tok" on a real
// loopback httptest server in which alice has created hardeningOp.
func startHardeningServer(t *testing.T) string {
	t.Helper()
	base := startHTTPTestServer(t, ledger.ServerOptions{BasePath: t.TempDir(), Token: "tok"})
	r := rawRequest{path: "/operation/create", token: badToken, body: `{` + whoJSON("alice") + `,"operationId":"` + hardeningOp + `"}`}.do(t, base)
	require.Equal(t, http.StatusOK, r.status, "create: %s", r.body)
	return base
}

// postLog sends POST /operation/log with logBody and the given extra
// header values (each value one header line) and returns the status and
// code.
func postLog(t *testing.T, base string, header http.Header) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, base+"/operation/log", strings.NewReader(logBody))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer tok")
	for k, vs := range header {
		req.Header[k] = vs
	}
	res, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer res.Body.Close()
	var e struct {
		Code string `json:"code"`
	}
	_ = json.NewDecoder(res.Body).Decode(&e) // a reply without a code has none
	return res.StatusCode, e.Code
}

// TestServerLedgerTimeoutHeader sends every kind of Ledger-Timeout: a
// positive count of milliseconds is honoured, one larger than the server's
// lock timeout (up to values that overflow a time.Duration or an int64)
// is clamped to it, and anything else is a 400, never a 500. Each accepted
// value is sent several times: a timeout that overflowed to a past
// deadline lost the race for the lock only some of the time.
func TestServerLedgerTimeoutHeader(t *testing.T) {
	base := startHardeningServer(t)
	for _, tc := range []struct {
		name   string
		values []string // header lines; nil sends none
		want   int
	}{
		{"absent", nil, 200},
		{"one ms", []string{"1000"}, 200},
		{"above the lock timeout", []string{"3600000"}, 200},
		{"overflows a Duration", []string{"9223372036854775"}, 200},
		{"max int64", []string{"9223372036854775807"}, 200},
		{"overflows an int64", []string{"99999999999999999999999999999999"}, 200},
		{"leading zeros", []string{"0005000"}, 200},
		{"zero", []string{"0"}, 400},
		{"negative", []string{"-1"}, 400},
		{"min int64", []string{"-9223372036854775808"}, 400},
		{"plus sign", []string{"+5000"}, 400},
		{"fraction", []string{"1.5"}, 400},
		{"unit", []string{"5s"}, 400},
		{"garbage", []string{"soon"}, 400},
		{"empty", []string{""}, 400},
		{"list", []string{"5000, 6000"}, 400},
		{"two headers", []string{"5000", "6000"}, 400},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := http.Header{}
			if tc.values != nil {
				h["Ledger-Timeout"] = tc.values
			}
			tries := 1
			if tc.want == 200 {
				tries = 20
			}
			for range tries {
				status, code := postLog(t, base, h)
				if !assert.Equal(t, tc.want, status, "code %q", code) {
					return
				}
				if tc.want == 400 {
					assert.Equal(t, "bad_request", code)
				}
			}
		})
	}
}
