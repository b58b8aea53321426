package nodeagent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/vishvananda/netlink"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"

	"github.com/kubelab/kubelab/nodeagent/sandbox"
)

var (
	metrics        = prometheus.NewRegistry()
	sandboxSeconds = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "kubelab_agent_sandbox_create_seconds", Help: "Time to create a pod sandbox (netns, veth, IP).",
		Buckets: []float64{.005, .01, .02, .05, .1, .25, .5, 1},
	})
	runningPods = prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "kubelab_agent_pods", Help: "Pods the agent is running."},
		func() float64 { return float64(podCount()) })
	podCount = func() int { return 0 }
)

func init() {
	metrics.MustRegister(sandboxSeconds, runningPods)
}

// Run is one node: join, register, keep the Lease, route to other nodes' pod
// CIDRs, run the pods bound here and serve the kubelet API, until ctx ends.
// On return the pods' processes and namespaces are gone (their IP leases and
// the API objects stay, so a restarted agent picks them up again).
func Run(ctx context.Context, cfg Config) error {
	if err := cfg.defaults(); err != nil {
		return err
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return err
	}
	// Forwarding between pod links and eth0 is the node's job; the agent runs
	// in the node's own namespace, so this is that namespace's setting.
	if err := os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte("1"), 0o644); err != nil {
		return fmt.Errorf("enable forwarding: %w", err)
	}
	cr, err := ensureCredentials(ctx, &cfg)
	if err != nil {
		return fmt.Errorf("join: %w", err)
	}
	client, err := newNodeClient(restConfig(cfg.ServerURL, cr))
	if err != nil {
		return err
	}
	capa, err := capacity(&cfg)
	if err != nil {
		return err
	}
	if _, err := register(ctx, client, &cfg, capa); err != nil {
		return fmt.Errorf("register node %s: %w", cfg.NodeName, err)
	}
	slog.Info("node registered", "node", cfg.NodeName, "ip", cfg.NodeIP)
	hbDone := make(chan struct{})
	go func() { defer close(hbDone); heartbeat(ctx, client, &cfg, capa) }()

	cidr, err := waitPodCIDR(ctx, client, cfg.NodeName)
	if err != nil {
		return err
	}
	sbm := &sandbox.Manager{Prefix: cfg.NetnsPrefix, CIDR: cidr}
	ipam := sandbox.NewIPAM(filepath.Join(cfg.DataDir, "ipam.json"), cidr)

	nodeInf := informers.NewSharedInformerFactory(client, 0)
	podInf := informers.NewSharedInformerFactoryWithOptions(client, 0, informers.WithTweakListOptions(func(o *metav1.ListOptions) {
		o.FieldSelector = fields.OneTermEqualSelector("spec.nodeName", cfg.NodeName).String()
	}))
	rs := &routeSyncer{self: cfg.NodeName, nodes: nodeInf.Core().V1().Nodes().Lister(), nl: &netlink.Handle{}}
	routeKick := make(chan struct{}, 1)
	kickRoutes := func(any) {
		select {
		case routeKick <- struct{}{}:
		default:
		}
	}
	if _, err := nodeInf.Core().V1().Nodes().Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: kickRoutes, UpdateFunc: func(_, o any) { kickRoutes(o) }, DeleteFunc: kickRoutes,
	}); err != nil {
		return err
	}
	pm := newPodManager(ctx, &cfg, client, sbm, ipam)
	eb := record.NewBroadcaster(record.WithContext(ctx))
	eb.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: client.CoreV1().Events("")})
	defer eb.Shutdown()
	pm.events = eb.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "kubelet", Host: cfg.NodeName})
	podCount = func() int { pm.mu.Lock(); defer pm.mu.Unlock(); return len(pm.workers) }
	podsInformer := podInf.Core().V1().Pods().Informer()
	nodeInf.Start(ctx.Done())
	podInf.Start(ctx.Done())
	go func() {
		t := time.NewTicker(30 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-routeKick:
			case <-t.C:
			}
			if !cache.WaitForCacheSync(ctx.Done(), nodeInf.Core().V1().Nodes().Informer().HasSynced) {
				return
			}
			if err := rs.sync(ctx); err != nil {
				slog.Warn("routes", "err", err)
			}
		}
	}()
	if !cache.WaitForCacheSync(ctx.Done(), podsInformer.HasSynced) {
		<-hbDone
		return nil
	}
	// What an earlier run of this agent left: pods still bound here are
	// adopted, the rest stopped and their sandboxes removed (adopt.go).
	var bound []*corev1.Pod
	for _, o := range podsInformer.GetStore().List() {
		if p, ok := o.(*corev1.Pod); ok {
			bound = append(bound, p)
		}
	}
	pm.adopted = adopt(&cfg, sbm, ipam, bound)
	releaseStale(ipam, podsInformer.GetStore().List())
	// Registered after the sync, the handler still gets every pod (as adds).
	if _, err := podsInformer.AddEventHandler(pm.handlers()); err != nil {
		return err
	}

	var proxyHandler http.Handler
	if cfg.StartProxy != nil {
		h, err := cfg.StartProxy(ctx, client, ProxyParams{NodeName: cfg.NodeName, NodeIP: cfg.NodeIP, PodCIDR: cidr, Registerer: metrics})
		if err != nil {
			return fmt.Errorf("start proxy: %w", err)
		}
		proxyHandler = h
	}
	srv, err := newKubeletServer(&cfg, cr, pm, proxyHandler)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(cfg.NodeIP.String(), strconv.Itoa(cfg.KubeletPort)))
	if err != nil {
		return fmt.Errorf("kubelet API: %w", err)
	}
	srvErr := make(chan error, 1)
	go func() { srvErr <- srv.ServeTLS(ln, "", "") }()
	slog.Info("node agent ready", "node", cfg.NodeName, "podCIDR", cidr, "kubeletAPI", ln.Addr())
	go func() {
		// Start-up is over once the first Lease renewals and informer
		// resyncs have run; the heap they needed goes back to the system.
		for _, d := range []time.Duration{5 * time.Second, 30 * time.Second} {
			select {
			case <-ctx.Done():
				return
			case <-time.After(d):
			}
			debug.FreeOSMemory()
		}
	}()

	var runErr error
	select {
	case <-ctx.Done():
	case err := <-srvErr:
		if !errors.Is(err, http.ErrServerClosed) {
			runErr = fmt.Errorf("kubelet API: %w", err)
		}
	}
	sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	_ = srv.Shutdown(sctx)
	cancel()
	pm.wait()
	<-hbDone
	return runErr
}

// releaseStale frees IP leases of pods that no longer exist on this node.
func releaseStale(ipam *sandbox.IPAM, objs []any) {
	live := map[string]bool{}
	for _, o := range objs {
		if p, ok := o.(*corev1.Pod); ok {
			live[string(p.UID)] = true
		}
	}
	owners, err := ipam.Owners()
	if err != nil {
		return
	}
	for _, uid := range owners {
		if !live[uid] {
			_ = ipam.Release(uid)
		}
	}
}

// Cleanup removes every pod namespace, pod link and route this node's agent
// made (for `kubelab down`, also after a crash), and with DataDir set kills
// the container processes recorded there. It must run inside the node's
// network namespace, with the NodeName/NetnsPrefix the agent used.
func Cleanup(cfg Config) error {
	if cfg.NetnsPrefix == "" {
		if cfg.NodeName == "" {
			return errors.New("cleanup needs the node name or the netns prefix")
		}
		cfg.NetnsPrefix = "kubelab-" + cfg.NodeName + "-"
	}
	if cfg.DataDir != "" {
		killRecorded(cfg.DataDir)
	}
	_ = os.RemoveAll(volumeRootFor(&cfg))
	m := &sandbox.Manager{Prefix: cfg.NetnsPrefix}
	return errors.Join(m.Cleanup(), deleteOwnedRoutes(&netlink.Handle{}))
}
