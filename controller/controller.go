package controller

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"
)

// ClientConfig derives the controllers' client configuration from base
// (the API server's loopback configuration): protobuf for requests,
// responses and watch streams, as kube-controller-manager speaks. Every pod
// change reaches several of the controllers' informers, and decoding
// protobuf costs both sides a fraction of what JSON does, CPU a burst of
// pods on a small machine has none of to spare.
func ClientConfig(base *rest.Config) *rest.Config {
	cfg := rest.CopyConfig(base)
	cfg.ContentType = runtime.ContentTypeProtobuf
	cfg.AcceptContentTypes = runtime.ContentTypeProtobuf + "," + runtime.ContentTypeJSON
	return cfg
}

// Options tunes the controllers; the zero value is usable.
type Options struct {
	// ClusterCIDR is the range node pod CIDRs are cut from. Default 10.244.0.0/16.
	ClusterCIDR string
	// NodeCIDRMaskSize is the prefix length of each node's pod CIDR. Default 24.
	NodeCIDRMaskSize int
	// APIServerIP and APIServerPort are what the `kubernetes` Service's
	// Endpoints and EndpointSlice point at. With a nil APIServerIP the
	// Service is still created but gets no endpoints. Port default 6443.
	APIServerIP   net.IP
	APIServerPort int
	// NodeMonitorGracePeriod: a node whose Lease was not renewed for this
	// long is marked Ready=Unknown and tainted unreachable. Default 40s;
	// negative disables the node lifecycle controller (tests with
	// hand-made Node objects and no agents).
	NodeMonitorGracePeriod time.Duration
	// OrphanPodQuarantine is how long pods bound to a node that does not
	// exist are left before the pod GC deletes them. Default 40s, as
	// kube's pod GC.
	OrphanPodQuarantine time.Duration
	// Workers is the number of concurrent syncs per controller. Default 4.
	Workers int
	// Resync is the informers' resync period. Default 0 (none): the
	// controllers requeue by themselves when time matters.
	Resync time.Duration
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// Recorder, when set, receives the events instead of a broadcaster
	// writing core/v1 Events through the client (tests).
	Recorder record.EventRecorder
}

func (o *Options) defaults() {
	if o.ClusterCIDR == "" {
		o.ClusterCIDR = "10.244.0.0/16"
	}
	if o.NodeCIDRMaskSize == 0 {
		o.NodeCIDRMaskSize = 24
	}
	if o.APIServerPort == 0 {
		o.APIServerPort = 6443
	}
	if o.NodeMonitorGracePeriod == 0 {
		o.NodeMonitorGracePeriod = 40 * time.Second
	}
	if o.OrphanPodQuarantine <= 0 {
		o.OrphanPodQuarantine = 40 * time.Second
	}
	if o.Workers <= 0 {
		o.Workers = 4
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
}

// Component names of the events each controller records, as upstream.
const (
	componentReplicaSet    = "replicaset-controller"
	componentDeployment    = "deployment-controller"
	componentEndpointSlice = "endpointslice-controller"
	componentNode          = "node-controller"
	componentNamespace     = "namespace-controller"
)

// recorders hands out one event recorder per component.
type recorders struct {
	fixed       record.EventRecorder
	broadcaster record.EventBroadcaster
}

func (r *recorders) forComponent(name string) record.EventRecorder {
	if r.fixed != nil {
		return r.fixed
	}
	return r.broadcaster.NewRecorder(scheme.Scheme, corev1.EventSource{Component: name})
}

// runner is what each controller contributes to Run.
type runner interface {
	// run works until ctx is done.
	run(ctx context.Context)
}

// Run runs all controllers until ctx is done. It talks to the API only
// through client (shared informers, typed clients, core/v1 Events). It
// returns nil when ctx is cancelled and an error when the options are
// invalid or the informers cannot sync.
func Run(ctx context.Context, client kubernetes.Interface, opts Options) error {
	opts.defaults()
	log := opts.Logger.With("component", "controller")
	alloc, err := newCIDRAllocator(opts.ClusterCIDR, opts.NodeCIDRMaskSize)
	if err != nil {
		return fmt.Errorf("controller: %w", err)
	}
	recs := &recorders{fixed: opts.Recorder}
	if recs.fixed == nil {
		b := record.NewBroadcaster(record.WithContext(ctx))
		b.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: client.CoreV1().Events("")})
		defer b.Shutdown()
		recs.broadcaster = b
	}

	d := &deps{
		client:  client,
		factory: informers.NewSharedInformerFactory(client, opts.Resync),
		log:     log,
		workers: opts.Workers,
		recs:    recs,
	}
	ctors := []func(*deps) (runner, error){
		newReplicaSetController,
		newDeploymentController,
		newEndpointsController,
		func(d *deps) (runner, error) { return newIPAMController(d, alloc) },
		func(d *deps) (runner, error) {
			return newKubernetesServiceController(d, opts.APIServerIP, opts.APIServerPort), nil
		},
		newGarbageCollector,
		newNamespaceController,
	}
	if opts.NodeMonitorGracePeriod > 0 {
		ctors = append(ctors, func(d *deps) (runner, error) {
			return newNodeLifecycleController(d, opts.NodeMonitorGracePeriod)
		})
	}
	// After the node lifecycle controller, which indexes pods by node too.
	ctors = append(ctors, newTaintEvictionController,
		func(d *deps) (runner, error) { return newPodGC(d, opts.OrphanPodQuarantine) })
	var runners []runner
	for _, c := range ctors {
		r, err := c(d)
		if err != nil {
			return fmt.Errorf("controller: %w", err)
		}
		runners = append(runners, r)
	}

	d.factory.Start(ctx.Done())
	defer d.factory.Shutdown()
	if !toolscache.WaitForCacheSync(ctx.Done(), d.synced...) {
		if ctx.Err() != nil {
			return nil
		}
		return errors.New("controller: informers did not sync")
	}
	log.Info("controllers started", "clusterCIDR", opts.ClusterCIDR, "workers", opts.Workers)
	var wg sync.WaitGroup
	for _, r := range runners {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.run(ctx)
		}()
	}
	wg.Wait()
	return nil
}

// deps is what every controller is built from.
type deps struct {
	client  kubernetes.Interface
	factory informers.SharedInformerFactory
	log     *slog.Logger
	workers int
	recs    *recorders
	synced  []toolscache.InformerSynced
}

// handle registers h on inf and remembers the registration so Run waits
// for the handler to have seen the initial list before any sync.
func (d *deps) handle(inf toolscache.SharedIndexInformer, h toolscache.ResourceEventHandler) error {
	reg, err := inf.AddEventHandler(h)
	if err != nil {
		return err
	}
	d.synced = append(d.synced, reg.HasSynced)
	return nil
}

// queue is a rate-limited work queue of object keys with its sync function.
type queue struct {
	name string
	q    workqueue.TypedRateLimitingInterface[string]
	sync func(ctx context.Context, key string) error
	log  *slog.Logger
}

func newQueue(name string, log *slog.Logger, sync func(ctx context.Context, key string) error) *queue {
	return &queue{
		name: name,
		q: workqueue.NewTypedRateLimitingQueueWithConfig(workqueue.DefaultTypedControllerRateLimiter[string](),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: name}),
		sync: sync,
		log:  log.With("controller", name),
	}
}

func (q *queue) add(key string)                       { q.q.Add(key) }
func (q *queue) addAfter(key string, d time.Duration) { q.q.AddAfter(key, d) }

func (q *queue) addObj(obj any) {
	key, err := toolscache.DeletionHandlingMetaNamespaceKeyFunc(obj)
	if err == nil {
		q.q.Add(key)
	}
}

// run processes keys with n workers until ctx is done.
func (q *queue) run(ctx context.Context, n int) {
	if n <= 0 {
		n = 1
	}
	go func() {
		<-ctx.Done()
		q.q.ShutDown()
	}()
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for q.next(ctx) {
			}
		}()
	}
	wg.Wait()
}

func (q *queue) next(ctx context.Context) bool {
	key, quit := q.q.Get()
	if quit {
		return false
	}
	defer q.q.Done(key)
	if err := q.sync(ctx, key); err != nil {
		if ctx.Err() != nil {
			return true
		}
		q.log.Debug("sync failed, retrying", "key", key, "err", err)
		q.q.AddRateLimited(key)
		return true
	}
	q.q.Forget(key)
	return true
}
