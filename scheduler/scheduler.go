package scheduler

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
)

// DefaultSchedulerName is the schedulerName pods get when they name none.
const DefaultSchedulerName = corev1.DefaultSchedulerName

// noteLengthLimit is the longest event message the API accepts.
const noteLengthLimit = 1024

// Options tunes the scheduler; the zero value is usable.
type Options struct {
	// SchedulerName: only pods whose spec.schedulerName equals it are placed.
	// Default "default-scheduler". Also the component of the events.
	SchedulerName string
	// InitialBackoff and MaxBackoff bound the exponential delay before a pod
	// that failed is tried again. Defaults 1s and 60s.
	InitialBackoff time.Duration
	MaxBackoff     time.Duration
	// MaxUnschedulableDuration: a pod that fits nowhere is retried after at
	// most this long even if no watched change happened. Default 5m;
	// negative disables.
	MaxUnschedulableDuration time.Duration
	// BindWorkers is how many binding (and status update) requests run at
	// once. Default 128: binding latency, not CPU, limits throughput.
	BindWorkers int
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// Recorder, when set, receives the events instead of a broadcaster
	// writing core/v1 Events through client (tests).
	Recorder record.EventRecorder
}

func (o *Options) defaults() {
	if o.SchedulerName == "" {
		o.SchedulerName = DefaultSchedulerName
	}
	if o.InitialBackoff <= 0 {
		o.InitialBackoff = time.Second
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = 60 * time.Second
	}
	if o.MaxBackoff < o.InitialBackoff {
		o.MaxBackoff = o.InitialBackoff
	}
	if o.MaxUnschedulableDuration == 0 {
		o.MaxUnschedulableDuration = 5 * time.Minute
	}
	if o.MaxUnschedulableDuration < 0 {
		o.MaxUnschedulableDuration = 0
	}
	if o.BindWorkers <= 0 {
		o.BindWorkers = 128
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
}

type scheduler struct {
	client   kubernetes.Interface
	opts     Options
	log      *slog.Logger
	queue    *queue
	cache    *cache
	recorder record.EventRecorder
	pods     corelisters.PodLister
	tasks    chan func(context.Context)
}

// Run places pending pods until ctx is done. It talks to the API only
// through client: shared informers for pods and nodes, the pods/binding and
// pods/status subresources, and core/v1 Events. It returns nil when ctx is
// cancelled (also if that happens before the informers synced), or an error
// if it cannot set up.
func Run(ctx context.Context, client kubernetes.Interface, opts Options) error {
	opts.defaults()
	s := &scheduler{
		client: client,
		opts:   opts,
		log:    opts.Logger.With("component", "scheduler"),
		queue:  newQueue(opts.InitialBackoff, opts.MaxBackoff, opts.MaxUnschedulableDuration, time.Now),
		cache:  newCache(),
		tasks:  make(chan func(context.Context), opts.BindWorkers*4),
	}
	s.recorder = opts.Recorder
	if s.recorder == nil {
		b := record.NewBroadcaster(record.WithContext(ctx))
		b.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: client.CoreV1().Events("")})
		defer b.Shutdown()
		s.recorder = b.NewRecorder(scheme.Scheme, corev1.EventSource{Component: opts.SchedulerName})
	}

	factory := informers.NewSharedInformerFactory(client, 0)
	podInf := factory.Core().V1().Pods()
	nodeInf := factory.Core().V1().Nodes()
	s.pods = podInf.Lister()
	podReg, err := podInf.Informer().AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { s.onPod(nil, obj.(*corev1.Pod)) },
		UpdateFunc: func(old, obj any) { s.onPod(old.(*corev1.Pod), obj.(*corev1.Pod)) },
		DeleteFunc: s.onPodDelete,
	})
	if err != nil {
		return fmt.Errorf("scheduler: pod handler: %w", err)
	}
	nodeReg, err := nodeInf.Informer().AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { s.onNode(nil, obj.(*corev1.Node)) },
		UpdateFunc: func(old, obj any) { s.onNode(old.(*corev1.Node), obj.(*corev1.Node)) },
		DeleteFunc: s.onNodeDelete,
	})
	if err != nil {
		return fmt.Errorf("scheduler: node handler: %w", err)
	}
	syncStart := time.Now()
	factory.Start(ctx.Done())
	defer factory.Shutdown()
	// Decisions need the whole picture: no placement before our handlers
	// (not just the informers' stores) have seen every existing node and pod.
	if !waitSynced(ctx, podReg.HasSynced, nodeReg.HasSynced) {
		return nil // ctx cancelled
	}
	s.log.Info("scheduler started", "name", opts.SchedulerName, "bindWorkers", opts.BindWorkers, "syncedIn", time.Since(syncStart).Round(time.Millisecond))

	var wg sync.WaitGroup
	for i := 0; i < opts.BindWorkers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for task := range s.tasks {
				task(ctx)
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				s.queue.close()
				return
			case <-t.C:
				s.queue.flush()
			}
		}
	}()

	s.loop()
	close(s.tasks)
	wg.Wait()
	return nil
}

// waitSynced polls often (client-go's helper waits 100ms between checks,
// a visible share of a large cluster's start) until all report synced; false
// if ctx ends first.
func waitSynced(ctx context.Context, synced ...func() bool) bool {
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for {
		all := true
		for _, f := range synced {
			if !f() {
				all = false
				break
			}
		}
		if all {
			return true
		}
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
		}
	}
}

// loop takes one pod at a time: decide under the cache lock (assuming the
// pod on its node), then hand the API calls to the workers.
func (s *scheduler) loop() {
	for {
		qp := s.queue.pop()
		if qp == nil {
			return
		}
		pod := qp.pod
		if pod.DeletionTimestamp != nil || pod.Spec.NodeName != "" || s.cache.isAssumed(pod.UID) {
			s.queue.done(pod.UID)
			continue
		}
		node, fitErr := s.cache.schedule(pod)
		if fitErr != nil {
			s.queue.unschedulable(pod.UID)
			msg := truncate(fitErr.Error())
			s.log.Debug("pod unschedulable", "pod", pod.Namespace+"/"+pod.Name, "reason", msg)
			s.tasks <- func(ctx context.Context) { s.recordUnschedulable(ctx, pod, msg) }
			continue
		}
		s.tasks <- func(ctx context.Context) { s.bind(ctx, pod, node) }
	}
}

func (s *scheduler) bind(ctx context.Context, pod *corev1.Pod, node string) {
	b := &corev1.Binding{
		ObjectMeta: metav1.ObjectMeta{Namespace: pod.Namespace, Name: pod.Name, UID: pod.UID},
		Target:     corev1.ObjectReference{Kind: "Node", Name: node},
	}
	err := s.client.CoreV1().Pods(pod.Namespace).Bind(ctx, b, metav1.CreateOptions{})
	if err == nil {
		s.log.Debug("pod bound", "pod", pod.Namespace+"/"+pod.Name, "node", node)
		s.recorder.Eventf(pod, corev1.EventTypeNormal, "Scheduled", "Successfully assigned %v/%v to %v", pod.Namespace, pod.Name, node)
		s.queue.done(pod.UID)
		return
	}
	// The room we assumed is free again; it may suit a parked pod.
	s.cache.forget(pod.UID)
	s.queue.moveAll()
	if ctx.Err() != nil {
		return
	}
	if apierrors.IsNotFound(err) || apierrors.IsConflict(err) || apierrors.IsAlreadyExists(err) {
		// Deleted, recreated, or bound meanwhile: the informer tells us which.
		cur, gerr := s.pods.Pods(pod.Namespace).Get(pod.Name)
		if gerr != nil || cur.UID != pod.UID || cur.Spec.NodeName != "" || cur.DeletionTimestamp != nil {
			s.queue.done(pod.UID)
			return
		}
	}
	s.log.Warn("binding failed, will retry", "pod", pod.Namespace+"/"+pod.Name, "node", node, "err", err)
	s.recorder.Eventf(pod, corev1.EventTypeWarning, "FailedScheduling", "%s", truncate(fmt.Sprintf("Binding rejected: %v", err)))
	s.queue.retryLater(pod.UID)
}

// recordUnschedulable emits FailedScheduling and sets PodScheduled=False
// (reason Unschedulable) through pods/status, unless already so.
func (s *scheduler) recordUnschedulable(ctx context.Context, pod *corev1.Pod, msg string) {
	s.recorder.Event(pod, corev1.EventTypeWarning, "FailedScheduling", msg)
	cur, err := s.pods.Pods(pod.Namespace).Get(pod.Name)
	if err != nil || cur.UID != pod.UID {
		return
	}
	for attempt := 0; attempt < 3; attempt++ {
		if cur.Spec.NodeName != "" || cur.DeletionTimestamp != nil {
			return
		}
		updated, changed := withUnschedulableCondition(cur, msg, time.Now())
		if !changed {
			return
		}
		_, err = s.client.CoreV1().Pods(cur.Namespace).UpdateStatus(ctx, updated, metav1.UpdateOptions{})
		if err == nil || ctx.Err() != nil || apierrors.IsNotFound(err) {
			return
		}
		if !apierrors.IsConflict(err) {
			break
		}
		cur, err = s.client.CoreV1().Pods(pod.Namespace).Get(ctx, pod.Name, metav1.GetOptions{})
		if err != nil || cur.UID != pod.UID {
			return
		}
	}
	if err != nil {
		s.log.Warn("cannot set PodScheduled condition", "pod", pod.Namespace+"/"+pod.Name, "err", err)
	}
}

// withUnschedulableCondition returns a copy of pod with PodScheduled=False,
// reason Unschedulable and msg; changed is false when it already says so.
// The transition time moves only when the status flips, as the API expects.
func withUnschedulableCondition(pod *corev1.Pod, msg string, now time.Time) (*corev1.Pod, bool) {
	want := corev1.PodCondition{
		Type:               corev1.PodScheduled,
		Status:             corev1.ConditionFalse,
		Reason:             corev1.PodReasonUnschedulable,
		Message:            msg,
		ObservedGeneration: pod.Generation,
		LastTransitionTime: metav1.NewTime(now),
	}
	out := pod.DeepCopy()
	for i := range out.Status.Conditions {
		c := &out.Status.Conditions[i]
		if c.Type != corev1.PodScheduled {
			continue
		}
		if c.Status == want.Status && c.Reason == want.Reason && c.Message == want.Message && c.ObservedGeneration == want.ObservedGeneration {
			return pod, false
		}
		if c.Status == want.Status {
			want.LastTransitionTime = c.LastTransitionTime
		}
		*c = want
		return out, true
	}
	out.Status.Conditions = append(out.Status.Conditions, want)
	return out, true
}

func truncate(msg string) string {
	if len(msg) <= noteLengthLimit {
		return msg
	}
	const suffix = " ..."
	return msg[:noteLengthLimit-len(suffix)] + suffix
}

func (s *scheduler) responsibleFor(pod *corev1.Pod) bool {
	name := pod.Spec.SchedulerName
	if name == "" {
		name = DefaultSchedulerName
	}
	return name == s.opts.SchedulerName
}

func (s *scheduler) onPod(old, pod *corev1.Pod) {
	s.cache.setPod(pod)
	if pod.Spec.NodeName != "" {
		s.queue.remove(pod.UID)
		if old != nil && countsOnNode(old) && !countsOnNode(pod) {
			// A finished pod frees its node.
			s.queue.moveAll()
		}
		return
	}
	if !s.responsibleFor(pod) || pod.DeletionTimestamp != nil ||
		pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
		s.queue.remove(pod.UID)
		return
	}
	s.queue.add(pod)
}

func (s *scheduler) onPodDelete(obj any) {
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		tomb, ok := obj.(toolscache.DeletedFinalStateUnknown)
		if !ok {
			return
		}
		if pod, ok = tomb.Obj.(*corev1.Pod); !ok {
			return
		}
	}
	wasAssumed := s.cache.isAssumed(pod.UID)
	s.cache.removePod(pod)
	s.queue.remove(pod.UID)
	if pod.Spec.NodeName != "" || wasAssumed {
		s.queue.moveAll()
	}
}

func (s *scheduler) onNode(old, node *corev1.Node) {
	s.cache.setNode(node)
	if old == nil || nodeSchedulingChanged(old, node) {
		s.queue.moveAll()
	}
}

func (s *scheduler) onNodeDelete(obj any) {
	node, ok := obj.(*corev1.Node)
	if !ok {
		tomb, ok := obj.(toolscache.DeletedFinalStateUnknown)
		if !ok {
			return
		}
		if node, ok = tomb.Obj.(*corev1.Node); !ok {
			return
		}
	}
	s.cache.removeNode(node.Name)
}

// nodeSchedulingChanged reports whether a node update can change placement
// (heartbeats and other status churn do not).
func nodeSchedulingChanged(a, b *corev1.Node) bool {
	return a.Spec.Unschedulable != b.Spec.Unschedulable ||
		!equality.Semantic.DeepEqual(a.Spec.Taints, b.Spec.Taints) ||
		!equality.Semantic.DeepEqual(a.Labels, b.Labels) ||
		!equality.Semantic.DeepEqual(a.Status.Allocatable, b.Status.Allocatable) ||
		!equality.Semantic.DeepEqual(a.Status.Capacity, b.Status.Capacity) ||
		readyStatus(a) != readyStatus(b)
}

func readyStatus(n *corev1.Node) corev1.ConditionStatus {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status
		}
	}
	return ""
}

// ClientConfig derives the scheduler's client configuration from base.
// Binding thousands of pending pods is bounded by the API server, so the
// client-side rate limit is set far above it, and protobuf (for requests,
// responses and watch streams) saves decoding time on both sides, as
// kube-scheduler does.
func ClientConfig(base *rest.Config) *rest.Config {
	cfg := rest.CopyConfig(base)
	cfg.QPS, cfg.Burst = 5000, 10000
	cfg.ContentType = runtime.ContentTypeProtobuf
	cfg.AcceptContentTypes = runtime.ContentTypeProtobuf + "," + runtime.ContentTypeJSON
	return cfg
}
