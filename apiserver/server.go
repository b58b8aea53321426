package apiserver

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/mux"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"

	"github.com/kubelab/kubelab/apiserver/certs"
	"github.com/kubelab/kubelab/apiserver/ipalloc"
	"github.com/kubelab/kubelab/apiserver/openapi"
	"github.com/kubelab/kubelab/apiserver/resources"
	"github.com/kubelab/kubelab/apiserver/validation"
	"github.com/kubelab/kubelab/store"
)

// Config configures a Server. Zero values take the documented defaults.
type Config struct {
	// DataDir holds store.db, pki/, kubeconfig and node-token. Required.
	DataDir string
	// Listen are the HTTPS addresses to serve on (default 127.0.0.1:6443).
	// Port 0 picks a free port (tests); Addrs reports the real ones.
	Listen []string
	// TLSSANs are extra IPs or DNS names for the serving certificate.
	TLSSANs []string
	// ServiceCIDR is the ClusterIP range (default 10.96.0.0/12); its first
	// address belongs to the `kubernetes` Service in default.
	ServiceCIDR string
	// NodePortRange is "LOW-HIGH" (default 30000-32767).
	NodePortRange string
	// FeatureGates, e.g. {"ServiceInternalTrafficPolicy": false}. Unknown
	// gates are ignored.
	FeatureGates map[string]bool
	// Store, when set, is used instead of opening DataDir/store.db (and is
	// not closed by the server).
	Store store.Interface
	// StoreOptions are passed to store.Open when Store is nil.
	StoreOptions store.Options
	// BookmarkInterval is how often watches that allow bookmarks get one
	// (default 10s).
	BookmarkInterval time.Duration
	// MaxMutatingInflight is how many mutating resource requests (create,
	// update, patch, delete) are served at once (default 64; negative: no
	// limit). Further ones wait for a seat, see InflightQueueWait.
	MaxMutatingInflight int
	// MaxReadonlyInflight is the same for get and list (default 128;
	// negative: no limit). Watches and other long-running requests take no
	// seat.
	MaxReadonlyInflight int
	// InflightQueueWait is how long a request waits for a seat before it
	// is answered 429 TooManyRequests with Retry-After (default 30s).
	InflightQueueWait time.Duration
	// KubeconfigServer is the server URL written into DataDir/kubeconfig
	// (default https://<first listen address>, a wildcard becoming 127.0.0.1).
	KubeconfigServer string
}

// Server is a kubelab API server.
type Server struct {
	cfg          Config
	pki          *certs.PKI
	store        store.Interface
	ownStore     bool
	listeners    []net.Listener
	handler      http.Handler
	valOpts      validation.Options
	ips          *ipalloc.IPRange
	ports        *ipalloc.PortRange
	loopToken    string
	kubeURL      string
	metrics      *metrics
	workers      *workers
	inflight     *inflight
	wcache       *watchCache
	kubelet      *kubeletDialer
	svcTransport *http.Transport
	nsc          *nsCache
	fms          fieldManagers

	ready     chan struct{}
	readyOnce sync.Once
	started   time.Time
}

func logWarn(msg string, args ...any) { slog.Warn(msg, args...) }

// New prepares a server: it creates or loads the PKI, the kubeconfig and
// the node token, opens the store and binds the listeners (so the addresses
// are known before Run).
func New(cfg Config) (*Server, error) {
	if cfg.DataDir == "" {
		return nil, errors.New("apiserver: DataDir is required")
	}
	if len(cfg.Listen) == 0 {
		cfg.Listen = []string{"127.0.0.1:6443"}
	}
	if cfg.ServiceCIDR == "" {
		cfg.ServiceCIDR = "10.96.0.0/12"
	}
	if cfg.NodePortRange == "" {
		cfg.NodePortRange = "30000-32767"
	}
	if cfg.BookmarkInterval <= 0 {
		cfg.BookmarkInterval = 10 * time.Second
	}
	if cfg.MaxMutatingInflight == 0 {
		cfg.MaxMutatingInflight = defaultMaxMutatingInflight
	}
	if cfg.MaxReadonlyInflight == 0 {
		cfg.MaxReadonlyInflight = defaultMaxReadonlyInflight
	}
	if cfg.InflightQueueWait <= 0 {
		cfg.InflightQueueWait = defaultInflightQueueWait
	}
	s := &Server{cfg: cfg, ready: make(chan struct{}), started: time.Now(), nsc: newNSCache()}
	s.valOpts = validation.DefaultOptions()
	if v, ok := cfg.FeatureGates["ServiceInternalTrafficPolicy"]; ok {
		s.valOpts.ServiceInternalTrafficPolicy = v
	}
	var err error
	if s.ips, err = ipalloc.NewIPRange(cfg.ServiceCIDR, "default/kubernetes"); err != nil {
		return nil, err
	}
	if s.ports, err = ipalloc.ParsePortRange(cfg.NodePortRange); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("data dir: %w", err)
	}
	// Every specific listen address is a name clients use: add it to the SANs.
	sans := append([]string(nil), cfg.TLSSANs...)
	for _, l := range cfg.Listen {
		if host, _, err := net.SplitHostPort(l); err == nil {
			if ip := net.ParseIP(host); ip != nil && !ip.IsUnspecified() {
				sans = append(sans, ip.String())
			}
		}
	}
	if s.pki, err = certs.Ensure(cfg.DataDir, sans, s.ips.First()); err != nil {
		return nil, fmt.Errorf("pki: %w", err)
	}
	if s.loopToken, err = randomToken(); err != nil {
		return nil, err
	}
	for _, addr := range cfg.Listen {
		l, err := net.Listen("tcp", addr)
		if err != nil {
			s.closeListeners()
			return nil, fmt.Errorf("listen %s: %w", addr, err)
		}
		s.listeners = append(s.listeners, l)
	}
	s.kubeURL = cfg.KubeconfigServer
	if s.kubeURL == "" {
		s.kubeURL = "https://" + loopbackHostPort(s.listeners[0].Addr().(*net.TCPAddr))
	}
	if err := s.pki.WriteKubeconfig(filepath.Join(cfg.DataDir, "kubeconfig"), s.kubeURL); err != nil {
		s.closeListeners()
		return nil, err
	}
	if cfg.Store != nil {
		s.store = cfg.Store
	} else {
		db, err := store.Open(filepath.Join(cfg.DataDir, "store.db"), cfg.StoreOptions)
		if err != nil {
			s.closeListeners()
			return nil, fmt.Errorf("open store: %w", err)
		}
		s.store, s.ownStore = db, true
	}
	s.metrics = newMetrics()
	s.inflight = newInflight(cfg, s.metrics)
	s.wcache = newWatchCache()
	s.kubelet = newKubeletDialer(s.pki)
	s.svcTransport = newServiceTransport()
	r, err := s.routes()
	if err != nil {
		s.closeListeners()
		return nil, err
	}
	s.workers = newWorkers()
	s.handler = s.workers.wrap(s.metrics.wrap(s.authenticate(s.resourceFastPath(r))))
	return s, nil
}

func loopbackHostPort(a *net.TCPAddr) string {
	host := a.IP.String()
	if a.IP.IsUnspecified() {
		host = "127.0.0.1"
		if a.IP.To4() == nil && a.IP.Equal(net.IPv6unspecified) {
			host = "127.0.0.1"
		}
	}
	return net.JoinHostPort(host, fmt.Sprint(a.Port))
}

func (s *Server) closeListeners() {
	for _, l := range s.listeners {
		_ = l.Close()
	}
}

// Addrs are the bound listen addresses.
func (s *Server) Addrs() []net.Addr {
	out := make([]net.Addr, len(s.listeners))
	for i, l := range s.listeners {
		out[i] = l.Addr()
	}
	return out
}

// URL is the server URL written into the kubeconfig.
func (s *Server) URL() string { return s.kubeURL }

// Handler is the full HTTP handler (authentication included).
func (s *Server) Handler() http.Handler { return s.handler }

// Ready is closed once the server answers requests and the built-in
// namespaces exist.
func (s *Server) Ready() <-chan struct{} { return s.ready }

// NodeToken is the join token (also in DataDir/node-token).
func (s *Server) NodeToken() string { return s.pki.NodeToken }

// LoopbackConfig is an admin client configuration for in-process
// components; it authenticates with a per-process token and trusts the CA.
func (s *Server) LoopbackConfig() *rest.Config {
	return &rest.Config{
		Host:            "https://" + loopbackHostPort(s.listeners[0].Addr().(*net.TCPAddr)),
		BearerToken:     s.loopToken,
		TLSClientConfig: rest.TLSClientConfig{CAData: s.pki.CAPEM},
		QPS:             500,
		Burst:           1000,
		UserAgent:       "kubelab-loopback",
	}
}

// Run serves until ctx is done, then shuts down (watches end at once).
func (s *Server) Run(ctx context.Context) error {
	defer func() {
		if s.ownStore {
			_ = s.store.Close()
		}
	}()
	if err := s.bootstrap(ctx); err != nil {
		s.closeListeners()
		return err
	}
	srvCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	tlsCfg := &tls.Config{
		Certificates: []tls.Certificate{s.pki.Serving},
		ClientAuth:   tls.VerifyClientCertIfGiven,
		ClientCAs:    s.pki.CAPool(),
		MinVersion:   tls.VersionTLS12,
		NextProtos:   []string{"h2", "http/1.1"},
	}
	hs := &http.Server{
		Handler:           s.handler,
		TLSConfig:         tlsCfg,
		ReadHeaderTimeout: 30 * time.Second,
		BaseContext:       func(net.Listener) context.Context { return srvCtx },
		// client-go multiplexes every informer's watch over one connection.
		HTTP2:    &http.HTTP2Config{MaxConcurrentStreams: 1000},
		ErrorLog: slog.NewLogLogger(slog.Default().Handler(), slog.LevelDebug),
	}
	errc := make(chan error, len(s.listeners))
	for _, l := range s.listeners {
		go func(l net.Listener) {
			errc <- hs.Serve(tls.NewListener(l, tlsCfg))
		}(l)
	}
	s.readyOnce.Do(func() { close(s.ready) })
	// Start-up (PKI, OpenAPI generation, scheme set-up) leaves garbage the
	// runtime would hand back only slowly; return it once things settle so
	// an idle server stays small.
	idle := time.AfterFunc(3*time.Second, debug.FreeOSMemory)
	defer idle.Stop()
	slog.Info("API server ready", "url", s.kubeURL, "startup", time.Since(s.started))
	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	cancel()
	shCtx, shCancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer shCancel()
	_ = hs.Shutdown(shCtx)
	s.workers.stop()
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

// bootstrap creates the built-in namespaces and rebuilds the allocators.
func (s *Server) bootstrap(ctx context.Context) error {
	nsRes, _ := resources.Lookup("", "v1", "namespaces")
	for _, name := range []string{"default", "kube-system", "kube-public", "kube-node-lease"} {
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
		if _, _, err := s.create(ctx, nsRes, "", ns, false); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("create namespace %s: %w", name, err)
		}
	}
	svcRes, _ := resources.Lookup("", "v1", "services")
	list, err := s.store.List(ctx, store.ListOptions{Prefix: collectionPrefix(svcRes, "")})
	if err != nil {
		return fmt.Errorf("list services: %w", err)
	}
	for _, it := range list.Items {
		obj, err := s.decode(svcRes, it)
		if err != nil {
			return err
		}
		s.restoreService(obj.(*corev1.Service))
	}
	return nil
}

func (s *Server) routes() (*mux.Router, error) {
	r := mux.NewRouter()
	r.SkipClean(true)
	r.HandleFunc("/version", s.serveVersion)
	for _, p := range []string{"/healthz", "/livez", "/readyz"} {
		r.PathPrefix(p).HandlerFunc(s.serveHealth)
	}
	r.Handle("/metrics", s.metrics.handler())
	r.HandleFunc("/kubelab/v1/join", s.serveJoin)
	r.HandleFunc("/api", s.serveAPIVersions)
	r.HandleFunc("/api/", s.serveAPIVersions)
	r.HandleFunc("/apis", s.serveAPIGroupList)
	r.HandleFunc("/apis/", s.serveAPIGroupList)
	if err := openapi.Register(r, resources.All); err != nil {
		return nil, fmt.Errorf("openapi: %w", err)
	}
	r.HandleFunc(ssarPath, s.serveSelfSubjectAccessReview)
	r.PathPrefix("/api/v1").HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		s.serveGroupVersion(w, req, "", "v1", req.URL.Path[len("/api/v1"):])
	})
	r.PathPrefix("/apis/{group}/{version}").HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		v := mux.Vars(req)
		prefix := "/apis/" + v["group"] + "/" + v["version"]
		s.serveGroupVersion(w, req, v["group"], v["version"], req.URL.Path[len(prefix):])
	})
	r.HandleFunc("/apis/{group}", s.serveAPIGroup)
	r.NotFoundHandler = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { writeError(w, errNotFoundPath()) })
	r.MethodNotAllowedHandler = http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) { writeError(w, errMethodNotAllowed(req)) })
	return r, nil
}

// ssarPath is served by its own handler, not as a stored resource.
const ssarPath = "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews"

// resourceFastPath sends resource requests (/api/v1/..., /apis/G/V/...)
// straight to serveGroupVersion, as the router would, without the
// router's regular-expression matching and request copy; everything else
// goes through the router.
func (s *Server) resourceFastPath(router http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := r.URL.Path
		if rest, ok := strings.CutPrefix(p, "/api/v1"); ok && (rest == "" || rest[0] == '/') {
			s.serveGroupVersion(w, r, "", "v1", rest)
			return
		}
		if rest, ok := strings.CutPrefix(p, "/apis/"); ok && p != ssarPath {
			group, after, ok := strings.Cut(rest, "/")
			version, _, _ := strings.Cut(after, "/")
			if ok && group != "" && version != "" {
				s.serveGroupVersion(w, r, group, version, after[len(version):])
				return
			}
		}
		router.ServeHTTP(w, r)
	})
}

func (s *Server) serveVersion(w http.ResponseWriter, r *http.Request) {
	info := resources.VersionInfo("", "", "linux/"+goArch())
	writeJSONValue(w, http.StatusOK, mediaJSON, info)
}

func (s *Server) serveHealth(w http.ResponseWriter, r *http.Request) {
	select {
	case <-s.ready:
	default:
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write([]byte("not ready\n"))
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	_, _ = w.Write([]byte("ok"))
}
