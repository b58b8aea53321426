package nodeagent

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/utils/ptr"

	"github.com/kubelab/kubelab/nodeagent/sandbox"
)

// podManager owns one worker per pod bound to this node.
type podManager struct {
	cfg     *Config
	client  kubernetes.Interface
	sb      *sandbox.Manager
	ipam    *sandbox.IPAM
	ctx     context.Context
	mu      sync.Mutex
	workers map[types.UID]*podWorker
	wg      sync.WaitGroup
	events  record.EventRecorder // nil: no events
	// sandboxSlots bounds concurrent sandbox creation: namespace setup
	// serialises in the kernel, and a burst of parallel attempts makes every
	// pod wait for all of them instead of the first pods starting at once.
	sandboxSlots chan struct{}
	// adopted holds what an earlier agent left running, per pod UID, until
	// the pod's worker takes it.
	adopted map[types.UID]*adoptedPod
}

// objects reads the ConfigMaps and Secrets pods refer to.
func (m *podManager) objects(ctx context.Context) objectSource {
	return apiObjects{ctx: ctx, client: m.client}
}

// takeAdopted hands a pod's adopted sandbox and containers to its worker, once.
func (m *podManager) takeAdopted(uid types.UID) *adoptedPod {
	m.mu.Lock()
	defer m.mu.Unlock()
	a := m.adopted[uid]
	delete(m.adopted, uid)
	return a
}

// event records a kubelet-style event on the pod (kubectl describe shows them).
func (w *podWorker) event(kind, reason, format string, a ...any) {
	if w.m.events == nil {
		return
	}
	if p := w.podSnapshot(); p != nil {
		w.m.events.Eventf(p, kind, reason, format, a...)
	}
}

func newPodManager(ctx context.Context, cfg *Config, client kubernetes.Interface, sb *sandbox.Manager, ipam *sandbox.IPAM) *podManager {
	return &podManager{cfg: cfg, client: client, sb: sb, ipam: ipam, ctx: ctx, workers: map[types.UID]*podWorker{},
		sandboxSlots: make(chan struct{}, 2)}
}

// handlers feed informer events to workers.
func (m *podManager) handlers() cache.ResourceEventHandler {
	return cache.ResourceEventHandlerFuncs{
		AddFunc:    func(o any) { m.update(o) },
		UpdateFunc: func(_, o any) { m.update(o) },
		DeleteFunc: func(o any) {
			if d, ok := o.(cache.DeletedFinalStateUnknown); ok {
				o = d.Obj
			}
			if p, ok := o.(*corev1.Pod); ok {
				m.mu.Lock()
				w := m.workers[p.UID]
				m.mu.Unlock()
				if w != nil {
					w.setGone()
				}
			}
		},
	}
}

func (m *podManager) update(o any) {
	p, ok := o.(*corev1.Pod)
	if !ok || p.Spec.NodeName != m.cfg.NodeName {
		return
	}
	m.mu.Lock()
	w := m.workers[p.UID]
	if w == nil {
		if p.DeletionTimestamp == nil && (p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed) {
			// A finished pod from before a restart: nothing to run.
			m.mu.Unlock()
			return
		}
		w = newPodWorker(m, p)
		m.workers[p.UID] = w
		m.wg.Add(1)
		go func() {
			defer m.wg.Done()
			w.run(m.ctx)
			m.mu.Lock()
			delete(m.workers, p.UID)
			m.mu.Unlock()
		}()
	}
	m.mu.Unlock()
	w.setPod(p)
}

// find returns the worker of namespace/name.
func (m *podManager) find(ns, name string) *podWorker {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, w := range m.workers {
		if w.ns == ns && w.name == name {
			return w
		}
	}
	return nil
}

// wait blocks until every worker has stopped (after ctx ends).
func (m *podManager) wait() { m.wg.Wait() }

// podWorker drives one pod: sandbox, containers, status, deletion.
type podWorker struct {
	m              *podManager
	uid            types.UID
	ns, name, key  string
	mu             sync.Mutex
	pod            *corev1.Pod
	gone           bool
	sb             *sandbox.Sandbox
	ctrs           map[string]*containerRun
	order          []string
	inits          []*containerRun // started init containers, in order
	startTime      *metav1.Time
	reported       corev1.PodStatus
	reportedValid  bool
	kickCh         chan struct{}
	sandboxCreated time.Duration
	adopted        map[string]*containerRecord // containers to take over, by name
	// Timeline of the pod's start, for the Debug log once it is first
	// reported Ready: where the time to Running+Ready goes.
	seen, sandboxAt, readyLogged time.Time
	volumesReady                 bool
}

func newPodWorker(m *podManager, p *corev1.Pod) *podWorker {
	return &podWorker{m: m, uid: p.UID, ns: p.Namespace, name: p.Name, key: p.Namespace + "/" + p.Name,
		ctrs: map[string]*containerRun{}, kickCh: make(chan struct{}, 1), seen: time.Now()}
}

func (w *podWorker) kick() {
	select {
	case w.kickCh <- struct{}{}:
	default:
	}
}

func (w *podWorker) setPod(p *corev1.Pod) {
	w.mu.Lock()
	w.pod = p.DeepCopy()
	w.mu.Unlock()
	w.kick()
}

func (w *podWorker) setGone() {
	w.mu.Lock()
	w.gone = true
	w.mu.Unlock()
	w.kick()
}

func (w *podWorker) podSnapshot() *corev1.Pod {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.pod
}

func (w *podWorker) podSpec() corev1.PodSpec { return w.podSnapshot().Spec }

func (w *podWorker) sandboxInfo() *sandbox.Sandbox {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.sb
}

func (w *podWorker) container(name string) *containerRun {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.ctrs[name]
}

func (w *podWorker) run(ctx context.Context) {
	resync := time.NewTicker(10 * time.Second)
	defer resync.Stop()
	for {
		select {
		case <-ctx.Done():
			// Agent shutdown: stop processes and free the namespace, keep the
			// IP lease and the pod object so a restarted agent takes over.
			w.teardown(2*time.Second, false)
			return
		case <-w.kickCh:
		case <-resync.C:
		}
		if done := w.sync(ctx); done {
			return
		}
	}
}

// sync moves the pod one step towards its desired state; true when the
// worker is finished.
func (w *podWorker) sync(ctx context.Context) bool {
	w.mu.Lock()
	pod, gone := w.pod, w.gone
	w.mu.Unlock()
	if gone || pod.DeletionTimestamp != nil {
		grace := time.Duration(0)
		if pod.DeletionGracePeriodSeconds != nil {
			grace = time.Duration(*pod.DeletionGracePeriodSeconds) * time.Second
		} else if pod.Spec.TerminationGracePeriodSeconds != nil && !gone {
			grace = time.Duration(*pod.Spec.TerminationGracePeriodSeconds) * time.Second
		}
		if a := w.m.takeAdopted(w.uid); a != nil { // deleted before its worker took it over
			for _, rec := range a.ctrs {
				killRecord(w.m.cfg.DataDir, *rec)
			}
		}
		w.teardown(grace, true)
		if !gone {
			err := w.m.client.CoreV1().Pods(w.ns).Delete(ctx, w.name, metav1.DeleteOptions{
				GracePeriodSeconds: ptr.To[int64](0), Preconditions: &metav1.Preconditions{UID: &w.uid}})
			if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
				slog.Warn("final pod delete", "pod", w.key, "err", err)
			}
		}
		slog.Info("pod removed", "pod", w.key)
		return true
	}
	if w.sandboxInfo() == nil {
		if a := w.m.takeAdopted(w.uid); a != nil && !pod.Spec.HostNetwork {
			w.mu.Lock()
			w.sb, w.adopted = a.sb, a.ctrs
			w.mu.Unlock()
		} else if err := w.createSandbox(pod); err != nil {
			slog.Warn("pod sandbox", "pod", w.key, "err", err)
			w.report(ctx, pod)
			return false
		}
	}
	if !w.volumesReady {
		where, err := prepareVolumes(w.m.cfg, pod, w.m.objects(ctx))
		if err != nil {
			w.event(corev1.EventTypeWarning, "FailedMount", "MountVolume.SetUp failed: %v", err)
			time.AfterFunc(2*time.Second, w.kick)
			w.report(ctx, pod)
			return false
		}
		w.volumesReady = true
		if len(where) > 0 {
			w.event(corev1.EventTypeWarning, "VolumeMountPathIgnored",
				"volumes are directories on the node, not mounted at their mountPath (kubelab gives containers no mount namespace): %s; a container finds each in $KUBELAB_MOUNT_<VOLUME>",
				strings.Join(where, ", "))
		}
	}
	w.mu.Lock()
	if w.startTime == nil {
		t := metav1.Now()
		if pod.Status.StartTime != nil {
			t = *pod.Status.StartTime
		}
		w.startTime = &t
	}
	var start []*containerRun
	if next, waiting := w.nextInit(pod); waiting {
		w.mu.Unlock()
		if next != nil {
			go next.run(ctx)
		}
		w.report(ctx, pod)
		return false
	}
	for _, c := range pod.Spec.Containers {
		if _, ok := w.ctrs[c.Name]; ok {
			continue
		}
		restarts := int32(0)
		for _, cs := range pod.Status.ContainerStatuses {
			if cs.Name == c.Name {
				restarts = cs.RestartCount
			}
		}
		r := newContainerRun(w, c, restarts)
		if a := w.adopted[c.Name]; a != nil {
			delete(w.adopted, c.Name)
			r.adopt = a
			r.id, r.instance = a.ID, a.Instance
			r.state = corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: metav1.NewTime(a.StartedAt)}}
			// Keep what the pod's status says (ready, started) until the
			// probes say otherwise, so adoption does not flap readiness.
			for _, cs := range pod.Status.ContainerStatuses {
				if cs.Name == c.Name {
					r.ready = cs.Ready
					r.started = cs.Started != nil && *cs.Started
				}
			}
		}
		w.ctrs[c.Name] = r
		w.order = append(w.order, c.Name)
		start = append(start, r)
	}
	w.mu.Unlock()
	for _, r := range start {
		go r.run(ctx)
	}
	if len(start) > 0 {
		// Each container kicks the worker once it runs (or failed to
		// start): report then, sparing the API server a ContainerCreating
		// status that would be stale within milliseconds.
		return false
	}
	w.report(ctx, pod)
	return false
}

func (w *podWorker) createSandbox(pod *corev1.Pod) error {
	if pod.Spec.HostNetwork {
		w.mu.Lock()
		w.sb = &sandbox.Sandbox{UID: string(pod.UID), IP: w.m.cfg.NodeIP}
		w.mu.Unlock()
		return nil
	}
	ip, err := w.m.ipam.Allocate(string(pod.UID))
	if err != nil {
		return fmt.Errorf("allocate IP: %w", err)
	}
	w.m.sandboxSlots <- struct{}{}
	defer func() { <-w.m.sandboxSlots }()
	t0 := time.Now()
	sb, err := w.m.sb.Create(string(pod.UID), ip)
	if err != nil {
		w.event(corev1.EventTypeWarning, "FailedCreatePodSandBox", "Failed to create pod sandbox: %v", err)
		return err
	}
	sandboxSeconds.Observe(time.Since(t0).Seconds())
	w.mu.Lock()
	w.sb = sb
	w.sandboxCreated = time.Since(t0)
	w.sandboxAt = time.Now()
	w.mu.Unlock()
	slog.Debug("sandbox ready", "pod", w.key, "ip", ip, "took", time.Since(t0))
	return nil
}

// nextInit steps through the init containers (w.mu held): it returns the
// next one to start, and whether main containers must still wait.
func (w *podWorker) nextInit(pod *corev1.Pod) (*containerRun, bool) {
	for i, c := range pod.Spec.InitContainers {
		if i < len(w.inits) {
			r := w.inits[i]
			r.mu.Lock()
			fin, st := r.finished, r.state
			r.mu.Unlock()
			if fin && st.Terminated != nil && st.Terminated.ExitCode == 0 {
				continue // done; on to the next
			}
			return nil, true // running, backing off, or failed for good
		}
		restarts := int32(0)
		for _, cs := range pod.Status.InitContainerStatuses {
			if cs.Name == c.Name {
				restarts = cs.RestartCount
			}
		}
		r := newContainerRun(w, c, restarts)
		r.init = true
		w.inits = append(w.inits, r)
		w.ctrs[c.Name] = r
		return r, true
	}
	return nil, false
}

// teardown stops every container (SIGTERM, grace, SIGKILL) and removes the
// sandbox; release also frees the IP and the logs (the pod is going away).
func (w *podWorker) teardown(grace time.Duration, release bool) {
	w.mu.Lock()
	ctrs := make([]*containerRun, 0, len(w.ctrs))
	for _, c := range w.ctrs {
		ctrs = append(ctrs, c)
	}
	sb := w.sb
	w.mu.Unlock()
	var wg sync.WaitGroup
	for _, c := range ctrs {
		if release && c.isRunning() {
			w.event(corev1.EventTypeNormal, "Killing", "Stopping container %s", c.spec.Name)
		}
		wg.Add(1)
		go func() { defer wg.Done(); c.stop(grace) }()
	}
	wg.Wait()
	if sb != nil && !sb.HostNetwork() {
		sandbox.KillProcessesIn(sb.Path()) // exec sessions, escaped children
	}
	if err := w.m.sb.Delete(string(w.uid)); err != nil {
		slog.Warn("delete sandbox", "pod", w.key, "err", err)
	}
	w.mu.Lock()
	w.sb = nil
	w.mu.Unlock()
	if release {
		if err := w.m.ipam.Release(string(w.uid)); err != nil {
			slog.Warn("release IP", "pod", w.key, "err", err)
		}
		_ = os.RemoveAll(filepath.Join(w.m.cfg.DataDir, "pods", string(w.uid)))
		_ = os.RemoveAll(podVolumeDir(w.m.cfg, string(w.uid)))
	}
}

// report posts the pod's status when it changed.
func (w *podWorker) report(ctx context.Context, pod *corev1.Pod) {
	w.mu.Lock()
	var views []containerView
	for _, r := range w.inits {
		r.mu.Lock()
		fin := r.finished
		r.mu.Unlock()
		views = append(views, containerView{status: r.snapshot(), finished: fin, init: true})
	}
	for _, name := range w.order {
		r := w.ctrs[name]
		r.mu.Lock()
		fin := r.finished
		r.mu.Unlock()
		views = append(views, containerView{status: r.snapshot(), finished: fin})
	}
	ip := ""
	if w.sb != nil {
		ip = w.sb.IP.String()
	}
	prev := pod.Status
	if w.reportedValid {
		prev = w.reported
	}
	st := podStatus(pod, prev, ip, w.m.cfg.NodeIP.String(), w.startTime, views, metav1.Now())
	// Someone else may have changed the status in the API since: the node
	// lifecycle controller marks a silent node's pods not ready. As the
	// kubelet does, the agent puts its own view back.
	same := w.reportedValid && apiequality.Semantic.DeepEqual(st, w.reported) && readinessAgrees(pod.Status, st)
	w.mu.Unlock()
	if same {
		return
	}
	p := pod.DeepCopy()
	p.Status = st
	_, err := w.m.client.CoreV1().Pods(p.Namespace).UpdateStatus(ctx, p, metav1.UpdateOptions{})
	if apierrors.IsConflict(err) {
		var fresh *corev1.Pod
		fresh, err = w.m.client.CoreV1().Pods(p.Namespace).Get(ctx, p.Name, metav1.GetOptions{})
		if err == nil && fresh.UID == w.uid {
			fresh.Status = st
			_, err = w.m.client.CoreV1().Pods(p.Namespace).UpdateStatus(ctx, fresh, metav1.UpdateOptions{})
		}
	}
	if err != nil {
		if !apierrors.IsNotFound(err) && ctx.Err() == nil {
			slog.Warn("pod status", "pod", w.key, "err", err)
			// Retry soon rather than at the next resync.
			time.AfterFunc(500*time.Millisecond, w.kick)
		}
		return
	}
	w.mu.Lock()
	w.reported, w.reportedValid = st, true
	if w.readyLogged.IsZero() && st.Phase == corev1.PodRunning && len(views) > 0 && views[len(views)-1].status.Ready {
		w.readyLogged = time.Now()
		var startedAt time.Time
		if r := views[len(views)-1].status.State.Running; r != nil {
			startedAt = r.StartedAt.Time
		}
		slog.Debug("pod ready", "pod", w.key, "sinceCreated", w.readyLogged.Sub(pod.CreationTimestamp.Time),
			"seenAfterCreate", w.seen.Sub(pod.CreationTimestamp.Time), "toSandbox", w.sandboxAt.Sub(w.seen), "sandboxTook", w.sandboxCreated,
			"toProcess", startedAt.Sub(w.seen), "toReadyPosted", w.readyLogged.Sub(w.seen))
	}
	w.mu.Unlock()
}

// readinessAgrees: the pod's Ready condition in the API says what the agent
// reported. Only readiness is compared: timestamps come back rounded.
func readinessAgrees(api, ours corev1.PodStatus) bool {
	ready := func(st corev1.PodStatus) corev1.ConditionStatus {
		for _, c := range st.Conditions {
			if c.Type == corev1.PodReady {
				return c.Status
			}
		}
		return ""
	}
	return ready(api) == ready(ours)
}
