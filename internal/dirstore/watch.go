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
// file name to the operations' subscribers. Where the file system gives
// no events (Options.Poll, or a network file system), a ticker wakes every
// subscriber instead.
type watcher struct {
	d *Dir

	mu     sync.Mutex // guards the fields below
	subs   map[string]map[*sub]struct{}
	fsw    *fsnotify.Watcher // nil when polling or not started
	poll   *time.Ticker      // nil when using events
	stop   chan struct{}     // closed by close
	done   chan struct{}     // closed when the dispatching goroutine ends
	closed bool
}

// sub is one Watch: a channel with room for one pending wake-up.
type sub struct {
	ch chan struct{}
}

// Watch implements journal.Store.
func (d *Dir) Watch(ctx context.Context, id string) (<-chan struct{}, error) {
	if err := checkID(id); err != nil {
		return nil, err
	}
	return d.watch.add(ctx, id)
}

func (w *watcher) add(ctx context.Context, id string) (<-chan struct{}, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return nil, errClosed
	}
	if err := w.startLocked(); err != nil {
		return nil, err
	}
	s := &sub{ch: make(chan struct{}, 1)}
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

// startLocked starts the watch of the directory, once. w.mu is held.
func (w *watcher) startLocked() error {
	if w.stop != nil {
		return nil
	}
	poll := w.d.opts.Poll
	if poll <= 0 && !eventsDelivered(w.d.path) {
		poll = defaultPoll
	}
	w.stop, w.done = make(chan struct{}), make(chan struct{})
	if poll > 0 {
		w.poll = time.NewTicker(poll)
		go w.pollLoop()
		return nil
	}
	fsw, err := fsnotify.NewWatcher()
	if err == nil {
		err = fsw.Add(w.d.path)
		if err != nil {
			fsw.Close()
		}
	}
	if err != nil {
		// No events to be had (inotify instances exhausted, ...): poll.
		w.poll = time.NewTicker(defaultPoll)
		go w.pollLoop()
		return nil
	}
	w.fsw = fsw
	go w.eventLoop()
	return nil
}

// defaultPoll is the polling interval where the file system gives no
// events.
const defaultPoll = 100 * time.Millisecond

func (w *watcher) eventLoop() {
	defer close(w.done)
	for {
		select {
		case <-w.stop:
			return
		case ev, ok := <-w.fsw.Events:
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
		case _, ok := <-w.fsw.Errors:
			if !ok {
				return
			}
			// Events may have been lost (a queue overflow): everyone
			// reads again.
			w.wakeAll()
		}
	}
}

func (w *watcher) pollLoop() {
	defer close(w.done)
	for {
		select {
		case <-w.stop:
			return
		case <-w.poll.C:
			w.wakeAll()
		}
	}
}

func (w *watcher) wake(id string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, set := range [...]map[*sub]struct{}{w.subs[id], w.subs[allOps]} {
		for s := range set {
			select {
			case s.ch <- struct{}{}:
			default:
			}
		}
	}
}

func (w *watcher) wakeAll() {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, set := range w.subs {
		for s := range set {
			select {
			case s.ch <- struct{}{}:
			default:
			}
		}
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
	stop, done, fsw, poll := w.stop, w.done, w.fsw, w.poll
	w.mu.Unlock()
	if stop == nil {
		return
	}
	close(stop)
	if fsw != nil {
		fsw.Close()
	}
	if poll != nil {
		poll.Stop()
	}
	<-done
}
