package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/tomdist/ledger"
)

func init() {
	commands["watch"] = &command{
		args: "[ID]", nargs: [2]int{0, 1}, source: true, setup: setupWatch,
		summary: "show an operation (or the live ones) again at every change",
		help: `watch prints what show prints of operation ID, then again each time the
operation changes, as the ledger pushes the change (a directory's file
system events, a server's stream; nothing is polled), until the operation
ends or Ctrl-C. Without ID it does so for the list of live operations, as
ls prints it, until Ctrl-C. On a terminal it redraws the screen; otherwise
the prints are separated by a line "---". With --json it prints the state
document (without ID: the array of them) on one line at each change.
It exits 0 when the operation completed or on Ctrl-C, 4 when it failed.`,
	}
	commands["log"] = &command{
		args: "ID", nargs: [2]int{1, 1}, source: true, setup: setupLog,
		summary: "print an operation's log; -f follows it",
		help: `log prints the log of operation ID, live or archived: its INFO and higher
lines ("<time> [LEVEL] <participant> <message>"), or with --debug its DEBUG
lines. With -f it then prints the lines as they are written (pushed, not
polled) until the operation ends or Ctrl-C. With --json each line is a
JSON object: {"time", "level", "participant", "message"}.`,
	}
}

// interruptible returns ctx ended by SIGINT or SIGTERM too: a watch ends
// on Ctrl-C as it would at its operation's end.
func interruptible(ctx context.Context) (context.Context, context.CancelFunc) {
	return signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
}

// screen draws the prints of a watch: on a terminal, each over the last;
// elsewhere one after the other, separated by "---"; lines of JSON one
// after the other.
type screen struct {
	w     io.Writer
	tty   bool
	json  bool
	drawn int
	last  []byte
}

func newScreen(w io.Writer, json bool) *screen {
	s := &screen{w: w, json: json}
	if f, ok := w.(*os.File); ok && !json {
		if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			s.tty = true
		}
	}
	return s
}

// draw prints b, unless it is what was drawn last.
func (s *screen) draw(b []byte) error {
	if bytes.Equal(b, s.last) {
		return nil
	}
	s.last = append(s.last[:0], b...)
	var err error
	switch {
	case s.tty:
		_, err = fmt.Fprintf(s.w, "\x1b[H\x1b[2J%s", b)
	case s.drawn > 0 && !s.json:
		_, err = fmt.Fprintf(s.w, "---\n%s", b)
	default:
		_, err = s.w.Write(b)
	}
	s.drawn++
	return err
}

// follow calls step at once and then after every value on the channel
// that watch returns, until step reports the end, ctx ends (nil), or the
// channel closes and a last step does not end.
func follow(ctx context.Context, watch func(context.Context) (<-chan struct{}, error), step func() (bool, error)) error {
	wctx, cancel := context.WithCancel(ctx)
	ch, err := watch(wctx)
	if err != nil {
		cancel()
		return err
	}
	defer func() {
		cancel()
		for range ch { // the watch ends with wctx: wait for it
		}
	}()
	for {
		done, err := step()
		if ctx.Err() != nil {
			return nil // interrupted, maybe in the middle of a step
		}
		if done || err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return nil
		case _, ok := <-ch:
			if ok {
				continue
			}
			if ctx.Err() != nil {
				return nil
			}
			if done, err := step(); done || err != nil {
				return err
			}
			return errors.New("the ledger ended the watch")
		}
	}
}

func setupWatch(fs *flag.FlagSet) func(context.Context, *env, []string) error {
	asJSON := fs.Bool("json", false, "print the state document on one line at each change")
	return func(ctx context.Context, e *env, args []string) error {
		ctx, stop := interruptible(ctx)
		defer stop()
		v, err := e.src.open(ctx)
		if err != nil {
			return err
		}
		defer v.Close()
		scr := newScreen(e.stdout, *asJSON)
		if len(args) == 0 {
			return watchList(ctx, v, scr, *asJSON, e.stderr)
		}
		return watchOne(ctx, v, args[0], scr, *asJSON)
	}
}

// watchOne draws operation id at every change until it ends.
func watchOne(ctx context.Context, v *ledger.Viewer, id string, scr *screen, asJSON bool) error {
	var end error
	err := follow(ctx, func(ctx context.Context) (<-chan struct{}, error) {
		ch, err := v.Watch(ctx, id)
		return ch, notFound(id, err)
	}, func() (bool, error) {
		d, log, err := stateAndLog(ctx, v, id)
		if err != nil {
			return false, err
		}
		var b bytes.Buffer
		if asJSON {
			doc, err := v.Document(ctx, id)
			if err != nil {
				return false, notFound(id, err)
			}
			json.Compact(&b, doc)
			b.WriteByte('\n')
		} else {
			now := time.Now()
			fmt.Fprintf(&b, "ledger watch %s, as of %s (Ctrl-C to stop)\n\n", id, now.UTC().Format("15:04:05 UTC"))
			writeShow(&b, d, log, now, 10)
		}
		if err := scr.draw(b.Bytes()); err != nil {
			return false, err
		}
		switch d.OperationState {
		case ledger.StateCompleted:
			return true, nil
		case ledger.StateFailed:
			end = errFailed
			return true, nil
		}
		return false, nil
	})
	if err != nil {
		return err
	}
	return end
}

// watchList draws the live operations at every change, until ctx ends.
func watchList(ctx context.Context, v *ledger.Viewer, scr *screen, asJSON bool, stderr io.Writer) error {
	no := false
	lf := &listFlags{all: &no, archived: &no, state: new(string)}
	return follow(ctx, v.WatchList, func() (bool, error) {
		ops, err := lf.list(ctx, v, nil)
		if err != nil {
			return false, err
		}
		var b bytes.Buffer
		if asJSON {
			docs, err := documents(ctx, v, ops, stderr)
			if err != nil {
				return false, err
			}
			json.Compact(&b, docs)
			b.WriteByte('\n')
		} else {
			now := time.Now()
			fmt.Fprintf(&b, "ledger watch, as of %s (Ctrl-C to stop)\n\n", now.UTC().Format("15:04:05 UTC"))
			writeList(&b, ops, now, lf.none())
		}
		return false, scr.draw(b.Bytes())
	})
}

func setupLog(fs *flag.FlagSet) func(context.Context, *env, []string) error {
	debug := fs.Bool("debug", false, "print the DEBUG lines instead")
	var tail bool
	fs.BoolVar(&tail, "f", false, "follow: print the lines as they come, until the operation ends")
	fs.BoolVar(&tail, "follow", false, "the same as -f")
	asJSON := fs.Bool("json", false, "print each line as a JSON object")
	return func(ctx context.Context, e *env, args []string) error {
		ctx, stop := interruptible(ctx)
		defer stop()
		v, err := e.src.open(ctx)
		if err != nil {
			return err
		}
		defer v.Close()
		id := args[0]
		lw := &logWriter{w: e.stdout, json: *asJSON}
		step := func() (bool, error) {
			// The state first: once it says the operation ended, the log
			// read after it has the last lines.
			ended := false
			if tail {
				d, err := v.State(ctx, id)
				if err != nil {
					return false, notFound(id, err)
				}
				ended = d.OperationState == ledger.StateCompleted || d.OperationState == ledger.StateFailed
			}
			b, err := v.Log(ctx, id, *debug)
			if err != nil {
				return false, notFound(id, err)
			}
			if err := lw.write(b); err != nil {
				return false, err
			}
			return !tail || ended, nil
		}
		if !tail {
			_, err := step()
			return err
		}
		return follow(ctx, func(ctx context.Context) (<-chan struct{}, error) {
			ch, err := v.Watch(ctx, id)
			return ch, notFound(id, err)
		}, step)
	}
}

// logWriter writes the lines of a log that it has not written yet: a log
// only grows, and its last line may still be in the making.
type logWriter struct {
	w    io.Writer
	json bool
	done int // bytes of the log written
}

func (lw *logWriter) write(log []byte) error {
	if len(log) < lw.done {
		lw.done = 0 // not the log it was (cannot happen): start over
	}
	end := bytes.LastIndexByte(log, '\n') + 1
	if end <= lw.done {
		return nil
	}
	chunk := log[lw.done:end]
	lw.done = end
	if !lw.json {
		_, err := lw.w.Write(chunk)
		return err
	}
	enc := json.NewEncoder(lw.w)
	enc.SetEscapeHTML(false)
	for _, line := range strings.Split(strings.TrimSuffix(string(chunk), "\n"), "\n") {
		if err := enc.Encode(parseLogLine(line)); err != nil {
			return err
		}
	}
	return nil
}

// logLine is a log line as --json prints it.
type logLine struct {
	Time        string `json:"time"`
	Level       string `json:"level"`
	Participant string `json:"participant"`
	Message     string `json:"message"`
}

// parseLogLine reads "<time> [LEVEL] <participant> <message>"; a line of
// another form is all message.
func parseLogLine(s string) logLine {
	ts, rest, ok1 := strings.Cut(s, " [")
	level, rest, ok2 := strings.Cut(rest, "] ")
	who, msg, _ := strings.Cut(rest, " ")
	if !ok1 || !ok2 {
		return logLine{Message: s}
	}
	return logLine{Time: ts, Level: level, Participant: who, Message: msg}
}
