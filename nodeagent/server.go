package nodeagent

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/pprof"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// newKubeletServer is the kubelet API on NodeIP:KubeletPort: TLS with the
// node's certificate; every path but /healthz requires a client certificate
// signed by the cluster CA (the API server presents its admin cert).
func newKubeletServer(cfg *Config, cr credentials, pm *podManager, proxyHandler http.Handler) (*http.Server, error) {
	pair, err := tls.LoadX509KeyPair(cr.CertFile, cr.KeyFile)
	if err != nil {
		return nil, err
	}
	caPEM, err := os.ReadFile(cr.CAFile)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	mux := http.NewServeMux()
	h := &kubeletAPI{cfg: cfg, pm: pm}
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) })
	mux.Handle("GET /metrics", promhttp.HandlerFor(prometheus.Gatherers{metrics, &runtimeMetrics}, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /containerLogs/{ns}/{pod}/{container}", h.logs)
	mux.HandleFunc("/exec/{ns}/{pod}/{container}", h.exec)
	mux.HandleFunc("/portForward/{ns}/{pod}", h.portForward)
	mux.HandleFunc("/portForward/{ns}/{pod}/{uid}", h.portForward)
	// Profiling, as the kubelet's enableProfilingHandler: behind the same
	// client-certificate check as everything else.
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	if proxyHandler != nil {
		mux.Handle("/kubelab/", proxyHandler)
	}
	return &http.Server{
		Handler:           requireClientCert(mux),
		ReadHeaderTimeout: 10 * time.Second,
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{pair}, ClientCAs: pool,
			ClientAuth: tls.VerifyClientCertIfGiven, MinVersion: tls.VersionTLS12,
			NextProtos: []string{"http/1.1"}}, // upgrades (exec, port-forward) need HTTP/1.1
	}, nil
}

func requireClientCert(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/healthz" && (r.TLS == nil || len(r.TLS.VerifiedChains) == 0) {
			writeStatus(w, http.StatusUnauthorized, metav1.StatusReasonUnauthorized, "Unauthorized")
			return
		}
		next.ServeHTTP(w, r)
	})
}

// writeStatus answers with a metav1.Status, as kubectl expects of errors.
func writeStatus(w http.ResponseWriter, code int, reason metav1.StatusReason, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(metav1.Status{TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"},
		Status: metav1.StatusFailure, Message: msg, Reason: reason, Code: int32(code)})
}

type kubeletAPI struct {
	cfg *Config
	pm  *podManager
}

func (h *kubeletAPI) lookup(w http.ResponseWriter, r *http.Request) (*podWorker, *containerRun, bool) {
	ns, pod := r.PathValue("ns"), r.PathValue("pod")
	pw := h.pm.find(ns, pod)
	if pw == nil {
		writeStatus(w, http.StatusNotFound, metav1.StatusReasonNotFound, fmt.Sprintf("pods %q not found", pod))
		return nil, nil, false
	}
	name := r.PathValue("container")
	if name == "" {
		return pw, nil, true
	}
	c := pw.container(name)
	if c == nil {
		writeStatus(w, http.StatusBadRequest, metav1.StatusReasonBadRequest,
			fmt.Sprintf("container %s is not valid for pod %s", name, pod))
		return nil, nil, false
	}
	return pw, c, true
}

func (h *kubeletAPI) logs(w http.ResponseWriter, r *http.Request) {
	pw, c, ok := h.lookup(w, r)
	if !ok {
		return
	}
	q := r.URL.Query()
	o := LogOptions{Follow: boolParam(q.Get("follow")), Timestamps: boolParam(q.Get("timestamps"))}
	if v := q.Get("tailLines"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			writeStatus(w, http.StatusBadRequest, metav1.StatusReasonBadRequest, "tailLines must be a non-negative integer")
			return
		}
		o.TailLines = &n
	}
	if v := q.Get("limitBytes"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n <= 0 {
			writeStatus(w, http.StatusBadRequest, metav1.StatusReasonBadRequest, "limitBytes must be a positive integer")
			return
		}
		o.LimitBytes = &n
	}
	if v := q.Get("sinceSeconds"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n <= 0 {
			writeStatus(w, http.StatusBadRequest, metav1.StatusReasonBadRequest, "sinceSeconds must be a positive integer")
			return
		}
		o.Since = time.Now().Add(-time.Duration(n) * time.Second)
	}
	if v := q.Get("sinceTime"); v != "" {
		if t, err := time.Parse(time.RFC3339, v); err == nil {
			o.Since = t
		}
	}
	c.mu.Lock()
	instance, started, proc := c.instance, c.started || c.last.Terminated != nil, c.proc
	waiting := ""
	if c.state.Waiting != nil {
		waiting = c.state.Waiting.Reason
	}
	c.mu.Unlock()
	previous := boolParam(q.Get("previous"))
	dir := logDir(h.cfg.DataDir, string(pw.uid), c.spec.Name)
	path := logPath(dir, instance)
	if previous {
		// The previous run: the one before the current instance, or the one
		// that just ended when the container waits in back-off.
		prev := instance - 1
		if proc == nil && c.last.Terminated != nil && waiting == "CrashLoopBackOff" {
			prev = instance
		}
		if _, err := os.Stat(logPath(dir, prev)); prev < 0 || err != nil {
			writeStatus(w, http.StatusBadRequest, metav1.StatusReasonBadRequest,
				fmt.Sprintf("previous terminated container %q in pod %q not found", c.spec.Name, pw.name))
			return
		}
		path = logPath(dir, prev)
		o.Follow = false
	} else if !started {
		if waiting == "" {
			waiting = "ContainerCreating"
		}
		writeStatus(w, http.StatusBadRequest, metav1.StatusReasonBadRequest, errContainerWaiting(c.spec.Name, pw.name, waiting).Error())
		return
	}
	w.Header().Set("Content-Type", "text/plain")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusOK)
	running := func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.instance == instance && !c.stopping && (c.proc != nil || c.state.Waiting != nil)
	}
	_ = streamLog(r.Context(), w, path, o, running)
}

func boolParam(s string) bool {
	b, _ := strconv.ParseBool(strings.TrimSpace(s))
	return b || s == "1"
}
