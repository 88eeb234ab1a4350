package ledger

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/tomdist/ledger/internal/store"
	"github.com/tomdist/ledger/internal/wire"
)

// remoteSource is a Viewer's source over a ledger server: the read-only
// routes wire.PathView*, the stream of an operation (without a
// participant: a viewer proves nobody alive) and /operation/abort.
type remoteSource struct {
	b *remoteBackend
}

// dialRemoteSource connects to the server at o.ServerURL, or to the one
// discovery finds, as NewRemoteClient does.
func dialRemoteSource(ctx context.Context, o Options) (*remoteSource, error) {
	o, err := o.remoteOptions()
	if err != nil {
		return nil, err
	}
	log := o.Logger
	if log == nil {
		log = discardLogger
	}
	b := &remoteBackend{
		tr: newTransport(o.TLSConfig, 4), token: o.Token, timeout: o.RequestTimeout,
		retry: o.Retry, log: log, streams: make(map[string]*streamView),
	}
	b.hc = &http.Client{Transport: b.tr, CheckRedirect: noRedirects}
	if o.ServerURL == "" && len(o.ServerURLs) == 0 {
		var base string
		base, err = discover(ctx, o.Discovery, o.TLSConfig)
		b.srv.list = []string{base}
	} else {
		err = b.connectAny(ctx, append([]string{o.ServerURL}, o.ServerURLs...))
	}
	if err != nil {
		b.tr.CloseIdleConnections()
		return nil, err
	}
	return &remoteSource{b: b}, nil
}

// get sends a GET of path with the query q, retried as the client's
// reads are, and decodes the answer into resp.
func (s *remoteSource) get(ctx context.Context, path string, q url.Values, resp any) error {
	return s.b.do(ctx, http.MethodGet, "", path+"?"+q.Encode(), "", nil, resp)
}

func (s *remoteSource) list(ctx context.Context, archived bool) ([]string, error) {
	var l wire.ViewList
	err := s.get(ctx, wire.PathViewOperations, url.Values{"archived": {strconv.FormatBool(archived)}}, &l)
	return l.Operations, err
}

func (s *remoteSource) state(ctx context.Context, id string) (*store.Data, error) {
	var raw json.RawMessage
	if err := s.get(ctx, wire.PathViewDocument, url.Values{"operationId": {id}}, &raw); err != nil {
		return nil, err
	}
	d, err := decodeState(raw)
	if err != nil {
		return nil, &CorruptError{Path: wire.PathViewDocument, Err: err}
	}
	return d, nil
}

func (s *remoteSource) log(ctx context.Context, id string, debug bool) ([]byte, error) {
	var l wire.ViewLog
	err := s.get(ctx, wire.PathViewLog, url.Values{"operationId": {id}, "debug": {strconv.FormatBool(debug)}}, &l)
	return []byte(l.Log), err
}

func (s *remoteSource) abort(ctx context.Context, id string, by participant) (*store.Data, error) {
	set := true
	req := &wire.AbortRequest{Participant: part(by), Position: at(view{}), OperationID: id, Value: &set}
	nv, _, err := s.b.tail(ctx, wire.PathAbort, view{}, req)
	return nv.d, err
}

func (s *remoteSource) prune(context.Context, int) (int, int, error) {
	return 0, 0, errors.New("ledger: a ledger server's archive is pruned on its directory, not through the server")
}

func (s *remoteSource) close() error { return s.b.close() }

// watch follows the stream of id: the first connection is made before it
// returns (so that an unknown operation is an error), later ones after a
// drop, with backoff, from the last position received.
func (s *remoteSource) watch(ctx context.Context, id string) (<-chan struct{}, error) {
	sv := &streamView{}
	streamPath := func() string {
		sv.mu.Lock()
		defer sv.mu.Unlock()
		q := url.Values{"operationId": {id}, "after": {strconv.FormatUint(uint64(sv.v.rev), 10)}}
		return wire.PathStream + "?" + q.Encode()
	}
	res, err := s.openEvents(ctx, streamPath())
	if err != nil {
		return nil, err
	}
	ch := make(chan struct{}, 1)
	go func() {
		defer close(ch)
		s.follow(ctx, id, res, streamPath, func(res *http.Response) (bool, bool, error) {
			return s.b.readEvents(res, sv, ch)
		})
	}()
	return ch, nil
}

// watchList follows wire.PathViewEvents as watch follows a stream.
func (s *remoteSource) watchList(ctx context.Context) (<-chan struct{}, error) {
	path := func() string { return wire.PathViewEvents }
	res, err := s.openEvents(ctx, path())
	if err != nil {
		return nil, err
	}
	ch := make(chan struct{}, 1)
	go func() {
		defer close(ch)
		first := true
		s.follow(ctx, "", res, path, func(res *http.Response) (bool, bool, error) {
			if !first {
				select { // what changed while the stream was down
				case ch <- struct{}{}:
				default:
				}
			}
			first = false
			return readChanges(res.Body, ch)
		})
	}()
	return ch, nil
}

// follow reads the events of res with read until the stream ends, then
// opens path() again, with backoff, until ctx ends, read reports the end
// (an archived operation) or the server refuses.
func (s *remoteSource) follow(ctx context.Context, id string, res *http.Response, path func() string,
	read func(*http.Response) (progressed, done bool, err error)) {
	pause := s.b.retry.Backoff
	for {
		progressed, done, err := read(res)
		res.Body.Close()
		if done || ctx.Err() != nil {
			return
		}
		if progressed {
			pause = s.b.retry.Backoff
		}
		for {
			wait := jitter(pause)
			logReconnect(s.b.log, id, wait, err)
			t := time.NewTimer(wait)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return
			}
			pause = min(2*pause, s.b.retry.MaxBackoff)
			if res, err = s.openEvents(ctx, path()); err == nil {
				break
			}
			var re *RemoteError
			if ctx.Err() != nil || errors.As(err, &re) && re.StatusCode < 500 || !errors.As(err, &re) && !isConnError(err) {
				return // refused for good: unknown, archived, unauthorized
			}
		}
	}
}

func isConnError(err error) bool {
	var ce *connError
	return errors.As(err, &ce)
}

// openEvents opens a stream of server-sent events at path.
func (s *remoteSource) openEvents(ctx context.Context, path string) (*http.Response, error) {
	base, _ := s.b.srv.current()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+path, nil)
	if err != nil {
		return nil, fmt.Errorf("ledger: %w", err)
	}
	req.Header.Set("Accept", "text/event-stream")
	s.b.authorize(req)
	res, err := s.b.hc.Do(req)
	if err != nil {
		return nil, &connError{req.URL.Path, err}
	}
	ct, _, _ := mime.ParseMediaType(res.Header.Get("Content-Type"))
	if res.StatusCode == http.StatusOK && ct == "text/event-stream" {
		return res, nil
	}
	defer res.Body.Close()
	var raw bytes.Buffer
	raw.ReadFrom(io.LimitReader(res.Body, 4096))
	if res.StatusCode == http.StatusOK {
		return nil, fmt.Errorf("ledger: %s: the server answered %s, not a stream", req.URL.Path, ct)
	}
	return nil, remoteError(res.StatusCode, raw.Bytes())
}

// readChanges reads the events of wire.PathViewEvents and wakes wake at
// each, until the stream ends.
func readChanges(body io.Reader, wake chan<- struct{}) (progressed, done bool, err error) {
	sc := bufio.NewScanner(body)
	for sc.Scan() {
		if sc.Text() != "event: change" {
			continue
		}
		progressed = true
		select {
		case wake <- struct{}{}:
		default:
		}
	}
	if err = sc.Err(); err == nil {
		err = io.EOF
	}
	return progressed, false, err
}
