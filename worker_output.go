package ledger

import (
	"bytes"
	"runtime/debug"
	"strings"
)

// stderrTail is how much of a worker's standard error is kept for its
// error.
const stderrTail = 4096

// maxLine is the longest line handed to OnStdout or OnStderr; a longer one
// is handed over in pieces.
const maxLine = 64 << 10

// hookQueue is how many lines of one stream may wait for their hook.
const hookQueue = 256

// lineWriter receives one output stream of a worker: it keeps all of the
// stream (keepAll) or its tail (tailMax bytes), and queues its lines for
// hook, which deliver calls on a goroutine of the process's own. exec's
// copying goroutine writes; run reads and flushes after the process is
// reaped (cmd.Wait returns once the copying is over). A full queue blocks
// the writer, and so the worker, until p.abandon: then lines are dropped.
type lineWriter struct {
	hook      func(string)
	queue     chan string   // lines for hook; closed by flush
	delivered chan struct{} // closed by deliver once the queue is drained
	abandon   <-chan struct{}
	keepAll   bool
	maxAll    int    // with keepAll: the most kept; beyond it, tooMuch is called
	tooMuch   func() // ends the worker; may be called more than once
	tailMax   int

	all      bytes.Buffer
	tail     []byte
	cut      bool   // tail lost its start: it may begin mid-line
	partial  []byte // an unfinished line
	dropping bool   // the hook was abandoned
}

// newLineWriter returns a lineWriter for hook (which may be nil).
func (p *process) newLineWriter(hook func(string)) *lineWriter {
	w := &lineWriter{hook: hook, abandon: p.abandon}
	if hook != nil {
		w.queue = make(chan string, hookQueue)
		w.delivered = make(chan struct{})
	}
	return w
}

func (w *lineWriter) Write(b []byte) (int, error) {
	if w.keepAll {
		if w.all.Len()+len(b) > w.maxAll {
			w.keepAll = false
			w.all = bytes.Buffer{} // the call fails: the output is of no use
			w.tooMuch()
		} else {
			w.all.Write(b)
		}
	}
	if w.tailMax > 0 {
		w.tail = append(w.tail, b...)
		if len(w.tail) > 2*w.tailMax {
			w.tail = append(w.tail[:0], w.tail[len(w.tail)-w.tailMax:]...)
			w.cut = true
		}
	}
	if w.hook == nil || w.dropping {
		return len(b), nil
	}
	w.partial = append(w.partial, b...)
	rest := w.partial
	for {
		i := bytes.IndexByte(rest, '\n')
		if i < 0 {
			break
		}
		w.emit(rest[:i])
		rest = rest[i+1:]
	}
	for len(rest) >= maxLine {
		w.emit(rest[:maxLine])
		rest = rest[maxLine:]
	}
	w.partial = append(w.partial[:0], rest...)
	return len(b), nil
}

// flush queues an unfinished last line and closes the queue. No Write may
// follow.
func (w *lineWriter) flush() {
	if w.hook == nil {
		return
	}
	if len(w.partial) > 0 {
		w.emit(w.partial)
		w.partial = nil
	}
	close(w.queue)
}

// emit queues a line, unless the hook has been abandoned.
func (w *lineWriter) emit(line []byte) {
	if w.dropping {
		return
	}
	select {
	case w.queue <- string(bytes.TrimSuffix(line, []byte("\r"))):
	case <-w.abandon:
		w.dropping = true
	}
}

// deliver hands the lines of w to its hook until the queue is closed.
// After a hook's panic, which fails the call, and once the hook has been
// abandoned, lines are dropped.
func (p *process) deliver(w *lineWriter) {
	defer close(w.delivered)
	for line := range w.queue {
		select {
		case <-p.abandon:
			continue
		default:
		}
		if !p.hooksOff.Load() {
			p.callHook(w.hook, line)
		}
	}
}

// callHook runs hook; a panic fails the call with a *PanicError (the
// first panic wins).
func (p *process) callHook(hook func(string), line string) {
	defer func() {
		if x := recover(); x != nil {
			p.hooksOff.Store(true)
			p.fail(&PanicError{Value: x, Stack: debug.Stack()})
		}
	}()
	hook(line)
}

// tailText returns the kept tail, starting at a line if it was cut, without
// the trailing line break.
func (w *lineWriter) tailText() string {
	t := w.tail
	if len(t) > w.tailMax || w.cut {
		t = t[max(len(t)-w.tailMax, 0):]
		if i := bytes.IndexByte(t, '\n'); i >= 0 && i < len(t)-1 {
			t = t[i+1:]
		}
	}
	return strings.TrimRight(string(t), "\r\n")
}
