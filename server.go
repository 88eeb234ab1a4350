package ledger

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/tomdist/ledger/internal/dirstore"
	"github.com/tomdist/ledger/internal/store"
	"github.com/tomdist/ledger/internal/wire"
	"github.com/tomdist/ledger/journal"
)

// ServerOptions configure NewServer. BasePath or Store is required; the
// zero value of every other field is valid.
type ServerOptions struct {
	// BasePath is the ledger directory the server serves. It is created if
	// needed. Local ledgers may share it with the server.
	BasePath string

	// Store, instead of BasePath, is the journal store the server serves
	// (such as etcd's, of module github.com/tomdist/ledger/etcd). The
	// server owns it: Close closes it. The server keeps nothing of its
	// own but caches, so several servers over one shared store may run
	// behind a load balancer (see Server). Durable, MaxBackups and
	// MaxTrail are the store's business then, and not used.
	Store journal.Store

	// Token is the bearer token every request but GET /health and GET
	// /status must carry (Authorization: Bearer <token>; the scheme in
	// any case). The dashboard (/ui) takes instead the session cookie
	// its sign-in form sets, and its style sheets and script need
	// nothing (see server_ui.go). It may not hold spaces or control characters, which a
	// header cannot carry in a token: NewServer refuses it. Zero means no
	// token: then the server may only listen on loopback (see
	// CheckListenAddr), and requests must name the server by IP address or
	// "localhost" in their Host header, which keeps web pages from reaching
	// it through DNS rebinding.
	Token string

	// Insecure allows Serve to listen on a non-loopback address without a
	// Token. Zero means such a listener is refused.
	Insecure bool

	// LockTimeout bounds the wait of one request for an operation's lock.
	// Zero means 30s.
	LockTimeout time.Duration

	// Durable makes every change of the ledger directory reach the disk
	// before it is answered, as Options.Durable. Zero means off.
	Durable bool

	// MaxBackups is how many archived operations are kept. Zero means 20;
	// negative keeps all.
	MaxBackups int

	// MaxTrail is how many trail snapshots are kept per operation. Zero
	// means 100; negative keeps none.
	MaxTrail int

	// StaleThreshold is the period of the server's orphan sweep (see
	// Server); participants are judged by the settings in their own
	// records. Zero means 15s.
	StaleThreshold time.Duration

	// StreamGrace is how long a client whose stream dropped may take to
	// open it again before the server declares it crashed, unless it has
	// left. A stream names its participant (a RemoteClient's does; a
	// Viewer's does not, and proves nobody alive). Zero means 1s,
	// DefaultStreamGrace.
	StreamGrace time.Duration

	// Dart configures how Dart clients are served (see DartOptions).
	Dart DartOptions

	// Logger receives one line per request at debug level (failures of the
	// server itself at error level) and a warning for each participant the
	// server declares crashed ("participant crashed", with by: client,
	// stream or sweep). Zero means no log.
	Logger *slog.Logger
}

// CheckListenAddr returns an error if a server with these options may not
// listen on addr ("host:port"): an address that is not loopback (127.0.0.0/8,
// ::1 or "localhost"; an empty host means every interface) needs a Token
// unless Insecure is set.
func (o ServerOptions) CheckListenAddr(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("ledger: listen address %q: %w", addr, err)
	}
	if o.Token != "" || o.Insecure || isLoopbackHost(host) {
		return nil
	}
	return fmt.Errorf("ledger: refusing to listen on %s without a token: it is not a loopback address (set ServerOptions.Token, or Insecure to serve without one)", addr)
}

// isLoopbackHost reports whether host is "localhost" or a loopback IP.
func isLoopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.Unmap().IsLoopback()
}

// Server is the ledger server: a stateless HTTP face of a ledger directory
// (DESIGN §6), or of any journal store (ServerOptions.Store). Every
// request names its participant and is carried out on the store through
// the same code as a LocalLedger, so the server keeps nothing about its
// clients in memory but caches and their open streams, and may be
// restarted at any time. Over a
// store that many processes share (etcd), several servers may serve one
// ledger behind a load balancer or a client's ServerURLs; the stream
// grace of a client runs on the server that had its stream. It is an
// http.Handler; Serve runs it with safe timeouts.
//
// Like a LocalLedger, the server sweeps its store for orphans when it
// starts and then every StaleThreshold: a live operation whose
// participants are all gone (none left to coordinate) is marked failed
// and archived. It judges a participant gone by a heartbeat older than
// three of the participant's own stale thresholds (15s for a record
// without one) plus a minute (clocks of other hosts may be off), unless
// it holds a lease. A participant whose stream drops is declared crashed once
// ServerOptions.StreamGrace passes without a new one.
// The server never deletes files outside its directory: temp resources
// registered through it are recorded as such (registeredVia "server") and
// deleted by their registrants alone.
type Server struct {
	opts  ServerOptions
	b     *storeBackend // nil when err is set
	cache *opCache      // what the server knows of the operations it serves
	live  *streamLiveness
	err   error  // why the server cannot serve; set once by NewServer
	dir   string // absolute BasePath, hidden from error messages
	token [sha256.Size]byte
	log   *slog.Logger // nil: no request log

	metrics *serverMetrics // server_metrics.go

	stopSweep context.CancelFunc // ends the orphan sweep
	swept     chan struct{}      // closed when the sweep has ended

	// streams ends every stream when the server shuts down: a stream is
	// a request that would otherwise keep a graceful shutdown waiting.
	streams    context.Context
	endStreams context.CancelFunc

	closed atomic.Bool
}

// NewServer returns a server over the ledger directory o.BasePath, or over
// the store o.Store. It never fails: if the directory cannot be opened or
// the options are bad, Err says why and every request but /status answers
// 503.
func NewServer(o ServerOptions) *Server {
	s := &Server{opts: o, log: o.Logger}
	s.metrics = newServerMetrics(s)
	s.token = sha256.Sum256([]byte(o.Token))
	if s.err = o.check(); s.err != nil {
		return s
	}
	if o.LockTimeout == 0 {
		s.opts.LockTimeout = 30 * time.Second
	}
	st, dir, err := o.openStore(s.metrics.lockWaited)
	if err != nil {
		s.err = err
		return s
	}
	s.dir = dir
	s.b = &storeBackend{s: st, swept: func(id string) { s.verdict("sweep", id, "all participants") }}
	s.cache = newOpCache(maxCachedOps)
	s.live = newStreamLiveness(s)
	ctx, cancel := context.WithCancel(context.Background())
	s.stopSweep, s.swept = cancel, make(chan struct{})
	s.streams, s.endStreams = context.WithCancel(context.Background())
	threshold := cmp.Or(o.StaleThreshold, DefaultStaleThreshold)
	go func() {
		defer close(s.swept)
		s.b.sweepLoop(ctx, sweeper(), threshold)
	}()
	return s
}

func (o ServerOptions) check() error {
	if o.BasePath == "" && o.Store == nil {
		return errors.New("ledger: ServerOptions.BasePath is empty")
	}
	if o.BasePath != "" && o.Store != nil {
		return errors.New("ledger: ServerOptions.BasePath and Store are both set; choose one")
	}
	for i := 0; i < len(o.Token); i++ {
		if c := o.Token[i]; c <= ' ' || c == 0x7f {
			return fmt.Errorf("ledger: ServerOptions.Token has byte %q at %d: a bearer token cannot carry spaces or control characters", c, i)
		}
	}
	if o.LockTimeout < 0 {
		return fmt.Errorf("ledger: ServerOptions.LockTimeout (%v) must not be negative", o.LockTimeout)
	}
	if o.StreamGrace < 0 {
		return fmt.Errorf("ledger: ServerOptions.StreamGrace (%v) must not be negative", o.StreamGrace)
	}
	if o.StaleThreshold < 0 {
		return fmt.Errorf("ledger: ServerOptions.StaleThreshold (%v) must not be negative", o.StaleThreshold)
	}
	return o.Dart.check()
}

func (o ServerOptions) dirOptions() dirstore.Options {
	return dirstore.Options{
		Durable:    o.Durable,
		MaxBackups: keep(o.MaxBackups, DefaultMaxBackups),
		MaxTrail:   keep(o.MaxTrail, DefaultMaxTrail),
		Host:       hostname(),
	}
}

// Err returns why the server cannot serve (bad options, or a directory
// that cannot be opened), or nil.
func (s *Server) Err() error { return s.err }

// Close stops the orphan sweep, ends the open streams (without a verdict
// on their participants: the server going away is not their death) and
// closes the store, the directory it opened or ServerOptions.Store; later
// requests answer 503. Serve ends the streams itself when it shuts down;
// an http.Server of one's own (or an httptest.Server) waits for open
// streams when it shuts down or closes, so close s first.
func (s *Server) Close() error {
	if s.closed.Swap(true) || s.b == nil {
		return nil
	}
	s.stopSweep()
	<-s.swept
	s.shutdownStreams()
	return s.b.close()
}

// shutdownStreams ends every stream, without a verdict on their
// participants: the server going away is not their death.
func (s *Server) shutdownStreams() {
	s.live.stop()
	s.endStreams()
}

// Timeouts of the http.Server that Serve runs.
const (
	serverReadHeaderTimeout = 10 * time.Second
	serverReadTimeout       = 30 * time.Second
	serverIdleTimeout       = 2 * time.Minute
	serverShutdownGrace     = 10 * time.Second
)

// Serve serves the ledger on ln until ctx ends, then shuts down
// gracefully: it stops accepting, waits up to 10s for requests in flight
// and returns nil. It refuses a listener that CheckListenAddr refuses, and
// a server whose Err is set. The http.Server it runs has read-header, read,
// write and idle timeouts. Serve does not close s.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	if s.err != nil {
		return s.err
	}
	if err := s.opts.CheckListenAddr(ln.Addr().String()); err != nil {
		return err
	}
	hs := &http.Server{
		Handler:           s,
		ReadHeaderTimeout: serverReadHeaderTimeout,
		ReadTimeout:       serverReadTimeout,
		WriteTimeout:      s.opts.LockTimeout + serverReadTimeout,
		IdleTimeout:       serverIdleTimeout,
		MaxHeaderBytes:    64 << 10,
	}
	if s.log != nil {
		hs.ErrorLog = slog.NewLogLogger(s.log.Handler(), slog.LevelWarn)
	}
	hs.RegisterOnShutdown(s.shutdownStreams)
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), serverShutdownGrace)
	defer cancel()
	err := hs.Shutdown(sctx)
	if err != nil {
		hs.Close()
	}
	<-errc // http.ErrServerClosed
	return err
}

func (s *Server) health(c *call) (reply, error) {
	if err := s.ready(); err != nil {
		return nil, err
	}
	if err := probe(s.b.s); err != nil {
		return nil, &httpError{http.StatusServiceUnavailable, wire.CodeUnavailable, "ledger: the ledger directory cannot be used: " + err.Error()}
	}
	return wire.Health{Status: "ok"}, nil
}

func (s *Server) status(c *call) (reply, error) {
	st := wire.Status{Service: wire.Service, Version: wire.Version}
	if a, ok := c.r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
		if ap, err := netip.ParseAddrPort(a.String()); err == nil {
			st.Port = int(ap.Port())
		}
	}
	return st, nil
}

// ready returns why the server cannot carry out requests, or nil.
func (s *Server) ready() error {
	switch {
	case s.err != nil:
		return &httpError{http.StatusServiceUnavailable, wire.CodeUnavailable, s.err.Error()}
	case s.closed.Load():
		return &httpError{http.StatusServiceUnavailable, wire.CodeUnavailable, "ledger: server closed"}
	}
	return nil
}

// endpoint decodes and validates a request of type T, then runs fn.
func endpoint[T any, P interface {
	*T
	wire.Request
}](fn func(s *Server, c *call, q P) (reply, error)) func(*Server, *call) (reply, error) {
	return func(s *Server, c *call) (reply, error) {
		q := P(new(T))
		if err := decode(c.r, q); err != nil {
			return nil, err
		}
		if err := q.Validate(); err != nil {
			return nil, err
		}
		if m, ok := any(q).(interface{ Member() *wire.Participant }); ok {
			c.key.by = remote(*m.Member()).key()
		}
		if err := s.ready(); err != nil {
			return nil, err
		}
		return fn(s, c, q)
	}
}

// httpError is a failure that is not the backend's: bad input, auth,
// method, size.
type httpError struct {
	status int
	code   string
	msg    string
}

func (e *httpError) Error() string { return e.msg }

func badRequest(format string, args ...any) error {
	return &httpError{http.StatusBadRequest, wire.CodeBadRequest, "ledger: " + fmt.Sprintf(format, args...)}
}

// decode reads the body of r, a single JSON object of at most wire.MaxBody
// bytes, into v. Unknown fields are ignored, so that older servers accept
// newer clients.
func decode(r *http.Request, v any) error {
	if r.ContentLength > wire.MaxBody {
		return tooLarge()
	}
	ct, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || ct != "application/json" {
		return &httpError{http.StatusUnsupportedMediaType, wire.CodeUnsupportedMedia, "ledger: Content-Type must be application/json"}
	}
	dec := json.NewDecoder(r.Body)
	if err := dec.Decode(v); err != nil {
		return decodeError(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		if err != nil {
			return decodeError(err)
		}
		return badRequest("body holds more than one JSON value")
	}
	return nil
}

func tooLarge() error {
	return &httpError{http.StatusRequestEntityTooLarge, wire.CodeTooLarge, fmt.Sprintf("ledger: request body exceeds %d bytes", wire.MaxBody)}
}

func decodeError(err error) error {
	var mbe *http.MaxBytesError
	var ute *json.UnmarshalTypeError
	var se *json.SyntaxError
	switch {
	case errors.As(err, &mbe):
		return tooLarge()
	case errors.As(err, &ute):
		field := ute.Field
		if field == "" {
			return badRequest("body must be a JSON object, not %s", ute.Value)
		}
		return badRequest("field %s: want %s, got %s", field, ute.Type, ute.Value)
	case errors.As(err, &se), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return badRequest("malformed JSON body: %v", err)
	}
	return badRequest("cannot read body: %v", err)
}

// ServeHTTP serves one request of the protocol.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rw := &respWriter{w: w}
	if r.ContentLength != 0 {
		rw.body = &bodyReader{r: http.MaxBytesReader(w, r.Body, wire.MaxBody)}
	}
	stream := s.metrics.streamOpened(r.URL.Path)
	s.serve(rw, r)
	s.metrics.observe(r.URL.Path, rw.status, time.Since(start), stream)
	if s.log == nil {
		return
	}
	level := slog.LevelDebug
	if rw.status >= 500 {
		level = slog.LevelError
	}
	if !s.log.Enabled(r.Context(), level) {
		return
	}
	attrs := []slog.Attr{
		slog.String("method", r.Method), slog.String("path", r.URL.Path),
		slog.Int("status", rw.status), slog.Duration("dur", time.Since(start)),
		slog.String("remote", r.RemoteAddr),
	}
	if rw.code != "" {
		attrs = append(attrs, slog.String("code", rw.code), slog.String("error", rw.err))
	}
	s.log.LogAttrs(r.Context(), level, "request", attrs...)
}

func (s *Server) serve(w *respWriter, r *http.Request) {
	rt, found := routes[r.URL.Path]
	if !found {
		w.fail(s.mapError(&httpError{http.StatusNotFound, wire.CodeNotFound, "ledger: no such path: " + r.URL.Path}))
		return
	}
	method := http.MethodPost
	if rt.get {
		method = http.MethodGet
	}
	if r.Method != method && !(rt.get && r.Method == http.MethodHead) {
		w.w.Header().Set("Allow", method)
		w.fail(s.mapError(&httpError{http.StatusMethodNotAllowed, wire.CodeMethodNotAllowed, "ledger: " + r.URL.Path + " takes " + method}))
		return
	}
	if !rt.public {
		if err := s.authorize(r); err != nil {
			if s.opts.Token != "" {
				w.w.Header().Set("WWW-Authenticate", `Bearer realm="ledger"`)
			}
			w.fail(s.mapError(err))
			return
		}
	}
	if rt.stream != nil {
		rt.stream(s, w, r)
		return
	}
	timeout, err := s.requestTimeout(r)
	if err != nil {
		w.fail(s.mapError(err))
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), timeout)
	defer cancel()
	// The handlers read a copy of r whose body is limited: r itself
	// keeps the body net/http made, which net/http inspects after the
	// reply to decide whether to read the rest (a body of another type
	// it always tries to read, waiting for the client) or to close.
	r = r.WithContext(ctx)
	r.Body = http.NoBody
	if w.body != nil {
		r.Body = io.NopCloser(w.body)
	}
	c := &call{ctx: ctx, r: r}
	if key := r.Header.Get(wire.HeaderIdempotencyKey); key != "" {
		if err := checkKey(key); err != nil {
			w.fail(s.mapError(err))
			return
		}
		c.key.key = key
	}
	rep, err := s.dispatch(rt, c) // server_dart.go: Dart clients' requests
	if err != nil {
		w.fail(s.mapError(err))
		return
	}
	w.reply(http.StatusOK, rep)
}

// requestTimeout is how long a request may wait for a lock: the server's
// LockTimeout, or less when the client said in wire.HeaderTimeout that it
// will not wait that long. A header that is malformed or given twice is a
// bad request (see wire.HeaderTimeout).
func (s *Server) requestTimeout(r *http.Request) (time.Duration, error) {
	vs := r.Header.Values(wire.HeaderTimeout)
	switch len(vs) {
	case 0:
		return s.opts.LockTimeout, nil
	case 1:
	default:
		return 0, badRequest("header %s given %d times", wire.HeaderTimeout, len(vs))
	}
	d, ok := wire.ParseTimeout(vs[0], s.opts.LockTimeout)
	if !ok {
		return 0, badRequest("header %s: %.40q is not a positive number of milliseconds", wire.HeaderTimeout, vs[0])
	}
	return d, nil
}

// authorize checks the bearer token in constant time (comparing hashes,
// so that not even its length shows); without a token it
// checks that the Host header names the server by IP or as localhost.
func (s *Server) authorize(r *http.Request) error {
	if s.opts.Token == "" {
		host := r.Host
		if h, _, err := net.SplitHostPort(host); err == nil {
			host = h
		}
		host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
		if _, err := netip.ParseAddr(host); err == nil || strings.EqualFold(host, "localhost") {
			return nil
		}
		return &httpError{http.StatusForbidden, wire.CodeForbiddenHost, "ledger: without a token the server answers only requests to an IP address or localhost, not " + strconv.Quote(r.Host)}
	}
	got, found := bearerToken(r.Header.Values("Authorization"))
	sum := sha256.Sum256([]byte(got))
	if !found || subtle.ConstantTimeCompare(sum[:], s.token[:]) != 1 {
		return &httpError{http.StatusUnauthorized, wire.CodeUnauthorized, "ledger: missing or wrong bearer token"}
	}
	return nil
}

// bearerToken returns the token of the Authorization header of a request
// that has exactly one: "Bearer", in any case (RFC 7235), one or more
// spaces and a token that is not empty.
func bearerToken(header []string) (string, bool) {
	if len(header) != 1 {
		return "", false
	}
	scheme, rest, found := strings.Cut(header[0], " ")
	if !found || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	tok := strings.TrimLeft(rest, " ")
	return tok, tok != ""
}

// errorBody is what mapError makes of an error.
type errorBody struct {
	status int
	body   wire.Error
}

// mapError turns an error into its status and stable code; the client
// maps the code back (see remoteError). Messages never show the directory.
func (s *Server) mapError(err error) errorBody {
	msg := err.Error()
	if s.dir != "" {
		msg = strings.ReplaceAll(msg, s.dir, "$LEDGER")
	}
	e := func(status int, code string) errorBody {
		return errorBody{status, wire.Error{Error: msg, Code: code}}
	}
	var he *httpError
	var fe *wire.FieldError
	var ofe *OperationFailedError
	switch {
	case errors.As(err, &he):
		return e(he.status, he.code)
	case errors.As(err, &ofe):
		b := e(http.StatusConflict, wire.CodeOperationFailed)
		info := ofe.Info
		b.body.Failure = &wire.Failure{
			OperationID: info.OperationID, FailedAt: store.Time{Time: info.FailedAt},
			Reason: info.Reason, ParticipantID: info.ParticipantID, CrashedCallIDs: info.CrashedCallIDs,
		}
		return b
	case errors.As(err, &fe):
		return e(http.StatusBadRequest, wire.CodeBadRequest)
	}
	for _, c := range errorCodes {
		if errors.Is(err, c.err) {
			return e(c.status, c.code)
		}
	}
	return e(http.StatusInternalServerError, wire.CodeInternal)
}

// errorCodes are the sentinels the server answers with a code of their
// own, and the HTTP status of each; the first that matches wins. The
// client reads the table backwards (RemoteError.Is), so that both
// backends give the same errors.
var errorCodes = []struct {
	err    error
	code   string
	status int
}{
	{ErrInvalidID, wire.CodeInvalidID, http.StatusBadRequest},
	{ErrOperationNotFound, wire.CodeOperationNotFound, http.StatusNotFound},
	{ErrCallExists, wire.CodeCallExists, http.StatusConflict},
	{ErrCallNotFound, wire.CodeCallNotFound, http.StatusNotFound},
	{ErrOperationCompleted, wire.CodeOperationCompleted, http.StatusConflict},
	{store.ErrExists, wire.CodeOperationExists, http.StatusConflict},
	{ErrNotInitiator, wire.CodeNotInitiator, http.StatusConflict},
	{ErrOperationFailed, wire.CodeOperationFailed, http.StatusConflict},
	{ErrLockTimeout, wire.CodeLockTimeout, http.StatusInternalServerError},
	{ErrCorruptLedger, wire.CodeCorruptLedger, http.StatusInternalServerError},
}

// respWriter writes JSON replies and remembers the status for the log.
type respWriter struct {
	w      http.ResponseWriter
	body   *bodyReader // the request body; nil if it declared none
	status int
	code   string // error code, if the request failed
	err    string // error message, if the request failed
}

// bodyReader reads a request body of at most wire.MaxBody bytes and
// remembers whether it was read to its end.
type bodyReader struct {
	r   io.Reader
	eof bool
}

func (b *bodyReader) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if err == io.EOF {
		b.eof = true
	}
	return n, err
}

func (w *respWriter) fail(b errorBody) {
	w.code, w.err = b.body.Code, b.body.Error
	w.reply(b.status, b.body)
}

func (w *respWriter) reply(status int, v any) {
	var body []byte
	if raw, ok := v.(rawJSON); ok {
		body = raw
	} else {
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(v); err != nil {
			status = http.StatusInternalServerError
			body = []byte(`{"error":"ledger: cannot encode the reply","code":"internal"}`)
		} else {
			body = bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
		}
	}
	h := w.w.Header()
	if w.body != nil && !w.body.eof {
		// The reply comes before the body was read (or read to its
		// end): closing the connection after it keeps net/http from
		// reading the rest first, which a client that sends nothing
		// more before it has the answer would hold up until the read
		// timeout.
		h.Set("Connection", "close")
	}
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.status = status
	w.w.WriteHeader(status)
	w.w.Write(body)
}

// probe checks that the store can be used, where it says how: a store
// whose directory cannot be opened (out of descriptors, gone) is not
// healthy, whatever else works.
func probe(st journal.Store) error {
	if p, ok := st.(interface{ Probe() error }); ok {
		return p.Probe()
	}
	return nil
}
