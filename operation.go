package ledger

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/tomdist/ledger/internal/store"
	"github.com/tomdist/ledger/journal"
)

// LogLevel is the level of a line in the operation log.
type LogLevel int

// Log levels. Debug lines go to {id}.operation.debug.log, the others to
// {id}.operation.log.
const (
	LogDebug LogLevel = iota
	LogInfo
	LogWarning
	LogError
)

// String returns the level as written in the log: DEBUG, INFO, WARNING or
// ERROR.
func (l LogLevel) String() string {
	switch l {
	case LogDebug:
		return "DEBUG"
	case LogInfo:
		return "INFO"
	case LogWarning:
		return "WARNING"
	case LogError:
		return "ERROR"
	}
	return fmt.Sprintf("LEVEL%d", int(l))
}

// OperationCallback receives the events of one session. Every field may be
// nil. Callbacks run on library goroutines, never on the goroutine of the
// method that discovered the event, and never under a file lock. Close
// waits for them, so a callback must not call Close.
type OperationCallback struct {
	// OnHeartbeatSuccess is called after every heartbeat that succeeded.
	OnHeartbeatSuccess func(op *Operation, r HeartbeatResult)
	// OnHeartbeatError is called for every heartbeat problem.
	OnHeartbeatError func(op *Operation, err *HeartbeatError)
	// OnAbort is called once when the operation is aborted, after Aborted
	// has closed.
	OnAbort func(op *Operation)
	// OnFailure is called once when the operation fails, after this
	// process has cleaned up and Failed has closed.
	OnFailure func(op *Operation, info OperationFailedInfo)
}

// trackedCall is the view of Call[T] and SpawnedCall[T] that sessions keep.
type trackedCall interface {
	ID() string
	Description() string
	StartedAt() time.Time
	// operationFailed runs the call's OnOperationFailed and OnCleanup.
	operationFailed(info OperationFailedInfo)
}

// opState is what a process knows of one operation: shared by all of its
// sessions on it.
type opState struct {
	c         *client
	id        string
	initiator bool
	start     time.Time

	// ctx is the parent of every call context of the operation in this
	// process; it is cancelled with the cause that ended the operation.
	ctx    context.Context
	cancel context.CancelCauseFunc

	aborted chan struct{} // closed by abort
	failed  chan struct{} // closed by fail
	lease   journal.Lease // proves this process alive; nil without a leaseBackend
	mon     *monitor

	// abortOnce and failOnce make abort and fail take effect once; a
	// caller that comes second returns only when the first has done
	// what both promise (a monitor that saw the news first, preempted
	// half-way, once let SetAbortFlag return with Aborted still open).
	abortOnce, failOnce sync.Once

	mu          sync.Mutex // guards the fields below
	sessions    map[int]*Operation
	lastSession int
	v           view                 // the latest view of the operation
	failure     *OperationFailedInfo // set once by fail
	ended       error                // ErrOperationCompleted, ErrClosed or ErrSessionLeft: no more use
	calls       map[string]trackedCall
	temps       map[string]string // registered temp path → the temp root it lies below
	callSeq     int64

	// tempMu serialises the registration and unregistration of temp
	// resources, so that the temp registry file (see store.TempList) is
	// written in the order of the changes.
	tempMu sync.Mutex
}

// Operation is one session of this process on an operation: what
// CreateOperation and JoinOperation return. The abort and failure state is
// shared by all sessions of the process on the same operation; calls are
// tracked per session. An Operation is safe for concurrent use.
type Operation struct {
	st      *opState
	session int
	cb      OperationCallback

	mu    sync.Mutex // guards calls, left
	calls map[string]trackedCall
	left  bool
}

// CreateOperation starts an operation with this participant as initiator.
func (c *client) CreateOperation(ctx context.Context, opts CreateOptions) (*Operation, error) {
	id := store.NewOperationID(c.who.ID, time.Now())
	return c.open(ctx, id, opts.Callback, func(ctx context.Context, _ view) (view, error) {
		return c.b.create(ctx, createOp{id: id, who: c.who, description: opts.Description})
	})
}

// JoinOperation joins the operation id. An unknown id is
// ErrOperationNotFound; a completed one ErrOperationCompleted; a failed one
// an *OperationFailedError.
func (c *client) JoinOperation(ctx context.Context, id string, opts JoinOptions) (*Operation, error) {
	if err := checkOperationID(id); err != nil {
		return nil, err
	}
	return c.open(ctx, id, opts.Callback, func(ctx context.Context, v view) (view, error) {
		nv, _, err := c.b.apply(ctx, id, v, joinOp{who: c.who})
		return nv, err
	})
}

// open adds a session to operation id, creating the process's state of it
// on the first session.
func (c *client) open(ctx context.Context, id string, cb OperationCallback, write func(context.Context, view) (view, error)) (*Operation, error) {
	ctx, cancel := c.bound(ctx)
	defer cancel()
	// One open at a time, so that a second session never sees the state
	// of an operation whose first session is still being opened.
	c.openMu.Lock()
	defer c.openMu.Unlock()
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil, ErrClosed
	}
	st := c.ops[id]
	first := st == nil
	if first {
		st = c.newOpState(id)
		c.ops[id] = st
	}
	c.mu.Unlock()

	if first {
		if lb, ok := c.b.(leaseBackend); ok {
			lease, err := lb.hold(ctx, id, c.who, c.opts.StaleThreshold)
			if err != nil {
				c.forget(st)
				return nil, err
			}
			st.lease = lease
		}
	}
	v, err := write(ctx, st.view())
	if err != nil {
		if first {
			st.end(err)
			c.forget(st)
		}
		return nil, err
	}
	st.mu.Lock()
	if first {
		st.initiator = v.d.InitiatorID == c.who.ID
		st.start = v.d.StartTime.Time
		if st.ended == nil {
			Cleanup().addOp(st) // open in the process until st.end
		}
	}
	st.see(v)
	st.lastSession++
	op := &Operation{st: st, session: st.lastSession, cb: cb, calls: make(map[string]trackedCall)}
	st.sessions[op.session] = op
	st.mu.Unlock()
	if first {
		st.startBackground()
	}
	return op, nil
}

func (c *client) newOpState(id string) *opState {
	ctx, cancel := context.WithCancelCause(c.life)
	return &opState{
		c: c, id: id, ctx: ctx, cancel: cancel,
		aborted:  make(chan struct{}),
		failed:   make(chan struct{}),
		sessions: make(map[int]*Operation),
		calls:    make(map[string]trackedCall),
		temps:    make(map[string]string),
	}
}

// forget removes st from the client once no session uses it.
func (c *client) forget(st *opState) {
	c.mu.Lock()
	if c.ops[st.id] == st {
		delete(c.ops, st.id)
	}
	c.mu.Unlock()
}

// see takes in v if it is newer than the view st has. st.mu is held.
func (st *opState) see(v view) {
	if v.d != nil && st.v.newer(v) {
		st.v = v
	}
}

// view returns the latest view of the operation. It may hold lazy
// records (see view.lazy): its state is whole but for other processes'
// frames; wholeView has those too.
func (st *opState) view() view {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.v
}

// wholeView returns the latest view with every record applied, and
// keeps it. A record put off that does not apply is corruption: the view
// is then the state as far as it goes, with the error.
func (st *opState) wholeView() (view, error) {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.wholeViewLocked()
}

// wholeViewLocked is wholeView with st.mu held.
func (st *opState) wholeViewLocked() (view, error) {
	v, err := st.v.full()
	if err != nil {
		return st.v, err
	}
	st.v = v
	return v, nil
}

// apply carries out c for this process and takes in the view after it.
func (st *opState) apply(ctx context.Context, c change) (view, outcome, error) {
	v, out, err := st.c.b.apply(ctx, st.id, st.view(), c)
	st.mu.Lock()
	st.see(v)
	st.mu.Unlock()
	return v, out, err
}

// end makes every handle of st unusable with err, cancels the call
// contexts with err and drops the liveness lock. It returns false if st had
// already ended.
func (st *opState) end(err error) bool {
	st.mu.Lock()
	if st.ended != nil {
		st.mu.Unlock()
		return false
	}
	st.ended = err
	temps := slices.Collect(maps.Keys(st.temps))
	st.mu.Unlock()
	if st.mon != nil {
		st.mon.halt()
	}
	st.cancel(err)
	if st.lease != nil {
		st.lease.Release()
	}
	Cleanup().removeOp(st, temps)
	return true
}

// closeAll settles st for Close, once every goroutine has stopped: the
// sessions leave, or, with calls still running, the process reports itself
// crashed. An operation that already finished needs nothing.
func (st *opState) closeAll(ctx context.Context) error {
	st.mu.Lock()
	// Calls of a failed operation were cleaned up: they are not abandoned.
	ended, running, sessions := st.ended, len(st.calls) > 0 && st.failure == nil, len(st.sessions)
	st.mu.Unlock()
	if ended != nil {
		return nil
	}
	var err error
	if running {
		_, _, err = st.apply(ctx, crashOp{who: st.c.who, victim: st.c.who})
	} else {
		for range sessions {
			if _, _, err = st.apply(ctx, leaveOp{who: st.c.who}); err != nil {
				break
			}
		}
	}
	st.end(ErrClosed)
	if errors.Is(err, ErrOperationFailed) || errors.Is(err, ErrOperationCompleted) {
		err = nil
	}
	return err
}

// usable returns the error that keeps op from being used, if any.
func (op *Operation) usable() error {
	if op == nil {
		return fmt.Errorf("%w: nil *Operation", ErrInvalidArgument)
	}
	op.mu.Lock()
	left := op.left
	op.mu.Unlock()
	if left {
		return ErrSessionLeft
	}
	st := op.st
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.ended
}

// ID returns the operation id.
func (op *Operation) ID() string { return op.st.id }

// ParticipantID returns the id of this participant.
func (op *Operation) ParticipantID() string { return op.st.c.who.ID }

// IsInitiator reports whether this participant created the operation.
func (op *Operation) IsInitiator() bool { return op.st.initiator }

// SessionID returns the number of this session among the sessions of this
// process on the operation, counting from 1.
func (op *Operation) SessionID() int { return op.session }

// StartTime returns when the operation was created.
func (op *Operation) StartTime() time.Time { return op.st.start }

// Elapsed returns the time since the operation was created.
func (op *Operation) Elapsed() time.Duration { return time.Since(op.st.start) }

// Aborted returns a channel that is closed when the operation is aborted.
func (op *Operation) Aborted() <-chan struct{} { return op.st.aborted }

// IsAborted reports whether the operation has been aborted.
func (op *Operation) IsAborted() bool {
	select {
	case <-op.st.aborted:
		return true
	default:
		return false
	}
}

// Failed returns a channel that is closed once the operation has failed
// and this process has cleaned up: the calls that were running heard of
// it (OnOperationFailed, OnCleanup), its temp resources are deleted and
// its frames marked cleaned up. Failure reports the failure before that.
func (op *Operation) Failed() <-chan struct{} { return op.st.failed }

// Failure returns why the operation failed, once this process knows it has:
// as soon as the method that saw the failure returns (Call.Fail, State,
// ...), before its callbacks run and before Failed closes.
func (op *Operation) Failure() (OperationFailedInfo, bool) {
	op.st.mu.Lock()
	defer op.st.mu.Unlock()
	if op.st.failure == nil {
		return OperationFailedInfo{}, false
	}
	return *op.st.failure, true
}

// Context returns a context that is cancelled when the operation ends for
// this process: with cause ErrAborted, an *OperationFailedError,
// ErrOperationCompleted or ErrClosed.
func (op *Operation) Context() context.Context { return op.st.ctx }

// State reads the operation's state from the ledger.
func (op *Operation) State(ctx context.Context) (*Data, error) {
	if err := op.usable(); err != nil {
		return nil, err
	}
	ctx, cancel := op.st.c.bound(ctx)
	defer cancel()
	v, vitals, err := op.st.c.b.state(ctx, op.st.id, op.st.view())
	if err != nil {
		return nil, err
	}
	if v, err = v.full(); err != nil {
		return nil, err
	}
	op.st.observe(v)
	return dataOf(withBeats(v.d, vitals)), nil
}

// CachedData returns the state as last seen by this process (on join, a
// heartbeat or State), without I/O.
func (op *Operation) CachedData() *Data {
	v, _ := op.st.wholeView() // corruption: what is known; the next heartbeat reports it
	return dataOf(v.d)
}

// observe takes in a view read from the ledger: it reacts to abort,
// failure and completion recorded by others.
func (st *opState) observe(v view) {
	st.mu.Lock()
	st.see(v)
	st.mu.Unlock()
	d := v.d
	if d.Aborted {
		st.abort()
	}
	switch d.OperationState {
	case store.StateCleanup, store.StateFailed:
		st.fail(failureInfo(d))
	case store.StateCompleted:
		st.end(fmt.Errorf("%w: %s", ErrOperationCompleted, st.id))
	}
}

// learn takes in what an error answered by the ledger says of the
// operation: that it failed (an *OperationFailedError) or completed.
func (st *opState) learn(err error) {
	var ofe *OperationFailedError
	switch {
	case errors.As(err, &ofe):
		st.fail(ofe.Info)
	case errors.Is(err, ErrOperationCompleted):
		st.end(fmt.Errorf("%w: %s", ErrOperationCompleted, st.id))
	}
}

// Log appends msg to the operation log at the given level.
func (op *Operation) Log(ctx context.Context, level LogLevel, msg string) error {
	if level < LogDebug || level > LogError {
		return fmt.Errorf("%w: log level %d", ErrInvalidArgument, int(level))
	}
	if err := op.usable(); err != nil {
		return err
	}
	ctx, cancel := op.st.c.bound(ctx)
	defer cancel()
	_, _, err := op.st.apply(ctx, logOp{who: op.st.c.who, level: level, msg: msg})
	return err
}

// SetAbortFlag sets (or clears) the abort flag in the ledger. Setting it
// aborts the operation in this process at once (Aborted is closed when
// SetAbortFlag returns; OnAbort runs on a goroutine of the library) and in
// the others as soon as the change reaches them (their store's watch or
// their server's stream wakes them). Clearing it does
// not undo an abort that a process has already seen.
func (op *Operation) SetAbortFlag(ctx context.Context, aborted bool) error {
	if err := op.usable(); err != nil {
		return err
	}
	ctx, cancel := op.st.c.bound(ctx)
	defer cancel()
	v, _, err := op.st.apply(ctx, abortOp{who: op.st.c.who, aborted: aborted})
	if err != nil {
		return err
	}
	op.st.observe(v)
	return nil
}

// CheckAbort reads the abort flag from the ledger, and aborts the operation
// in this process if it is set.
func (op *Operation) CheckAbort(ctx context.Context) (bool, error) {
	d, err := op.State(ctx)
	if err != nil {
		return false, err
	}
	return d.Aborted, nil
}

// TriggerAbort aborts the operation in this process only, without writing
// the ledger: when it returns, Aborted is closed and call contexts are
// cancelled with ErrAborted; OnAbort runs on a goroutine of the library.
// Use SetAbortFlag to abort every participant.
func (op *Operation) TriggerAbort() { op.st.abort() }

// abort aborts the operation in this process, once: the call contexts are
// cancelled with ErrAborted and Aborted closes before abort returns; every
// session's OnAbort runs on a goroutine of the library (see deliver).
func (st *opState) abort() {
	first := false
	st.abortOnce.Do(func() {
		st.cancel(ErrAborted)
		close(st.aborted)
		first = true
	})
	if !first {
		return
	}
	st.deliver(func() {
		for _, op := range st.sessionList() {
			if op.cb.OnAbort != nil {
				op.cb.OnAbort(op)
			}
		}
	})
}

// fail makes the operation failed in this process, once. Before fail
// returns, the failure is recorded (Failure reports it) and the call
// contexts are cancelled with an *OperationFailedError; the rest runs on a
// goroutine of the library (see deliver): cleanUp.
func (st *opState) fail(info OperationFailedInfo) {
	var calls []trackedCall
	first := false
	st.failOnce.Do(func() {
		st.mu.Lock()
		st.failure = &info
		calls = slices.Collect(maps.Values(st.calls))
		st.mu.Unlock()
		st.cancel(&OperationFailedError{Info: info})
		first = true
	})
	if first {
		st.deliver(func() { st.cleanUp(info, calls) })
	}
}

// cleanUp finishes the failure of the operation in this process: every
// call that was running when it failed runs OnOperationFailed and
// OnCleanup, this process's temp resources are deleted and its frames
// marked cleaned up; then Failed closes (so a program that ends on Failed
// ends cleaned up) and every session's OnFailure runs. Callbacks run with
// no lock held and may use the operation.
func (st *opState) cleanUp(info OperationFailedInfo, calls []trackedCall) {
	st.mu.Lock()
	temps := maps.Clone(st.temps)
	st.mu.Unlock()

	for _, call := range calls {
		call.operationFailed(info)
	}
	// This process registered them itself; deepest first, and never
	// through a symbolic link below their root.
	for _, path := range slices.Backward(slices.Sorted(maps.Keys(temps))) {
		_ = removeBelow(temps[path], path, -1) // no one to tell here
	}
	// Tell the coordinator this process is done cleaning up; the
	// operation may already be archived, which is fine.
	ctx, cancel := context.WithTimeout(context.Background(), st.c.opts.LockTimeout)
	st.apply(ctx, cleanedUpOp{who: st.c.who})
	cancel()
	close(st.failed)
	for _, op := range st.sessionList() {
		if op.cb.OnFailure != nil {
			op.cb.OnFailure(op, info)
		}
	}
}

// deliver runs f, the callbacks and the slow work of an abort or a
// failure, on a goroutine of its own that Close waits for: whoever saw the
// event (State, SetAbortFlag, Call.Fail, a spawned call, the monitor)
// never runs other code's callbacks or waits for them. Each event is
// delivered once; abort and failure do not wait for each other. Once Close
// has begun, no goroutine may start, and f runs on the caller's goroutine.
func (st *opState) deliver(f func()) {
	if !st.c.goTracked(f) {
		f()
	}
}

func (st *opState) sessionList() []*Operation {
	st.mu.Lock()
	defer st.mu.Unlock()
	ops := slices.Collect(maps.Values(st.sessions))
	slices.SortFunc(ops, func(a, b *Operation) int { return a.session - b.session })
	return ops
}

// track records a started call in the session and the process.
func (op *Operation) track(call trackedCall) {
	op.mu.Lock()
	op.calls[call.ID()] = call
	op.mu.Unlock()
	op.st.mu.Lock()
	op.st.calls[call.ID()] = call
	op.st.mu.Unlock()
}

// untrack forgets a call that ended.
func (op *Operation) untrack(id string) {
	op.mu.Lock()
	delete(op.calls, id)
	op.mu.Unlock()
	op.st.mu.Lock()
	delete(op.st.calls, id)
	op.st.mu.Unlock()
}

// CallInfo describes a running call of a session.
type CallInfo struct {
	ID          string    // the call id
	Description string    // the description given when the call started
	StartedAt   time.Time // when the call started
	Spawned     bool      // started by SpawnCall (or a worker) rather than StartCall
}

// pending returns the calls of the session, oldest first.
func (op *Operation) pending() []trackedCall {
	op.mu.Lock()
	calls := slices.Collect(maps.Values(op.calls))
	op.mu.Unlock()
	slices.SortFunc(calls, func(a, b trackedCall) int {
		if c := a.StartedAt().Compare(b.StartedAt()); c != 0 {
			return c
		}
		return strings.Compare(a.ID(), b.ID())
	})
	return calls
}

// PendingCalls returns the calls of this session that are still running,
// started by StartCall or SpawnCall, oldest first.
func (op *Operation) PendingCalls() []CallInfo {
	var infos []CallInfo
	for _, c := range op.pending() {
		_, spawned := c.(Spawned)
		infos = append(infos, CallInfo{ID: c.ID(), Description: c.Description(), StartedAt: c.StartedAt(), Spawned: spawned})
	}
	return infos
}

// PendingSpawnedCalls returns the spawned calls of this session that are
// still running, oldest first.
func (op *Operation) PendingSpawnedCalls() []Spawned {
	var calls []Spawned
	for _, c := range op.pending() {
		if s, ok := c.(Spawned); ok {
			calls = append(calls, s)
		}
	}
	return calls
}

// HasPendingCalls reports whether calls of this session are still running.
func (op *Operation) HasPendingCalls() bool { return op.PendingCallCount() > 0 }

// PendingCallCount returns how many calls of this session are still
// running.
func (op *Operation) PendingCallCount() int {
	op.mu.Lock()
	defer op.mu.Unlock()
	return len(op.calls)
}

// nextCallID returns a new call id of this participant.
func (st *opState) nextCallID() string {
	st.mu.Lock()
	st.callSeq++
	n := st.callSeq
	st.mu.Unlock()
	return store.NewCallID(st.c.who.ID, n)
}

// CreateCallFrame adds a raw call frame to the ledger, without a tracked
// call: no log event and no callbacks. DeleteCallFrame removes it.
func (op *Operation) CreateCallFrame(ctx context.Context, callID string) error {
	if err := checkCallID(callID); err != nil {
		return err
	}
	if err := op.usable(); err != nil {
		return err
	}
	ctx, cancel := op.st.c.bound(ctx)
	defer cancel()
	_, _, err := op.st.apply(ctx, addFrameOp{who: op.st.c.who, spec: frameSpec{CallID: callID, Kind: frameRaw}})
	return err
}

// DeleteCallFrame removes a call frame from the ledger.
func (op *Operation) DeleteCallFrame(ctx context.Context, callID string) error {
	if err := checkCallID(callID); err != nil {
		return err
	}
	if err := op.usable(); err != nil {
		return err
	}
	ctx, cancel := op.st.c.bound(ctx)
	defer cancel()
	_, _, err := op.st.apply(ctx, removeFrameOp{who: op.st.c.who, callID: callID, kind: frameRaw})
	return err
}

// RegisterTempResource records path as a temporary file or directory of
// this process: it is deleted when the operation fails, when this process
// is cleaned up after a signal, and, on the local backend, by a survivor
// on this host that runs as the same user when this process crashes (see
// the package doc, Temporary files). Its cleaned absolute form must lie
// below one of Options.TempRoots (else ErrInvalidArgument); it is deleted
// without following a symbolic link below that root.
func (op *Operation) RegisterTempResource(ctx context.Context, path string) error {
	st := op.st
	path, root, err := tempPath(path, st.c.opts.TempRoots)
	if err != nil {
		return err
	}
	if err := op.usable(); err != nil {
		return err
	}
	ctx, cancel := st.c.bound(ctx)
	defer cancel()
	st.tempMu.Lock()
	defer st.tempMu.Unlock()
	// The registry first: a process killed between the two writes leaves
	// a path it asked to register, not one that no survivor may delete.
	if err := st.writeTemps(path, ""); err != nil {
		return st.tempsFailed(ctx, path, err)
	}
	if _, _, err := st.apply(ctx, tempOp{who: st.c.who, path: path}); err != nil {
		st.writeTemps("", "")
		return err
	}
	st.mu.Lock()
	if _, ok := st.temps[path]; !ok && st.ended == nil {
		Cleanup().addTemp(path, root)
	}
	st.temps[path] = root
	st.mu.Unlock()
	return nil
}

// UnregisterTempResource forgets a registered path without deleting it.
func (op *Operation) UnregisterTempResource(ctx context.Context, path string) error {
	st := op.st
	path, err := absTempPath(path)
	if err != nil {
		return err
	}
	if err := op.usable(); err != nil {
		return err
	}
	ctx, cancel := st.c.bound(ctx)
	defer cancel()
	st.tempMu.Lock()
	defer st.tempMu.Unlock()
	// The registry first: no survivor deletes what this process kept.
	if err := st.writeTemps("", path); err != nil {
		return st.tempsFailed(ctx, path, err)
	}
	if _, _, err := st.apply(ctx, tempOp{who: st.c.who, path: path, unregister: true}); err != nil {
		st.writeTemps("", "")
		return err
	}
	st.mu.Lock()
	if _, ok := st.temps[path]; ok && st.ended == nil {
		Cleanup().dropTemp(path)
	}
	delete(st.temps, path)
	st.mu.Unlock()
	return nil
}

// writeTemps writes the temp registry of this process on the local
// backend (nothing on the remote one): the paths of st.temps, with add and
// without drop (either may be empty). The caller holds st.tempMu.
func (st *opState) writeTemps(add, drop string) error {
	reg, ok := st.lease.(tempRecorder)
	if !ok {
		return nil
	}
	st.mu.Lock()
	paths := make([]string, 0, len(st.temps)+1)
	for p := range st.temps {
		if p != drop && p != add {
			paths = append(paths, p)
		}
	}
	st.mu.Unlock()
	if add != "" {
		paths = append(paths, add)
	}
	slices.Sort(paths)
	return reg.WriteTemps(st.c.who.Host, paths)
}

// tempsFailed returns the error of a temp registry that could not be
// written: that of the operation's end if it ended meanwhile (its registry
// went with it), else err.
func (st *opState) tempsFailed(ctx context.Context, path string, err error) error {
	if v, rerr := st.c.b.read(ctx, st.id, st.view()); rerr == nil && v.d != nil {
		if ferr := finished(v.d); ferr != nil {
			return ferr // the monitor takes in the end itself
		}
	}
	return fmt.Errorf("ledger: record temp resource %s: %w", path, err)
}

// tempRecorder is implemented by leases that keep their holder's temp
// registry: the proof a survivor needs to delete temp resources of a
// dead process (see tempCleaner).
type tempRecorder interface {
	WriteTemps(host string, paths []string) error
}

// tempPath checks a temp resource path and makes it absolute, so that it
// is deleted by whichever process cleans up, from whatever directory it is
// in, and returns the first of roots it lies below.
func tempPath(path string, roots []string) (abs, root string, err error) {
	abs, err = absTempPath(path)
	if err != nil {
		return "", "", err
	}
	root, ok := rootOf(roots, abs)
	if !ok {
		return "", "", fmt.Errorf("%w: temp resource path %s is not below Options.TempRoots %q", ErrInvalidArgument, abs, roots)
	}
	return abs, root, nil
}

// absTempPath checks a temp resource path and returns it clean and
// absolute.
func absTempPath(path string) (string, error) {
	if path == "" || strings.ContainsRune(path, 0) {
		return "", fmt.Errorf("%w: temp resource path %q", ErrInvalidArgument, path)
	}
	return filepath.Abs(path)
}

// LeaveOptions configure Leave. The zero value is valid.
type LeaveOptions struct {
	// CancelPendingCalls cancels the session's calls that are still
	// running instead of refusing to leave with ErrPendingCalls.
	CancelPendingCalls bool
}

// Leave ends this session. While calls of the session are still running it
// returns a *PendingCallsError (ErrPendingCalls) naming them, unless
// opts.CancelPendingCalls is set: then the session's spawned calls are
// cancelled and Leave waits until they have ended; if ctx ends first, Leave
// returns its cause and the session stays. Calls of StartCall cannot be
// cancelled; they stay until End or Fail. When the last session of the
// process leaves, the participant is marked left in the ledger.
func (op *Operation) Leave(ctx context.Context, opts LeaveOptions) error {
	if err := op.usable(); err != nil {
		return err
	}
	st := op.st
	ctx, cancel := st.c.bound(ctx)
	defer cancel()
	if err := op.settleCalls(ctx, opts); err != nil {
		return err
	}

	st.mu.Lock()
	delete(st.sessions, op.session)
	last := len(st.sessions) == 0
	st.mu.Unlock()
	_, _, err := st.apply(ctx, leaveOp{who: st.c.who})
	if errors.Is(err, ErrOperationFailed) || errors.Is(err, ErrOperationCompleted) {
		err = nil // nothing left to leave
	}
	if last {
		st.end(ErrSessionLeft)
		st.stopped()
		st.c.forget(st)
	}
	return err
}

// leavingCall is a call that Leave can cancel and wait for.
type leavingCall interface {
	cancelForLeave()
	Done() <-chan struct{}
}

// settleCalls marks the session left once none of its calls keeps it: with
// opts.CancelPendingCalls, the cancellable calls are cancelled and waited
// for; without, any running call is a *PendingCallsError.
func (op *Operation) settleCalls(ctx context.Context, opts LeaveOptions) error {
	// Once the operation has failed, its calls are over: they have been
	// told and cleaned up, and nothing waits for them.
	_, failed := op.Failure()
	for {
		op.mu.Lock()
		if op.left {
			op.mu.Unlock()
			return ErrSessionLeft
		}
		if len(op.calls) > 0 && !opts.CancelPendingCalls && !failed {
			pending := slices.Sorted(maps.Keys(op.calls))
			op.mu.Unlock()
			return &PendingCallsError{CallIDs: pending}
		}
		var running []leavingCall
		for _, c := range op.calls {
			if lc, ok := c.(leavingCall); ok {
				running = append(running, lc)
			}
		}
		if len(running) == 0 {
			op.left = true
			op.mu.Unlock()
			return nil
		}
		op.mu.Unlock()
		for _, c := range running {
			c.cancelForLeave()
		}
		for _, c := range running {
			select {
			case <-c.Done():
			case <-ctx.Done():
				return fmt.Errorf("ledger: Leave: waiting for cancelled calls: %w", context.Cause(ctx))
			}
		}
	}
}

// Complete marks the operation completed and archives it. Only the
// initiator may complete (else ErrNotInitiator). Afterwards every handle
// of the operation returns ErrOperationCompleted.
func (op *Operation) Complete(ctx context.Context) error {
	if err := op.usable(); err != nil {
		return err
	}
	st := op.st
	if !st.initiator {
		return fmt.Errorf("%w: %s", ErrNotInitiator, st.c.who.ID)
	}
	if info, failed := op.Failure(); failed {
		return &OperationFailedError{Info: info}
	}
	ctx, cancel := st.c.bound(ctx)
	defer cancel()
	if _, _, err := st.apply(ctx, completeOp{who: st.c.who}); err != nil {
		return err
	}
	st.end(fmt.Errorf("%w: %s", ErrOperationCompleted, st.id))
	st.stopped()
	st.c.forget(st)
	return nil
}
