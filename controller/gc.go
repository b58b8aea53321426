package controller

import (
	"context"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	toolscache "k8s.io/client-go/tools/cache"
)

// garbageCollector deletes objects whose owners are gone (background
// propagation): a Deployment's ReplicaSets, a ReplicaSet's pods, a Service's
// EndpointSlices and Endpoints. It reacts to events: an owner's deletion
// re-checks its dependents, and every dependent is checked when it is seen,
// so dependents orphaned while the controller was down are found at start.
// Orphan propagation is the API server's (it strips ownerReferences).
type garbageCollector struct {
	d     *deps
	queue *queue
	// kinds are the dependents watched, each indexed by its owners' UIDs.
	kinds []dependentKind
}

// dependentKind is one kind of object that may have owners.
type dependentKind struct {
	kind     string
	informer toolscache.SharedIndexInformer
	delete   func(ctx context.Context, ns, name string, uid types.UID) error
}

const byOwnerUID = "byOwnerUID"

func newGarbageCollector(d *deps) (runner, error) {
	gc := &garbageCollector{d: d}
	gc.queue = newQueue("garbage-collector", d.log, gc.sync)
	bg := metav1.DeletePropagationBackground
	del := func(ctx context.Context, f func(context.Context, string, metav1.DeleteOptions) error, name string, uid types.UID) error {
		return f(ctx, name, metav1.DeleteOptions{PropagationPolicy: &bg, Preconditions: &metav1.Preconditions{UID: &uid}})
	}
	c := d.client
	f := d.factory
	gc.kinds = []dependentKind{
		{"ReplicaSet", f.Apps().V1().ReplicaSets().Informer(), func(ctx context.Context, ns, n string, u types.UID) error {
			return del(ctx, c.AppsV1().ReplicaSets(ns).Delete, n, u)
		}},
		{"Pod", f.Core().V1().Pods().Informer(), func(ctx context.Context, ns, n string, u types.UID) error {
			return del(ctx, c.CoreV1().Pods(ns).Delete, n, u)
		}},
		{"EndpointSlice", f.Discovery().V1().EndpointSlices().Informer(), func(ctx context.Context, ns, n string, u types.UID) error {
			return del(ctx, c.DiscoveryV1().EndpointSlices(ns).Delete, n, u)
		}},
	}
	for i, k := range gc.kinds {
		if err := k.informer.AddIndexers(toolscache.Indexers{byOwnerUID: ownerUIDs}); err != nil {
			return nil, fmt.Errorf("garbage collector: index %s: %w", k.kind, err)
		}
		i := i
		if err := d.handle(k.informer, toolscache.ResourceEventHandlerFuncs{
			AddFunc:    func(o any) { gc.enqueueDependent(i, o) },
			UpdateFunc: func(_, o any) { gc.enqueueDependent(i, o) },
		}); err != nil {
			return nil, err
		}
	}
	// An owner's deletion re-checks everything that names it.
	for _, inf := range []toolscache.SharedIndexInformer{
		f.Apps().V1().Deployments().Informer(), f.Apps().V1().ReplicaSets().Informer(), f.Core().V1().Services().Informer(),
	} {
		if err := d.handle(inf, toolscache.ResourceEventHandlerFuncs{DeleteFunc: gc.enqueueDependentsOf}); err != nil {
			return nil, err
		}
	}
	return gc, nil
}

func ownerUIDs(obj any) ([]string, error) {
	m, err := meta.Accessor(obj)
	if err != nil {
		return nil, nil
	}
	var uids []string
	for _, r := range m.GetOwnerReferences() {
		uids = append(uids, string(r.UID))
	}
	return uids, nil
}

// A queue key is "<kind index>/<namespace>/<name>" of a dependent to check.
func (gc *garbageCollector) enqueueDependent(kind int, obj any) {
	m, err := meta.Accessor(obj)
	if err != nil || len(m.GetOwnerReferences()) == 0 || m.GetDeletionTimestamp() != nil {
		return
	}
	gc.queue.add(fmt.Sprintf("%d/%s/%s", kind, m.GetNamespace(), m.GetName()))
}

func (gc *garbageCollector) enqueueDependentsOf(obj any) {
	if t, ok := obj.(toolscache.DeletedFinalStateUnknown); ok {
		obj = t.Obj
	}
	m, err := meta.Accessor(obj)
	if err != nil {
		return
	}
	for i, k := range gc.kinds {
		deps, _ := k.informer.GetIndexer().ByIndex(byOwnerUID, string(m.GetUID()))
		for _, dep := range deps {
			gc.enqueueDependent(i, dep)
		}
	}
}

func (gc *garbageCollector) run(ctx context.Context) { gc.queue.run(ctx, gc.d.workers) }

func (gc *garbageCollector) sync(ctx context.Context, key string) error {
	var kind int
	if _, err := fmt.Sscanf(key, "%d/", &kind); err != nil || kind < 0 || kind >= len(gc.kinds) {
		return nil
	}
	rest := key[len(fmt.Sprint(kind))+1:]
	ns, name, err := toolscache.SplitMetaNamespaceKey(rest)
	if err != nil {
		return nil
	}
	k := gc.kinds[kind]
	obj, exists, err := k.informer.GetIndexer().GetByKey(rest)
	if err != nil || !exists {
		return err
	}
	m, err := meta.Accessor(obj)
	if err != nil || m.GetDeletionTimestamp() != nil {
		return nil
	}
	refs := m.GetOwnerReferences()
	if len(refs) == 0 {
		return nil
	}
	// Background propagation: the dependent goes only when every owner is gone.
	for _, ref := range refs {
		gone, err := gc.ownerGone(ctx, ns, ref)
		if err != nil || !gone {
			return err
		}
	}
	if err := k.delete(ctx, ns, name, m.GetUID()); err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		return fmt.Errorf("delete %s %s/%s whose owners are gone: %w", k.kind, ns, name, err)
	}
	gc.d.log.Debug("deleted dependent of a deleted owner", "kind", k.kind, "namespace", ns, "name", name)
	return nil
}

// ownerGone asks the API server itself (never a possibly lagging cache)
// whether the owner named by ref still exists with the same UID. Owners of
// kinds it does not know are assumed present: never delete on a guess.
func (gc *garbageCollector) ownerGone(ctx context.Context, ns string, ref metav1.OwnerReference) (bool, error) {
	c := gc.d.client
	var obj runtime.Object
	var err error
	switch ref.Kind {
	case "Deployment":
		obj, err = c.AppsV1().Deployments(ns).Get(ctx, ref.Name, metav1.GetOptions{})
	case "ReplicaSet":
		obj, err = c.AppsV1().ReplicaSets(ns).Get(ctx, ref.Name, metav1.GetOptions{})
	case "Service":
		obj, err = c.CoreV1().Services(ns).Get(ctx, ref.Name, metav1.GetOptions{})
	case "Pod":
		obj, err = c.CoreV1().Pods(ns).Get(ctx, ref.Name, metav1.GetOptions{})
	default:
		return false, nil
	}
	if apierrors.IsNotFound(err) {
		return true, nil
	}
	if err != nil {
		return false, err
	}
	m, err := meta.Accessor(obj)
	if err != nil {
		return false, err
	}
	return m.GetUID() != ref.UID, nil
}
