package ledger

import (
	"context"
	"log/slog"
	"maps"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/tomdist/ledger/internal/store"
	"github.com/tomdist/ledger/internal/wire"
)

// PathMetrics serves the server's metrics in the Prometheus text format
// (GET), under the access rule of the protocol: with a Token, a scraper
// sends it as a bearer token.
const PathMetrics = "/metrics"

// The server's metrics. Requests are counted as they end, with a lookup
// of counters made once per route and status: nothing is allocated per
// request. What the ledger holds (operations, participants, calls,
// journals) is read when /metrics is scraped, not kept up to date.
//
//	ledger_http_requests_total{route,code}           counter
//	ledger_http_request_duration_seconds{route}      histogram (streams left out)
//	ledger_http_streams_open                         gauge: streams of operations and of changes
//	ledger_crash_verdicts_total{by}                  counter: client (reported through the server),
//	                                                 stream (its stream dropped), sweep (orphans)
//	ledger_lock_wait_seconds                         histogram: waits for an operation's lock
//	ledger_operations{state}                         gauge: live, archived
//	ledger_participants{state}                       gauge: of live operations, by record state
//	ledger_participants_stale                        gauge: active, heartbeat past its own threshold
//	ledger_calls{state}                              gauge: frames of live operations, by state
//	ledger_journal_bytes{operation}                  gauge: journal size of each live operation
//
// and the Go runtime's and the process's (go_*, process_*).

func init() {
	maps.Copy(routes, map[string]route{
		PathMetrics: {get: true, stream: (*Server).serveMetrics},
	})
}

// longLived are the routes whose requests last as long as their client
// wants: counted as streams, not timed.
var longLived = map[string]bool{wire.PathStream: true, wire.PathViewEvents: true, pathUIEvents: true}

// serverMetrics are the metrics of one Server, in a registry of its own.
type serverMetrics struct {
	reg      *prometheus.Registry
	handler  http.Handler
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
	streams  prometheus.Gauge
	verdicts *prometheus.CounterVec
	lockWait prometheus.Histogram

	mu   sync.RWMutex // guards byRC
	byRC map[routeCode]requestMetrics
}

type routeCode struct {
	route string
	code  int
}

// requestMetrics are the metrics of the requests of one route and status.
type requestMetrics struct {
	count   prometheus.Counter
	latency prometheus.Observer
}

func newServerMetrics(s *Server) *serverMetrics {
	m := &serverMetrics{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ledger_http_requests_total", Help: "Requests answered, by route and HTTP status.",
		}, []string{"route", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "ledger_http_request_duration_seconds", Help: "Time to answer a request, by route (streams left out).",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 10, 30},
		}, []string{"route"}),
		streams: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "ledger_http_streams_open", Help: "Streams (of operations, of changes) open now.",
		}),
		verdicts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ledger_crash_verdicts_total", Help: "Participants declared crashed through this server, by who judged.",
		}, []string{"by"}),
		lockWait: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "ledger_lock_wait_seconds", Help: "Waits of the server's changes for an operation's lock (changes that found it free are not counted).",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 5, 30},
		}),
		byRC: make(map[routeCode]requestMetrics),
	}
	for _, by := range []string{"client", "stream", "sweep"} {
		m.verdicts.WithLabelValues(by) // shown from the start, at 0
	}
	m.reg.MustRegister(m.requests, m.latency, m.streams, m.verdicts, m.lockWait, &stateCollector{s: s},
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m.handler = promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
	return m
}

// routeLabel is the route of a path: the path of a route, or "other", so
// that no client can grow the set of labels.
func routeLabel(path string) string {
	if _, ok := routes[path]; ok {
		return path
	}
	return "other"
}

// streamOpened counts a request to path that opens a stream, and reports
// whether it is one.
func (m *serverMetrics) streamOpened(path string) bool {
	if m == nil || !longLived[path] {
		return false
	}
	m.streams.Inc()
	return true
}

// observe counts a request to path answered with status after d.
func (m *serverMetrics) observe(path string, status int, d time.Duration, stream bool) {
	if m == nil {
		return
	}
	k := routeCode{routeLabel(path), status}
	m.mu.RLock()
	rm, ok := m.byRC[k]
	m.mu.RUnlock()
	if !ok {
		rm = requestMetrics{m.requests.WithLabelValues(k.route, strconv.Itoa(status)), m.latency.WithLabelValues(k.route)}
		m.mu.Lock()
		m.byRC[k] = rm
		m.mu.Unlock()
	}
	rm.count.Inc()
	if stream {
		m.streams.Dec()
	} else {
		rm.latency.Observe(d.Seconds())
	}
}

// lockWaited counts a wait for an operation's lock.
func (m *serverMetrics) lockWaited(d time.Duration) { m.lockWait.Observe(d.Seconds()) }

// verdict counts and logs that victim was declared crashed in operation
// id, judged by by ("client", "stream" or "sweep").
func (s *Server) verdict(by, id, victim string) {
	if s.metrics != nil {
		s.metrics.verdicts.WithLabelValues(by).Inc()
	}
	if s.log != nil {
		s.log.LogAttrs(context.Background(), slog.LevelWarn, "participant crashed",
			slog.String("operation", id), slog.String("victim", victim), slog.String("by", by))
	}
}

// serveMetrics serves PathMetrics.
func (s *Server) serveMetrics(w *respWriter, r *http.Request) {
	rec := &statusRecorder{ResponseWriter: w.w, status: http.StatusOK}
	s.metrics.handler.ServeHTTP(rec, r)
	w.status = rec.status
}

// statusRecorder remembers the status a handler wrote, for the request
// log.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(code int) {
	r.status = code
	r.ResponseWriter.WriteHeader(code)
}

// stateCollector reads what the ledger holds when the metrics are
// scraped.
type stateCollector struct{ s *Server }

var (
	descOperations   = prometheus.NewDesc("ledger_operations", "Operations in the ledger: live, archived.", []string{"state"}, nil)
	descParticipants = prometheus.NewDesc("ledger_participants", "Participants of live operations, by the state of their record.", []string{"state"}, nil)
	descStale        = prometheus.NewDesc("ledger_participants_stale", "Active participants of live operations whose last heartbeat is older than their own stale threshold (by this server's clock).", nil, nil)
	descCalls        = prometheus.NewDesc("ledger_calls", "Call frames of live operations, by state.", []string{"state"}, nil)
	descJournal      = prometheus.NewDesc("ledger_journal_bytes", "Size of the journal of each live operation.", []string{"operation"}, nil)
)

// scrapeTimeout bounds the reads of one scrape.
const scrapeTimeout = 5 * time.Second

// Describe implements prometheus.Collector.
func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descOperations, descParticipants, descStale, descCalls, descJournal} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.s
	if s.ready() != nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), scrapeTimeout)
	defer cancel()
	live, err := s.b.s.List(ctx, false)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(descOperations, err)
		return
	}
	if archived, err := s.b.s.List(ctx, true); err == nil {
		ch <- prometheus.MustNewConstMetric(descOperations, prometheus.GaugeValue, float64(len(archived)), "archived")
	}
	ch <- prometheus.MustNewConstMetric(descOperations, prometheus.GaugeValue, float64(len(live)), "live")
	c.collectLive(ctx, live, ch)
}

// collectLive sends the participants, calls and journal sizes of the live
// operations ids.
func (c *stateCollector) collectLive(ctx context.Context, ids []string, ch chan<- prometheus.Metric) {
	s := c.s
	parts := map[string]float64{store.ParticipantActive: 0, store.ParticipantLeft: 0, store.ParticipantCrashed: 0}
	calls := map[string]float64{store.FrameActive: 0, store.FrameCrashed: 0, store.FrameCleaningUp: 0, store.FrameCleanedUp: 0}
	stalled := 0.0
	sizer, _ := s.b.s.(interface {
		JournalSize(id string) (int64, error)
	})
	now := time.Now()
	for _, id := range ids {
		d, _, err := s.viewState(ctx, id)
		if err != nil {
			continue // archived since it was listed, or unreadable
		}
		for i := range d.Participants {
			p := &d.Participants[i]
			parts[p.State]++
			if p.State == store.ParticipantActive && stale(p, now) {
				stalled++
			}
		}
		for _, f := range d.CallFrames {
			calls[f.State]++
		}
		if sizer != nil {
			if n, err := sizer.JournalSize(id); err == nil {
				ch <- prometheus.MustNewConstMetric(descJournal, prometheus.GaugeValue, float64(n), id)
			}
		}
	}
	for st, n := range parts {
		ch <- prometheus.MustNewConstMetric(descParticipants, prometheus.GaugeValue, n, st)
	}
	for st, n := range calls {
		ch <- prometheus.MustNewConstMetric(descCalls, prometheus.GaugeValue, n, st)
	}
	ch <- prometheus.MustNewConstMetric(descStale, prometheus.GaugeValue, stalled)
}
