package ledger

import (
	"context"
	"errors"
	"maps"
	"net/http"
	"os"
	"time"

	"github.com/google/uuid"

	"github.com/tomdist/ledger/internal/store"
	"github.com/tomdist/ledger/internal/wire"
	"github.com/tomdist/ledger/journal"
)

// route is one endpoint.
type route struct {
	get    bool // GET (and HEAD) rather than POST
	public bool // no token needed
	serve  func(s *Server, c *call) (reply, error)
	// stream, when set, serves the request itself (a long-lived
	// response) instead of serve.
	stream func(s *Server, w *respWriter, r *http.Request)
}

// call is one request being served.
type call struct {
	ctx context.Context
	r   *http.Request
	key requestKey // the Idempotency-Key, if any, and who sent it
}

// reply is a response body: a value for encoding/json, or rawJSON.
type reply any

// rawJSON is a response body that is already JSON.
type rawJSON []byte

// shape is what a request without a position (a Dart client) gets back.
type shape int

const (
	shapeOK   shape = iota // {"success":true}
	shapeData              // {"success":true,"data":<state>}
)

// routes are the endpoints by path. Files of the package that serve more
// (the dashboard, metrics) add theirs in an init function of their own.
var routes = make(map[string]route)

func init() {
	maps.Copy(routes, map[string]route{
		wire.PathHealth: {get: true, public: true, serve: (*Server).health},
		wire.PathStatus: {get: true, public: true, serve: (*Server).status},
		wire.PathStream: {get: true, stream: (*Server).stream},

		wire.PathCreate: {serve: endpoint((*Server).create)},
		wire.PathJoin: {serve: endpoint(func(s *Server, c *call, q *wire.OperationRequest) (reply, error) {
			return s.change(c, q.OperationID, q.Position, joinOp{who: remote(q.Participant)}, shapeData)
		})},
		wire.PathLeave: {serve: endpoint(func(s *Server, c *call, q *wire.OperationRequest) (reply, error) {
			return s.change(c, q.OperationID, q.Position, leaveOp{who: remote(q.Participant)}, shapeOK)
		})},
		wire.PathComplete: {serve: endpoint(func(s *Server, c *call, q *wire.OperationRequest) (reply, error) {
			return s.change(c, q.OperationID, q.Position, completeOp{who: remote(q.Participant)}, shapeData)
		})},
		wire.PathHeartbeat: {serve: endpoint((*Server).heartbeat)},
		wire.PathState: {serve: endpoint(func(s *Server, c *call, q *wire.OperationRequest) (reply, error) {
			return s.read(c, q.OperationID, q.Position)
		})},
		wire.PathAbort: {serve: endpoint(func(s *Server, c *call, q *wire.AbortRequest) (reply, error) {
			ch := abortOp{who: remote(q.Participant), aborted: q.Value == nil || *q.Value}
			return s.change(c, q.OperationID, q.Position, ch, shapeData)
		})},
		wire.PathLog: {serve: endpoint(func(s *Server, c *call, q *wire.LogRequest) (reply, error) {
			level, _ := wire.ParseLevel(q.Level)
			ch := logOp{who: remote(q.Participant), level: LogLevel(level), msg: q.Message}
			return s.change(c, q.OperationID, q.Position, ch, shapeOK)
		})},
		wire.PathCrash: {serve: endpoint(func(s *Server, c *call, q *wire.CrashRequest) (reply, error) {
			ch := crashOp{who: remote(q.Participant), victim: remote(q.Victim)}
			if q.Seen != nil {
				ch.seen = *q.Seen
			}
			return s.change(c, q.OperationID, q.Position, ch, shapeData)
		})},
		wire.PathCleanedUp: {serve: endpoint(func(s *Server, c *call, q *wire.OperationRequest) (reply, error) {
			return s.change(c, q.OperationID, q.Position, cleanedUpOp{who: remote(q.Participant)}, shapeData)
		})},
		wire.PathFinish: {serve: endpoint(func(s *Server, c *call, q *wire.OperationRequest) (reply, error) {
			return s.change(c, q.OperationID, q.Position, finishCleanupOp{who: remote(q.Participant)}, shapeData)
		})},

		wire.PathCallStart:       {serve: endpoint(startFrame(frameCall))},
		wire.PathCallFrameCreate: {serve: endpoint(startFrame(frameRaw))},
		wire.PathCallEnd:         {serve: endpoint(endFrame(frameCall))},
		wire.PathCallFrameDelete: {serve: endpoint(endFrame(frameRaw))},
		wire.PathCallFail: {serve: endpoint(func(s *Server, c *call, q *wire.CallFailRequest) (reply, error) {
			ch := failFrameOp{who: remote(q.Participant), callID: q.CallID, reason: q.Error, stack: q.Stack}
			return s.change(c, q.OperationID, q.Position, ch, shapeData)
		})},

		wire.PathTempRegister: {serve: endpoint(func(s *Server, c *call, q *wire.TempRequest) (reply, error) {
			return s.change(c, q.OperationID, q.Position, tempOp{who: remote(q.Participant), path: q.Path}, shapeOK)
		})},
		wire.PathTempUnregister: {serve: endpoint(func(s *Server, c *call, q *wire.TempRequest) (reply, error) {
			return s.change(c, q.OperationID, q.Position, tempOp{who: remote(q.Participant), path: q.Path, unregister: true}, shapeOK)
		})},
	})
}

// startFrame serves /call/start (kind frameCall, or frameSpawned when the
// request says so) and /callframe/create (frameRaw). An absent failOnCrash
// is true for a call, as in Dart, and false for a raw frame, as
// Operation.CreateCallFrame writes it.
func startFrame(kind frameKind) func(*Server, *call, *wire.CallStartRequest) (reply, error) {
	return func(s *Server, c *call, q *wire.CallStartRequest) (reply, error) {
		f := frameSpec{CallID: q.CallID, Description: q.Description, FailOnCrash: kind != frameRaw, Kind: kind}
		if q.FailOnCrash != nil {
			f.FailOnCrash = *q.FailOnCrash
		}
		if kind == frameCall && q.Spawned {
			f.Kind = frameSpawned
		}
		return s.change(c, q.OperationID, q.Position, addFrameOp{who: remote(q.Participant), spec: f}, shapeOK)
	}
}

// endFrame serves /call/end and /callframe/delete.
func endFrame(kind frameKind) func(*Server, *call, *wire.CallEndRequest) (reply, error) {
	return func(s *Server, c *call, q *wire.CallEndRequest) (reply, error) {
		k := kind
		if kind == frameCall && q.Spawned {
			k = frameSpawned
		}
		return s.change(c, q.OperationID, q.Position, removeFrameOp{who: remote(q.Participant), callID: q.CallID, kind: k}, shapeOK)
	}
}

// remote returns the participant a request names: one that takes part
// through this server.
func remote(p wire.Participant) participant {
	return participant{
		ID: p.ParticipantID, PID: p.ParticipantPID, Host: p.Host,
		Interval: msDuration(p.HeartbeatIntervalMs), Stale: msDuration(p.StaleThresholdMs),
		viaServer: true,
	}
}

// sweeper is the participant the server acts as: in its orphan sweep and
// in the verdicts on clients whose stream dropped. Its host is empty,
// which no participant's is, so the server never deletes the temp
// resources that clients named.
func sweeper() participant {
	return participant{ID: "ledger-server", PID: os.Getpid(), Host: ""}
}

// checkKey checks an Idempotency-Key: a UUID, in any of its forms.
func checkKey(key string) error {
	if _, err := uuid.Parse(key); err != nil || len(key) > 64 {
		return badRequest("header %s: not a UUID", wire.HeaderIdempotencyKey)
	}
	return nil
}

// create serves /operation/create. A create sent again with the key of
// one that succeeded answers with it.
func (s *Server) create(c *call, q *wire.CreateRequest) (reply, error) {
	ch := createOp{id: q.OperationID, who: remote(q.Participant), description: q.Description}
	co := s.cache.get(q.OperationID)
	defer s.cache.put(co)
	v, err := s.b.createKeyed(c.ctx, ch, c.key)
	if err != nil && c.key.key != "" && errors.Is(err, store.ErrExists) {
		// Made before, under this key? Then this is its answer.
		nv, tail, rerr := s.b.readTail(c.ctx, q.OperationID, view{})
		if rerr == nil && made(nv.d, c.key) {
			co.take(view{}, tail, nv)
			return s.answer(co, q.Position, outcome{}, shapeData), nil
		}
	}
	if err != nil {
		return nil, err
	}
	co.take(view{}, journal.Tail{}, v)
	return s.answer(co, q.Position, outcome{}, shapeData), nil
}

// change carries out ch on operation id for a client at position pos.
func (s *Server) change(c *call, id string, pos wire.Position, ch change, sh shape) (reply, error) {
	co := s.cache.get(id)
	defer s.cache.put(co)
	if made(co.view().d, c.key) {
		return s.answer(co, pos, outcome{}, sh), nil
	}
	v := co.view()
	nv, tail, out, err := s.b.applyKeyed(c.ctx, id, v, ch, c.key)
	co.take(v, tail, nv)
	if err != nil {
		return nil, err
	}
	if crash, ok := ch.(crashOp); ok && out.crashed {
		s.verdict("client", id, crash.victim.key())
	}
	return s.answer(co, pos, out, sh), nil
}

// read serves /operation/state, with the vitals of every member: their
// beats are in the state a Dart client gets.
func (s *Server) read(c *call, id string, pos wire.Position) (reply, error) {
	co := s.cache.get(id)
	defer s.cache.put(co)
	if err := s.catchUp(c.ctx, id, co); err != nil {
		return nil, err
	}
	vitals, err := s.b.s.Vitals(c.ctx, id)
	if err != nil {
		return nil, storeError(err)
	}
	return s.answerWithVitals(co, pos, vitals), nil
}

// answerWithVitals is answer for a state with beats: the Dart shape holds
// the state with the members' latest beats, a tail holds the vitals.
func (s *Server) answerWithVitals(co *cachedOp, pos wire.Position, vitals []journal.Vital) reply {
	if pos.After == nil {
		b := make([]byte, 0, 40)
		b = append(b, `{"success":true,"data":`...)
		b = append(b, store.Encode(withBeats(co.view().d, vitals))...)
		return rawJSON(append(b, '}'))
	}
	t := co.tailAfter(journal.Rev(*pos.After))
	t.Vitals = wireVitals(vitals)
	return t
}

// catchUp brings the cached view of id up to the store's.
func (s *Server) catchUp(ctx context.Context, id string, co *cachedOp) error {
	v := co.view()
	nv, tail, err := s.b.readTail(ctx, id, v)
	if err != nil {
		return err
	}
	co.take(v, tail, nv)
	return nil
}

// heartbeat serves /operation/heartbeat: the beat of a client that is a
// participant of the operation (in any state), recorded by the store, and
// the vitals of every member.
func (s *Server) heartbeat(c *call, q *wire.OperationRequest) (reply, error) {
	who := remote(q.Participant)
	co := s.cache.get(q.OperationID)
	defer s.cache.put(co)
	if err := s.catchUp(c.ctx, q.OperationID, co); err != nil {
		return nil, err
	}
	v := co.view()
	if v.d.Finished() {
		return nil, finished(v.d)
	}
	if v.d.Participant(who.ID, who.Host, who.PID) < 0 {
		// Each beat is a file of the store: only the operation's own
		// participants may leave one.
		return nil, &httpError{http.StatusConflict, wire.CodeNotParticipant,
			"ledger: " + who.key() + " is not a participant of " + q.OperationID}
	}
	if err := s.b.s.Beat(c.ctx, q.OperationID, who.member(who.Stale)); err != nil {
		return nil, storeError(err)
	}
	vitals, err := s.b.s.Vitals(c.ctx, q.OperationID)
	if err != nil {
		return nil, storeError(err)
	}
	return s.answerWithVitals(co, q.Position, vitals), nil
}

func wireVitals(vs []journal.Vital) []wire.Vital {
	out := make([]wire.Vital, len(vs))
	for i, v := range vs {
		out[i] = wire.Vital{
			ParticipantID: v.ID, ParticipantPID: v.PID, Host: v.Host, Held: v.Held,
			Beat: store.Time{Time: v.Beat}, TTLms: v.TTL.Milliseconds(),
		}
	}
	return out
}

// answer is the reply to a client at position pos: the tail after it, or
// for a client without a position, the shape its route has in Dart.
func (s *Server) answer(co *cachedOp, pos wire.Position, out outcome, sh shape) reply {
	if pos.After == nil {
		if sh == shapeOK {
			return wire.OK{Success: true}
		}
		v := co.view()
		b := make([]byte, 0, 40)
		b = append(b, `{"success":true,"data":`...)
		b = append(b, store.Encode(v.d)...)
		return rawJSON(append(b, '}'))
	}
	t := co.tailAfter(journal.Rev(*pos.After))
	t.Crashed = out.crashed
	return t
}

// msDuration is a duration given in milliseconds; zero stays zero.
func msDuration(ms int) time.Duration { return time.Duration(ms) * time.Millisecond }
