package ledger

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/tomdist/ledger/internal/dirstore"
	"github.com/tomdist/ledger/journal"
)

// DefaultSignalGrace is the default of Options.SignalGrace.
const DefaultSignalGrace = 5 * time.Second

// CleanupID names a callback registered with a CleanupHandler. The zero
// CleanupID names no callback.
type CleanupID uint64

// CleanupHandler is the process-wide list of what must be undone when the
// process ends early: cleanup callbacks, and the temporary files and
// directories that operations registered with RegisterTempResource. Get it
// with Cleanup.
//
// While at least one operation is open in the process, from the moment
// CreateOperation or JoinOperation returns until the last session leaves,
// the operation completes or its ledger is closed, the handler takes over
// SIGINT and SIGTERM (unless the operation's ledger has
// Options.NoSignalHandler): on the first signal it runs the callbacks for at
// most Options.SignalGrace, deletes the temp resources, reports this
// participant gone in every open operation (its participant record and call
// frames are marked crashed, so the other participants react at once, and a
// call that fails on crash fails the operation), and then lets the process
// die from the same signal, so that a shell sees the usual exit status
// (130 or 143). A second signal during this ends the process at once. Once
// no operation is open, the program's own signal behaviour is back.
// Signals that were ignored when the handler started (such as SIGINT for a
// background job) stay ignored.
//
// On Windows the handler takes os.Interrupt (Ctrl+C, Ctrl+Break) and
// syscall.SIGTERM (the console window closed, logoff, shutdown: Windows
// ends the process about 5 seconds after a close, whatever it does, so a
// SignalGrace beyond that is cut short). A console event cannot be raised
// again for the process alone: after the cleanup the process exits with
// status STATUS_CONTROL_C_EXIT (0xC000013A), as the console's default
// handler would have made it.
//
// A program that handles signals itself sets Options.NoSignalHandler and
// calls Run from its own handler.
//
// A CleanupHandler is safe for concurrent use. Callbacks never run while
// the handler holds a lock, so a callback may call Register, Unregister or
// leave an operation.
type CleanupHandler struct {
	mu     sync.Mutex // guards every field below
	lastID CleanupID
	fns    map[CleanupID]func(context.Context) error
	temps  map[string]tempHold // absolute temp path → its root and the open operations that registered it
	ops    map[*opState]bool   // open operations → whether their ledger lets the handler take signals
	watch  *signalWatch        // the goroutine that receives signals; nil while none are taken
	dying  bool                // a signal is being handled; the process is about to die
}

// tempHold is a registered temp path: the temp root it lies below, and how
// many open operations of this process registered it.
type tempHold struct {
	root string
	n    int
}

// signalWatch is one run of the goroutine that receives signals. Whoever
// sets CleanupHandler.watch to nil stops it: signal.Stop, close stop, wait
// for done.
type signalWatch struct {
	ch   chan os.Signal
	stop chan struct{}
	done chan struct{}
}

var theCleanup = &CleanupHandler{
	fns:   make(map[CleanupID]func(context.Context) error),
	temps: make(map[string]tempHold),
	ops:   make(map[*opState]bool),
}

// Cleanup returns the process-wide CleanupHandler.
func Cleanup() *CleanupHandler { return theCleanup }

// Register adds fn to the callbacks that Run, or the signal handler, runs
// once, newest first. fn receives a context that ends when the caller of
// Run gives up (after a signal, when Options.SignalGrace has passed) and
// should return by then. A nil fn registers nothing and returns the zero
// CleanupID.
func (h *CleanupHandler) Register(fn func(ctx context.Context) error) CleanupID {
	if fn == nil {
		return 0
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.lastID++
	h.fns[h.lastID] = fn
	return h.lastID
}

// Unregister removes the callback id, unless it has run already. Unknown
// ids, and the zero CleanupID, are ignored.
func (h *CleanupHandler) Unregister(id CleanupID) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.fns, id)
}

// Run runs every registered callback, newest first, and then deletes every
// temp resource that an open operation of this process registered (files
// and directories with everything in them, never following a symbolic
// link below the temp root; paths that no longer exist are skipped). It
// does not stop at an error or a panic: the errors of all callbacks (a
// panic becomes a *PanicError) and deletions are returned joined. Each
// callback runs once: Run removes the callbacks it runs, so a second Run
// only runs callbacks registered since. The temp resources stay registered
// until their operations unregister them or end.
//
// Run waits for every callback; ctx is passed to them, and they should
// return when it is done.
func (h *CleanupHandler) Run(ctx context.Context) error {
	return errors.Join(h.runCallbacks(ctx), h.removeTemps())
}

// runCallbacks runs and removes every registered callback, newest first.
func (h *CleanupHandler) runCallbacks(ctx context.Context) error {
	h.mu.Lock()
	fns := h.fns
	h.fns = make(map[CleanupID]func(context.Context) error)
	h.mu.Unlock()

	var errs []error
	for _, id := range slices.Backward(slices.Sorted(maps.Keys(fns))) {
		if err := callCleanup(ctx, fns[id]); err != nil {
			errs = append(errs, fmt.Errorf("ledger: cleanup callback: %w", err))
		}
	}
	return errors.Join(errs...)
}

// callCleanup runs fn, turning a panic into a *PanicError.
func callCleanup(ctx context.Context, fn func(context.Context) error) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = &PanicError{Value: v, Stack: debug.Stack()}
		}
	}()
	return fn(ctx)
}

// removeTemps deletes every registered temp path, deepest first. These
// are this process's own: it registered them itself.
func (h *CleanupHandler) removeTemps() error {
	h.mu.Lock()
	temps := maps.Clone(h.temps)
	h.mu.Unlock()

	var errs []error
	for _, p := range slices.Backward(slices.Sorted(maps.Keys(temps))) {
		if err := removeBelow(temps[p].root, p, -1); err != nil {
			errs = append(errs, fmt.Errorf("ledger: remove temp resource: %w", err))
		}
	}
	return errors.Join(errs...)
}

// tempKey is the form under which path is registered: absolute, so that a
// later change of the working directory cannot make Run delete another
// file.
func tempKey(path string) string {
	if abs, err := filepath.Abs(path); err == nil {
		return abs
	}
	return filepath.Clean(path)
}

// below reports whether path lies below root (not at it), both clean and
// absolute, by their names alone, and returns it relative to root.
func below(root, path string) (string, bool) {
	rel, err := filepath.Rel(root, path)
	if err != nil || rel == "." || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
		return "", false
	}
	return rel, true
}

// rootOf returns the first of roots that path lies below.
func rootOf(roots []string, path string) (string, bool) {
	for _, r := range roots {
		if _, ok := below(r, path); ok {
			return r, true
		}
	}
	return "", false
}

// tempCleaner deletes the temp resources of dead participant processes
// for a LocalLedger, under the rule of the package doc (Temporary files):
// only what a process of this user on this host registered through a
// LocalLedger, as its temp registry proves (see store.TempList), below
// this ledger's temp roots, owned by this user, never through a symbolic
// link. What the ledger lists is never taken for such proof: anyone who
// can write the directory or reach a ledger server can write it. A ledger
// server has no tempCleaner: it deletes nothing.
type tempCleaner struct {
	reg   tempRegistry
	host  string   // this host
	uid   int      // this process's effective user
	roots []string // Options.TempRoots
}

// tempRegistry is implemented by stores that keep the temp registries of
// their participant processes (internal/dirstore).
type tempRegistry interface {
	ReadTemps(id string, m journal.Member) (*dirstore.TempList, error)
	RemoveTemps(id string, m journal.Member)
}

func newTempCleaner(reg tempRegistry, o Options) *tempCleaner {
	return &tempCleaner{reg: reg, host: hostname(), uid: os.Geteuid(), roots: o.TempRoots}
}

// collect returns the paths in the temp registry of process p if a process
// of this user on this host wrote it, and else none. The caller reads it
// before it records p's crash: recording it may archive the operation,
// and the registry with it.
func (c *tempCleaner) collect(id string, p participant) []string {
	if c == nil || p.Host != c.host {
		return nil
	}
	list, err := c.reg.ReadTemps(id, p.member(0))
	if err != nil || list.UID != c.uid || list.Host != c.host {
		return nil
	}
	return list.Paths
}

// remove deletes the paths of process p that collect returned, deepest
// first, each only if it lies below a temp root and belongs to this user,
// and then p's temp registry. A path it refuses or cannot delete stays:
// there is no one to tell.
func (c *tempCleaner) remove(id string, p participant, paths []string) {
	if c == nil || len(paths) == 0 {
		return
	}
	for _, path := range slices.Backward(slices.Sorted(slices.Values(paths))) {
		path = filepath.Clean(path)
		if root, ok := rootOf(c.roots, path); ok && filepath.IsAbs(path) {
			_ = removeBelow(root, path, c.uid)
		}
	}
	c.reg.RemoveTemps(id, p.member(0))
}

// addTemp registers path, below root, for one more operation. The caller
// holds the operation's st.mu and calls addTemp once per operation and
// path.
func (h *CleanupHandler) addTemp(path, root string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	k := tempKey(path)
	t := h.temps[k]
	if t.n == 0 {
		t.root = root
	}
	t.n++
	h.temps[k] = t
}

// dropTemp undoes one addTemp; the path is forgotten when no operation
// holds it any more.
func (h *CleanupHandler) dropTemp(path string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.dropTempLocked(tempKey(path))
}

func (h *CleanupHandler) dropTempLocked(key string) {
	switch t := h.temps[key]; {
	case t.n > 1:
		t.n--
		h.temps[key] = t
	case t.n == 1:
		delete(h.temps, key)
	}
}

// addOp records that st is open in this process, and starts taking
// signals if st's ledger allows it. The caller holds st.mu and st has not
// ended.
func (h *CleanupHandler) addOp(st *opState) {
	h.mu.Lock()
	defer h.mu.Unlock()
	signals := !st.c.opts.NoSignalHandler
	h.ops[st] = signals
	if signals && h.watch == nil && !h.dying {
		h.watch = h.startWatch()
	}
}

// removeOp forgets st, which has ended, and the temp paths it registered.
// When it was the last open operation that lets the handler take signals,
// the signals are given back and the goroutine receiving them is stopped
// and waited for. removeOp is called without st.mu.
func (h *CleanupHandler) removeOp(st *opState, temps []string) {
	h.mu.Lock()
	delete(h.ops, st)
	for _, p := range temps {
		h.dropTempLocked(tempKey(p))
	}
	var w *signalWatch
	if h.watch != nil && !h.dying && !slices.Contains(slices.Collect(maps.Values(h.ops)), true) {
		w = h.watch
		h.watch = nil
		signal.Stop(w.ch)
	}
	h.mu.Unlock()
	if w != nil {
		close(w.stop)
		// If a signal arrived just before Stop, the goroutine is handling
		// it and this waits until the process dies, as it must.
		<-w.done
	}
}

// startWatch takes the handled signals that are not ignored and starts
// the goroutine that receives them. h.mu is held. It returns nil when every
// handled signal is ignored.
func (h *CleanupHandler) startWatch() *signalWatch {
	var sigs []os.Signal
	for _, s := range handledSignals {
		if !signal.Ignored(s) {
			sigs = append(sigs, s)
		}
	}
	if len(sigs) == 0 {
		return nil
	}
	w := &signalWatch{ch: make(chan os.Signal, 2), stop: make(chan struct{}), done: make(chan struct{})}
	signal.Notify(w.ch, sigs...)
	go h.watchLoop(w)
	return w
}

// watchLoop waits for a signal or for the watch to be stopped.
func (h *CleanupHandler) watchLoop(w *signalWatch) {
	defer close(w.done)
	select {
	case sig := <-w.ch:
		h.handleSignal(w, sig)
	case <-w.stop:
		select {
		case sig := <-w.ch:
			passOn(sig)
		default:
		}
	}
}

// handleSignal cleans up after sig and ends the process with it; a second
// signal on w ends it at once. It returns only if w was stopped before
// the signal could be handled.
func (h *CleanupHandler) handleSignal(w *signalWatch, sig os.Signal) {
	ops, grace, ok := h.beginDying(w)
	if !ok {
		passOn(sig)
		return
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := h.shutdown(ops, grace); err != nil {
			// The process is about to die: stderr is the only place left.
			fmt.Fprintf(os.Stderr, "ledger: cleanup after %v: %v\n", sig, err)
		}
	}()
	select {
	case <-done:
	case second := <-w.ch:
		sig = second
	}
	dieFrom(sig)
}

// beginDying marks the handler dying and returns the open operations and
// the grace for the callbacks: the longest Options.SignalGrace of the
// ledgers that let the handler take signals. It returns ok == false if w
// has been stopped: the last operation ended as the signal came.
func (h *CleanupHandler) beginDying(w *signalWatch) (ops []*opState, grace time.Duration, ok bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.watch != w {
		return nil, 0, false
	}
	h.dying = true
	for st, signals := range h.ops {
		if signals {
			grace = max(grace, st.c.opts.SignalGrace)
		}
	}
	if grace == 0 {
		grace = DefaultSignalGrace
	}
	ops = slices.SortedFunc(maps.Keys(h.ops), func(a, b *opState) int { return cmp.Compare(a.id, b.id) })
	return ops, grace, true
}

// shutdown runs the callbacks for at most grace, deletes the temp
// resources and reports this participant gone in every operation of ops.
func (h *CleanupHandler) shutdown(ops []*opState, grace time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	ran := make(chan error, 1)
	go func() { ran <- h.runCallbacks(ctx) }()
	var errs []error
	select {
	case err := <-ran:
		errs = append(errs, err)
	case <-ctx.Done():
		errs = append(errs, fmt.Errorf("ledger: cleanup callbacks still running after Options.SignalGrace (%v)", grace))
	}
	errs = append(errs, h.removeTemps(), reportGone(ops, grace))
	return errors.Join(errs...)
}

// reportGone tells the ledger of every operation in ops, at the same time
// and within d, that this process is gone: its participant record and
// active frames are marked crashed, and the other participants react as
// soon as the change wakes them instead of after the stale threshold. Nothing the ledger
// lists is deleted: the temp resources this process registered itself
// were deleted by removeTemps, and what else the ledger lists in its name
// anyone may have written there.
func reportGone(ops []*opState, d time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	errs := make([]error, len(ops))
	var wg sync.WaitGroup
	for i, st := range ops {
		wg.Go(func() {
			if _, _, err := st.apply(ctx, crashOp{who: st.c.who, victim: st.c.who}); err != nil {
				errs[i] = fmt.Errorf("ledger: report %s gone from %s: %w", st.c.who.ID, st.id, err)
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}
