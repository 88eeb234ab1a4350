package ledger

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/tomdist/ledger/internal/wire"
	"github.com/tomdist/ledger/journal"
)

// Timings of the stream.
const (
	streamPing           = 15 * time.Second // a comment line while nothing happens, for proxies
	DefaultStreamGrace   = time.Second      // ServerOptions.StreamGrace
	streamVerdictTimeout = 10 * time.Second
)

// streamWriteTimeout bounds the write of one event (or ping) of a
// stream: a client that stops reading fills the connection's buffers,
// and without a deadline the write, the stream's goroutine and its
// connection would wait for it for ever. Such a stream is dropped, as if
// the client had gone. A variable for tests.
var streamWriteTimeout = 2 * streamPing

// stream serves GET /operation/stream: the changes of an operation as
// server-sent events, woken by the store's watch, until the client goes
// or the operation is archived. A stream that names its participant
// (participantId, participantPid, host) is also its proof of life: when
// it drops and no stream of the participant comes back within
// ServerOptions.StreamGrace, and the participant has not left, the server
// declares it crashed.
func (s *Server) stream(w *respWriter, r *http.Request) {
	q := r.URL.Query()
	id := q.Get("operationId")
	if err := checkOperationID(id); err != nil {
		w.fail(s.mapError(err))
		return
	}
	var after uint64
	if a := q.Get("after"); a != "" {
		n, err := strconv.ParseUint(a, 10, 64)
		if err != nil {
			w.fail(s.mapError(badRequest("query after: not a position")))
			return
		}
		after = n
	}
	who, named, err := streamParticipant(q.Get("participantId"), q.Get("participantPid"), q.Get("host"))
	if err != nil {
		w.fail(s.mapError(err))
		return
	}
	if err := s.ready(); err != nil {
		w.fail(s.mapError(err))
		return
	}
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	defer context.AfterFunc(s.streams, cancel)()
	wake, err := s.b.watch(ctx, id)
	if err != nil {
		w.fail(s.mapError(err))
		return
	}
	co := s.cache.get(id)
	defer s.cache.put(co)
	if err := s.catchUp(ctx, id, co); err != nil {
		w.fail(s.mapError(err))
		return
	}
	rc := http.NewResponseController(w.w)
	// The stream lives as long as the client wants it; each write has a
	// deadline of its own (streamWrite).
	rc.SetWriteDeadline(time.Time{})
	h := w.w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	w.status = http.StatusOK
	w.w.WriteHeader(http.StatusOK)
	if named {
		s.live.opened(id, who)
		defer s.live.closed(id, who)
	}
	s.pushTails(ctx, w.w, rc, id, co, wake, after)
}

// pushTails writes the tails of the journal of id after position pos as
// they come, until ctx ends or the operation is archived.
func (s *Server) pushTails(ctx context.Context, w http.ResponseWriter, rc *http.ResponseController, id string, co *cachedOp, wake <-chan struct{}, pos uint64) {
	ping := time.NewTicker(streamPing)
	defer ping.Stop()
	first := true
	for {
		t := co.tailAfter(journalRev(pos))
		if first || len(t.Records) > 0 || t.Snapshot != nil || t.Archived {
			b, err := json.Marshal(t)
			if err != nil {
				return
			}
			if !streamWrite(w, rc, append(append([]byte("event: tail\ndata: "), b...), "\n\n"...)) {
				return
			}
			pos, first = t.Rev, false
		}
		if t.Archived {
			return
		}
		select {
		case <-ctx.Done():
			return
		case _, ok := <-wake:
			if !ok || s.catchUp(ctx, id, co) != nil {
				return
			}
		case <-ping.C:
			if !streamWrite(w, rc, []byte(": ping\n\n")) {
				return
			}
		}
	}
}

// streamWrite writes and flushes b within streamWriteTimeout (where the
// connection takes deadlines), and reports whether it did.
func streamWrite(w http.ResponseWriter, rc *http.ResponseController, b []byte) bool {
	if err := rc.SetWriteDeadline(time.Now().Add(streamWriteTimeout)); err != nil && !errors.Is(err, http.ErrNotSupported) {
		return false
	}
	if _, err := w.Write(b); err != nil {
		return false
	}
	return rc.Flush() == nil
}

// streamParticipant returns the participant a stream names, if any.
func streamParticipant(id, pid, host string) (participant, bool, error) {
	if id == "" && pid == "" && host == "" {
		return participant{}, false, nil
	}
	n, err := strconv.Atoi(pid)
	if err != nil {
		return participant{}, false, badRequest("query participantPid: not a number")
	}
	p := wire.Participant{ParticipantID: id, ParticipantPID: n, Host: host}
	if err := p.Validate(); err != nil {
		return participant{}, false, err
	}
	return remote(p), true, nil
}

// streamLiveness counts the open streams of each participant, and
// declares crashed a participant whose last stream dropped and did not
// come back within the grace.
type streamLiveness struct {
	s     *Server
	grace time.Duration

	mu      sync.Mutex // guards streams, done
	streams map[string]*streamCount
	done    bool
	wg      sync.WaitGroup // verdicts in progress
}

type streamCount struct {
	open  int
	timer *time.Timer // set while the grace runs
}

func newStreamLiveness(s *Server) *streamLiveness {
	grace := s.opts.StreamGrace
	if grace == 0 {
		grace = DefaultStreamGrace
	}
	return &streamLiveness{s: s, grace: grace, streams: make(map[string]*streamCount)}
}

func streamKey(id string, who participant) string { return id + " " + who.key() }

func (l *streamLiveness) opened(id string, who participant) {
	l.mu.Lock()
	defer l.mu.Unlock()
	k := streamKey(id, who)
	c := l.streams[k]
	if c == nil {
		c = &streamCount{}
		l.streams[k] = c
	}
	c.open++
	if c.timer != nil {
		c.timer.Stop()
		c.timer = nil
	}
}

func (l *streamLiveness) closed(id string, who participant) {
	l.mu.Lock()
	defer l.mu.Unlock()
	k := streamKey(id, who)
	c := l.streams[k]
	if c == nil {
		return
	}
	c.open--
	if c.open > 0 || l.done {
		if c.open <= 0 {
			delete(l.streams, k)
		}
		return
	}
	c.timer = time.AfterFunc(l.grace, func() { l.expire(id, who, c) })
}

// expire declares who crashed if it has no stream again and has not left.
func (l *streamLiveness) expire(id string, who participant, c *streamCount) {
	l.mu.Lock()
	k := streamKey(id, who)
	if l.done || l.streams[k] != c || c.open > 0 {
		l.mu.Unlock()
		return
	}
	delete(l.streams, k)
	l.wg.Add(1)
	l.mu.Unlock()
	defer l.wg.Done()
	ctx, cancel := context.WithTimeout(context.Background(), streamVerdictTimeout)
	defer cancel()
	co := l.s.cache.get(id)
	defer l.s.cache.put(co)
	v := co.view()
	nv, tail, out, _ := l.s.b.applyKeyed(ctx, id, v, crashOp{who: sweeper(), victim: who}, requestKey{})
	co.take(v, tail, nv)
	if out.crashed {
		l.s.verdict("stream", id, who.key())
	}
}

// stop stops the graces and waits for the verdicts in progress.
func (l *streamLiveness) stop() {
	l.mu.Lock()
	l.done = true
	for k, c := range l.streams {
		if c.timer != nil {
			c.timer.Stop()
		}
		delete(l.streams, k)
	}
	l.mu.Unlock()
	l.wg.Wait()
}

func journalRev(n uint64) journal.Rev { return journal.Rev(n) }
