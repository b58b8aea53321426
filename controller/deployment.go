package controller

import (
	"context"
	"fmt"
	"sort"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	listersappsv1 "k8s.io/client-go/listers/apps/v1"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
)

type deploymentController struct {
	d        *deps
	deploys  listersappsv1.DeploymentLister
	rsets    listersappsv1.ReplicaSetLister
	recorder record.EventRecorder
	queue    *queue
}

func newDeploymentController(d *deps) (runner, error) {
	f := d.factory.Apps().V1()
	c := &deploymentController{d: d, deploys: f.Deployments().Lister(), rsets: f.ReplicaSets().Lister(),
		recorder: d.recs.forComponent(componentDeployment)}
	c.queue = newQueue("deployment", d.log, c.sync)
	if err := d.handle(f.Deployments().Informer(), cacheHandler(c.queue)); err != nil {
		return nil, err
	}
	ownerHandler := func(obj any) {
		if t, ok := obj.(toolscache.DeletedFinalStateUnknown); ok {
			obj = t.Obj
		}
		rs, ok := obj.(*appsv1.ReplicaSet)
		if !ok {
			return
		}
		if ref := controllerOf(rs); ref != nil && ref.Kind == "Deployment" {
			c.queue.add(rs.Namespace + "/" + ref.Name)
		}
	}
	err := d.handle(f.ReplicaSets().Informer(), toolscache.ResourceEventHandlerFuncs{
		AddFunc: ownerHandler, UpdateFunc: func(_, o any) { ownerHandler(o) }, DeleteFunc: ownerHandler,
	})
	return c, err
}

func (c *deploymentController) run(ctx context.Context) { c.queue.run(ctx, c.d.workers) }

func (c *deploymentController) sync(ctx context.Context, key string) error {
	ns, name, err := toolscache.SplitMetaNamespaceKey(key)
	if err != nil {
		return nil
	}
	d, err := c.deploys.Deployments(ns).Get(name)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil || d.DeletionTimestamp != nil {
		return err
	}
	sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
	if err != nil || sel.Empty() {
		return nil
	}
	all, err := c.rsets.ReplicaSets(ns).List(labels.Everything())
	if err != nil {
		return err
	}
	owned, _ := claim(all, d.UID, sel)
	hash := templateHash(&d.Spec.Template, d.Status.CollisionCount)
	var newRS *appsv1.ReplicaSet
	var old []*appsv1.ReplicaSet
	for _, rs := range owned {
		if rs.Labels[appsv1.DefaultDeploymentUniqueLabelKey] == hash {
			newRS = rs
		} else {
			old = append(old, rs)
		}
	}
	desired := ptrOr(d.Spec.Replicas, 1)
	surge, unavailable := resolveSurgeUnavailable(d)
	revision := maxRevision(old) + 1
	if newRS != nil && revisionOf(newRS) > maxRevision(old) {
		revision = revisionOf(newRS)
	}

	if newRS == nil {
		size := int32(0)
		if d.Spec.Strategy.Type == appsv1.RecreateDeploymentStrategyType {
			if sumSpec(old) == 0 && activeOf(old) == 0 {
				size = desired
			}
		} else {
			size = rollingNewReplicas(desired, surge, nil, owned)
		}
		rs := newReplicaSetFor(d, hash, size)
		rs.Annotations, _ = rsAnnotations(d, rs, revision, surge)
		created, err := c.d.client.AppsV1().ReplicaSets(ns).Create(ctx, rs, metav1.CreateOptions{})
		if err != nil {
			return fmt.Errorf("create replicaset for deployment %s: %w", key, err)
		}
		c.recorder.Eventf(d, corev1.EventTypeNormal, "ScalingReplicaSet", "Scaled up replica set %s from 0 to %d", created.Name, size)
		return nil // the new ReplicaSet's informer event brings us back
	}

	// Keep the new ReplicaSet's annotations (revision, desired) current.
	if ann, changed := rsAnnotations(d, newRS, revision, surge); changed {
		cp := newRS.DeepCopy()
		cp.Annotations = ann
		if _, err := c.d.client.AppsV1().ReplicaSets(ns).Update(ctx, cp, metav1.UpdateOptions{}); err != nil {
			return err
		}
		return nil
	}

	// The Deployment carries its current revision too, as upstream's does.
	if rev := fmt.Sprint(revision); d.Annotations[revisionAnnotation] != rev {
		patch := fmt.Sprintf(`{"metadata":{"annotations":{%q:%q}}}`, revisionAnnotation, rev)
		if _, err := c.d.client.AppsV1().Deployments(ns).Patch(ctx, d.Name, types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
			return fmt.Errorf("record revision of deployment %s: %w", key, err)
		}
	}

	switch d.Spec.Strategy.Type {
	case appsv1.RecreateDeploymentStrategyType:
		for _, rs := range old {
			if specReplicas(rs) != 0 {
				return c.scale(ctx, d, rs, 0)
			}
		}
		if activeOf(old) == 0 && specReplicas(newRS) != desired {
			return c.scale(ctx, d, newRS, desired)
		}
	default:
		if n := rollingNewReplicas(desired, surge, newRS, owned); n != specReplicas(newRS) {
			return c.scale(ctx, d, newRS, n)
		}
		for rsName, size := range rollingOldScaleDown(desired, unavailable, newRS, old) {
			for _, rs := range old {
				if rs.Name == rsName {
					if err := c.scale(ctx, d, rs, size); err != nil {
						return err
					}
				}
			}
		}
	}

	for _, rs := range historyToDelete(d, old) {
		if err := c.d.client.AppsV1().ReplicaSets(ns).Delete(ctx, rs.Name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			return err
		}
	}

	st, wait := deploymentStatus(d, newRS, owned, time.Now())
	if !equality.Semantic.DeepEqual(st, d.Status) {
		cp := d.DeepCopy()
		cp.Status = st
		if _, err := c.d.client.AppsV1().Deployments(ns).UpdateStatus(ctx, cp, metav1.UpdateOptions{}); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("update status of deployment %s: %w", key, err)
		}
	}
	if wait > 0 {
		c.queue.addAfter(key, wait)
	}
	return nil
}

func activeOf(rss []*appsv1.ReplicaSet) int32 {
	var n int32
	for _, rs := range rss {
		n += rs.Status.Replicas
	}
	return n
}

func (c *deploymentController) scale(ctx context.Context, d *appsv1.Deployment, rs *appsv1.ReplicaSet, size int32) error {
	from := specReplicas(rs)
	cp := rs.DeepCopy()
	cp.Spec.Replicas = &size
	if _, err := c.d.client.AppsV1().ReplicaSets(rs.Namespace).Update(ctx, cp, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("scale replicaset %s/%s to %d: %w", rs.Namespace, rs.Name, size, err)
	}
	verb := "up"
	if size < from {
		verb = "down"
	}
	c.recorder.Eventf(d, corev1.EventTypeNormal, "ScalingReplicaSet", "Scaled %s replica set %s from %d to %d", verb, rs.Name, from, size)
	return nil
}

func newReplicaSetFor(d *appsv1.Deployment, hash string, size int32) *appsv1.ReplicaSet {
	tmpl := d.Spec.Template.DeepCopy()
	if tmpl.Labels == nil {
		tmpl.Labels = map[string]string{}
	}
	tmpl.Labels[appsv1.DefaultDeploymentUniqueLabelKey] = hash
	sel := d.Spec.Selector.DeepCopy()
	if sel.MatchLabels == nil {
		sel.MatchLabels = map[string]string{}
	}
	sel.MatchLabels[appsv1.DefaultDeploymentUniqueLabelKey] = hash
	lbls := map[string]string{}
	for k, v := range tmpl.Labels {
		lbls[k] = v
	}
	ref := controllerRef(d, "apps/v1", "Deployment")
	return &appsv1.ReplicaSet{
		ObjectMeta: metav1.ObjectMeta{Name: d.Name + "-" + hash, Namespace: d.Namespace, Labels: lbls,
			OwnerReferences: []metav1.OwnerReference{ref}},
		Spec: appsv1.ReplicaSetSpec{Replicas: &size, MinReadySeconds: d.Spec.MinReadySeconds, Selector: sel, Template: *tmpl},
	}
}

var _ = sort.Strings
