package apiserver

import (
	"bufio"
	"context"
	"errors"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// metrics counts requests and their latency by verb, resource and code
// (kube-apiserver's apiserver_request_total and _duration_seconds).
type metrics struct {
	reg      *prometheus.Registry
	total    *prometheus.CounterVec
	duration *prometheus.HistogramVec
	inflight prometheus.Gauge
	inqueue  *prometheus.GaugeVec
	rejected *prometheus.CounterVec
}

func newMetrics() *metrics {
	m := &metrics{reg: prometheus.NewRegistry()}
	m.total = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "apiserver_request_total", Help: "Counter of API requests by verb, resource, subresource and HTTP code.",
	}, []string{"verb", "group", "resource", "subresource", "code"})
	m.duration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "apiserver_request_duration_seconds", Help: "Response latency by verb, resource and subresource (watches excluded).",
		Buckets: []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10},
	}, []string{"verb", "group", "resource", "subresource"})
	m.inflight = prometheus.NewGauge(prometheus.GaugeOpts{Name: "apiserver_current_inflight_requests", Help: "Requests being served."})
	m.inqueue = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "apiserver_current_inqueue_requests", Help: "Requests waiting for a seat, by kind (mutating, readOnly).",
	}, []string{"request_kind"})
	m.rejected = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "apiserver_dropped_requests_total", Help: "Requests answered 429 after waiting too long for a seat, by kind.",
	}, []string{"request_kind"})
	m.reg.MustRegister(m.total, m.duration, m.inflight, m.inqueue, m.rejected, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

// reqLabels is filled in by the handlers as they learn what a request is.
type reqLabels struct {
	verb, group, resource, subresource string
}

// reqState is what the middleware layers learn about a request. It lives
// in one context value set by the outermost layer, so that the layers do
// not each copy the request to add their own.
type reqState struct {
	labels reqLabels
	user   User
	authed bool
	// query is the parsed query string (see queryOf).
	query url.Values
}

// queryOf is the request's query, parsed once per request (nil when there
// is none). Callers must not modify it.
func queryOf(r *http.Request) url.Values {
	if r.URL.RawQuery == "" {
		return nil
	}
	st := stateFrom(r.Context())
	if st == nil {
		return r.URL.Query()
	}
	if st.query == nil {
		st.query = r.URL.Query()
	}
	return st.query
}

type stateKey struct{}

func stateFrom(ctx context.Context) *reqState {
	st, _ := ctx.Value(stateKey{}).(*reqState)
	return st
}

func setRequestInfo(r *http.Request, q request) {
	if st := stateFrom(r.Context()); st != nil {
		st.labels.group, st.labels.resource, st.labels.subresource = q.res.GVR.Group, q.res.GVR.Resource, q.sub
	}
}

func setVerb(r *http.Request, verb string) {
	if st := stateFrom(r.Context()); st != nil {
		st.labels.verb = verb
	}
}

func (m *metrics) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		st := &reqState{labels: reqLabels{verb: r.Method}}
		l := &st.labels
		rw := &statusWriter{ResponseWriter: w, code: http.StatusOK}
		m.inflight.Inc()
		next.ServeHTTP(rw, r.WithContext(context.WithValue(r.Context(), stateKey{}, st)))
		m.inflight.Dec()
		m.total.WithLabelValues(l.verb, l.group, l.resource, l.subresource, strconv.Itoa(rw.code)).Inc()
		if l.verb != "WATCH" && l.subresource != "log" && l.subresource != "exec" && l.subresource != "portforward" && l.subresource != "attach" {
			m.duration.WithLabelValues(l.verb, l.group, l.resource, l.subresource).Observe(time.Since(start).Seconds())
		}
	})
}

// statusWriter records the status code and keeps Flush and Hijack
// reachable (watches stream, exec and port-forward upgrade).
type statusWriter struct {
	http.ResponseWriter
	code  int
	wrote bool
}

func (w *statusWriter) WriteHeader(code int) {
	if !w.wrote {
		w.code, w.wrote = code, true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	w.wrote = true
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (w *statusWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	if h, ok := w.ResponseWriter.(http.Hijacker); ok {
		w.code, w.wrote = http.StatusSwitchingProtocols, true
		return h.Hijack()
	}
	return nil, nil, errors.New("connection does not support hijacking")
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
