package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/tomdist/ledger"
	"github.com/tomdist/ledger/internal/timeline"
)

func init() {
	commands["ls"] = &command{
		nargs: [2]int{0, 0}, source: true, setup: setupList,
		summary: "list the operations, live by default",
		help: `ls lists the live operations (--all: the archived ones too; --archived: only
those), oldest first: state, abort flag, active/all participants, running
calls, age and description. --state keeps those in the states given.
With --json it prints the state documents as a JSON array.`,
	}
	commands["show"] = &command{
		args: "ID", nargs: [2]int{1, 1}, source: true, setup: setupShow,
		summary: "show one operation: participants, calls, temp resources, log",
		help: `show prints an operation, live or archived, for people: its state, age, abort
flag and failure; its participants with their heartbeat's age against
their own stale threshold (STALE when past it); its running calls by
participant; its temp resources; the last lines of its log.
--json prints its state document instead (the Dart ledger's JSON form),
--svg the timeline of its calls (one lane per participant, one bar per
call) as an SVG document.`,
	}
}

// states are the operation states --state accepts.
var states = []string{ledger.StateRunning, ledger.StateCleanup, ledger.StateFailed, ledger.StateCompleted}

// parseStates reads the value of --state: nil for all.
func parseStates(v string) ([]string, error) {
	if v == "" {
		return nil, nil
	}
	var out []string
	for _, s := range strings.Split(v, ",") {
		s = strings.TrimSpace(s)
		if !slices.Contains(states, s) {
			return nil, usagef("--state: %q is not one of %s", s, strings.Join(states, ", "))
		}
		out = append(out, s)
	}
	return out, nil
}

// listed is one operation of ls.
type listed struct {
	id  string
	d   *ledger.Data // nil if it could not be read
	err error
}

// listFlags select the operations of ls and watch.
type listFlags struct {
	all, archived *bool
	state         *string
}

func addListFlags(fs *flag.FlagSet) *listFlags {
	return &listFlags{
		all:      fs.Bool("all", false, "list the archived operations too"),
		archived: fs.Bool("archived", false, "list only the archived operations"),
		state:    fs.String("state", "", "list only operations in these `states` (comma-separated: "+strings.Join(states, ", ")+")"),
	}
}

// check returns the states to keep, or a usage error.
func (lf *listFlags) check() ([]string, error) {
	if *lf.all && *lf.archived {
		return nil, usagef("--all and --archived exclude each other")
	}
	return parseStates(*lf.state)
}

// list reads the operations lf selects: the archived ones first, each
// list oldest first.
func (lf *listFlags) list(ctx context.Context, v *ledger.Viewer, keep []string) ([]listed, error) {
	var ids []string
	for _, archived := range []bool{true, false} {
		if archived && !*lf.all && !*lf.archived || !archived && *lf.archived {
			continue
		}
		some, err := v.List(ctx, archived)
		if err != nil {
			return nil, err
		}
		ids = append(ids, some...)
	}
	var out []listed
	for _, id := range ids {
		d, err := v.State(ctx, id)
		if errors.Is(err, ledger.ErrOperationNotFound) {
			continue // archived or pruned since it was listed
		}
		if keep != nil && (err != nil || !slices.Contains(keep, d.OperationState)) {
			continue
		}
		out = append(out, listed{id: id, d: d, err: err})
	}
	return out, nil
}

// none says in words that lf selects no operation.
func (lf *listFlags) none() string {
	s := "no live operations"
	switch {
	case *lf.all:
		s = "no operations"
	case *lf.archived:
		s = "no archived operations"
	}
	if *lf.state != "" {
		s += " in state " + strings.ReplaceAll(*lf.state, ",", " or ")
	}
	return s
}

func setupList(fs *flag.FlagSet) func(context.Context, *env, []string) error {
	lf := addListFlags(fs)
	asJSON := fs.Bool("json", false, "print the state documents, as a JSON array")
	return func(ctx context.Context, e *env, _ []string) error {
		keep, err := lf.check()
		if err != nil {
			return err
		}
		v, err := e.src.open(ctx)
		if err != nil {
			return err
		}
		defer v.Close()
		ops, err := lf.list(ctx, v, keep)
		if err != nil {
			return err
		}
		if *asJSON {
			b, err := documents(ctx, v, ops, e.stderr)
			if err != nil {
				return err
			}
			_, err = fmt.Fprintf(e.stdout, "%s\n", b)
			return err
		}
		return writeList(e.stdout, ops, time.Now(), lf.none())
	}
}

// documents returns the state documents of ops as an indented JSON
// array; operations that cannot be read are left out, and said so on
// stderr.
func documents(ctx context.Context, v *ledger.Viewer, ops []listed, stderr io.Writer) ([]byte, error) {
	docs := []json.RawMessage{}
	for _, o := range ops {
		doc, err := v.Document(ctx, o.id)
		if err != nil {
			fmt.Fprintf(stderr, "ledger: %s left out: %s\n", o.id, oneLine(err.Error()))
			continue
		}
		docs = append(docs, doc)
	}
	return json.MarshalIndent(docs, "", "  ")
}

// writeList writes the table of ls, or none in words.
func writeList(w io.Writer, ops []listed, now time.Time, none string) error {
	if len(ops) == 0 {
		_, err := fmt.Fprintln(w, none)
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "OPERATION\tSTATE\tABORTED\tPARTICIPANTS\tCALLS\tAGE\tDESCRIPTION")
	for _, o := range ops {
		d := o.d
		if o.err != nil {
			fmt.Fprintf(tw, "%s\t%s\t\t\t\t\t\n", o.id, unreadable(o.err))
			continue
		}
		active := 0
		for _, p := range d.Participants {
			if p.State == ledger.ParticipantActive {
				active++
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d/%d\t%d\t%s\t%s\n", o.id, d.OperationState, yesNo(d.Aborted),
			active, len(d.Participants), len(d.CallFrames), age(now.Sub(d.StartTime)), oneLine(d.Description))
	}
	return tw.Flush()
}

func unreadable(err error) string {
	if errors.Is(err, ledger.ErrCorruptLedger) {
		return "corrupt"
	}
	return "unreadable"
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func oneLine(s string) string {
	s = strings.NewReplacer("\n", " ", "\r", " ", "\t", " ").Replace(s)
	if r := []rune(s); len(r) > 60 {
		s = string(r[:57]) + "..."
	}
	return s
}

// age writes a duration for people: 1.2s, 42s, 3m12s, 2h5m, 3d4h.
func age(d time.Duration) string {
	switch {
	case d < 0:
		return "0s"
	case d < 10*time.Second:
		return d.Round(100 * time.Millisecond).String()
	case d < time.Hour:
		return d.Round(time.Second).String()
	case d < 48*time.Hour:
		s := strings.TrimSuffix(d.Round(time.Minute).String(), "0s")
		if strings.HasSuffix(s, "h0m") {
			s = strings.TrimSuffix(s, "0m")
		}
		return s
	}
	days := d / (24 * time.Hour)
	return fmt.Sprintf("%dd%dh", days, (d-days*24*time.Hour)/time.Hour)
}

func setupShow(fs *flag.FlagSet) func(context.Context, *env, []string) error {
	asJSON := fs.Bool("json", false, "print the state document (the Dart ledger's JSON form)")
	svg := fs.Bool("svg", false, "print the timeline of the calls as an SVG document")
	lines := fs.Int("lines", 10, "print the last `N` lines of the log")
	return func(ctx context.Context, e *env, args []string) error {
		if *asJSON && *svg {
			return usagef("--json and --svg exclude each other")
		}
		if *lines < 0 {
			return usagef("--lines (%d) must not be negative", *lines)
		}
		v, err := e.src.open(ctx)
		if err != nil {
			return err
		}
		defer v.Close()
		id := args[0]
		if *asJSON {
			doc, err := v.Document(ctx, id)
			if err != nil {
				return notFound(id, err)
			}
			_, err = fmt.Fprintf(e.stdout, "%s\n", doc)
			return err
		}
		d, log, err := stateAndLog(ctx, v, id)
		if err != nil {
			return err
		}
		if *svg {
			return timeline.Parse(id, log, time.Now()).SVG(e.stdout)
		}
		var b bytes.Buffer
		writeShow(&b, d, log, time.Now(), *lines)
		_, err = e.stdout.Write(b.Bytes())
		return err
	}
}

// stateAndLog reads the state and the log of id.
func stateAndLog(ctx context.Context, v *ledger.Viewer, id string) (*ledger.Data, []byte, error) {
	d, err := v.State(ctx, id)
	if err != nil {
		return nil, nil, notFound(id, err)
	}
	log, err := v.Log(ctx, id, false)
	if err != nil {
		return nil, nil, notFound(id, err)
	}
	return d, log, nil
}
