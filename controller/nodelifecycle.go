package controller

import (
	"context"
	"fmt"
	"sync"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	coordlisters "k8s.io/client-go/listers/coordination/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/retry"
)

// nodeLeaseNamespace is where agents renew their Leases.
const nodeLeaseNamespace = "kube-node-lease"

// Taint keys the node controller manages, as upstream.
const (
	taintUnreachable = "node.kubernetes.io/unreachable"
	taintNotReady    = "node.kubernetes.io/not-ready"
)

const podsByNode = "byNodeName"

// nodeLifecycleController notices nodes that stopped renewing their Lease
// (and posting status): after the grace period their conditions become
// Unknown, they get the unreachable taints, and their pods are marked not
// ready so Services stop sending them traffic. When the node comes back
// (its agent posts Ready=True again) the taints go.
type nodeLifecycleController struct {
	d        *deps
	grace    time.Duration
	nodes    corelisters.NodeLister
	leases   coordlisters.LeaseLister
	pods     toolscache.Indexer
	queue    *queue
	recorder record.EventRecorder
	now      func() time.Time

	mu sync.Mutex
	// observed is, per node, the last heartbeat seen and when this
	// controller saw it change. Staleness is judged on our own clock, so
	// skew between hosts, or a control plane restarted after a long
	// pause, never condemns a node on the timestamps alone.
	observed map[string]observation
}

type observation struct {
	heartbeat time.Time
	seenAt    time.Time
}

func newNodeLifecycleController(d *deps, grace time.Duration) (runner, error) {
	c := &nodeLifecycleController{
		d: d, grace: grace, now: time.Now, observed: map[string]observation{},
		nodes:    d.factory.Core().V1().Nodes().Lister(),
		leases:   d.factory.Coordination().V1().Leases().Lister(),
		recorder: d.recs.forComponent(componentNode),
	}
	c.queue = newQueue("node-lifecycle", d.log, c.sync)
	podInf := d.factory.Core().V1().Pods().Informer()
	if err := podInf.AddIndexers(toolscache.Indexers{podsByNode: func(obj any) ([]string, error) {
		if p, ok := obj.(*corev1.Pod); ok && p.Spec.NodeName != "" {
			return []string{p.Spec.NodeName}, nil
		}
		return nil, nil
	}}); err != nil {
		return nil, fmt.Errorf("node lifecycle: index pods: %w", err)
	}
	c.pods = podInf.GetIndexer()
	if err := d.handle(podInf, toolscache.ResourceEventHandlerFuncs{}); err != nil {
		return nil, err
	}
	if err := d.handle(d.factory.Core().V1().Nodes().Informer(), cacheHandler(c.queue)); err != nil {
		return nil, err
	}
	leaseHandler := func(obj any) {
		if l, ok := obj.(*coordinationv1.Lease); ok && l.Namespace == nodeLeaseNamespace {
			c.queue.add(l.Name)
		}
	}
	err := d.handle(d.factory.Coordination().V1().Leases().Informer(), toolscache.ResourceEventHandlerFuncs{
		AddFunc: leaseHandler, UpdateFunc: func(_, o any) { leaseHandler(o) },
	})
	return c, err
}

func (c *nodeLifecycleController) run(ctx context.Context) { c.queue.run(ctx, c.d.workers) }

func (c *nodeLifecycleController) sync(ctx context.Context, name string) error {
	node, err := c.nodes.Get(name)
	if apierrors.IsNotFound(err) {
		c.mu.Lock()
		delete(c.observed, name)
		c.mu.Unlock()
		return nil
	}
	if err != nil {
		return err
	}
	var lease *coordinationv1.Lease
	if l, err := c.leases.Leases(nodeLeaseNamespace).Get(name); err == nil {
		lease = l
	}
	now := c.now()
	obs := c.observe(name, lastHeartbeat(node, lease), now)
	stale := now.Sub(obs.seenAt) >= c.grace
	if !stale {
		// Look again when the grace period would run out.
		c.queue.addAfter(name, obs.seenAt.Add(c.grace).Sub(now)+10*time.Millisecond)
	}
	if stale {
		if node, err = c.markUnknown(ctx, node, now); err != nil {
			return err
		}
		if err := c.markPodsNotReady(ctx, name); err != nil {
			return err
		}
	}
	return c.syncTaints(ctx, node, now)
}

// observe records the heartbeat and returns when it last changed.
func (c *nodeLifecycleController) observe(node string, hb time.Time, now time.Time) observation {
	c.mu.Lock()
	defer c.mu.Unlock()
	obs, ok := c.observed[node]
	if !ok || !hb.Equal(obs.heartbeat) {
		obs = observation{heartbeat: hb, seenAt: now}
		c.observed[node] = obs
	}
	return obs
}

// lastHeartbeat is the newest sign of life: the Lease's renew time or the
// Ready condition's heartbeat.
func lastHeartbeat(node *corev1.Node, lease *coordinationv1.Lease) time.Time {
	var t time.Time
	if lease != nil && lease.Spec.RenewTime != nil {
		t = lease.Spec.RenewTime.Time
	}
	for _, cond := range node.Status.Conditions {
		if cond.Type == corev1.NodeReady && cond.LastHeartbeatTime.After(t) {
			t = cond.LastHeartbeatTime.Time
		}
	}
	return t
}

// unknownConditions turns every condition the agent reports into Unknown
// (keeping heartbeats, moving transition times) and says whether anything
// changed. A node that never posted a Ready condition gets one.
func unknownConditions(conds []corev1.NodeCondition, now metav1.Time) ([]corev1.NodeCondition, bool) {
	out := make([]corev1.NodeCondition, 0, len(conds)+1)
	changed, sawReady := false, false
	for _, cond := range conds {
		switch cond.Type {
		case corev1.NodeReady, corev1.NodeMemoryPressure, corev1.NodeDiskPressure, corev1.NodePIDPressure:
			sawReady = sawReady || cond.Type == corev1.NodeReady
			if cond.Status != corev1.ConditionUnknown {
				cond.Status, cond.LastTransitionTime = corev1.ConditionUnknown, now
				cond.Reason, cond.Message = "NodeStatusUnknown", "Kubelet stopped posting node status."
				changed = true
			}
		}
		out = append(out, cond)
	}
	if !sawReady {
		out = append(out, corev1.NodeCondition{Type: corev1.NodeReady, Status: corev1.ConditionUnknown, LastTransitionTime: now,
			Reason: "NodeStatusNeverUpdated", Message: "Kubelet never posted node status."})
		changed = true
	}
	return out, changed
}

func (c *nodeLifecycleController) markUnknown(ctx context.Context, node *corev1.Node, now time.Time) (*corev1.Node, error) {
	conds, changed := unknownConditions(node.Status.Conditions, metav1.NewTime(now))
	if !changed {
		return node, nil
	}
	updated := node.DeepCopy()
	updated.Status.Conditions = conds
	updated, err := c.d.client.CoreV1().Nodes().UpdateStatus(ctx, updated, metav1.UpdateOptions{})
	if err != nil {
		return nil, fmt.Errorf("mark node %s unknown: %w", node.Name, err)
	}
	c.recorder.Eventf(&corev1.ObjectReference{Kind: "Node", Name: node.Name, UID: node.UID}, corev1.EventTypeNormal,
		"NodeNotReady", "Node %s status is now: NodeNotReady", node.Name)
	c.d.log.Info("node stopped renewing its lease", "node", node.Name, "grace", c.grace)
	return updated, nil
}

// markPodsNotReady sets Ready=False on the node's pods, as the node's
// agent can no longer vouch for them; endpoints follow.
func (c *nodeLifecycleController) markPodsNotReady(ctx context.Context, node string) error {
	objs, err := c.pods.ByIndex(podsByNode, node)
	if err != nil {
		return err
	}
	now := metav1.NewTime(c.now())
	for _, obj := range objs {
		pod := obj.(*corev1.Pod)
		updated, changed := podMarkedNotReady(pod, now)
		if !changed {
			continue
		}
		_, err := c.d.client.CoreV1().Pods(pod.Namespace).UpdateStatus(ctx, updated, metav1.UpdateOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("mark pod %s/%s not ready: %w", pod.Namespace, pod.Name, err)
		}
		c.recorder.Eventf(pod, corev1.EventTypeWarning, "NodeNotReady", "Node is not ready")
	}
	return nil
}

// podMarkedNotReady returns the pod with its Ready condition False, and
// whether that changed anything. Finished pods are left as they are.
func podMarkedNotReady(pod *corev1.Pod, now metav1.Time) (*corev1.Pod, bool) {
	if pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
		return pod, false
	}
	for i, cond := range pod.Status.Conditions {
		if cond.Type == corev1.PodReady && cond.Status != corev1.ConditionFalse {
			updated := pod.DeepCopy()
			c := &updated.Status.Conditions[i]
			c.Status, c.LastTransitionTime, c.Reason, c.Message = corev1.ConditionFalse, now, "NodeNotReady", "Node is not ready"
			return updated, true
		}
	}
	return pod, false
}

// wantedTaints derives the controller's taints from the Ready condition:
// unreachable for Unknown, not-ready for False, none for True; other
// taints are kept as they are. It says whether the set changed.
func wantedTaints(taints []corev1.Taint, ready corev1.ConditionStatus, now metav1.Time) ([]corev1.Taint, bool) {
	var want string
	switch ready {
	case corev1.ConditionUnknown:
		want = taintUnreachable
	case corev1.ConditionFalse:
		want = taintNotReady
	}
	out := make([]corev1.Taint, 0, len(taints)+2)
	have := map[corev1.TaintEffect]bool{}
	changed := false
	for _, t := range taints {
		if t.Key == taintUnreachable || t.Key == taintNotReady {
			if t.Key != want {
				changed = true
				continue
			}
			have[t.Effect] = true
		}
		out = append(out, t)
	}
	if want != "" {
		for _, effect := range []corev1.TaintEffect{corev1.TaintEffectNoSchedule, corev1.TaintEffectNoExecute} {
			if have[effect] {
				continue
			}
			t := corev1.Taint{Key: want, Effect: effect}
			if effect == corev1.TaintEffectNoExecute {
				t.TimeAdded = &now
			}
			out = append(out, t)
			changed = true
		}
	}
	return out, changed
}

func readyStatus(n *corev1.Node) corev1.ConditionStatus {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status
		}
	}
	return corev1.ConditionUnknown
}

// syncTaints writes the taints the node's Ready condition calls for,
// reading the node afresh only when a write is needed and conflicts.
func (c *nodeLifecycleController) syncTaints(ctx context.Context, node *corev1.Node, now time.Time) error {
	nodes := c.d.client.CoreV1().Nodes()
	first := true
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		if !first {
			fresh, err := nodes.Get(ctx, node.Name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			node = fresh
		}
		first = false
		taints, changed := wantedTaints(node.Spec.Taints, readyStatus(node), metav1.NewTime(now))
		if !changed {
			return nil
		}
		updated := node.DeepCopy()
		updated.Spec.Taints = taints
		_, err := nodes.Update(ctx, updated, metav1.UpdateOptions{})
		return err
	})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("taint node %s: %w", node.Name, err)
	}
	return nil
}
