package controller

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
)

// garbageCollector honours ownerReferences for the three propagation
// policies. Background: an object whose owners are all gone is deleted (a
// Deployment's ReplicaSets, a ReplicaSet's pods, a Service's
// EndpointSlices). Foreground: an owner the API server marked deleted with
// the "foregroundDeletion" finalizer has its dependents deleted first, and
// the finalizer is lifted once no dependent blocks it. Orphan: an owner
// marked with the "orphan" finalizer has its references removed from its
// dependents, then the finalizer lifted. It reacts to events: an owner's
// change or deletion re-checks its dependents, every dependent is checked
// when it is seen (so dependents orphaned while the controller was down are
// found at start), and a dependent's change re-checks its owners.
type garbageCollector struct {
	d     *deps
	queue *queue
	// kinds are the dependents watched, each indexed by its owners' UIDs.
	kinds []dependentKind
	// owners are the kinds whose deletion may wait on dependents.
	owners map[string]objectKind
}

// objectKind is one kind of object the collector reads and writes.
type objectKind struct {
	kind     string
	resource string
	client   rest.Interface
	informer toolscache.SharedIndexInformer
}

// dependentKind is one kind of object that may have owners.
type dependentKind struct {
	objectKind
	delete func(ctx context.Context, ns, name string, uid types.UID, policy metav1.DeletionPropagation) error
}

// Finalizers the API server adds for the non-default propagation policies.
const (
	finalizerForeground = metav1.FinalizerDeleteDependents
	finalizerOrphan     = metav1.FinalizerOrphanDependents
)

const byOwnerUID = "byOwnerUID"

func newGarbageCollector(d *deps) (runner, error) {
	gc := &garbageCollector{d: d, owners: map[string]objectKind{}}
	gc.queue = newQueue("garbage-collector", d.log, gc.sync)
	del := func(ctx context.Context, f func(context.Context, string, metav1.DeleteOptions) error, name string, uid types.UID, policy metav1.DeletionPropagation) error {
		return f(ctx, name, metav1.DeleteOptions{PropagationPolicy: &policy, Preconditions: &metav1.Preconditions{UID: &uid}})
	}
	c := d.client
	f := d.factory
	deployments := objectKind{"Deployment", "deployments", c.AppsV1().RESTClient(), f.Apps().V1().Deployments().Informer()}
	replicaSets := objectKind{"ReplicaSet", "replicasets", c.AppsV1().RESTClient(), f.Apps().V1().ReplicaSets().Informer()}
	pods := objectKind{"Pod", "pods", c.CoreV1().RESTClient(), f.Core().V1().Pods().Informer()}
	services := objectKind{"Service", "services", c.CoreV1().RESTClient(), f.Core().V1().Services().Informer()}
	slices := objectKind{"EndpointSlice", "endpointslices", c.DiscoveryV1().RESTClient(), f.Discovery().V1().EndpointSlices().Informer()}
	gc.kinds = []dependentKind{
		{replicaSets, func(ctx context.Context, ns, n string, u types.UID, p metav1.DeletionPropagation) error {
			return del(ctx, c.AppsV1().ReplicaSets(ns).Delete, n, u, p)
		}},
		{pods, func(ctx context.Context, ns, n string, u types.UID, p metav1.DeletionPropagation) error {
			return del(ctx, c.CoreV1().Pods(ns).Delete, n, u, p)
		}},
		{slices, func(ctx context.Context, ns, n string, u types.UID, p metav1.DeletionPropagation) error {
			return del(ctx, c.DiscoveryV1().EndpointSlices(ns).Delete, n, u, p)
		}},
	}
	for i, k := range gc.kinds {
		if err := k.informer.AddIndexers(toolscache.Indexers{byOwnerUID: ownerUIDs}); err != nil {
			return nil, fmt.Errorf("garbage collector: index %s: %w", k.kind, err)
		}
		i := i
		if err := d.handle(k.informer, toolscache.ResourceEventHandlerFuncs{
			AddFunc:    func(o any) { gc.enqueueDependent(i, o) },
			UpdateFunc: func(_, o any) { gc.enqueueDependent(i, o); gc.enqueueOwnersOf(o) },
			DeleteFunc: gc.enqueueOwnersOf,
		}); err != nil {
			return nil, err
		}
	}
	// An owner's deletion re-checks everything that names it; an owner
	// marked for foreground or orphan deletion is worked on.
	for _, k := range []objectKind{deployments, replicaSets, services, pods} {
		gc.owners[k.kind] = k
		if err := d.handle(k.informer, toolscache.ResourceEventHandlerFuncs{
			AddFunc:    func(o any) { gc.enqueueOwner(k.kind, o) },
			UpdateFunc: func(_, o any) { gc.enqueueOwner(k.kind, o) },
			DeleteFunc: gc.enqueueDependentsOf,
		}); err != nil {
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

// An owner's queue key is "owner/<Kind>/<namespace>/<name>"; only owners
// waiting on the collector (marked deleted with one of its finalizers) are
// queued.
func (gc *garbageCollector) enqueueOwner(kind string, obj any) {
	m, err := meta.Accessor(obj)
	if err != nil || m.GetDeletionTimestamp() == nil {
		return
	}
	if hasFinalizer(m, finalizerForeground) || hasFinalizer(m, finalizerOrphan) {
		gc.queue.add(ownerKey(kind, m.GetNamespace(), m.GetName()))
	}
}

func ownerKey(kind, ns, name string) string { return "owner/" + kind + "/" + ns + "/" + name }

// enqueueOwnersOf re-checks the owners of a dependent that changed or went:
// an owner in foreground deletion may now be free to go.
func (gc *garbageCollector) enqueueOwnersOf(obj any) {
	if t, ok := obj.(toolscache.DeletedFinalStateUnknown); ok {
		obj = t.Obj
	}
	m, err := meta.Accessor(obj)
	if err != nil {
		return
	}
	for _, ref := range m.GetOwnerReferences() {
		k, ok := gc.owners[ref.Kind]
		if !ok {
			continue
		}
		if owner, exists, _ := k.informer.GetIndexer().GetByKey(namespacedKey(m.GetNamespace(), ref.Name)); exists {
			gc.enqueueOwner(ref.Kind, owner)
		}
	}
}

func namespacedKey(ns, name string) string {
	if ns == "" {
		return name
	}
	return ns + "/" + name
}

func hasFinalizer(m metav1.Object, f string) bool {
	for _, x := range m.GetFinalizers() {
		if x == f {
			return true
		}
	}
	return false
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
	if strings.HasPrefix(key, "owner/") {
		parts := strings.SplitN(key, "/", 4)
		if len(parts) != 4 {
			return nil
		}
		return gc.syncOwner(ctx, parts[1], parts[2], parts[3])
	}
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
	if err := k.delete(ctx, ns, name, m.GetUID(), metav1.DeletePropagationBackground); err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
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

// syncOwner works on an owner marked deleted with the orphan or the
// foreground finalizer.
func (gc *garbageCollector) syncOwner(ctx context.Context, kind, ns, name string) error {
	k, ok := gc.owners[kind]
	if !ok {
		return nil
	}
	obj, exists, err := k.informer.GetIndexer().GetByKey(namespacedKey(ns, name))
	if err != nil || !exists {
		return err
	}
	owner, err := meta.Accessor(obj)
	if err != nil || owner.GetDeletionTimestamp() == nil {
		return err
	}
	switch {
	case hasFinalizer(owner, finalizerOrphan):
		if err := gc.orphanDependents(ctx, owner); err != nil {
			return err
		}
		return gc.removeFinalizer(ctx, k, owner, finalizerOrphan)
	case hasFinalizer(owner, finalizerForeground):
		blocking, err := gc.deleteDependents(ctx, owner)
		if err != nil || blocking > 0 {
			// The dependents' deletions bring the owner back here.
			return err
		}
		return gc.removeFinalizer(ctx, k, owner, finalizerForeground)
	}
	return nil
}

// dependents lists, from the caches, what names uid as an owner.
func (gc *garbageCollector) dependents(uid types.UID) map[int][]metav1.Object {
	out := map[int][]metav1.Object{}
	for i, k := range gc.kinds {
		objs, _ := k.informer.GetIndexer().ByIndex(byOwnerUID, string(uid))
		for _, o := range objs {
			if m, err := meta.Accessor(o); err == nil {
				out[i] = append(out[i], m)
			}
		}
	}
	return out
}

// orphanDependents removes the owner's references from its dependents.
func (gc *garbageCollector) orphanDependents(ctx context.Context, owner metav1.Object) error {
	for i, deps := range gc.dependents(owner.GetUID()) {
		k := gc.kinds[i].objectKind
		for _, dep := range deps {
			refs := dep.GetOwnerReferences()
			kept := withoutOwner(refs, owner.GetUID())
			if len(kept) == len(refs) {
				continue
			}
			if err := gc.patchList(ctx, k, dep, "/metadata/ownerReferences", refs, kept); err != nil {
				return fmt.Errorf("orphan %s %s/%s: %w", k.kind, dep.GetNamespace(), dep.GetName(), err)
			}
		}
	}
	return nil
}

func withoutOwner(refs []metav1.OwnerReference, uid types.UID) []metav1.OwnerReference {
	kept := []metav1.OwnerReference{}
	for _, r := range refs {
		if r.UID != uid {
			kept = append(kept, r)
		}
	}
	return kept
}

// deleteDependents deletes the owner's dependents (foreground again for
// those that own things themselves, so the chain unwinds from the leaves)
// and counts those that still block the owner: dependents whose reference
// sets blockOwnerDeletion, as upstream.
func (gc *garbageCollector) deleteDependents(ctx context.Context, owner metav1.Object) (int, error) {
	blocking := 0
	for i, deps := range gc.dependents(owner.GetUID()) {
		k := gc.kinds[i]
		for _, dep := range deps {
			if blocksOwner(dep, owner.GetUID()) {
				blocking++
			}
			if dep.GetDeletionTimestamp() != nil {
				continue
			}
			policy := metav1.DeletePropagationBackground
			if len(gc.dependents(dep.GetUID())) > 0 {
				policy = metav1.DeletePropagationForeground
			}
			err := k.delete(ctx, dep.GetNamespace(), dep.GetName(), dep.GetUID(), policy)
			if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
				return blocking, fmt.Errorf("delete %s %s/%s before its owner: %w", k.kind, dep.GetNamespace(), dep.GetName(), err)
			}
		}
	}
	return blocking, nil
}

func blocksOwner(dep metav1.Object, uid types.UID) bool {
	for _, r := range dep.GetOwnerReferences() {
		if r.UID == uid && r.BlockOwnerDeletion != nil && *r.BlockOwnerDeletion {
			return true
		}
	}
	return false
}

func (gc *garbageCollector) removeFinalizer(ctx context.Context, k objectKind, owner metav1.Object, finalizer string) error {
	fins := owner.GetFinalizers()
	kept := []string{}
	for _, f := range fins {
		if f != finalizer {
			kept = append(kept, f)
		}
	}
	if err := gc.patchList(ctx, k, owner, "/metadata/finalizers", fins, kept); err != nil {
		return fmt.Errorf("remove finalizer %s from %s %s/%s: %w", finalizer, k.kind, owner.GetNamespace(), owner.GetName(), err)
	}
	gc.d.log.Debug("lifted finalizer", "finalizer", finalizer, "kind", k.kind, "namespace", owner.GetNamespace(), "name", owner.GetName())
	return nil
}

// patchList replaces a list in the object's metadata with a JSON patch
// that first tests the list still holds what the cache saw, so a
// concurrent change is never overwritten (the queue retries instead).
func (gc *garbageCollector) patchList(ctx context.Context, k objectKind, obj metav1.Object, path string, was, want any) error {
	patch, err := json.Marshal([]map[string]any{
		{"op": "test", "path": path, "value": was},
		{"op": "replace", "path": path, "value": want},
	})
	if err != nil {
		return err
	}
	req := k.client.Patch(types.JSONPatchType).Resource(k.resource).Name(obj.GetName()).Body(patch)
	if obj.GetNamespace() != "" {
		req = req.Namespace(obj.GetNamespace())
	}
	err = req.Do(ctx).Error()
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}
