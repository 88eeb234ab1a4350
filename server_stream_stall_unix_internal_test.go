//go:build unix

package ledger

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// stallOp is the operation TestStreamOfAClientThatStopsReading streams.
const stallOp = "20240101T00:00:00.000-alice-0000beef"

// post sends a JSON body to path of the server at addr with token tok.
func post(t *testing.T, addr, path, body string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, "http://"+addr+path, strings.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer tok")
	res, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	require.Equal(t, http.StatusOK, res.StatusCode, "%s: %s", path, b)
}

// openStreams returns the server's gauge of open streams, from /metrics.
func openStreams(t *testing.T, addr string) string {
	req, err := http.NewRequest(http.MethodGet, "http://"+addr+"/metrics", nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer tok")
	res, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer res.Body.Close()
	sc := bufio.NewScanner(res.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "ledger_http_streams_open "); ok {
			return v
		}
	}
	return "?"
}

// TestStreamOfAClientThatStopsReading opens a stream on a real loopback
// connection with a small receive buffer and never reads it, while the
// operation's changes (frames with long descriptions) fill the connection: the server
// drops the stream once a write has waited streamWriteTimeout, instead of
// keeping its goroutine, connection and cached operation for ever.
func TestStreamOfAClientThatStopsReading(t *testing.T) {
	defer func(d time.Duration) { streamWriteTimeout = d }(streamWriteTimeout)
	streamWriteTimeout = 300 * time.Millisecond

	srv := NewServer(ServerOptions{BasePath: t.TempDir(), Token: "tok"})
	require.NoError(t, srv.Err())
	defer srv.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx, ln) }()
	defer func() { cancel(); <-served }()
	addr := ln.Addr().String()
	who := `"participantId":"alice","participantPid":100,"host":"h1"`
	post(t, addr, "/operation/create", `{`+who+`,"operationId":"`+stallOp+`"}`)

	d := net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
		return c.Control(func(fd uintptr) { syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
	}}
	conn, err := d.Dial("tcp", addr)
	require.NoError(t, err)
	defer conn.Close()
	_, err = fmt.Fprintf(conn, "GET /operation/stream?operationId=%s&after=0 HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer tok\r\n\r\n", stallOp, addr)
	require.NoError(t, err)
	require.Eventually(t, func() bool { return openStreams(t, addr) == "1" }, 10*time.Second, 20*time.Millisecond, "the stream opens")

	// Frames with long descriptions: records far larger, all together,
	// than the buffers of a loopback connection.
	desc := strings.Repeat("x", 512<<10)
	for i := range 40 {
		post(t, addr, "/call/start", fmt.Sprintf(`{%s,"operationId":%q,"callId":"call_alice_%d_ab12","description":%q}`, who, stallOp, i, desc))
	}
	assert.Eventually(t, func() bool { return openStreams(t, addr) == "0" }, 10*time.Second, 50*time.Millisecond,
		"the stream of a client that does not read is still open")
}
