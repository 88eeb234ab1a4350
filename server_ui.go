package ledger

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"embed"
	"encoding/hex"
	"fmt"
	"html/template"
	"io"
	"maps"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tomdist/ledger/internal/store"
	"github.com/tomdist/ledger/internal/timeline"
)

// The dashboard: server-rendered pages under /ui, kept up to date by a
// little JavaScript (ui/app.js) that listens to /ui/events (server-sent
// events: the operation's stream, or the changes of all operations) and
// fetches the page's fragment again when told. Nothing is loaded from
// elsewhere; nothing is built.
//
// Access is the protocol's: without a Token, only requests that name the
// server by IP address or localhost (the Host check); with one, a request
// carries it as a bearer token, or a browser signs in once with a form
// (POST /ui/login, the token in the body) and gets a session cookie
// (HttpOnly, SameSite=Strict, Secure over TLS) that holds an HMAC of the
// token, never the token. The cookie opens the dashboard's routes only,
// all of them reads; the protocol's routes still want the bearer token.
// The static assets (style sheets, script) need nothing.

// Paths of the dashboard.
const (
	PathUI              = "/ui" // the live operations
	pathUIList          = "/ui/list"
	pathUIOperation     = "/ui/operation" // ?operationId=
	pathUIOperationPart = "/ui/operation/part"
	pathUITimeline      = "/ui/timeline.svg"
	pathUIEvents        = "/ui/events" // ?operationId=&after=, or all operations
	pathUILogin         = "/ui/login"
	pathUIAssets        = "/ui/assets/"
	uiCookie            = "ledger_session"
	uiLogLines          = 20 // log lines a page shows
	uiArchived          = 10 // archived operations the list links
)

//go:embed ui
var uiFiles embed.FS

// uiPages are the dashboard's templates by page, each with the layout.
var uiPages = func() map[string]*template.Template {
	layout := template.Must(template.New("layout").ParseFS(uiFiles, "ui/layout.html"))
	pages := map[string]*template.Template{}
	for _, p := range []string{"index", "operation", "login", "error"} {
		pages[p] = template.Must(template.Must(layout.Clone()).ParseFS(uiFiles, "ui/"+p+".html"))
	}
	return pages
}()

func init() {
	r := map[string]route{
		PathUI:              {get: true, public: true, stream: uiGuard(true, (*Server).uiIndex)},
		PathUI + "/":        {get: true, public: true, stream: uiGuard(true, (*Server).uiIndex)},
		pathUIList:          {get: true, public: true, stream: uiGuard(false, (*Server).uiList)},
		pathUIOperation:     {get: true, public: true, stream: uiGuard(true, (*Server).uiOperation)},
		pathUIOperationPart: {get: true, public: true, stream: uiGuard(false, (*Server).uiOperationPart)},
		pathUITimeline:      {get: true, public: true, stream: uiGuard(false, (*Server).uiTimeline)},
		pathUIEvents:        {get: true, public: true, stream: uiGuard(false, (*Server).uiEvents)},
		pathUILogin:         {public: true, stream: (*Server).uiLogin},
	}
	for name, ctype := range map[string]string{"style.css": "text/css", "app.js": "text/javascript"} {
		b, err := uiFiles.ReadFile("ui/" + name)
		if err != nil {
			panic(err)
		}
		r[pathUIAssets+name] = route{get: true, public: true, stream: uiAsset(ctype, b)}
	}
	r[pathUIAssets+"timeline.css"] = route{get: true, public: true, stream: uiAsset("text/css", []byte(timeline.CSS()))}
	maps.Copy(routes, r)
}

// uiAsset serves a static file.
func uiAsset(ctype string, b []byte) func(*Server, *respWriter, *http.Request) {
	return func(_ *Server, w *respWriter, _ *http.Request) {
		writeUI(w, http.StatusOK, ctype+"; charset=utf-8", b)
	}
}

// writeUI writes a reply of the dashboard, with the headers that keep it
// to itself: no caching, no framing, no script or style from elsewhere.
func writeUI(w *respWriter, status int, ctype string, body []byte) {
	h := w.w.Header()
	h.Set("Content-Type", ctype)
	h.Set("Content-Length", strconv.Itoa(len(body)))
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	w.status = status
	w.w.WriteHeader(status)
	w.w.Write(body)
}

// uiSession is the value of the session cookie: an HMAC of the token,
// which proves the token was given without being it.
func (s *Server) uiSession() string {
	m := hmac.New(sha256.New, []byte(s.opts.Token))
	m.Write([]byte("ledger dashboard session v1"))
	return hex.EncodeToString(m.Sum(nil))
}

// uiAllowed applies the access rule to a request of the dashboard.
func (s *Server) uiAllowed(r *http.Request) error {
	if err := s.ready(); err != nil {
		return err
	}
	if s.opts.Token != "" {
		if c, err := r.Cookie(uiCookie); err == nil && subtle.ConstantTimeCompare([]byte(c.Value), []byte(s.uiSession())) == 1 {
			return nil
		}
	}
	return s.authorize(r) // the Host check, or a bearer token
}

// uiGuard serves a route of the dashboard to those the access rule lets
// in; a page refused for want of the token is the login form.
func uiGuard(page bool, h func(*Server, *respWriter, *http.Request)) func(*Server, *respWriter, *http.Request) {
	return func(s *Server, w *respWriter, r *http.Request) {
		err := s.uiAllowed(r)
		if err == nil {
			h(s, w, r)
			return
		}
		b := s.mapError(err)
		if page && b.status == http.StatusUnauthorized {
			s.uiRender(w, http.StatusUnauthorized, "login", "Sign in", nil, "")
			return
		}
		if page {
			s.uiRender(w, b.status, "error", http.StatusText(b.status), nil, b.body.Error)
			return
		}
		w.fail(b)
	}
}

// uiRender writes a page: its template with the layout, or with the
// fragment given, only that template.
func (s *Server) uiRender(w *respWriter, status int, page, title string, data any, msg string) {
	var b bytes.Buffer
	err := uiPages[page].ExecuteTemplate(&b, "layout", map[string]any{"Title": title, "Data": data, "Error": msg})
	if err != nil {
		w.fail(s.mapError(fmt.Errorf("ledger: dashboard: %w", err)))
		return
	}
	writeUI(w, status, "text/html; charset=utf-8", b.Bytes())
}

// uiFragment writes the template name of page alone.
func (s *Server) uiFragment(w *respWriter, page, name string, data any) {
	var b bytes.Buffer
	if err := uiPages[page].ExecuteTemplate(&b, name, data); err != nil {
		w.fail(s.mapError(fmt.Errorf("ledger: dashboard: %w", err)))
		return
	}
	writeUI(w, http.StatusOK, "text/html; charset=utf-8", b.Bytes())
}

// uiLogin serves POST /ui/login: the token in the form's body, checked in
// constant time; a session cookie and the way to /ui if it is right.
func (s *Server) uiLogin(w *respWriter, r *http.Request) {
	if err := s.ready(); err != nil {
		w.fail(s.mapError(err))
		return
	}
	if s.opts.Token == "" {
		if err := s.authorize(r); err != nil {
			w.fail(s.mapError(err))
			return
		}
		uiRedirect(w, PathUI)
		return
	}
	ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	var raw []byte
	if w.body != nil && ct == "application/x-www-form-urlencoded" {
		raw, _ = io.ReadAll(io.LimitReader(w.body, 4096))
	}
	form, _ := url.ParseQuery(string(raw))
	sum := sha256.Sum256([]byte(form.Get("token")))
	if subtle.ConstantTimeCompare(sum[:], s.token[:]) != 1 {
		s.uiRender(w, http.StatusUnauthorized, "login", "Sign in", nil, "That is not the server's token.")
		return
	}
	http.SetCookie(w.w, &http.Cookie{
		Name: uiCookie, Value: s.uiSession(), Path: PathUI,
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil,
	})
	uiRedirect(w, PathUI)
}

func uiRedirect(w *respWriter, to string) {
	w.w.Header().Set("Location", to)
	writeUI(w, http.StatusSeeOther, "text/plain; charset=utf-8", nil)
}

// uiEvents serves /ui/events: the stream of an operation (without a
// participant: a dashboard proves nobody alive), or the changes of all.
func (s *Server) uiEvents(w *respWriter, r *http.Request) {
	q := r.URL.Query()
	id := q.Get("operationId")
	if id == "" {
		s.viewEvents(w, r)
		return
	}
	sq := url.Values{"operationId": {id}}
	if a := q.Get("after"); a != "" {
		sq.Set("after", a)
	}
	r = r.Clone(r.Context())
	r.URL.RawQuery = sq.Encode()
	s.stream(w, r)
}

// uiSummary is one live operation in the list.
type uiSummary struct {
	ID, State, Age, Description string
	Aborted                     bool
	Active, Total, Calls, Stale int
}

// uiListData is the list of live operations.
type uiListData struct {
	Ops      []uiSummary
	Archived []string // the newest first
	AsOf     string
}

func (s *Server) uiIndex(w *respWriter, r *http.Request) {
	l, err := s.uiListOf(r.Context())
	if err != nil {
		s.uiRender(w, s.mapError(err).status, "error", "Error", nil, s.mapError(err).body.Error)
		return
	}
	s.uiRender(w, http.StatusOK, "index", "Live operations", l, "")
}

func (s *Server) uiList(w *respWriter, r *http.Request) {
	l, err := s.uiListOf(r.Context())
	if err != nil {
		w.fail(s.mapError(err))
		return
	}
	s.uiFragment(w, "index", "list", l)
}

func (s *Server) uiListOf(ctx context.Context) (*uiListData, error) {
	ctx, cancel := context.WithTimeout(ctx, s.opts.LockTimeout)
	defer cancel()
	ids, err := s.b.s.List(ctx, false)
	if err != nil {
		return nil, storeError(err)
	}
	now := time.Now()
	l := &uiListData{AsOf: now.UTC().Format("15:04:05 UTC")}
	for _, id := range ids {
		d, _, err := s.viewState(ctx, id)
		if err != nil || d.Finished() {
			continue // archived since it was listed, or unreadable
		}
		sum := uiSummary{ID: id, State: d.OperationState, Age: uiAge(now.Sub(d.StartTime.Time)), Description: d.Description,
			Aborted: d.Aborted, Total: len(d.Participants), Calls: len(d.CallFrames)}
		for i := range d.Participants {
			if p := &d.Participants[i]; p.State == store.ParticipantActive {
				sum.Active++
				if stale(p, now) {
					sum.Stale++
				}
			}
		}
		l.Ops = append(l.Ops, sum)
	}
	if archived, err := s.b.s.List(ctx, true); err == nil {
		slices.Reverse(archived)
		l.Archived = archived[:min(len(archived), uiArchived)]
	}
	return l, nil
}

// stale reports whether an active participant's last beat is older than
// it may be, by its own settings and the clock of now.
func stale(p *store.Participant, now time.Time) bool {
	interval, threshold := settingsOf(p)
	return now.Sub(p.LastHeartbeat.Time) > staleAfter(interval, threshold)
}

// uiOp is an operation as its page shows it.
type uiOp struct {
	ID, Description, State, Started, Age, Initiator, AsOf string
	Aborted, Finished                                     bool
	Rev                                                   uint64 // the journal position shown; the stream follows it
	Failure                                               *uiFailure
	Participants                                          []uiParticipant
	Groups                                                []uiGroup
	CallCount                                             int
	Temps                                                 []uiTemp
	Log                                                   []string // its last lines
	LogLines                                              int
	Timeline                                              template.HTML
}

type uiFailure struct{ At, By, Reason, Calls, Coordinator string }

type uiParticipant struct {
	ID, Process, State, Beat, Threshold string
	Sessions                            int
	Stale, Remote                       bool
}

type uiGroup struct {
	Process string
	Calls   []uiCall
}

type uiCall struct {
	ID, Description, Age, State string
	Contained                   bool
}

type uiTemp struct{ Path, Owner, Age, Via string }

func (s *Server) uiOperation(w *respWriter, r *http.Request) {
	op, err := s.uiOpOf(r)
	if err != nil {
		b := s.mapError(err)
		s.uiRender(w, b.status, "error", http.StatusText(b.status), nil, b.body.Error)
		return
	}
	s.uiRender(w, http.StatusOK, "operation", op.ID, op, "")
}

func (s *Server) uiOperationPart(w *respWriter, r *http.Request) {
	op, err := s.uiOpOf(r)
	if err != nil {
		w.fail(s.mapError(err))
		return
	}
	s.uiFragment(w, "operation", "operation", op)
}

// uiTimeline serves the timeline of an operation as an SVG document.
func (s *Server) uiTimeline(w *respWriter, r *http.Request) {
	id, err := queryID(r)
	if err != nil {
		w.fail(s.mapError(err))
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.opts.LockTimeout)
	defer cancel()
	log, err := s.b.s.ReadLog(ctx, id, false)
	if err != nil {
		w.fail(s.mapError(storeError(err)))
		return
	}
	var b bytes.Buffer
	if err := timeline.Parse(id, log, time.Now()).SVG(&b); err != nil {
		w.fail(s.mapError(err))
		return
	}
	writeUI(w, http.StatusOK, "image/svg+xml", b.Bytes())
}

// uiOpOf reads the operation a request names, for its page.
func (s *Server) uiOpOf(r *http.Request) (*uiOp, error) {
	id, err := queryID(r)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.opts.LockTimeout)
	defer cancel()
	d, rev, err := s.viewState(ctx, id)
	if err != nil {
		return nil, err
	}
	log, err := s.b.s.ReadLog(ctx, id, false)
	if err != nil {
		log = nil // the state is there: show it without its log
	}
	now := time.Now()
	op := &uiOp{
		ID: id, Description: d.Description, State: d.OperationState, Started: d.StartTime.UTC().Format("2006-01-02 15:04:05 UTC"),
		Age: uiAge(now.Sub(d.StartTime.Time)), Initiator: d.InitiatorID, AsOf: now.UTC().Format("15:04:05 UTC"),
		Aborted: d.Aborted, Finished: d.Finished(), Rev: uint64(rev), CallCount: len(d.CallFrames),
	}
	if f := d.Failure; f != nil {
		op.Failure = &uiFailure{At: f.FailedAt.UTC().Format("15:04:05 UTC"), By: f.ParticipantID, Reason: f.Reason,
			Calls: strings.Join(f.CrashedCallIDs, ", "), Coordinator: f.Coordinator}
	}
	op.Participants = uiParticipants(d, now)
	op.Groups = uiGroups(d, now)
	for _, t := range d.TempResources {
		op.Temps = append(op.Temps, uiTemp{Path: t.Path, Owner: fmt.Sprintf("%s %d@%s", t.ParticipantID, t.Owner, t.Host),
			Age: uiAge(now.Sub(t.RegisteredAt.Time)), Via: t.RegisteredVia})
	}
	lines := strings.Split(strings.TrimSuffix(string(log), "\n"), "\n")
	if len(log) == 0 {
		lines = nil
	}
	op.LogLines, op.Log = len(lines), lines[max(len(lines)-uiLogLines, 0):]
	if op.Timeline, err = timeline.Parse(id, log, now).HTML(); err != nil {
		return nil, err
	}
	return op, nil
}

func uiParticipants(d *store.Data, now time.Time) []uiParticipant {
	var out []uiParticipant
	for i := range d.Participants {
		p := &d.Participants[i]
		up := uiParticipant{ID: p.ParticipantID, Process: fmt.Sprintf("%d@%s", p.PID, p.Host), State: p.State, Sessions: p.Sessions, Remote: p.Remote}
		if p.State == store.ParticipantActive {
			_, threshold := settingsOf(p)
			up.Beat, up.Threshold, up.Stale = uiAge(now.Sub(p.LastHeartbeat.Time)), uiAge(threshold), stale(p, now)
		}
		out = append(out, up)
	}
	return out
}

// uiGroups returns the calls of d by participant process, in the order
// they first appear.
func uiGroups(d *store.Data, now time.Time) []uiGroup {
	var out []uiGroup
	at := map[string]int{}
	for _, f := range d.CallFrames {
		k := fmt.Sprintf("%s %d@%s", f.ParticipantID, f.PID, f.Host)
		i, ok := at[k]
		if !ok {
			i = len(out)
			at[k] = i
			out = append(out, uiGroup{Process: k})
		}
		out[i].Calls = append(out[i].Calls, uiCall{ID: f.CallID, Description: f.Description,
			Age: uiAge(now.Sub(f.StartTime.Time)), State: f.State, Contained: !f.FailOnCrash})
	}
	return out
}

// uiAge writes a duration for people: 1.2s, 42s, 3m12s, 2h5m.
func uiAge(d time.Duration) string {
	switch {
	case d < 0:
		return "0s"
	case d < 10*time.Second:
		return d.Round(100 * time.Millisecond).String()
	case d < time.Hour:
		return d.Round(time.Second).String()
	}
	s := strings.TrimSuffix(d.Round(time.Minute).String(), "0s")
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}
