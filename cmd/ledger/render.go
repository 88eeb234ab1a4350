package main

import (
	"bytes"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/tomdist/ledger"
)

// writeShow writes an operation for people, as `ledger show` prints it:
// a head, then participants, running calls, temp resources and the last
// lines of the log (lines of them; none for 0), as of now.
func writeShow(w io.Writer, d *ledger.Data, log []byte, now time.Time, lines int) {
	var b bytes.Buffer
	writeHead(&b, d, now)
	writeParticipants(&b, d, now)
	writeCalls(&b, d, now)
	writeTemps(&b, d, now)
	if lines > 0 {
		writeLogTail(&b, log, lines)
	}
	w.Write(trimLines(b.Bytes()))
}

// trimLines drops the spaces that tables leave at the ends of lines.
func trimLines(b []byte) []byte {
	out := make([]byte, 0, len(b))
	for _, l := range bytes.SplitAfter(b, []byte("\n")) {
		nl := bytes.HasSuffix(l, []byte("\n"))
		out = append(out, bytes.TrimRight(l, " \n")...)
		if nl {
			out = append(out, '\n')
		}
	}
	return out
}

func writeHead(w io.Writer, d *ledger.Data, now time.Time) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "operation\t%s\n", d.OperationID)
	if d.Description != "" {
		fmt.Fprintf(tw, "description\t%s\n", oneLine(d.Description))
	}
	state := d.OperationState
	if d.Aborted {
		state += ", abort flag set"
	}
	fmt.Fprintf(tw, "state\t%s\n", state)
	fmt.Fprintf(tw, "started\t%s (%s ago)\n", utc(d.StartTime), age(now.Sub(d.StartTime)))
	fmt.Fprintf(tw, "initiator\t%s\n", d.InitiatorID)
	if f := d.Failure; f != nil {
		by := ""
		if f.ParticipantID != "" {
			by = " by " + f.ParticipantID
		}
		fmt.Fprintf(tw, "failure\t%s%s: %s\n", utc(f.FailedAt), by, oneLine(f.Reason))
		if len(f.CrashedCallIDs) > 0 {
			fmt.Fprintf(tw, "failed calls\t%s\n", strings.Join(f.CrashedCallIDs, ", "))
		}
		if f.Coordinator != "" {
			fmt.Fprintf(tw, "coordinator\t%s\n", f.Coordinator)
		}
	}
	tw.Flush()
}

// staleAfter is how long the ledger lets a participant go without a beat
// before it declares it crashed: its own threshold and 1.25 of its own
// interval, or the defaults for a record without them (the Dart ledger's).
func staleAfter(p ledger.Participant) (threshold, after time.Duration) {
	interval, threshold := p.HeartbeatInterval, p.StaleThreshold
	if interval <= 0 {
		interval = ledger.DefaultHeartbeatInterval
	}
	if threshold <= 0 {
		threshold = ledger.DefaultStaleThreshold
	}
	return threshold, threshold + interval + interval/4
}

func writeParticipants(w io.Writer, d *ledger.Data, now time.Time) {
	fmt.Fprintf(w, "\nPARTICIPANTS (%d)\n", len(d.Participants))
	if len(d.Participants) == 0 {
		fmt.Fprintln(w, "  none")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  ID\tPROCESS\tSTATE\tSESSIONS\tHEARTBEAT\t")
	for _, p := range d.Participants {
		beat := "-"
		if p.State == ledger.ParticipantActive {
			threshold, after := staleAfter(p)
			a := now.Sub(p.LastHeartbeat)
			beat = fmt.Sprintf("%s ago, threshold %s", age(a), age(threshold))
			if a > after {
				beat += "\tSTALE"
			}
		}
		via := ""
		if p.Remote {
			via = " (via server)"
		}
		fmt.Fprintf(tw, "  %s\t%d@%s%s\t%s\t%d\t%s\t\n", p.ParticipantID, p.PID, p.Host, via, p.State, p.Sessions, beat)
	}
	tw.Flush()
}

func writeCalls(w io.Writer, d *ledger.Data, now time.Time) {
	fmt.Fprintf(w, "\nCALLS (%d)\n", len(d.CallFrames))
	if len(d.CallFrames) == 0 {
		fmt.Fprintln(w, "  none running")
		return
	}
	var order []string
	byProc := map[string][]ledger.CallFrame{}
	for _, f := range d.CallFrames {
		k := fmt.Sprintf("%s %d@%s", f.ParticipantID, f.PID, f.Host)
		if _, ok := byProc[k]; !ok {
			order = append(order, k)
		}
		byProc[k] = append(byProc[k], f)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, k := range order {
		fmt.Fprintf(tw, "  %s\n", k)
		for _, f := range byProc[k] {
			notes := []string{}
			if f.State != ledger.FrameActive {
				notes = append(notes, f.State)
			}
			if !f.FailOnCrash {
				notes = append(notes, "contained")
			}
			fmt.Fprintf(tw, "    %s\t%s\t%s\t%s\t\n", f.CallID, oneLine(f.Description), age(now.Sub(f.StartTime)), strings.Join(notes, ", "))
		}
	}
	tw.Flush()
}

func writeTemps(w io.Writer, d *ledger.Data, now time.Time) {
	fmt.Fprintf(w, "\nTEMP RESOURCES (%d)\n", len(d.TempResources))
	if len(d.TempResources) == 0 {
		fmt.Fprintln(w, "  none")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, r := range d.TempResources {
		via := ""
		if r.RegisteredVia != "" {
			via = ", via " + r.RegisteredVia
		}
		fmt.Fprintf(tw, "  %s\t%s %d@%s\t%s ago%s\t\n", r.Path, r.ParticipantID, r.Owner, r.Host, age(now.Sub(r.RegisteredAt)), via)
	}
	tw.Flush()
}

func writeLogTail(w io.Writer, log []byte, n int) {
	all := bytes.Split(bytes.TrimRight(log, "\n"), []byte("\n"))
	if len(log) == 0 {
		all = nil
	}
	from := max(len(all)-n, 0)
	fmt.Fprintf(w, "\nLOG (last %d of %d lines)\n", len(all)-from, len(all))
	for _, l := range all[from:] {
		fmt.Fprintf(w, "  %s\n", l)
	}
}

func utc(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05 UTC") }
