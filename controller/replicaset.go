package controller

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	appslisters "k8s.io/client-go/listers/apps/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
)

// burstReplicas caps the pods one sync creates or deletes.
const burstReplicas = 500

// rsController keeps each ReplicaSet's active pods at spec.replicas.
type rsController struct {
	client   kubernetes.Interface
	rsets    appslisters.ReplicaSetLister
	pods     corelisters.PodLister
	recorder record.EventRecorder
	exp      *expectations
	queue    *queue
	workers  int
	log      *slog.Logger
}

func newReplicaSetController(d *deps) (runner, error) {
	c := &rsController{
		client:   d.client,
		rsets:    d.factory.Apps().V1().ReplicaSets().Lister(),
		pods:     d.factory.Core().V1().Pods().Lister(),
		recorder: d.recs.forComponent(componentReplicaSet),
		exp:      newExpectations(),
		workers:  d.workers,
		log:      d.log,
	}
	c.queue = newQueue("replicaset", d.log, c.sync)
	err := d.handle(d.factory.Apps().V1().ReplicaSets().Informer(), toolscache.ResourceEventHandlerFuncs{
		AddFunc:    c.queue.addObj,
		UpdateFunc: func(_, obj any) { c.queue.addObj(obj) },
		DeleteFunc: func(obj any) {
			key, err := toolscache.DeletionHandlingMetaNamespaceKeyFunc(obj)
			if err == nil {
				c.exp.forget(key)
				c.queue.add(key)
			}
		},
	})
	if err != nil {
		return nil, fmt.Errorf("replicaset handler: %w", err)
	}
	err = d.handle(d.factory.Core().V1().Pods().Informer(), toolscache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) {
			p := obj.(*corev1.Pod)
			if key := c.ownerKey(p); key != "" {
				if p.DeletionTimestamp != nil {
					c.exp.observe(key, 0, 1)
				} else {
					c.exp.observe(key, 1, 0)
				}
				c.queue.add(key)
			} else {
				c.enqueueMatching(p)
			}
		},
		UpdateFunc: func(old, obj any) {
			o, p := old.(*corev1.Pod), obj.(*corev1.Pod)
			key := c.ownerKey(p)
			if key != "" && o.DeletionTimestamp == nil && p.DeletionTimestamp != nil {
				c.exp.observe(key, 0, 1)
			}
			if okey := c.ownerKey(o); okey != "" && okey != key {
				c.queue.add(okey)
			}
			if key != "" {
				c.queue.add(key)
				if minReady := c.minReadyOf(key); minReady > 0 && !podReady(o) && podReady(p) {
					c.queue.addAfter(key, minReady+time.Second)
				}
			} else if !labels.Equals(o.Labels, p.Labels) || controllerOf(o) != nil {
				c.enqueueMatching(p)
			}
		},
		DeleteFunc: func(obj any) {
			p, ok := obj.(*corev1.Pod)
			if !ok {
				t, ok := obj.(toolscache.DeletedFinalStateUnknown)
				if !ok {
					return
				}
				if p, ok = t.Obj.(*corev1.Pod); !ok {
					return
				}
			}
			if key := c.ownerKey(p); key != "" {
				if p.DeletionTimestamp == nil {
					c.exp.observe(key, 0, 1)
				}
				c.queue.add(key)
			}
		},
	})
	if err != nil {
		return nil, fmt.Errorf("replicaset pod handler: %w", err)
	}
	return c, nil
}

func (c *rsController) run(ctx context.Context) { c.queue.run(ctx, c.workers) }

// ownerKey is the key of the ReplicaSet controlling p, or "".
func (c *rsController) ownerKey(p *corev1.Pod) string {
	ref := controllerOf(p)
	if ref == nil || ref.Kind != "ReplicaSet" {
		return ""
	}
	return p.Namespace + "/" + ref.Name
}

func (c *rsController) minReadyOf(key string) time.Duration {
	ns, name, _ := toolscache.SplitMetaNamespaceKey(key)
	rs, err := c.rsets.ReplicaSets(ns).Get(name)
	if err != nil {
		return 0
	}
	return time.Duration(rs.Spec.MinReadySeconds) * time.Second
}

// enqueueMatching wakes the ReplicaSets that might adopt an orphan pod.
func (c *rsController) enqueueMatching(p *corev1.Pod) {
	if p.DeletionTimestamp != nil || controllerOf(p) != nil {
		return
	}
	list, err := c.rsets.ReplicaSets(p.Namespace).List(labels.Everything())
	if err != nil {
		return
	}
	for _, rs := range list {
		sel, err := metav1.LabelSelectorAsSelector(rs.Spec.Selector)
		if err != nil || sel.Empty() || !sel.Matches(labels.Set(p.Labels)) {
			continue
		}
		c.queue.add(rs.Namespace + "/" + rs.Name)
	}
}

func (c *rsController) sync(ctx context.Context, key string) error {
	ns, name, err := toolscache.SplitMetaNamespaceKey(key)
	if err != nil {
		return nil
	}
	rs, err := c.rsets.ReplicaSets(ns).Get(name)
	if apierrors.IsNotFound(err) {
		c.exp.forget(key)
		return nil
	}
	if err != nil {
		return err
	}
	sel, err := metav1.LabelSelectorAsSelector(rs.Spec.Selector)
	if err != nil || sel.Empty() {
		return nil // invalid selector: the API server should not have let it in
	}
	all, err := c.pods.Pods(ns).List(labels.Everything())
	if err != nil {
		return err
	}
	owned, orphans := claim(all, rs.UID, sel)
	if rs.DeletionTimestamp == nil {
		for _, p := range orphans {
			if err := adopt(ctx, c.client, p, rs); err != nil {
				if apierrors.IsNotFound(err) {
					continue
				}
				return fmt.Errorf("adopt pod %s/%s: %w", ns, p.Name, err)
			}
			owned = append(owned, p)
		}
	}
	var active []*corev1.Pod
	for _, p := range owned {
		if podActive(p) {
			active = append(active, p)
		}
	}
	var manageErr error
	if c.exp.satisfied(key) && rs.DeletionTimestamp == nil {
		manageErr = c.manage(ctx, key, rs, active)
	}
	now := time.Now()
	status, wait := replicaSetStatus(rs, owned, now)
	if !equality.Semantic.DeepEqual(status, rs.Status) {
		cp := rs.DeepCopy()
		cp.Status = status
		if _, err := c.client.AppsV1().ReplicaSets(ns).UpdateStatus(ctx, cp, metav1.UpdateOptions{}); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("update status of replicaset %s: %w", key, err)
		}
	}
	if wait > 0 {
		c.queue.addAfter(key, wait)
	}
	return manageErr
}

// manage creates or deletes pods so that len(active) becomes spec.replicas.
func (c *rsController) manage(ctx context.Context, key string, rs *appsv1.ReplicaSet, active []*corev1.Pod) error {
	want := int(ptrOr(rs.Spec.Replicas, 1))
	diff := len(active) - want
	switch {
	case diff < 0:
		n := min(-diff, burstReplicas)
		c.exp.expect(key, n, 0)
		attempted, err := slowStart(n, func() error {
			pod := podFromTemplate(rs)
			created, err := c.client.CoreV1().Pods(rs.Namespace).Create(ctx, pod, metav1.CreateOptions{})
			if err != nil {
				c.exp.observe(key, 1, 0)
				if !apierrors.IsAlreadyExists(err) {
					c.recorder.Eventf(rs, corev1.EventTypeWarning, "FailedCreate", "Error creating: %v", err)
				}
				return err
			}
			c.recorder.Eventf(rs, corev1.EventTypeNormal, "SuccessfulCreate", "Created pod: %s", created.Name)
			return nil
		})
		if attempted < n {
			// creations never attempted will never be observed
			c.exp.observe(key, n-attempted, 0)
		}
		if err != nil {
			return fmt.Errorf("create pods for replicaset %s: %w", key, err)
		}
	case diff > 0:
		victims := podsToDelete(active, min(diff, burstReplicas))
		c.exp.expect(key, 0, len(victims))
		var firstErr error
		for _, p := range victims {
			err := c.client.CoreV1().Pods(p.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{})
			if err != nil {
				c.exp.observe(key, 0, 1)
				if !apierrors.IsNotFound(err) && firstErr == nil {
					c.recorder.Eventf(rs, corev1.EventTypeWarning, "FailedDelete", "Error deleting: %v", err)
					firstErr = fmt.Errorf("delete pod %s/%s: %w", p.Namespace, p.Name, err)
				}
				continue
			}
			c.recorder.Eventf(rs, corev1.EventTypeNormal, "SuccessfulDelete", "Deleted pod: %s", p.Name)
		}
		return firstErr
	}
	return nil
}

func ptrOr[T any](p *T, def T) T {
	if p == nil {
		return def
	}
	return *p
}

// podFromTemplate is the pod a ReplicaSet creates.
func podFromTemplate(rs *appsv1.ReplicaSet) *corev1.Pod {
	t := rs.Spec.Template.DeepCopy()
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			GenerateName:    rs.Name + "-",
			Namespace:       rs.Namespace,
			Labels:          t.Labels,
			Annotations:     t.Annotations,
			Finalizers:      t.Finalizers,
			OwnerReferences: []metav1.OwnerReference{controllerRef(rs, "apps/v1", "ReplicaSet")},
		},
		Spec: t.Spec,
	}
	return pod
}

// replicaSetStatus computes a ReplicaSet's status from its pods, and when
// a ready pod will become available (minReadySeconds) if one will.
func replicaSetStatus(rs *appsv1.ReplicaSet, owned []*corev1.Pod, now time.Time) (appsv1.ReplicaSetStatus, time.Duration) {
	st := rs.Status.DeepCopy()
	var replicas, labeled, ready, available, terminating int32
	var wait time.Duration
	tmpl := labels.Set(rs.Spec.Template.Labels)
	minReady := time.Duration(rs.Spec.MinReadySeconds) * time.Second
	for _, p := range owned {
		if podTerminating(p) {
			terminating++
		}
		if !podActive(p) {
			continue
		}
		replicas++
		if tmpl.AsSelector().Matches(labels.Set(p.Labels)) {
			labeled++
		}
		if podReady(p) {
			ready++
		}
		ok, left := podAvailable(p, minReady, now)
		if ok {
			available++
		} else if left > 0 && (wait == 0 || left < wait) {
			wait = left
		}
	}
	st.Replicas, st.FullyLabeledReplicas, st.ReadyReplicas, st.AvailableReplicas = replicas, labeled, ready, available
	st.TerminatingReplicas = &terminating
	st.ObservedGeneration = rs.Generation
	return *st, wait
}

// adopt makes owner the controller of an orphan, guarded by the orphan's
// UID so a recreated object of the same name is not touched.
func adopt(ctx context.Context, client kubernetes.Interface, obj metav1.Object, owner metav1.Object) error {
	var ref metav1.OwnerReference
	switch o := owner.(type) {
	case *appsv1.ReplicaSet:
		ref = controllerRef(o, "apps/v1", "ReplicaSet")
	case *appsv1.Deployment:
		ref = controllerRef(o, "apps/v1", "Deployment")
	default:
		return fmt.Errorf("adopt: unexpected owner %T", owner)
	}
	patch, _ := json.Marshal(map[string]any{"metadata": map[string]any{
		"ownerReferences": []metav1.OwnerReference{ref}, "uid": obj.GetUID()}})
	var err error
	switch obj.(type) {
	case *corev1.Pod:
		_, err = client.CoreV1().Pods(obj.GetNamespace()).Patch(ctx, obj.GetName(), types.StrategicMergePatchType, patch, metav1.PatchOptions{})
	case *appsv1.ReplicaSet:
		_, err = client.AppsV1().ReplicaSets(obj.GetNamespace()).Patch(ctx, obj.GetName(), types.StrategicMergePatchType, patch, metav1.PatchOptions{})
	}
	return err
}
