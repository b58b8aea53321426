package apiserver

import (
	"net/http"
	"strconv"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
)

// Defaults of the in-flight limits (kube-apiserver's
// --max-requests-inflight and --max-mutating-requests-inflight are 400 and
// 200; kubelab serves a lab on a few cores, where a few dozen requests in
// progress already keep every core busy).
const (
	defaultMaxMutatingInflight = 64
	defaultMaxReadonlyInflight = 128
	defaultInflightQueueWait   = 30 * time.Second
)

// inflight limits the resource requests being served at once, with
// separate seats for mutating and read-only requests, as kube-apiserver's
// max-in-flight filter does. A request that finds no free seat waits in a
// first-come first-served queue, parked rather than runnable, so a burst of
// writes cannot crowd out reads (or the other way round); only if it waits
// longer than the queue timeout does it get 429 TooManyRequests with a
// Retry-After, which client-go honours by retrying. Long-running requests
// (watches, logs, exec, attach, port-forward, proxy) take no seat.
type inflight struct {
	mutating, readonly chan struct{} // nil: unlimited
	wait               time.Duration
	m                  *metrics
}

func newInflight(cfg Config, m *metrics) *inflight {
	seats := func(n int) chan struct{} {
		if n < 0 {
			return nil
		}
		return make(chan struct{}, n)
	}
	return &inflight{mutating: seats(cfg.MaxMutatingInflight), readonly: seats(cfg.MaxReadonlyInflight), wait: cfg.InflightQueueWait, m: m}
}

// longRunning: requests that may stay open indefinitely.
func longRunning(r *http.Request, q request) bool {
	switch q.sub {
	case "log", "exec", "attach", "portforward", "proxy":
		return true
	}
	if r.Method == http.MethodGet {
		if w := queryOf(r).Get("watch"); w == "true" || w == "1" {
			return true
		}
	}
	return false
}

func mutating(method string) bool {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		return false
	}
	return true
}

// admit takes a seat for the request, waiting for one if need be. It
// returns the function that gives the seat back, or false when it has
// already answered (429, or the client went away).
func (l *inflight) admit(w http.ResponseWriter, r *http.Request, q request) (func(), bool) {
	if longRunning(r, q) {
		return func() {}, true
	}
	seats, kind := l.readonly, "readOnly"
	if mutating(r.Method) {
		seats, kind = l.mutating, "mutating"
	}
	if seats == nil {
		return func() {}, true
	}
	release := func() { <-seats }
	select {
	case seats <- struct{}{}:
		return release, true
	default:
	}
	queued := l.m.inqueue.WithLabelValues(kind)
	queued.Inc()
	defer queued.Dec()
	timer := time.NewTimer(l.wait)
	defer timer.Stop()
	select {
	case seats <- struct{}{}:
		return release, true
	case <-timer.C:
		l.m.rejected.WithLabelValues(kind).Inc()
		w.Header().Set("Retry-After", "1")
		writeError(w, apierrors.NewTooManyRequests("Too many requests, please try again later.", 1))
		return nil, false
	case <-r.Context().Done():
		writeError(w, apierrors.NewTimeoutError("request cancelled while waiting for a seat: "+strconv.Quote(r.Context().Err().Error()), 0))
		return nil, false
	}
}
