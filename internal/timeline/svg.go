package timeline

import (
	_ "embed"
	"fmt"
	"html/template"
	"io"
	"strings"
	"time"
)

//go:embed timeline.svg.tmpl
var svgSource string

//go:embed timeline.css
var css string

// CSS returns the style sheet of the timeline's classes (tl-*): a
// standalone SVG carries it; a page that shows HTML's element links it.
func CSS() string { return css }

var svgTemplate = template.Must(template.New("timeline").Funcs(template.FuncMap{
	"addf": func(a, b float64) float64 { return a + b },
}).Parse(svgSource))

// Geometry of the drawing, in pixels.
const (
	svgWidth  = 1000.0
	labelW    = 180.0 // the column of participant names
	rightPad  = 24.0
	plotTop   = 70.0 // below the title and the axis
	rowH      = 22.0
	barH      = 16.0
	laneGap   = 8.0
	charWidth = 6.2 // of the 10px label font, roughly
)

// SVG writes the timeline as a standalone SVG document, with its style:
// one <rect class="tl-bar tl-{status}" data-call="{call id}"> per call,
// with a <title> that says what it was.
func (t *Timeline) SVG(w io.Writer) error {
	if _, err := io.WriteString(w, `<?xml version="1.0" encoding="UTF-8"?>`+"\n"); err != nil {
		return err
	}
	d := t.layout()
	d.Standalone, d.CSS = true, template.CSS(css)
	return svgTemplate.Execute(w, d)
}

// HTML returns the <svg> element of SVG without its style (see CSS), for
// a page's template.
func (t *Timeline) HTML() (template.HTML, error) {
	var b strings.Builder
	if err := svgTemplate.Execute(&b, t.layout()); err != nil {
		return "", err
	}
	return template.HTML(b.String()), nil // html/template escaped it
}

// drawing is what the template draws: the timeline with its geometry.
type drawing struct {
	Width, Height float64
	Title, Sub    string
	Ticks         []tick
	PlotBottom    float64
	Lanes         []drawnLane
	Legend        []legendItem
	LegendY       float64
	Empty         bool
	Standalone    bool         // a document of its own: with its style
	CSS           template.CSS // the style
}

type tick struct {
	X     float64
	Label string
}

type drawnLane struct {
	Y, H, MidY, TextY float64 // MidY: of the presence line, at the lane's foot
	Label, Full       string
	Zebra             bool
	X1, X2            float64 // the participant's presence
	Bars              []drawnBar
	Crashes           []float64 // x of each crash
}

type drawnBar struct {
	X, Y, W, H   float64
	TextX, TextY float64
	Status       Status
	CallID       string
	Label, Title string
}

type legendItem struct {
	X      float64
	Status Status
}

// layout places everything.
func (t *Timeline) layout() drawing {
	span := t.End.Sub(t.Start)
	if span <= 0 {
		span = time.Second
	}
	plotW := svgWidth - labelW - rightPad
	x := func(at time.Time) float64 {
		return labelW + float64(at.Sub(t.Start))/float64(span)*plotW
	}
	d := drawing{Width: svgWidth, Title: "operation " + t.Operation, Sub: t.subtitle(span), Empty: t.Calls() == 0}
	for _, off := range ticks(span) {
		d.Ticks = append(d.Ticks, tick{X: labelW + float64(off)/float64(span)*plotW, Label: short(off)})
	}
	y := plotTop
	for i, ln := range t.Lanes {
		h := float64(ln.Rows)*rowH + laneGap
		dl := drawnLane{Y: y, H: h, MidY: y + h - 3, TextY: y + h/2 + 4, Label: cut(ln.Participant, 26), Full: ln.Participant, Zebra: i%2 == 0}
		end := t.End
		switch {
		case !ln.Left.IsZero():
			end = ln.Left
		case len(ln.Crashes) > 0:
			end = ln.Crashes[len(ln.Crashes)-1]
		}
		dl.X1, dl.X2 = x(ln.Joined), x(end)
		for _, c := range ln.Crashes {
			dl.Crashes = append(dl.Crashes, x(c))
		}
		for _, b := range ln.Bars {
			dl.Bars = append(dl.Bars, drawBar(b, x, y+laneGap/2+float64(b.Row)*rowH))
		}
		d.Lanes = append(d.Lanes, dl)
		y += h
	}
	if d.Empty {
		y += 30
	}
	d.PlotBottom = y
	d.LegendY = y + 22
	for i, st := range []Status{Ended, Running, Failed, Crashed, Interrupted} {
		d.Legend = append(d.Legend, legendItem{X: labelW + float64(i)*110, Status: st})
	}
	d.Height = d.LegendY + 14
	return d
}

func drawBar(b *Bar, x func(time.Time) float64, y float64) drawnBar {
	x1, x2 := x(b.Start), x(b.End)
	db := drawnBar{X: x1, Y: y, W: max(x2-x1, 2), H: barH, TextX: x1 + 4, TextY: y + barH - 4, Status: b.Status, CallID: b.CallID}
	label := b.Description
	if label == "" {
		label = b.CallID
	}
	if n := int((db.W - 8) / charWidth); n >= 3 {
		db.Label = cut(label, n)
	}
	var tt strings.Builder
	fmt.Fprintf(&tt, "%s", b.CallID)
	if b.Description != "" {
		fmt.Fprintf(&tt, " (%s)", b.Description)
	}
	fmt.Fprintf(&tt, "\n%s → %s UTC, %s\n%s", b.Start.UTC().Format("15:04:05.000"), b.End.UTC().Format("15:04:05.000"),
		b.End.Sub(b.Start).Round(time.Millisecond), b.Status)
	if b.Reason != "" {
		fmt.Fprintf(&tt, ": %s", b.Reason)
	}
	db.Title = tt.String()
	return db
}

// subtitle says when the operation started, how long it has run and how
// it ended.
func (t *Timeline) subtitle(span time.Duration) string {
	if t.Start.IsZero() {
		return "no log yet"
	}
	s := fmt.Sprintf("started %s UTC, %s", t.Start.UTC().Format("2006-01-02 15:04:05"), short(span.Round(time.Millisecond)))
	switch t.Outcome {
	case "":
		s += ", running"
	case "failed":
		s += ", failed"
		if t.Reason != "" {
			s += ": " + cut(t.Reason, 80)
		}
	default:
		s += ", " + t.Outcome
	}
	return fmt.Sprintf("%s; %d calls", s, t.Calls())
}

// steps are the tick intervals the axis chooses from.
var steps = []time.Duration{
	time.Millisecond, 2 * time.Millisecond, 5 * time.Millisecond, 10 * time.Millisecond, 20 * time.Millisecond,
	50 * time.Millisecond, 100 * time.Millisecond, 200 * time.Millisecond, 500 * time.Millisecond,
	time.Second, 2 * time.Second, 5 * time.Second, 10 * time.Second, 15 * time.Second, 30 * time.Second,
	time.Minute, 2 * time.Minute, 5 * time.Minute, 10 * time.Minute, 15 * time.Minute, 30 * time.Minute,
	time.Hour, 2 * time.Hour, 3 * time.Hour, 6 * time.Hour, 12 * time.Hour, 24 * time.Hour,
}

// ticks returns the offsets of the axis's ticks: at most 8 intervals.
func ticks(span time.Duration) []time.Duration {
	step := (span/8 + 24*time.Hour - 1) / (24 * time.Hour) * (24 * time.Hour) // whole days beyond the list
	for _, s := range steps {
		if span/s <= 8 {
			step = s
			break
		}
	}
	out := make([]time.Duration, 0, 9)
	for i := range int(span/step) + 1 {
		out = append(out, time.Duration(i)*step)
	}
	return out
}

// short writes a duration without its zero tails: 1m30s, 2h, 150ms.
func short(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// cut shortens s to n runes, with an ellipsis.
func cut(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:max(n-1, 0)]) + "…"
}
