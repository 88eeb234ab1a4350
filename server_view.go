package ledger

import (
	"context"
	"errors"
	"maps"
	"net/http"
	"strconv"
	"time"

	"github.com/tomdist/ledger/internal/store"
	"github.com/tomdist/ledger/internal/wire"
	"github.com/tomdist/ledger/journal"
)

// The read-only routes of viewers (wire.PathView*): a Viewer of a server
// (ConnectViewer), hence the ledger command, reads through them. They
// need the token like every route of the protocol.

func init() {
	maps.Copy(routes, map[string]route{
		wire.PathViewOperations: {get: true, serve: (*Server).viewOperations},
		wire.PathViewDocument:   {get: true, serve: (*Server).viewDocument},
		wire.PathViewLog:        {get: true, serve: (*Server).viewLog},
		wire.PathViewEvents:     {get: true, stream: (*Server).viewEvents},
	})
}

// queryBool reads the boolean query parameter name; absent is false.
func queryBool(r *http.Request, name string) (bool, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, badRequest("query %s: not a boolean", name)
	}
	return b, nil
}

// queryID reads the operation id of a viewer's request.
func queryID(r *http.Request) (string, error) {
	id := r.URL.Query().Get("operationId")
	return id, checkOperationID(id)
}

func (s *Server) viewOperations(c *call) (reply, error) {
	archived, err := queryBool(c.r, "archived")
	if err != nil {
		return nil, err
	}
	if err := s.ready(); err != nil {
		return nil, err
	}
	ids, err := s.b.s.List(c.ctx, archived)
	if err != nil {
		return nil, storeError(err)
	}
	if ids == nil {
		ids = []string{}
	}
	return wire.ViewList{Operations: ids}, nil
}

func (s *Server) viewDocument(c *call) (reply, error) {
	id, err := queryID(c.r)
	if err != nil {
		return nil, err
	}
	if err := s.ready(); err != nil {
		return nil, err
	}
	d, _, err := s.viewState(c.ctx, id)
	if err != nil {
		return nil, err
	}
	return rawJSON(store.Encode(d)), nil
}

// viewState returns the state of id, live or archived, with the beats of
// its members, through the server's cache, and its journal position.
func (s *Server) viewState(ctx context.Context, id string) (*store.Data, journal.Rev, error) {
	co := s.cache.get(id)
	defer s.cache.put(co)
	if err := s.catchUp(ctx, id, co); err != nil {
		return nil, 0, err
	}
	vitals, err := s.b.s.Vitals(ctx, id)
	if err != nil && !errors.Is(err, journal.ErrNotFound) {
		return nil, 0, storeError(err)
	}
	v := co.view()
	return withBeats(v.d, vitals), v.rev, nil
}

func (s *Server) viewLog(c *call) (reply, error) {
	id, err := queryID(c.r)
	if err != nil {
		return nil, err
	}
	debug, err := queryBool(c.r, "debug")
	if err != nil {
		return nil, err
	}
	if err := s.ready(); err != nil {
		return nil, err
	}
	b, err := s.b.s.ReadLog(c.ctx, id, debug)
	if err != nil {
		return nil, storeError(err)
	}
	return wire.ViewLog{Log: string(b)}, nil
}

// viewEvents serves wire.PathViewEvents: an event "change" whenever the
// store announces a change of any operation (journal.ListWatcher), until
// the client goes or the server shuts down.
func (s *Server) viewEvents(w *respWriter, r *http.Request) {
	if err := s.ready(); err != nil {
		w.fail(s.mapError(err))
		return
	}
	lw, ok := s.b.s.(journal.ListWatcher)
	if !ok {
		w.fail(s.mapError(&httpError{http.StatusNotImplemented, wire.CodeNotFound, "ledger: this server's store cannot announce new operations"}))
		return
	}
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	defer context.AfterFunc(s.streams, cancel)()
	wake, err := lw.WatchAll(ctx)
	if err != nil {
		w.fail(s.mapError(storeError(err)))
		return
	}
	rc := startEvents(w)
	ping := time.NewTicker(streamPing)
	defer ping.Stop()
	for {
		msg := []byte(": ping\n\n")
		select {
		case <-ctx.Done():
			return
		case _, ok := <-wake:
			if !ok {
				return
			}
			msg = []byte("event: change\ndata: {}\n\n")
		case <-ping.C:
		}
		if _, err := w.w.Write(msg); err != nil || rc.Flush() != nil {
			return
		}
	}
}

// startEvents writes the head of a stream of server-sent events, and a
// first comment so that the client knows it is open.
func startEvents(w *respWriter) *http.ResponseController {
	rc := http.NewResponseController(w.w)
	rc.SetWriteDeadline(time.Time{}) // the stream lives as long as the client wants it
	h := w.w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	w.status = http.StatusOK
	w.w.WriteHeader(http.StatusOK)
	w.w.Write([]byte(": open\n\n"))
	rc.Flush()
	return rc
}
