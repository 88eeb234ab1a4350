package dirstore

import (
	"context"
	"strings"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"
)

// watcher wakes the Watch channels of a Dir: one file system watch on the
// directory, started by the first Watch, whose events are dispatched by
// file name to the operations' subscribers. Where the platform can leave
// appends out of a watch (Linux), the WatchLoud channels have a watch of
// their own that does (see watchLoud), so that quiet changes wake none of
// them; elsewhere they share the first. Where the file system gives no
// events (Options.Poll, or a network file system), a ticker wakes every
// subscriber instead.
type watcher struct {
	d *Dir

	mu      sync.Mutex // guards the fields below
	subs    map[string]map[*sub]struct{}
	started bool
	fsw     *fsnotify.Watcher // nil until a subscriber needs it, or when polling
	loud    func()            // stops the watch of loud changes; nil when there is none
	loudOff bool              // the watch of loud changes ended by itself: the other serves
	poll    *time.Ticker      // nil when using events
	stop    chan struct{}     // closed by close
	wg      sync.WaitGroup    // the dispatching goroutines
	closed  bool
}

// sub is one Watch: a channel with room for one pending wake-up.
type sub struct {
	ch   chan struct{}
	loud bool // only changes that are not quiet are asked for
}

// Watch implements journal.Store.
func (d *Dir) Watch(ctx context.Context, id string) (<-chan struct{}, error) {
	if err := checkID(id); err != nil {
		return nil, err
	}
	return d.watch.add(ctx, id, false)
}

// WatchLoud implements journal.QuietWatcher: a loud change touches the
// journal (see signalLoud), which the watch of loud changes sees, while
// appends are left out of it.
func (d *Dir) WatchLoud(ctx context.Context, id string) (<-chan struct{}, error) {
	if err := checkID(id); err != nil {
		return nil, err
	}
	return d.watch.add(ctx, id, true)
}

func (w *watcher) add(ctx context.Context, id string, loud bool) (<-chan struct{}, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return nil, errClosed
	}
	w.startLocked(loud)
	s := &sub{ch: make(chan struct{}, 1), loud: loud}
	if w.subs == nil {
		w.subs = make(map[string]map[*sub]struct{})
	}
	if w.subs[id] == nil {
		w.subs[id] = make(map[*sub]struct{})
	}
	w.subs[id][s] = struct{}{}
	context.AfterFunc(ctx, func() {
		w.mu.Lock()
		defer w.mu.Unlock()
		if set := w.subs[id]; set != nil {
			if _, ok := set[s]; ok {
				delete(set, s)
				if len(set) == 0 {
					delete(w.subs, id)
				}
				close(s.ch)
			}
		}
	})
	return s.ch, nil
}

// startLocked starts what a subscriber (loud or not) needs: the ticker
// where there are no events, else the watch of the directory, or that of
// its loud changes. w.mu is held.
func (w *watcher) startLocked(loud bool) {
	if !w.started {
		w.started = true
		w.stop = make(chan struct{})
		poll := w.d.opts.Poll
		if poll <= 0 && !eventsDelivered(w.d.path) {
			poll = defaultPoll
		}
		if poll > 0 {
			w.startPollLocked(poll)
		}
	}
	if w.poll != nil {
		return
	}
	if loud && w.loud == nil {
		stop, err := watchLoud(w.d.path, w.wakeLoud, w.wakeAll, w.loudGone)
		if err == nil {
			w.loud = stop
			return
		}
		// No watch of its own (not on this platform, or inotify
		// instances exhausted): the watch of every change serves.
	}
	if (!loud || !w.loudOwnLocked()) && w.fsw == nil {
		fsw, err := fsnotify.NewWatcher()
		if err == nil {
			if err = fsw.Add(w.d.path); err != nil {
				fsw.Close()
			}
		}
		if err != nil {
			// No events to be had (inotify instances exhausted, ...):
			// poll.
			w.startPollLocked(defaultPoll)
			return
		}
		w.fsw = fsw
		w.wg.Add(1)
		go w.eventLoop(fsw)
	}
}

func (w *watcher) startPollLocked(every time.Duration) {
	w.poll = time.NewTicker(every)
	w.wg.Add(1)
	go w.pollLoop(w.poll)
}

// defaultPoll is the polling interval where the file system gives no
// events.
const defaultPoll = 100 * time.Millisecond

func (w *watcher) eventLoop(fsw *fsnotify.Watcher) {
	defer w.wg.Done()
	for {
		select {
		case <-w.stop:
			return
		case ev, ok := <-fsw.Events:
			if !ok {
				return
			}
			name := ev.Name[strings.LastIndexByte(ev.Name, '/')+1:]
			if i := strings.LastIndexByte(name, '\\'); i >= 0 {
				name = name[i+1:]
			}
			if id, ok := strings.CutSuffix(name, extJournal); ok {
				w.wake(id)
			}
		case _, ok := <-fsw.Errors:
			if !ok {
				return
			}
			// Events may have been lost (a queue overflow): everyone
			// reads again.
			w.wakeAll()
		}
	}
}

func (w *watcher) pollLoop(t *time.Ticker) {
	defer w.wg.Done()
	for {
		select {
		case <-w.stop:
			return
		case <-t.C:
			w.wakeAll()
		}
	}
}

// wake wakes the subscribers of id and of every operation after an event
// of the watch of every change: the loud ones too, unless they have a
// watch of their own.
func (w *watcher) wake(id string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	loudToo := !w.loudOwnLocked()
	for _, set := range [...]map[*sub]struct{}{w.subs[id], w.subs[allOps]} {
		for s := range set {
			if loudToo || !s.loud {
				s.poke()
			}
		}
	}
}

// loudOwnLocked reports whether the loud subscribers have a watch of their
// own, running. w.mu is held.
func (w *watcher) loudOwnLocked() bool { return w.loud != nil && !w.loudOff }

// loudGone hands the loud subscribers to the watch of every change when
// their own watch ended by itself, and wakes everyone, who may have
// missed a change.
func (w *watcher) loudGone() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return
	}
	w.loudOff = true
	w.startLocked(false)
	w.wakeAllLocked()
}

// wakeLoud wakes the loud subscribers of id after an event of their
// watch (the file name), which sees only what is not quiet.
func (w *watcher) wakeLoud(name string) {
	id, ok := strings.CutSuffix(name, extJournal)
	if !ok {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	for s := range w.subs[id] {
		if s.loud {
			s.poke()
		}
	}
}

func (w *watcher) wakeAll() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.wakeAllLocked()
}

func (w *watcher) wakeAllLocked() {
	for _, set := range w.subs {
		for s := range set {
			s.poke()
		}
	}
}

// poke gives s a pending wake-up, unless it has one.
func (s *sub) poke() {
	select {
	case s.ch <- struct{}{}:
	default:
	}
}

// close stops the watch and closes every subscriber's channel.
func (w *watcher) close() {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return
	}
	w.closed = true
	for _, set := range w.subs {
		for s := range set {
			close(s.ch)
		}
	}
	w.subs = nil
	stop, fsw, loud, poll := w.stop, w.fsw, w.loud, w.poll
	w.mu.Unlock()
	if stop == nil {
		return
	}
	close(stop)
	if fsw != nil {
		fsw.Close()
	}
	if loud != nil {
		loud()
	}
	if poll != nil {
		poll.Stop()
	}
	w.wg.Wait()
}
