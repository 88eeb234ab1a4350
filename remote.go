package ledger

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/tomdist/ledger/internal/store"
	"github.com/tomdist/ledger/internal/wire"
)

// Defaults of the remote options.
const (
	DefaultRequestTimeout  = 10 * time.Second      // Options.RequestTimeout
	DefaultRetryAttempts   = 4                     // RetryPolicy.Attempts
	DefaultRetryBackoff    = 50 * time.Millisecond // RetryPolicy.Backoff
	DefaultRetryMaxBackoff = time.Second           // RetryPolicy.MaxBackoff
)

// TokenEnv is the environment variable that holds the bearer token of a
// ledger server when Options.Token is empty; `ledger serve` reads it too.
const TokenEnv = "LEDGER_TOKEN"

// RetryPolicy is how a RemoteClient retries a request that failed on the
// way to or from the server: a connection error, or an attempt that ran
// past Options.RequestTimeout. An error answer of the server is never
// retried. Only idempotent requests are retried: reading the state
// (Operation.State, CheckAbort), heartbeats, and the /status probe of
// Options.ServerURL. Every other request may have been carried out before
// its connection failed, so its error is returned at once. Retries stop
// when the caller's context ends. The zero value sends a request at most 4
// times, pausing 50ms, 100ms and 200ms between them.
type RetryPolicy struct {
	// Attempts is the most times an idempotent request is sent. Zero means
	// 4; 1 means no retry.
	Attempts int
	// Backoff is the pause before the first retry; each further pause
	// doubles it. Zero means 50ms.
	Backoff time.Duration
	// MaxBackoff caps the pause. Zero means 1s.
	MaxBackoff time.Duration
}

// remoteOptions returns o with the defaults of the remote backend, or an
// error naming a bad field.
func (o Options) remoteOptions() (Options, error) {
	if o.RequestTimeout < 0 {
		return o, fmt.Errorf("ledger: Options.RequestTimeout (%v) must not be negative", o.RequestTimeout)
	}
	if o.RequestTimeout == 0 {
		o.RequestTimeout = DefaultRequestTimeout
	}
	r := &o.Retry
	switch {
	case r.Attempts < 0:
		return o, fmt.Errorf("ledger: Options.Retry.Attempts (%d) must not be negative", r.Attempts)
	case r.Backoff < 0:
		return o, fmt.Errorf("ledger: Options.Retry.Backoff (%v) must not be negative", r.Backoff)
	case r.MaxBackoff < 0:
		return o, fmt.Errorf("ledger: Options.Retry.MaxBackoff (%v) must not be negative", r.MaxBackoff)
	}
	if r.Attempts == 0 {
		r.Attempts = DefaultRetryAttempts
	}
	if r.Backoff == 0 {
		r.Backoff = DefaultRetryBackoff
	}
	if r.MaxBackoff == 0 {
		r.MaxBackoff = DefaultRetryMaxBackoff
	}
	if o.Token == "" {
		o.Token = os.Getenv(TokenEnv)
	}
	d, err := o.Discovery.withDefaults()
	if err != nil {
		return o, err
	}
	o.Discovery = d
	return o, nil
}

// RemoteClient is a ledger reached through a ledger server (NewServer,
// `ledger serve`) over HTTP. It implements Ledger with the same behaviour
// as LocalLedger: sessions, calls, callbacks, heartbeats and crash handling
// run in this process; the server only reads and writes the ledger
// directory for it, one request per change, each naming this participant.
// Remote participants are judged alive by their heartbeats only: a killed
// one is seen after StaleThreshold and one more HeartbeatInterval.
//
// Errors of the server come back as the same sentinels as on a local
// ledger (see RemoteError); connection errors are returned wrapped.
// Options.Callback.OnLogLine and OnBackupCreated are not called: the server
// writes the logs and archives. Options fields of the directory (BasePath,
// Durable, MaxBackups, MaxTrail, LivenessPoll) are the server's business
// and ignored here.
type RemoteClient struct {
	*client
	rb *remoteBackend
}

// NewRemoteClient connects to the ledger server at o.ServerURL, or, when
// it is empty, to the server that discovery finds (see DiscoveryOptions).
// It checks that the server answers /status as a ledger server; if not, the
// error matches ErrNoServer.
func NewRemoteClient(ctx context.Context, o Options) (*RemoteClient, error) {
	if o.BasePath != "" && o.ServerURL == "" {
		return nil, errors.New("ledger: NewRemoteClient: Options.BasePath is set; use NewLocalLedger for a ledger directory")
	}
	o, err := o.withDefaults()
	if err != nil {
		return nil, err
	}
	if o, err = o.remoteOptions(); err != nil {
		return nil, err
	}
	rb := &remoteBackend{
		tr:      newTransport(o.TLSConfig, 64),
		token:   o.Token,
		timeout: o.RequestTimeout,
		retry:   o.Retry,
	}
	rb.hc = &http.Client{Transport: rb.tr, CheckRedirect: noRedirects}
	if o.ServerURL == "" {
		rb.base, err = discover(ctx, o.Discovery, o.TLSConfig)
	} else {
		rb.base, err = rb.connect(ctx, o.ServerURL)
	}
	if err != nil {
		rb.tr.CloseIdleConnections()
		return nil, err
	}
	l := &RemoteClient{rb: rb}
	l.client = newClient(o, rb)
	rb.who = l.client.who
	return l, nil
}

// ServerURL returns the base URL of the server this client talks to.
func (l *RemoteClient) ServerURL() string { return l.rb.base }

// newTransport returns a transport of its own, so that Close can drop its
// connections.
func newTransport(tc *tls.Config, idle int) *http.Transport {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = idle
	if tc != nil {
		tr.TLSClientConfig = tc.Clone()
	}
	return tr
}

// noRedirects keeps the client from following a redirect with the token.
func noRedirects(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

// normalizeURL checks a server URL and returns it without a trailing slash.
func normalizeURL(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", fmt.Errorf("ledger: server URL %q: %w", raw, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return "", fmt.Errorf("ledger: server URL %q must be http:// or https:// with a host and nothing after the path", raw)
	}
	return strings.TrimRight(u.String(), "/"), nil
}

// connect checks that the server at raw is a ledger server.
func (b *remoteBackend) connect(ctx context.Context, raw string) (string, error) {
	base, err := normalizeURL(raw)
	if err != nil {
		return "", err
	}
	var st wire.Status
	err = b.do(ctx, http.MethodGet, base, wire.PathStatus, true, nil, &st)
	if err == nil && st.Service != wire.Service {
		err = fmt.Errorf("it answers /status as %q, not %q", st.Service, wire.Service)
	}
	if err != nil {
		return "", fmt.Errorf("%w at %s: %w", ErrNoServer, base, err)
	}
	return base, nil
}

// remoteBackend implements backend over HTTP: one POST per method.
type remoteBackend struct {
	base    string
	hc      *http.Client
	tr      *http.Transport
	token   string
	timeout time.Duration // of one attempt
	retry   RetryPolicy
	who     participant // for requests that take no participant
}

func (b *remoteBackend) close() error {
	b.tr.CloseIdleConnections()
	return nil
}

func part(who participant) wire.Participant {
	return wire.Participant{
		ParticipantID: who.ID, ParticipantPID: who.PID, Host: who.Host,
		HeartbeatIntervalMs: ms(who.Interval), StaleThresholdMs: ms(who.Stale),
	}
}

// post sends req to path and decodes the answer into resp (if not nil).
func (b *remoteBackend) post(ctx context.Context, path string, idempotent bool, req, resp any) error {
	return b.do(ctx, http.MethodPost, b.base, path, idempotent, req, resp)
}

// do sends one request, retrying idempotent ones after connection errors
// as b.retry says.
func (b *remoteBackend) do(ctx context.Context, method, base, path string, idempotent bool, req, resp any) error {
	var body []byte
	if req != nil {
		var err error
		if body, err = json.Marshal(req); err != nil {
			return fmt.Errorf("ledger: %s: %w", path, err)
		}
	}
	pause := b.retry.Backoff
	for attempt := 1; ; attempt++ {
		err := b.once(ctx, method, base+path, body, resp)
		var ce *connError
		if err == nil || !idempotent || attempt >= b.retry.Attempts || !errors.As(err, &ce) || ctx.Err() != nil {
			return err
		}
		t := time.NewTimer(pause)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return err
		}
		pause = min(2*pause, b.retry.MaxBackoff)
	}
}

// connError is a request that failed on the way to or from the server.
type connError struct {
	path string
	err  error
}

func (e *connError) Error() string { return "ledger: " + e.path + ": " + e.err.Error() }
func (e *connError) Unwrap() error { return e.err }

// maxReply bounds the answer read from a server: a state with 10,000
// frames is about 3 MB.
const maxReply = 64 << 20

// once sends one attempt.
func (b *remoteBackend) once(ctx context.Context, method, u string, body []byte, resp any) error {
	ctx, cancel := context.WithTimeout(ctx, b.timeout)
	defer cancel()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return fmt.Errorf("ledger: %w", err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	if dl, ok := ctx.Deadline(); ok {
		// Leave the server a tenth of the time (at most 100ms) to answer.
		left := time.Until(dl)
		left -= min(left/10, 100*time.Millisecond)
		req.Header.Set(wire.HeaderTimeout, strconv.FormatInt(max(left.Milliseconds(), 1), 10))
	}
	if b.token != "" {
		req.Header.Set("Authorization", "Bearer "+b.token)
	}
	res, err := b.hc.Do(req)
	if err != nil {
		return &connError{req.URL.Path, err}
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(res.Body, maxReply))
	if err != nil {
		return &connError{req.URL.Path, err}
	}
	if res.StatusCode != http.StatusOK {
		return remoteError(res.StatusCode, raw)
	}
	if resp == nil {
		return nil
	}
	if err := json.Unmarshal(raw, resp); err != nil {
		return fmt.Errorf("ledger: %s: malformed answer of the server: %w", req.URL.Path, err)
	}
	return nil
}

// remoteError rebuilds the error of a failed answer.
func remoteError(status int, raw []byte) error {
	var e wire.Error
	if err := json.Unmarshal(raw, &e); err != nil || e.Code == "" {
		msg := strings.TrimSpace(string(raw))
		if len(msg) > 200 {
			msg = msg[:200] + "..."
		}
		return &RemoteError{StatusCode: status, Message: msg}
	}
	if e.Code == wire.CodeOperationFailed && e.Failure != nil {
		f := e.Failure
		return &OperationFailedError{Info: OperationFailedInfo{
			OperationID: f.OperationID, FailedAt: f.FailedAt.Time, Reason: f.Reason,
			ParticipantID: f.ParticipantID, CrashedCallIDs: f.CrashedCallIDs,
		}}
	}
	return &RemoteError{StatusCode: status, Code: e.Code, Message: e.Error}
}

// dataReply is the answer of a request that returns the state.
type dataReply struct {
	Data *store.Data `json:"data"`
}

func (b *remoteBackend) data(ctx context.Context, path string, idempotent bool, req any) (*store.Data, error) {
	var r dataReply
	if err := b.post(ctx, path, idempotent, req, &r); err != nil {
		return nil, err
	}
	if r.Data == nil {
		return nil, fmt.Errorf("ledger: %s: the server answered without the state", path)
	}
	return r.Data, nil
}

func (b *remoteBackend) op(id string, who participant) *wire.OperationRequest {
	return &wire.OperationRequest{Participant: part(who), OperationID: id}
}

func (b *remoteBackend) create(ctx context.Context, id string, who participant, description string) (*store.Data, error) {
	return b.data(ctx, wire.PathCreate, false, &wire.CreateRequest{Participant: part(who), OperationID: id, Description: description})
}

func (b *remoteBackend) join(ctx context.Context, id string, who participant) (*store.Data, error) {
	return b.data(ctx, wire.PathJoin, false, b.op(id, who))
}

func (b *remoteBackend) leave(ctx context.Context, id string, who participant) error {
	return b.post(ctx, wire.PathLeave, false, b.op(id, who), nil)
}

func (b *remoteBackend) complete(ctx context.Context, id string, who participant) (*store.Data, error) {
	return b.data(ctx, wire.PathComplete, false, b.op(id, who))
}

func (b *remoteBackend) state(ctx context.Context, id string) (*store.Data, error) {
	return b.data(ctx, wire.PathState, true, b.op(id, b.who))
}

func (b *remoteBackend) log(ctx context.Context, id string, who participant, level LogLevel, msg string) error {
	name := strings.ToLower(level.String())
	if int(level) >= 0 && int(level) < len(wire.Levels) {
		name = wire.Levels[level]
	}
	return b.post(ctx, wire.PathLog, false, &wire.LogRequest{Participant: part(who), OperationID: id, Message: msg, Level: name}, nil)
}

func (b *remoteBackend) setAbort(ctx context.Context, id string, who participant, aborted bool) (*store.Data, error) {
	return b.data(ctx, wire.PathAbort, false, &wire.AbortRequest{Participant: part(who), OperationID: id, Value: &aborted})
}

func (b *remoteBackend) addFrame(ctx context.Context, id string, who participant, f frameSpec) error {
	path := wire.PathCallStart
	if f.Kind == frameRaw {
		path = wire.PathCallFrameCreate
	}
	req := &wire.CallStartRequest{
		Participant: part(who), OperationID: id, CallID: f.CallID, Description: f.Description,
		FailOnCrash: &f.FailOnCrash, Spawned: f.Kind == frameSpawned,
	}
	return b.post(ctx, path, false, req, nil)
}

func (b *remoteBackend) removeFrame(ctx context.Context, id string, who participant, callID string, kind frameKind) error {
	path := wire.PathCallEnd
	if kind == frameRaw {
		path = wire.PathCallFrameDelete
	}
	req := &wire.CallEndRequest{Participant: part(who), OperationID: id, CallID: callID, Spawned: kind == frameSpawned}
	return b.post(ctx, path, false, req, nil)
}

func (b *remoteBackend) failFrame(ctx context.Context, id string, who participant, callID, reason, stack string) (*store.Data, error) {
	req := &wire.CallFailRequest{Participant: part(who), OperationID: id, CallID: callID, Error: reason, Stack: stack}
	return b.data(ctx, wire.PathCallFail, false, req)
}

func (b *remoteBackend) registerTemp(ctx context.Context, id string, who participant, path string) error {
	return b.post(ctx, wire.PathTempRegister, false, &wire.TempRequest{Participant: part(who), OperationID: id, Path: path}, nil)
}

func (b *remoteBackend) unregisterTemp(ctx context.Context, id string, who participant, path string) error {
	return b.post(ctx, wire.PathTempUnregister, false, &wire.TempRequest{Participant: part(who), OperationID: id, Path: path}, nil)
}

func (b *remoteBackend) heartbeat(ctx context.Context, id string, who participant) (*store.Data, error) {
	return b.data(ctx, wire.PathHeartbeat, true, b.op(id, who))
}

func (b *remoteBackend) reportCrash(ctx context.Context, id string, who, victim participant, seen store.Time) (crashReport, error) {
	req := &wire.CrashRequest{Participant: part(who), OperationID: id, Victim: part(victim)}
	if !seen.IsZero() {
		req.Seen = &seen
	}
	var r struct {
		Data    *store.Data `json:"data"`
		Crashed bool        `json:"crashed"`
	}
	if err := b.post(ctx, wire.PathCrash, false, req, &r); err != nil {
		return crashReport{}, err
	}
	if r.Data == nil {
		return crashReport{}, fmt.Errorf("ledger: %s: the server answered without the state", wire.PathCrash)
	}
	return crashReport{Data: r.Data, Crashed: r.Crashed}, nil
}

func (b *remoteBackend) cleanedUp(ctx context.Context, id string, who participant) (*store.Data, error) {
	return b.data(ctx, wire.PathCleanedUp, false, b.op(id, who))
}

func (b *remoteBackend) finishCleanup(ctx context.Context, id string, who participant) (*store.Data, error) {
	return b.data(ctx, wire.PathFinish, false, b.op(id, who))
}

// ledgerLocation implements ledgerLocator: workers reach the same server.
func (b *remoteBackend) ledgerLocation() (basePath, serverURL string) { return "", b.base }
