package controller

import (
	"context"
	"fmt"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	corelisters "k8s.io/client-go/listers/core/v1"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/klog/v2"
)

const componentTaintEviction = "taint-eviction-controller"

// taintEvictionController deletes the pods of a node with NoExecute taints
// they do not tolerate: at once, or when the shortest tolerationSeconds of
// the tolerations they rely on has run out, counted from when this
// controller first saw them under the taint (as kube's controller does).
// Together with the node lifecycle controller's unreachable taint and the
// API server's default 300 s tolerations, a node that stays away for five
// minutes loses its pods, and their ReplicaSets replace them elsewhere.
type taintEvictionController struct {
	d        *deps
	nodes    corelisters.NodeLister
	pods     toolscache.Indexer
	queue    *queue
	recorder record.EventRecorder
	now      func() time.Time

	mu sync.Mutex
	// since is when each pod was first seen on a node whose NoExecute
	// taints it tolerates only for a while.
	since map[types.UID]time.Time
}

func newTaintEvictionController(d *deps) (runner, error) {
	c := &taintEvictionController{
		d: d, now: time.Now, since: map[types.UID]time.Time{},
		nodes:    d.factory.Core().V1().Nodes().Lister(),
		recorder: d.recs.forComponent(componentTaintEviction),
	}
	c.queue = newQueue("taint-eviction", d.log, c.sync)
	pods, err := podsByNodeIndex(d)
	if err != nil {
		return nil, fmt.Errorf("taint eviction: %w", err)
	}
	c.pods = pods
	onPod := func(obj any) {
		if p, ok := obj.(*corev1.Pod); ok && p.Spec.NodeName != "" {
			c.queue.add(p.Spec.NodeName)
		}
	}
	if err := d.handle(d.factory.Core().V1().Pods().Informer(), toolscache.ResourceEventHandlerFuncs{
		AddFunc: onPod, UpdateFunc: func(_, o any) { onPod(o) },
		DeleteFunc: func(obj any) {
			if tomb, ok := obj.(toolscache.DeletedFinalStateUnknown); ok {
				obj = tomb.Obj
			}
			if p, ok := obj.(*corev1.Pod); ok {
				c.forget(p.UID)
			}
		},
	}); err != nil {
		return nil, err
	}
	return c, d.handle(d.factory.Core().V1().Nodes().Informer(), cacheHandler(c.queue))
}

// podsByNodeIndex indexes the shared pod informer by spec.nodeName once,
// for every controller that asks.
func podsByNodeIndex(d *deps) (toolscache.Indexer, error) {
	inf := d.factory.Core().V1().Pods().Informer()
	if _, ok := inf.GetIndexer().GetIndexers()[podsByNode]; !ok {
		err := inf.AddIndexers(toolscache.Indexers{podsByNode: func(obj any) ([]string, error) {
			if p, ok := obj.(*corev1.Pod); ok && p.Spec.NodeName != "" {
				return []string{p.Spec.NodeName}, nil
			}
			return nil, nil
		}})
		if err != nil {
			return nil, fmt.Errorf("index pods by node: %w", err)
		}
	}
	return inf.GetIndexer(), nil
}

func (c *taintEvictionController) run(ctx context.Context) { c.queue.run(ctx, c.d.workers) }

func (c *taintEvictionController) sync(ctx context.Context, name string) error {
	node, err := c.nodes.Get(name)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	objs, err := c.pods.ByIndex(podsByNode, name)
	if err != nil {
		return err
	}
	now := c.now()
	var soonest time.Duration
	for _, obj := range objs {
		pod := obj.(*corev1.Pod)
		if pod.DeletionTimestamp != nil {
			c.forget(pod.UID)
			continue
		}
		verdict := noExecuteVerdict(node.Spec.Taints, pod.Spec.Tolerations)
		if verdict.stay {
			c.forget(pod.UID)
			continue
		}
		left := verdict.after - now.Sub(c.firstSeen(pod.UID, now))
		if left > 0 {
			if soonest == 0 || left < soonest {
				soonest = left
			}
			continue
		}
		if err := c.evict(ctx, pod); err != nil {
			return err
		}
		c.forget(pod.UID)
	}
	if soonest > 0 {
		c.queue.addAfter(name, soonest+10*time.Millisecond)
	}
	return nil
}

func (c *taintEvictionController) firstSeen(uid types.UID, now time.Time) time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	t, ok := c.since[uid]
	if !ok {
		c.since[uid] = now
		t = now
	}
	return t
}

func (c *taintEvictionController) forget(uid types.UID) {
	c.mu.Lock()
	delete(c.since, uid)
	c.mu.Unlock()
}

// evict marks the pod with the DisruptionTarget condition (so that
// `kubectl describe` and controllers see why it goes) and deletes it with
// its own grace period, guarded by its UID.
func (c *taintEvictionController) evict(ctx context.Context, pod *corev1.Pod) error {
	c.recorder.Eventf(pod, corev1.EventTypeNormal, "TaintManagerEviction", "Marking for deletion Pod %s/%s", pod.Namespace, pod.Name)
	marked := pod.DeepCopy()
	setPodCondition(&marked.Status, corev1.PodCondition{Type: corev1.DisruptionTarget, Status: corev1.ConditionTrue,
		Reason: "DeletionByTaintManager", Message: "Taint manager: deleting due to NoExecute taint", LastTransitionTime: metav1.NewTime(c.now())})
	pods := c.d.client.CoreV1().Pods(pod.Namespace)
	if _, err := pods.UpdateStatus(ctx, marked, metav1.UpdateOptions{}); err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		return fmt.Errorf("evict pod %s/%s: mark: %w", pod.Namespace, pod.Name, err)
	}
	err := pods.Delete(ctx, pod.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &pod.UID}})
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		return fmt.Errorf("evict pod %s/%s: %w", pod.Namespace, pod.Name, err)
	}
	c.d.log.Info("evicted pod from tainted node", "pod", pod.Namespace+"/"+pod.Name, "node", pod.Spec.NodeName)
	return nil
}

// setPodCondition replaces the condition of the same type, or adds it.
func setPodCondition(st *corev1.PodStatus, cond corev1.PodCondition) {
	for i := range st.Conditions {
		if st.Conditions[i].Type == cond.Type {
			st.Conditions[i] = cond
			return
		}
	}
	st.Conditions = append(st.Conditions, cond)
}

// verdict is what a node's NoExecute taints mean for one pod.
type verdict struct {
	// stay: no NoExecute taint, or every one tolerated without a time limit.
	stay bool
	// after is how long the pod may still run there; 0 is at once.
	after time.Duration
}

// noExecuteVerdict applies kube's rule: every NoExecute taint must be
// tolerated, else the pod goes at once; the first toleration matching
// each taint is the one relied on, and the shortest tolerationSeconds
// among those (negative counts as zero) is how long it may stay; with
// none set it stays for good.
func noExecuteVerdict(taints []corev1.Taint, tolerations []corev1.Toleration) verdict {
	var limit *int64
	for i := range taints {
		taint := &taints[i]
		if taint.Effect != corev1.TaintEffectNoExecute {
			continue
		}
		var used *corev1.Toleration
		for j := range tolerations {
			if tolerations[j].ToleratesTaint(klog.Background(), taint, false) {
				used = &tolerations[j]
				break
			}
		}
		if used == nil {
			return verdict{}
		}
		if s := used.TolerationSeconds; s != nil && (limit == nil || *s < *limit) {
			limit = s
		}
	}
	if limit == nil {
		return verdict{stay: true}
	}
	return verdict{after: time.Duration(max(*limit, 0)) * time.Second}
}
