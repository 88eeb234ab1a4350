package ledger

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/tomdist/ledger/internal/wire"
)

// A RemoteClient follows each open operation through one stream of
// server-sent events (wire.PathStream): the server pushes every change as
// it happens, and the stream is this participant's proof of life to the
// server. A dropped stream is opened again, with backoff, from the last
// position received. Where streaming does not work (a proxy that buffers
// or refuses it), the client polls the state every Options.LivenessPoll.

// streamView is the view of an operation that its stream keeps.
type streamView struct {
	mu sync.Mutex // guards v
	v  view
}

// streamed returns the view the stream of id keeps, and whether id is
// followed by a stream (or by polling where streaming fails).
func (b *remoteBackend) streamed(id string) (view, bool) {
	b.mu.Lock()
	sv := b.streams[id]
	b.mu.Unlock()
	if sv == nil {
		return view{}, false
	}
	sv.mu.Lock()
	defer sv.mu.Unlock()
	return sv.v, true
}

// watchLoud implements backend: it starts the stream of id, which wakes the
// returned channel at every change it brings, until ctx ends; then the
// channel is closed, once the stream has stopped.
func (b *remoteBackend) watchLoud(ctx context.Context, id string) (<-chan struct{}, error) {
	sv := &streamView{}
	b.mu.Lock()
	b.streams[id] = sv
	b.mu.Unlock()
	ch := make(chan struct{}, 1)
	go func() {
		defer close(ch)
		defer func() {
			b.mu.Lock()
			if b.streams[id] == sv {
				delete(b.streams, id)
			}
			b.mu.Unlock()
		}()
		b.follow(ctx, id, sv, ch)
	}()
	return ch, nil
}

// follow keeps the stream of id open until ctx ends or the operation is
// archived, falling back to polling where streaming fails.
func (b *remoteBackend) follow(ctx context.Context, id string, sv *streamView, wake chan<- struct{}) {
	pause := b.retry.Backoff
	for ctx.Err() == nil {
		progressed, done, err := b.streamOnce(ctx, id, sv, wake)
		if done {
			return
		}
		if errors.Is(err, errNoStreaming) {
			b.log.LogAttrs(ctx, slog.LevelWarn, "ledger: stream unavailable", slog.String("operation", id))
			b.pollState(ctx, id, sv, wake)
			return
		}
		if progressed {
			pause = b.retry.Backoff
		}
		wait := jitter(pause)
		if ctx.Err() == nil {
			logReconnect(b.log, id, wait, err)
		}
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return
		}
		pause = min(2*pause, b.retry.MaxBackoff)
	}
}

// errNoStreaming is a server (or a proxy before it) that does not stream.
var errNoStreaming = errors.New("ledger: the server does not stream")

// streamOnce opens the stream once and reads it until it ends. It reports
// whether an event came, and whether the operation is archived.
func (b *remoteBackend) streamOnce(ctx context.Context, id string, sv *streamView, wake chan<- struct{}) (progressed, done bool, err error) {
	sv.mu.Lock()
	after := uint64(sv.v.rev)
	sv.mu.Unlock()
	q := url.Values{}
	q.Set("operationId", id)
	q.Set("after", strconv.FormatUint(after, 10))
	q.Set("participantId", b.who.ID)
	q.Set("participantPid", strconv.Itoa(b.who.PID))
	q.Set("host", b.who.Host)
	base, i := b.srv.current()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+wire.PathStream+"?"+q.Encode(), nil)
	if err != nil {
		return false, false, err
	}
	req.Header.Set("Accept", "text/event-stream")
	b.authorize(req)
	res, err := b.hc.Do(req)
	if err != nil {
		b.srv.failed(i) // the next try goes to the next server
		return false, false, err
	}
	defer res.Body.Close()
	ct, _, _ := mime.ParseMediaType(res.Header.Get("Content-Type"))
	switch {
	case res.StatusCode == http.StatusOK && ct == "text/event-stream":
	case res.StatusCode == http.StatusNotFound || res.StatusCode == http.StatusMethodNotAllowed ||
		res.StatusCode == http.StatusNotAcceptable || res.StatusCode == http.StatusOK:
		return false, false, errNoStreaming
	default:
		if res.StatusCode == http.StatusServiceUnavailable {
			b.srv.failed(i)
		}
		var raw bytes.Buffer
		raw.ReadFrom(http.MaxBytesReader(nil, res.Body, 4096))
		err := remoteError(res.StatusCode, raw.Bytes())
		var ofe *OperationFailedError
		if errors.As(err, &ofe) || errors.Is(err, ErrOperationNotFound) || errors.Is(err, ErrOperationCompleted) {
			return false, true, err // nothing left to follow; the monitor reads it
		}
		return false, false, err
	}
	return b.readEvents(res, sv, wake)
}

// readEvents reads the events of a stream into sv.
func (b *remoteBackend) readEvents(res *http.Response, sv *streamView, wake chan<- struct{}) (progressed, done bool, err error) {
	r := bufio.NewReaderSize(res.Body, 64<<10)
	var data []byte
	for {
		line, err := r.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			// A long data line: gather it whole.
			head := append([]byte(nil), line...)
			rest, rerr := r.ReadBytes('\n')
			line, err = append(head, rest...), rerr
		}
		if err != nil {
			return progressed, false, err
		}
		line = bytes.TrimRight(line, "\r\n")
		switch {
		case len(line) == 0 && data != nil:
			archived, err := b.takeEvent(sv, data)
			if err != nil {
				return progressed, false, err
			}
			data, progressed = nil, true
			select {
			case wake <- struct{}{}:
			default:
			}
			if archived {
				return true, true, nil
			}
		case bytes.HasPrefix(line, []byte("data:")):
			data = append(data, bytes.TrimPrefix(bytes.TrimPrefix(line, []byte("data:")), []byte(" "))...)
		}
	}
}

// takeEvent folds one event into sv and reports whether the operation is
// archived.
func (b *remoteBackend) takeEvent(sv *streamView, data []byte) (bool, error) {
	var t wire.StreamEvent
	if err := json.Unmarshal(data, &t); err != nil {
		return false, fmt.Errorf("ledger: malformed stream event: %w", err)
	}
	sv.mu.Lock()
	defer sv.mu.Unlock()
	nv, err := foldWire(sv.v, &t)
	if err != nil {
		return false, err
	}
	sv.v = nv
	return nv.done, nil
}

// pollState reads the state every LivenessPoll, for servers that cannot
// stream, until ctx ends or the operation is archived.
func (b *remoteBackend) pollState(ctx context.Context, id string, sv *streamView, wake chan<- struct{}) {
	t := time.NewTicker(b.pollEvery)
	defer t.Stop()
	for {
		sv.mu.Lock()
		v := sv.v
		sv.mu.Unlock()
		req := &wire.OperationRequest{Participant: part(b.who), Position: at(v), OperationID: id}
		if nv, _, err := b.tail(ctx, wire.PathState, v, req); err == nil && v.newer(nv) {
			sv.mu.Lock()
			sv.v = nv
			sv.mu.Unlock()
			select {
			case wake <- struct{}{}:
			default:
			}
			if nv.done {
				return
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
