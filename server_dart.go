package ledger

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"maps"
	"mime"
	"net"
	"net/http"
	"slices"
	"time"

	"github.com/tomdist/ledger/internal/store"
	"github.com/tomdist/ledger/internal/wire"
	"github.com/tomdist/ledger/journal"
)

// The server serves the Dart RemoteLedgerClient as the Dart LedgerServer
// did (see internal/wire, Dart clients, for the protocol and how its
// requests are told from Go ones; rules_dart.go for whom they act for).

// DartOptions configure how a Server serves Dart clients.
type DartOptions struct {
	// HeartbeatInterval and StaleThreshold are written into the
	// participant record of a Dart client (which does not send its own),
	// and the others judge it by them: it is declared crashed once no
	// heartbeat of it has come for StaleThreshold plus 1.25
	// HeartbeatInterval. Set them to the Dart clients' heartbeatInterval
	// and a threshold above it. Zero means the defaults, 5s (the Dart
	// client's default interval) and 15s.
	HeartbeatInterval, StaleThreshold time.Duration
}

func (o DartOptions) check() error {
	if o.HeartbeatInterval < 0 || o.StaleThreshold < 0 {
		return fmt.Errorf("ledger: ServerOptions.Dart: HeartbeatInterval (%v) and StaleThreshold (%v) must not be negative", o.HeartbeatInterval, o.StaleThreshold)
	}
	return nil
}

// dartRoutes serve the requests of Dart clients, by path: a request to
// one of these paths whose body is a Dart client's (wire.IsDart) is
// served here, any other by its route.
var dartRoutes = make(map[string]func(*Server, *call) (reply, error))

func init() {
	ok := func(view, participant) reply { return wire.OK{Success: true} }
	maps.Copy(dartRoutes, map[string]func(*Server, *call) (reply, error){
		wire.PathCreate:    dartEndpoint((*Server).dartCreate),
		wire.PathJoin:      dartEndpoint((*Server).dartJoin),
		wire.PathHeartbeat: dartEndpoint((*Server).dartHeartbeat),
		wire.PathState:     dartEndpoint((*Server).dartState),
		wire.PathCallStart: dartEndpoint((*Server).dartCallStart),
		wire.PathLeave: dartEndpoint(func(s *Server, c *call, q *wire.DartOperationRequest) (reply, error) {
			return s.dartAct(c, q.OperationID, ok, func(who participant, _ view) change { return leaveOp{who: who} })
		}),
		wire.PathComplete: dartEndpoint(func(s *Server, c *call, q *wire.DartOperationRequest) (reply, error) {
			return s.dartAct(c, q.OperationID, ok, func(who participant, _ view) change { return completeOp{who: who} })
		}),
		wire.PathAbort: dartEndpoint(func(s *Server, c *call, q *wire.DartAbortRequest) (reply, error) {
			aborted := q.Value == nil || *q.Value
			return s.dartAct(c, q.OperationID, ok, func(who participant, _ view) change { return abortOp{who: who, aborted: aborted} })
		}),
		wire.PathLog: dartEndpoint(func(s *Server, c *call, q *wire.DartLogRequest) (reply, error) {
			level := LogInfo
			if q.Level != nil {
				if l, known := wire.ParseLevel(*q.Level); known {
					level = LogLevel(l)
				}
			}
			return s.dartAct(c, q.OperationID, ok, func(who participant, _ view) change {
				return logOp{who: who, level: level, msg: *q.Message}
			})
		}),
		wire.PathCallEnd: dartEndpoint(func(s *Server, c *call, q *wire.DartCallRequest) (reply, error) {
			return s.dartEndFrame(c, q, frameCall, ok)
		}),
		wire.PathCallFail: dartEndpoint(func(s *Server, c *call, q *wire.DartCallFailRequest) (reply, error) {
			reason := "unknown"
			if q.Error != nil {
				reason = *q.Error
			}
			return s.dartAct(c, q.OperationID, ok, func(who participant, _ view) change {
				return dartFailOp{who: who, callID: q.CallID, reason: reason}
			})
		}),
		wire.PathCallFrameCreate: dartEndpoint(func(s *Server, c *call, q *wire.DartCallRequest) (reply, error) {
			// A raw frame of Dart fails on crash (its CallFrame default).
			spec := frameSpec{CallID: q.CallID, FailOnCrash: true, Kind: frameRaw}
			return s.dartAct(c, q.OperationID, dartData(q.CallID), func(who participant, _ view) change {
				return addFrameOp{who: who, spec: spec}
			})
		}),
		wire.PathCallFrameDelete: dartEndpoint(func(s *Server, c *call, q *wire.DartCallRequest) (reply, error) {
			return s.dartEndFrame(c, q, frameRaw, dartData(""))
		}),
	})
}

// dispatch serves a request of route rt: a Dart client's on a path Dart
// has by its Dart route, any other by rt. The body of a POST to such a
// path is read whole first, to tell which it is.
func (s *Server) dispatch(rt route, c *call) (reply, error) {
	dart := dartRoutes[c.r.URL.Path]
	if dart == nil || c.r.Method != http.MethodPost || !jsonBody(c.r) {
		return rt.serve(s, c) // which refuses a body of another type unread
	}
	if c.r.ContentLength > wire.MaxBody {
		return nil, tooLarge()
	}
	body, err := io.ReadAll(c.r.Body)
	if err != nil {
		return nil, decodeError(err)
	}
	c.r.Body = io.NopCloser(bytes.NewReader(body))
	if !wire.IsDart(body) {
		return rt.serve(s, c)
	}
	return dart(s, c)
}

// jsonBody reports whether r declares a JSON body, as decode requires.
func jsonBody(r *http.Request) bool {
	ct, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	return err == nil && ct == "application/json"
}

// dartEndpoint decodes and validates a Dart request of type T, then runs
// fn; failures get the Dart statuses (see dartError). The texts are this
// server's: the Dart client shows them, and looks only at the status.
func dartEndpoint[T any, P interface {
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
		if err := s.ready(); err != nil {
			return nil, err
		}
		rep, err := fn(s, c, q)
		return rep, dartError(err)
	}
}

// dartError gives an error the status the Dart server answers it with:
// an operation it does not know is 404, and so is one that no Dart client
// created or joined (the Dart server knows only those) and one that
// completed (the Dart server forgets it then). Other errors keep the
// statuses of this server (see mapError): missing fields and ids of the
// wrong form are 400, as in Dart.
func dartError(err error) error {
	switch {
	case err == nil, errors.Is(err, ErrOperationNotFound):
		return err
	case errors.Is(err, errDartUnbound):
		return &httpError{http.StatusNotFound, wire.CodeOperationNotFound, err.Error()}
	case errors.Is(err, ErrOperationCompleted):
		return &httpError{http.StatusNotFound, wire.CodeOperationCompleted, err.Error()}
	}
	return err
}

// dartParticipant is the participant a Dart create or join of c names:
// its id, its pid (wire.DartUnknownPID if it gave none), the address of
// the client as its host, and the heartbeat settings of ServerOptions.Dart.
func (s *Server) dartParticipant(c *call, id string, pid *int) participant {
	p := participant{
		ID: id, PID: wire.DartUnknownPID, Host: peerHost(c.r),
		Interval: s.opts.Dart.HeartbeatInterval, Stale: s.opts.Dart.StaleThreshold, viaServer: true,
	}
	if pid != nil && *pid > 0 {
		p.PID = *pid
	}
	return p
}

// peerHost returns the IP address of the client of r.
func peerHost(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil || host == "" {
		return "unknown-peer"
	}
	return host
}

// dartCreate serves a Dart /operation/create: the server chooses the
// operation id, as the Dart server did.
func (s *Server) dartCreate(c *call, q *wire.DartCreateRequest) (reply, error) {
	who := s.dartParticipant(c, q.ParticipantID, q.ParticipantPID)
	ch := createOp{who: who, dart: true}
	if q.Description != nil {
		ch.description = *q.Description
	}
	for try := 0; ; try++ {
		ch.id = store.NewOperationID(who.ID, time.Now())
		co := s.cache.get(ch.id)
		v, err := s.b.createKeyed(c.ctx, ch, requestKey{})
		if err == nil {
			co.take(view{}, journal.Tail{}, v)
		}
		s.cache.put(co)
		if errors.Is(err, store.ErrExists) && try < 3 {
			continue // the random part of the id met another: draw again
		}
		if err != nil {
			return nil, err
		}
		return dartSession(v.d)
	}
}

// dartJoin serves a Dart /operation/join (see dartJoinOp).
func (s *Server) dartJoin(c *call, q *wire.DartJoinRequest) (reply, error) {
	who := s.dartParticipant(c, q.ParticipantID, q.ParticipantPID)
	co := s.cache.get(q.OperationID)
	defer s.cache.put(co)
	v := co.view()
	nv, tail, _, err := s.b.applyKeyed(c.ctx, q.OperationID, v, dartJoinOp{who: who}, requestKey{})
	co.take(v, tail, nv)
	if err != nil {
		return nil, err
	}
	return dartSession(nv.d)
}

// dartSession is the answer to a Dart create or join: the participant d
// is bound to.
func dartSession(d *store.Data) (reply, error) {
	i := dartBound(d)
	if i < 0 {
		return nil, fmt.Errorf("%w: %s is bound to no participant after a Dart create or join", ErrCorruptLedger, d.OperationID)
	}
	p := d.Participants[i]
	return wire.DartSession{
		OperationID: d.OperationID, ParticipantID: p.ParticipantID,
		IsInitiator: p.ParticipantID == d.InitiatorID, SessionID: p.Sessions, StartTime: p.JoinedAt,
	}, nil
}

// dartWho returns the participant that Dart requests on d act for. A
// finished operation is its error (completed: 404, as the Dart server
// forgets a completed one).
func dartWho(d *store.Data) (participant, error) {
	if d == nil {
		return participant{}, ErrOperationNotFound
	}
	i := dartBound(d)
	if i < 0 {
		return participant{}, fmt.Errorf("%w: %s", errDartUnbound, d.OperationID)
	}
	if err := finished(d); err != nil {
		return participant{}, err
	}
	p := &d.Participants[i]
	who := participantOf(p)
	_, who.Stale = settingsOf(p)
	who.viaServer = true
	return who, nil
}

// dartAct carries out the change that mk makes for the participant the
// operation is bound to, seen in view v, and answers with what answer
// makes of the view after it.
func (s *Server) dartAct(c *call, id string, answer func(view, participant) reply, mk func(who participant, v view) change) (reply, error) {
	co := s.cache.get(id)
	defer s.cache.put(co)
	for try := 0; ; try++ {
		if err := s.catchUp(c.ctx, id, co); err != nil {
			return nil, err
		}
		v := co.view()
		who, err := dartWho(v.d)
		if err != nil {
			return nil, err
		}
		nv, tail, _, err := s.b.applyKeyed(c.ctx, id, v, dartOp{key: v.d.DartParticipant, ch: mk(who, v)}, requestKey{})
		co.take(v, tail, nv)
		if errors.Is(err, errDartRebound) && try < 3 {
			continue
		}
		if err != nil {
			return nil, err
		}
		return answer(nv, who), nil
	}
}

// dartCallStart serves a Dart /call/start: the server chooses the call
// id, call_{participantId}_{n}_{4 hex} as in Dart, with n the position
// the change will have in the journal.
func (s *Server) dartCallStart(c *call, q *wire.DartCallStartRequest) (reply, error) {
	spec := frameSpec{FailOnCrash: q.FailOnCrash == nil || *q.FailOnCrash, Kind: frameCall}
	if q.Description != nil {
		spec.Description = *q.Description
	}
	started := func(v view, _ participant) reply {
		r := wire.DartCallStarted{CallID: spec.CallID, StartedAt: store.Now()}
		if i := v.d.Frame(spec.CallID); i >= 0 {
			r.StartedAt = v.d.CallFrames[i].StartTime
		}
		return r
	}
	for try := 0; ; try++ {
		rep, err := s.dartAct(c, q.OperationID, started, func(who participant, v view) change {
			spec.CallID = store.NewCallID(who.ID, int64(v.rev)+1)
			return addFrameOp{who: who, spec: spec}
		})
		if errors.Is(err, ErrCallExists) && try < 3 {
			continue // the random part of the id met another: draw again
		}
		return rep, err
	}
}

// dartEndFrame serves a Dart /call/end and /callframe/delete: the frame
// goes (see dartEndOp).
func (s *Server) dartEndFrame(c *call, q *wire.DartCallRequest, kind frameKind, answer func(view, participant) reply) (reply, error) {
	return s.dartAct(c, q.OperationID, answer, func(who participant, _ view) change {
		return dartEndOp{removeFrameOp{who: who, callID: q.CallID, kind: kind}}
	})
}

// dartData answers a Dart /callframe/create (with the call id) or
// /callframe/delete: the state after it, as Dart's LedgerData.
func dartData(callID string) func(view, participant) reply {
	return func(v view, _ participant) reply {
		return wire.DartFrameReply{Success: true, CallID: callID, Data: store.Encode(v.d)}
	}
}

// dartHeartbeat serves a Dart /operation/heartbeat: the store records the
// beat of the bound participant, as for a Go client through the server,
// and the answer is the Dart one (see wire.DartHeartbeat). A failed
// operation, whose files are archived, answers as the Dart server does
// when its file is gone: success false, with the reason; so does one
// whose bound participant was declared crashed.
func (s *Server) dartHeartbeat(c *call, q *wire.DartOperationRequest) (reply, error) {
	co := s.cache.get(q.OperationID)
	defer s.cache.put(co)
	if err := s.catchUp(c.ctx, q.OperationID, co); err != nil {
		return nil, err
	}
	d := co.view().d
	who, err := dartWho(d)
	var failed *OperationFailedError
	switch {
	case errors.As(err, &failed):
		return wire.DartNoLedger{Reason: failed.Error()}, nil
	case err != nil:
		return nil, err
	case d.Participants[dartBound(d)].State == store.ParticipantCrashed:
		return wire.DartNoLedger{Reason: fmt.Sprintf("ledger: participant %s was declared crashed", who.key())}, nil
	}
	vitals, err := s.b.s.Vitals(c.ctx, q.OperationID)
	if err != nil {
		return nil, storeError(err)
	}
	before := withBeats(d, vitals)
	now := time.Now()
	if err := s.b.s.Beat(c.ctx, q.OperationID, who.member(who.Stale)); err != nil {
		return nil, storeError(err)
	}
	return dartHeartbeatReply(before, who, now), nil
}

// dartHeartbeatReply is the Dart answer to a heartbeat of who at now, on
// the state d as it was before it.
func dartHeartbeatReply(d *store.Data, who participant, now time.Time) wire.DartHeartbeat {
	r := wire.DartHeartbeat{
		Success: true, AbortFlag: d.Aborted, CallFrameCount: len(d.CallFrames), TempResourceCount: len(d.TempResources),
		HeartbeatAgeMs: max(now.Sub(d.LastHeartbeat.Time).Milliseconds(), 0),
		Participants:   []string{}, StaleParticipants: []string{},
	}
	for i := range d.CallFrames {
		f := &d.CallFrames[i]
		r.Participants = append(r.Participants, f.ParticipantID)
		if f.Key() == who.key() {
			continue
		}
		threshold := DefaultStaleThreshold
		if j := d.Participant(f.ParticipantID, f.Host, f.PID); j >= 0 {
			_, threshold = settingsOf(&d.Participants[j])
		}
		if now.Sub(f.LastHeartbeat.Time) > threshold {
			r.StaleParticipants = append(r.StaleParticipants, f.ParticipantID)
		}
	}
	r.IsStale = len(r.StaleParticipants) > 0
	return r
}

// dartState serves a Dart /operation/state. A failed operation answers
// with its state; a completed one is not found, as in Dart.
func (s *Server) dartState(c *call, q *wire.DartOperationRequest) (reply, error) {
	co := s.cache.get(q.OperationID)
	defer s.cache.put(co)
	if err := s.catchUp(c.ctx, q.OperationID, co); err != nil {
		return nil, err
	}
	d := co.view().d
	if d == nil {
		return nil, ErrOperationNotFound
	}
	if dartBound(d) < 0 {
		return nil, fmt.Errorf("%w: %s", errDartUnbound, d.OperationID)
	}
	if d.OperationState == store.StateCompleted {
		return nil, finished(d)
	}
	r := wire.DartState{
		OperationID: d.OperationID, State: d.OperationState, Aborted: d.Aborted,
		CallFrameCount: len(d.CallFrames), Participants: []string{},
	}
	for i := range d.CallFrames {
		if id := d.CallFrames[i].ParticipantID; !slices.Contains(r.Participants, id) {
			r.Participants = append(r.Participants, id)
		}
	}
	return r, nil
}
