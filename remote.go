package ledger

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/tomdist/ledger/internal/wire"
	"github.com/tomdist/ledger/journal"
)

// Defaults of the remote options.
const (
	DefaultRequestTimeout  = 10 * time.Second      // Options.RequestTimeout
	DefaultRetryAttempts   = 8                     // RetryPolicy.Attempts
	DefaultRetryBackoff    = 50 * time.Millisecond // RetryPolicy.Backoff
	DefaultRetryMaxBackoff = time.Second           // RetryPolicy.MaxBackoff
)

// TokenEnv is the environment variable that holds the bearer token of a
// ledger server when Options.Token is empty; `ledger serve` reads it too.
const TokenEnv = "LEDGER_TOKEN"

// RetryPolicy is how a RemoteClient retries a request that failed on the
// way to or from the server (a connection error, an attempt that ran past
// Options.RequestTimeout) or that a server shutting down or starting
// refused (503). An error answer of the server is never retried. Every
// request is retried, changes too: each carries an idempotency key, the
// same in every attempt, and the server answers a change it already made
// with its answer instead of making it twice, across its own restarts
// too. Retries stop when the caller's context ends. The zero value sends
// a request at most 8 times, pausing 50ms, 100ms, 200ms ... up to 1s
// between them: about 3.5s in all, which rides out a server restart.
type RetryPolicy struct {
	// Attempts is the most times a request is sent. Zero means 8; 1 means
	// no retry.
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
// run in this process; the server carries out each change on its store
// for it, one request per change, each naming this participant and the
// journal position the client has seen, and answers with the records the
// client has not seen. Every such request carries an idempotency key,
// and every request is retried as Options.Retry says (see RetryPolicy).
//
// Each open operation is followed through one stream of server-sent
// events: the server pushes every change as it happens, and a dropped
// stream is opened again, with backoff, from the last position received.
// The stream is also the client's proof of life: when it drops and no
// stream of the participant comes back within the server's
// ServerOptions.StreamGrace (1s), the server declares the participant
// crashed, so a killed remote participant is seen within about a second.
// One that hangs with its stream open is seen by its heartbeats, after
// its StaleThreshold plus 1.25 HeartbeatInterval. Where the server (or a
// proxy before it) cannot stream, the client reads the state every
// Options.LivenessPoll instead.
//
// Given several servers of one ledger (Options.ServerURL and ServerURLs),
// it uses one and moves to the next when a request or stream cannot reach
// it: the request is sent again there with the same idempotency key, so a
// change is never made twice, and the stream opens again there.
//
// Errors of the server come back as the same sentinels as on a local
// ledger (see RemoteError); connection errors are returned wrapped.
// Options.Callback.OnLogLine and OnBackupCreated are not called: the server
// writes the logs and archives. Options fields of the directory (BasePath,
// Durable, MaxBackups, MaxTrail) are the server's business and ignored
// here.
type RemoteClient struct {
	*client
	rb *remoteBackend
}

// NewRemoteClient connects to the ledger server at o.ServerURL, or to the
// first of o.ServerURL and o.ServerURLs that answers (the others are kept
// for failover), or, when both are empty, to the server that discovery
// finds (see DiscoveryOptions). It checks that the server answers /status
// as a ledger server; if none does, the error matches ErrNoServer.
func NewRemoteClient(ctx context.Context, o Options) (*RemoteClient, error) {
	if o.BasePath != "" && o.ServerURL == "" && len(o.ServerURLs) == 0 {
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
		tr:        newTransport(o.TLSConfig, 64),
		token:     o.Token,
		timeout:   o.RequestTimeout,
		retry:     o.Retry,
		pollEvery: o.LivenessPoll,
		log:       o.Logger,
		streams:   make(map[string]*streamView),
	}
	rb.hc = &http.Client{Transport: rb.tr, CheckRedirect: noRedirects}
	if o.ServerURL == "" && len(o.ServerURLs) == 0 {
		var base string
		base, err = discover(ctx, o.Discovery, o.TLSConfig)
		rb.srv.list = []string{base}
	} else {
		err = rb.connectAny(ctx, append([]string{o.ServerURL}, o.ServerURLs...))
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

// ServerURL returns the base URL of the server this client talks to now.
func (l *RemoteClient) ServerURL() string {
	base, _ := l.rb.srv.current()
	return base
}

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
	err = b.do(ctx, http.MethodGet, base, wire.PathStatus, "", nil, &st)
	if err == nil && st.Service != wire.Service {
		err = fmt.Errorf("it answers /status as %q, not %q", st.Service, wire.Service)
	}
	if err != nil {
		return "", fmt.Errorf("%w at %s: %w", ErrNoServer, base, err)
	}
	return base, nil
}

// remoteBackend implements backend over HTTP: one POST per change, and a
// stream per open operation.
type remoteBackend struct {
	srv       servers // the servers of the ledger, and the one in use
	hc        *http.Client
	tr        *http.Transport
	token     string
	timeout   time.Duration // of one attempt
	retry     RetryPolicy
	pollEvery time.Duration // where streaming fails
	who       participant   // the participant of this client
	log       *slog.Logger  // Options.Logger: retries, reconnects

	mu      sync.Mutex             // guards streams
	streams map[string]*streamView // the views the streams keep, by operation
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
// Every request carries an idempotency key, the same in every attempt, so
// that a change the server made before the connection failed is not made
// twice.
func (b *remoteBackend) post(ctx context.Context, path string, req, resp any) error {
	return b.do(ctx, http.MethodPost, "", path, uuid.NewString(), req, resp)
}

// do sends one request, retrying it after connection errors, timeouts of
// one attempt and a server that is restarting, as b.retry says. An empty
// base means the server in use, and the next one after such an error.
func (b *remoteBackend) do(ctx context.Context, method, base, path, key string, req, resp any) error {
	var body []byte
	if req != nil {
		var err error
		if body, err = json.Marshal(req); err != nil {
			return fmt.Errorf("ledger: %s: %w", path, err)
		}
	}
	pause := b.retry.Backoff
	attempts, moved := b.retry.Attempts, 0
	if base == "" {
		attempts += len(b.srv.list) - 1 // a fair try of every server
	}
	for attempt := 1; ; attempt++ {
		u, i := base, -1
		if base == "" {
			u, i = b.srv.current()
		}
		err := b.once(ctx, method, u+path, key, body, resp)
		if err == nil || attempt >= attempts || !retriable(err) || ctx.Err() != nil {
			return err
		}
		if i >= 0 && moved < len(b.srv.list)-1 && b.srv.failed(i) {
			moved++
			continue // another server: no pause
		}
		wait := jitter(pause)
		logRetry(b.log, path, attempt+1, wait, err)
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return err
		}
		pause = min(2*pause, b.retry.MaxBackoff)
	}
}

// retriable reports whether an attempt failed on the way (a connection
// error, a timeout of the attempt) or at a server that is restarting.
func retriable(err error) bool {
	var ce *connError
	var re *RemoteError
	return errors.As(err, &ce) || errors.As(err, &re) && re.StatusCode == http.StatusServiceUnavailable
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
func (b *remoteBackend) once(ctx context.Context, method, u, key string, body []byte, resp any) error {
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
	if key != "" {
		req.Header.Set(wire.HeaderIdempotencyKey, key)
	}
	if dl, ok := ctx.Deadline(); ok {
		// Leave the server a tenth of the time (at most 100ms) to answer.
		left := time.Until(dl)
		left -= min(left/10, 100*time.Millisecond)
		req.Header.Set(wire.HeaderTimeout, strconv.FormatInt(max(left.Milliseconds(), 1), 10))
	}
	b.authorize(req)
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

func (b *remoteBackend) authorize(req *http.Request) {
	if b.token != "" {
		req.Header.Set("Authorization", "Bearer "+b.token)
	}
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

// at returns the position of v as a request sends it.
func at(v view) wire.Position {
	n := uint64(v.rev)
	return wire.Position{After: &n}
}

// foldWire returns v moved to the end of the tail a server answered for a
// client at v.
func foldWire(v view, t *wire.Tail) (view, error) {
	jt := journal.Tail{Snapshot: t.Snapshot, Base: journal.Rev(t.Base), Archived: t.Archived}
	if t.Snapshot != nil && len(t.Snapshot) == 0 {
		jt.Snapshot = []byte{}
	}
	// The records must follow the position without a gap: a tail that
	// skips one would leave v without a change it can never learn of.
	next := v.rev + 1
	if t.Snapshot != nil {
		next = jt.Base + 1
	}
	for i, r := range t.Records {
		if journal.Rev(r.Rev) != next+journal.Rev(i) {
			return v, fmt.Errorf("ledger: the server answered record %d where %d was due", r.Rev, next+journal.Rev(i))
		}
		jt.Records = append(jt.Records, journal.Record{Rev: journal.Rev(r.Rev), Body: r.Body})
	}
	nv, err := v.fold(jt, false)
	if err != nil {
		return v, err
	}
	if nv.rev != journal.Rev(t.Rev) && t.Rev > uint64(nv.rev) {
		return v, fmt.Errorf("ledger: the server answered a tail that ends at %d, not %d", nv.rev, t.Rev)
	}
	return nv, nil
}

// tail sends a change to path and folds the answer into v.
func (b *remoteBackend) tail(ctx context.Context, path string, v view, req any) (view, *wire.Tail, error) {
	var t wire.Tail
	if err := b.post(ctx, path, req, &t); err != nil {
		return v, nil, err
	}
	nv, err := foldWire(v, &t)
	if err != nil {
		return v, nil, err
	}
	if nv.d == nil {
		return v, nil, fmt.Errorf("ledger: %s: the server answered without the state", path)
	}
	return nv, &t, nil
}

// create implements backend.
func (b *remoteBackend) create(ctx context.Context, c createOp) (view, error) {
	req := &wire.CreateRequest{Participant: part(c.who), Position: at(view{}), OperationID: c.id, Description: c.description}
	nv, _, err := b.tail(ctx, wire.PathCreate, view{}, req)
	return nv, err
}

// apply implements backend: one request per change, to the route of the
// Dart server where it has one.
func (b *remoteBackend) apply(ctx context.Context, id string, v view, c change) (view, outcome, error) {
	path, req := b.request(id, v, c)
	if path == "" {
		return v, outcome{}, fmt.Errorf("ledger: a %T cannot be sent to a server", c)
	}
	nv, t, err := b.tail(ctx, path, v, req)
	if err != nil {
		return v, outcome{}, err
	}
	return nv, outcome{crashed: t.Crashed}, nil
}

// request returns the route and body of change c.
func (b *remoteBackend) request(id string, v view, c change) (string, any) {
	pos := at(v)
	op := func(who participant) *wire.OperationRequest {
		return &wire.OperationRequest{Participant: part(who), Position: pos, OperationID: id}
	}
	switch c := c.(type) {
	case joinOp:
		return wire.PathJoin, op(c.who)
	case leaveOp:
		return wire.PathLeave, op(c.who)
	case completeOp:
		return wire.PathComplete, op(c.who)
	case cleanedUpOp:
		return wire.PathCleanedUp, op(c.who)
	case finishCleanupOp:
		return wire.PathFinish, op(c.who)
	case logOp:
		name := strings.ToLower(c.level.String())
		if int(c.level) >= 0 && int(c.level) < len(wire.Levels) {
			name = wire.Levels[c.level]
		}
		return wire.PathLog, &wire.LogRequest{Participant: part(c.who), Position: pos, OperationID: id, Message: c.msg, Level: name}
	case abortOp:
		return wire.PathAbort, &wire.AbortRequest{Participant: part(c.who), Position: pos, OperationID: id, Value: &c.aborted}
	case addFrameOp:
		path := wire.PathCallStart
		if c.spec.Kind == frameRaw {
			path = wire.PathCallFrameCreate
		}
		return path, &wire.CallStartRequest{
			Participant: part(c.who), Position: pos, OperationID: id, CallID: c.spec.CallID,
			Description: c.spec.Description, FailOnCrash: &c.spec.FailOnCrash, Spawned: c.spec.Kind == frameSpawned,
		}
	case removeFrameOp:
		path := wire.PathCallEnd
		if c.kind == frameRaw {
			path = wire.PathCallFrameDelete
		}
		return path, &wire.CallEndRequest{Participant: part(c.who), Position: pos, OperationID: id, CallID: c.callID, Spawned: c.kind == frameSpawned}
	case failFrameOp:
		return wire.PathCallFail, &wire.CallFailRequest{Participant: part(c.who), Position: pos, OperationID: id, CallID: c.callID, Error: c.reason, Stack: c.stack}
	case tempOp:
		path := wire.PathTempRegister
		if c.unregister {
			path = wire.PathTempUnregister
		}
		return path, &wire.TempRequest{Participant: part(c.who), Position: pos, OperationID: id, Path: c.path}
	case crashOp:
		req := &wire.CrashRequest{Participant: part(c.who), Position: pos, OperationID: id, Victim: part(c.victim)}
		if !c.seen.IsZero() {
			seen := c.seen
			req.Seen = &seen
		}
		return wire.PathCrash, req
	}
	return "", nil
}

// read implements backend: an operation that its stream follows is read
// from the view the stream keeps (the stream brings every change, and
// wakes the monitor when it does); any other with one request.
func (b *remoteBackend) read(ctx context.Context, id string, v view) (view, error) {
	if sv, ok := b.streamed(id); ok {
		if v.newer(sv) {
			return sv, nil
		}
		return v, nil
	}
	req := &wire.OperationRequest{Participant: part(b.who), Position: at(v), OperationID: id}
	nv, _, err := b.tail(ctx, wire.PathState, v, req)
	return nv, err
}

// heartbeat implements backend: the server records the beat and answers
// with the vitals of every member and what v has not seen.
func (b *remoteBackend) heartbeat(ctx context.Context, id string, who participant, _ journal.Lease, v view) ([]journal.Vital, view, error) {
	req := &wire.OperationRequest{Participant: part(who), Position: at(v), OperationID: id}
	nv, t, err := b.tail(ctx, wire.PathHeartbeat, v, req)
	if err != nil {
		return nil, v, err
	}
	return vitals(t), nv, nil
}

// state implements backend: the state route answers with the vitals too.
func (b *remoteBackend) state(ctx context.Context, id string, v view) (view, []journal.Vital, error) {
	req := &wire.OperationRequest{Participant: part(b.who), Position: at(v), OperationID: id}
	nv, t, err := b.tail(ctx, wire.PathState, v, req)
	if err != nil {
		return v, nil, err
	}
	return nv, vitals(t), nil
}

// vitals returns the vitals of a server's answer.
func vitals(t *wire.Tail) []journal.Vital {
	vs := make([]journal.Vital, len(t.Vitals))
	for i, w := range t.Vitals {
		vs[i] = journal.Vital{
			Member: journal.Member{ID: w.ParticipantID, PID: w.ParticipantPID, Host: w.Host, TTL: time.Duration(w.TTLms) * time.Millisecond},
			Held:   w.Held, Beat: w.Beat.Time,
		}
	}
	return vs
}

// ledgerLocation implements ledgerLocator: workers reach the same server.
func (b *remoteBackend) ledgerLocation() (basePath, serverURL string) { return "", b.srv.joined() }
