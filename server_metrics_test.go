package ledger_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tomdist/ledger"
)

// scrape reads /metrics of the server at url with token and returns every
// sample as `name{label="value",...}` (labels sorted) → value; histograms
// give their _count and _sum.
func scrape(t *testing.T, url, token string) map[string]float64 {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url+ledger.PathMetrics, nil)
	require.NoError(t, err)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, res.StatusCode, "%s", body)
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(body))
	require.NoError(t, err, "%s", body)
	out := map[string]float64{}
	for name, f := range fams {
		for _, m := range f.GetMetric() {
			var ls []string
			for _, l := range m.GetLabel() {
				ls = append(ls, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
			}
			slices.Sort(ls)
			key := name
			if len(ls) > 0 {
				key += "{" + strings.Join(ls, ",") + "}"
			}
			switch f.GetType() {
			case dto.MetricType_COUNTER:
				out[key] = m.GetCounter().GetValue()
			case dto.MetricType_GAUGE:
				out[key] = m.GetGauge().GetValue()
			case dto.MetricType_HISTOGRAM:
				out[strings.Replace(key, name, name+"_count", 1)] = float64(m.GetHistogram().GetSampleCount())
				out[strings.Replace(key, name, name+"_sum", 1)] = m.GetHistogram().GetSampleSum()
			}
		}
	}
	return out
}

// TestMetrics: /metrics counts requests by route and status with their
// latency, open streams, and reads operations, participants, calls and
// journal sizes from the ledger when scraped.
func TestMetrics(t *testing.T) {
	dir, token := t.TempDir(), "metrics-token"
	url := startHTTPTestServer(t, ledger.ServerOptions{BasePath: dir, Token: token})
	ctx := context.Background()
	quiet := ledger.Options{HeartbeatInterval: time.Hour, StaleThreshold: 2 * time.Hour}
	o := quiet
	o.BasePath, o.ParticipantID = dir, "alice"
	alice, err := ledger.NewLocalLedger(o)
	require.NoError(t, err)
	defer alice.Close()
	done, err := alice.CreateOperation(ctx, ledger.CreateOptions{})
	require.NoError(t, err)
	require.NoError(t, done.Complete(ctx))
	o = quiet
	o.ServerURL, o.Token, o.ParticipantID = url, token, "bob"
	bob, err := ledger.NewRemoteClient(ctx, o)
	require.NoError(t, err)
	defer bob.Close()
	live, err := bob.CreateOperation(ctx, ledger.CreateOptions{})
	require.NoError(t, err)
	for range 3 {
		_, err = ledger.StartCall[int](ctx, live, ledger.CallOptions[int]{})
		require.NoError(t, err)
	}
	_, err = alice.JoinOperation(ctx, live.ID(), ledger.JoinOptions{})
	require.NoError(t, err)
	res, err := http.Get(url + "/no/such/path")
	require.NoError(t, err)
	res.Body.Close()

	var m map[string]float64
	waitFor(t, 10*time.Second, "bob's stream", func() bool {
		m = scrape(t, url, token)
		return m["ledger_http_streams_open"] == 1
	})
	assert.Equal(t, 1.0, m[`ledger_http_requests_total{code="200",route="/operation/create"}`])
	assert.Equal(t, 3.0, m[`ledger_http_requests_total{code="200",route="/call/start"}`])
	assert.Equal(t, 1.0, m[`ledger_http_requests_total{code="404",route="other"}`], "unknown paths share one label")
	assert.Equal(t, 3.0, m[`ledger_http_request_duration_seconds_count{route="/call/start"}`])
	assert.Positive(t, m[`ledger_http_request_duration_seconds_sum{route="/call/start"}`])
	assert.Zero(t, m[`ledger_http_request_duration_seconds_count{route="/operation/stream"}`], "streams are not timed")
	assert.Equal(t, 1.0, m[`ledger_operations{state="live"}`])
	assert.Equal(t, 1.0, m[`ledger_operations{state="archived"}`])
	assert.Equal(t, 2.0, m[`ledger_participants{state="active"}`])
	assert.Equal(t, 0.0, m[`ledger_participants_stale`])
	assert.Equal(t, 3.0, m[`ledger_calls{state="active"}`])
	assert.Positive(t, m[fmt.Sprintf(`ledger_journal_bytes{operation=%q}`, live.ID())])
	for _, by := range []string{"client", "stream", "sweep"} {
		v, ok := m[fmt.Sprintf(`ledger_crash_verdicts_total{by=%q}`, by)]
		assert.True(t, ok, "verdicts by %s shown at 0", by)
		assert.Zero(t, v)
	}
	_, ok := m["ledger_lock_wait_seconds_count"]
	assert.True(t, ok)
	assert.Positive(t, m["go_goroutines"])
	before := m[`ledger_http_requests_total{code="200",route="/metrics"}`]
	assert.Equal(t, before+1, scrape(t, url, token)[`ledger_http_requests_total{code="200",route="/metrics"}`])
}

// TestMetricsAccess: /metrics obeys the access rule of the protocol.
func TestMetricsAccess(t *testing.T) {
	url := startHTTPTestServer(t, ledger.ServerOptions{BasePath: t.TempDir(), Token: "tok"})
	for _, c := range []struct {
		auth string
		want int
	}{{"", 401}, {"Bearer wrong", 401}, {"Bearer tok", 200}} {
		req, err := http.NewRequest(http.MethodGet, url+ledger.PathMetrics, nil)
		require.NoError(t, err)
		if c.auth != "" {
			req.Header.Set("Authorization", c.auth)
		}
		res, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		res.Body.Close()
		assert.Equal(t, c.want, res.StatusCode, "Authorization %q", c.auth)
	}
	open := startHTTPTestServer(t, ledger.ServerOptions{BasePath: t.TempDir()})
	req, err := http.NewRequest(http.MethodGet, open+ledger.PathMetrics, nil)
	require.NoError(t, err)
	req.Host = "evil.example:80"
	res, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	res.Body.Close()
	assert.Equal(t, http.StatusForbidden, res.StatusCode, "a tokenless server by host name")
	scrape(t, open, "")
}

// TestMetricsVerdicts: crash verdicts are counted by who judged: a client
// that reports one, the server when a client's stream drops, the orphan
// sweep.
func TestMetricsVerdicts(t *testing.T) {
	dir := t.TempDir()
	url := startHTTPTestServer(t, ledger.ServerOptions{BasePath: dir, StreamGrace: 50 * time.Millisecond, StaleThreshold: 100 * time.Millisecond})
	verdicts := func(by string) float64 {
		return scrape(t, url, "")[fmt.Sprintf(`ledger_crash_verdicts_total{by=%q}`, by)]
	}
	ctx := context.Background()

	// stream: a remote participant killed; its stream drops.
	remoteEnv := &env{t: t, dir: dir, url: url, remote: true}
	obs, err := ledger.NewRemoteClient(ctx, ledger.Options{ParticipantID: "observer", ServerURL: url, HeartbeatInterval: time.Hour, StaleThreshold: 2 * time.Hour})
	require.NoError(t, err)
	defer obs.Close()
	op, err := obs.CreateOperation(ctx, ledger.CreateOptions{})
	require.NoError(t, err)
	victim := startParticipant(t, remoteEnv, op.ID(), "victim", "CONTAINED=1", "HB=1h", "STALE=2h")
	// The victim opens its stream after it joined: kill it once the
	// stream is open (the observer's and its own), or there is no stream
	// to drop and, with an hour's threshold, no verdict.
	waitFor(t, 10*time.Second, "the victim's stream", func() bool {
		return scrape(t, url, "")["ledger_http_streams_open"] >= 2
	})
	victim.kill9(t)
	waitFor(t, 10*time.Second, "the stream verdict", func() bool { return verdicts("stream") == 1 })

	// client: a participant reports another crashed.
	host, err := os.Hostname()
	require.NoError(t, err)
	other := startParticipant(t, remoteEnv, op.ID(), "other", "CONTAINED=1", "HB=1h", "STALE=2h")
	body := fmt.Sprintf(`{"operationId":%q,"participantId":"observer","participantPid":1,"host":"h",`+
		`"victim":{"participantId":"other","participantPid":%d,"host":%q}}`, op.ID(), other.ready.PID, host)
	res, err := http.Post(url+"/operation/crash", "application/json", strings.NewReader(body))
	require.NoError(t, err)
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	require.Equal(t, http.StatusOK, res.StatusCode, "%s", b)
	assert.Equal(t, 1.0, verdicts("client"))

	// sweep: the only participant of an operation killed.
	localEnv := &env{t: t, dir: dir}
	lone := startParticipant(t, localEnv, "", "lone", "CONTAINED=1", "SKEW=-5m")
	lone.kill9(t)
	// The server judges the beats of a dead process by the wall clock,
	// with a minute for other hosts' clocks: its record's (skewed above)
	// and its lease file's, made old here.
	leases, err := filepath.Glob(filepath.Join(dir, lone.opID+".live", "lone.*"))
	require.NoError(t, err)
	require.NotEmpty(t, leases)
	old := time.Now().Add(-10 * time.Minute)
	for _, l := range leases {
		require.NoError(t, os.Chtimes(l, old, old))
	}
	waitFor(t, 10*time.Second, "the sweep verdict", func() bool { return verdicts("sweep") == 1 })
}
