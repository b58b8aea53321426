package controller

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"
)

// podGC removes the pods nothing else will ever finish, as kube's pod
// garbage collector does with orphans: pods bound to a node that no longer
// exists, after a quarantine and confirmed with a live read (a lagging
// cache never costs a pod), are deleted at once (grace 0), since no agent
// is left to stop their containers. (Unscheduled pods need no such help
// here: the API server deletes them without a grace period.)
type podGC struct {
	d          *deps
	nodes      corelisters.NodeLister
	pods       toolscache.Indexer
	queue      *queue
	quarantine time.Duration
	now        func() time.Time
}

func newPodGC(d *deps, quarantine time.Duration) (runner, error) {
	c := &podGC{d: d, quarantine: quarantine, now: time.Now, nodes: d.factory.Core().V1().Nodes().Lister()}
	c.queue = newQueue("pod-gc", d.log, c.sync)
	pods, err := podsByNodeIndex(d)
	if err != nil {
		return nil, fmt.Errorf("pod gc: %w", err)
	}
	c.pods = pods
	onPod := func(obj any) {
		if p, ok := obj.(*corev1.Pod); ok && p.Spec.NodeName != "" {
			if _, err := c.nodes.Get(p.Spec.NodeName); apierrors.IsNotFound(err) {
				c.queue.addAfter(p.Spec.NodeName, c.quarantine)
			}
		}
	}
	if err := d.handle(d.factory.Core().V1().Pods().Informer(), toolscache.ResourceEventHandlerFuncs{
		AddFunc: onPod, UpdateFunc: func(_, o any) { onPod(o) },
	}); err != nil {
		return nil, err
	}
	return c, d.handle(d.factory.Core().V1().Nodes().Informer(), toolscache.ResourceEventHandlerFuncs{
		DeleteFunc: func(obj any) {
			if tomb, ok := obj.(toolscache.DeletedFinalStateUnknown); ok {
				obj = tomb.Obj
			}
			if n, ok := obj.(*corev1.Node); ok {
				c.queue.addAfter(n.Name, c.quarantine)
			}
		},
	})
}

func (c *podGC) run(ctx context.Context) { c.queue.run(ctx, 1) }

// sync force-deletes the pods bound to node if it is really gone.
func (c *podGC) sync(ctx context.Context, node string) error {
	if _, err := c.nodes.Get(node); err == nil {
		return nil
	}
	objs, err := c.pods.ByIndex(podsByNode, node)
	if err != nil || len(objs) == 0 {
		return err
	}
	// The cache may lag behind a node that was re-created: ask the API.
	if _, err := c.d.client.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		return err
	}
	for _, obj := range objs {
		if err := c.forceDelete(ctx, obj.(*corev1.Pod)); err != nil {
			return err
		}
	}
	return nil
}

// forceDelete deletes the pod with grace 0. A pod still running on paper
// is first marked Failed with the DisruptionTarget condition, so its
// status says why it went.
func (c *podGC) forceDelete(ctx context.Context, pod *corev1.Pod) error {
	pods := c.d.client.CoreV1().Pods(pod.Namespace)
	if pod.Status.Phase != corev1.PodSucceeded && pod.Status.Phase != corev1.PodFailed {
		marked := pod.DeepCopy()
		marked.Status.Phase = corev1.PodFailed
		setPodCondition(&marked.Status, corev1.PodCondition{Type: corev1.DisruptionTarget, Status: corev1.ConditionTrue,
			Reason: "DeletionByPodGC", Message: "PodGC: node no longer exists", LastTransitionTime: metav1.NewTime(c.now())})
		if _, err := pods.UpdateStatus(ctx, marked, metav1.UpdateOptions{}); err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
			return fmt.Errorf("pod gc %s/%s: mark failed: %w", pod.Namespace, pod.Name, err)
		}
	}
	err := pods.Delete(ctx, pod.Name, metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0), Preconditions: &metav1.Preconditions{UID: &pod.UID}})
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		return fmt.Errorf("pod gc %s/%s: %w", pod.Namespace, pod.Name, err)
	}
	c.d.log.Info("deleted pod of a node that is gone", "pod", pod.Namespace+"/"+pod.Name, "node", pod.Spec.NodeName)
	return nil
}
