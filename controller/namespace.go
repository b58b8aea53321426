package controller

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
)

// namespaceController does two things upstream splits in two: every active
// namespace gets its `default` ServiceAccount (kubectl and users expect
// it), and a deleted namespace has its content removed before the
// "kubernetes" finalizer is lifted so the API server can let it go.
type namespaceController struct {
	d          *deps
	namespaces corelisters.NamespaceLister
	accounts   corelisters.ServiceAccountLister
	queue      *queue
	// content is what a namespace can hold; all of it is deleted.
	content []namespacedResource
}

// namespacedResource is one namespaced collection, reached with the
// generic REST client of its group so one code path serves every kind.
type namespacedResource struct {
	resource string
	client   rest.Interface
}

// contentRecheck is how soon a terminating namespace is looked at again
// while content (typically pods in graceful deletion) remains.
const contentRecheck = 2 * time.Second

func newNamespaceController(d *deps) (runner, error) {
	core := d.factory.Core().V1()
	c := &namespaceController{d: d, namespaces: core.Namespaces().Lister(), accounts: core.ServiceAccounts().Lister()}
	c.queue = newQueue("namespace", d.log, c.sync)
	cl := d.client
	// Workloads first so nothing is re-created while pods go; events last
	// so the deletions' own events are gone too. (Creation in a terminating
	// namespace is refused by the API server anyway.)
	for _, r := range []struct {
		resource string
		client   rest.Interface
	}{
		{"deployments", cl.AppsV1().RESTClient()},
		{"replicasets", cl.AppsV1().RESTClient()},
		{"pods", cl.CoreV1().RESTClient()},
		{"services", cl.CoreV1().RESTClient()},
		{"endpointslices", cl.DiscoveryV1().RESTClient()},
		{"endpoints", cl.CoreV1().RESTClient()},
		{"configmaps", cl.CoreV1().RESTClient()},
		{"secrets", cl.CoreV1().RESTClient()},
		{"serviceaccounts", cl.CoreV1().RESTClient()},
		{"leases", cl.CoordinationV1().RESTClient()},
		{"events", cl.CoreV1().RESTClient()},
	} {
		c.content = append(c.content, namespacedResource{r.resource, r.client})
	}
	if err := d.handle(core.Namespaces().Informer(), cacheHandler(c.queue)); err != nil {
		return nil, err
	}
	// A deleted `default` ServiceAccount comes back, as upstream.
	err := d.handle(core.ServiceAccounts().Informer(), toolscache.ResourceEventHandlerFuncs{DeleteFunc: func(obj any) {
		if t, ok := obj.(toolscache.DeletedFinalStateUnknown); ok {
			obj = t.Obj
		}
		if sa, ok := obj.(*corev1.ServiceAccount); ok && sa.Name == "default" {
			c.queue.add(sa.Namespace)
		}
	}})
	return c, err
}

func (c *namespaceController) run(ctx context.Context) { c.queue.run(ctx, c.d.workers) }

func (c *namespaceController) sync(ctx context.Context, name string) error {
	ns, err := c.namespaces.Get(name)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if ns.DeletionTimestamp == nil {
		return c.ensureDefaultServiceAccount(ctx, ns.Name)
	}
	return c.finalize(ctx, ns)
}

func (c *namespaceController) ensureDefaultServiceAccount(ctx context.Context, ns string) error {
	if _, err := c.accounts.ServiceAccounts(ns).Get("default"); err == nil {
		return nil
	}
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default", Namespace: ns}}
	_, err := c.d.client.CoreV1().ServiceAccounts(ns).Create(ctx, sa, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) && !isTerminating(err) {
		return fmt.Errorf("create default service account in %s: %w", ns, err)
	}
	return nil
}

// isTerminating: the namespace started terminating between our read and
// the create; the next event brings it back here as a deletion.
func isTerminating(err error) bool {
	return apierrors.HasStatusCause(err, corev1.NamespaceTerminatingCause) || apierrors.IsForbidden(err)
}

// finalize deletes whatever the namespace still holds; once nothing is left
// it lifts the "kubernetes" finalizer and the API server removes it.
func (c *namespaceController) finalize(ctx context.Context, ns *corev1.Namespace) error {
	if !hasKubernetesFinalizer(ns) {
		return nil
	}
	var remaining []contentCount
	for _, r := range c.content {
		n, err := r.deleteAll(ctx, ns.Name)
		if err != nil {
			return fmt.Errorf("delete %s in namespace %s: %w", r.resource, ns.Name, err)
		}
		if n.items > 0 {
			remaining = append(remaining, n)
		}
	}
	if len(remaining) > 0 {
		if err := c.reportRemaining(ctx, ns, remaining); err != nil {
			return err
		}
		c.queue.addAfter(ns.Name, contentRecheck)
		return nil
	}
	fin := ns.DeepCopy()
	fin.Spec.Finalizers = withoutKubernetesFinalizer(fin.Spec.Finalizers)
	if _, err := c.d.client.CoreV1().Namespaces().Finalize(ctx, fin, metav1.UpdateOptions{}); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("finalize namespace %s: %w", ns.Name, err)
	}
	c.d.log.Debug("namespace emptied and finalized", "namespace", ns.Name)
	return nil
}

func hasKubernetesFinalizer(ns *corev1.Namespace) bool {
	for _, f := range ns.Spec.Finalizers {
		if f == corev1.FinalizerKubernetes {
			return true
		}
	}
	return false
}

func withoutKubernetesFinalizer(fs []corev1.FinalizerName) []corev1.FinalizerName {
	var out []corev1.FinalizerName
	for _, f := range fs {
		if f != corev1.FinalizerKubernetes {
			out = append(out, f)
		}
	}
	return out
}

// contentCount is what is left of one resource after a deletion pass.
type contentCount struct {
	resource   string
	items      int
	finalizers map[string]int
}

// deleteAll deletes the collection, then counts what is still there:
// objects waiting for finalizers or, for pods, a graceful termination.
func (r namespacedResource) deleteAll(ctx context.Context, ns string) (contentCount, error) {
	count := contentCount{resource: r.resource, finalizers: map[string]int{}}
	err := r.client.Delete().Namespace(ns).Resource(r.resource).Body(&metav1.DeleteOptions{}).Do(ctx).Error()
	if err != nil && !apierrors.IsNotFound(err) {
		return count, err
	}
	raw, err := r.client.Get().Namespace(ns).Resource(r.resource).SetHeader("Accept", "application/json").Do(ctx).Raw()
	if err != nil {
		return count, err
	}
	var list struct {
		Items []struct {
			Metadata metav1.ObjectMeta `json:"metadata"`
		} `json:"items"`
	}
	if err := json.Unmarshal(raw, &list); err != nil {
		return count, fmt.Errorf("decode %s list: %w", r.resource, err)
	}
	for _, it := range list.Items {
		count.items++
		for _, f := range it.Metadata.Finalizers {
			count.finalizers[f]++
		}
	}
	return count, nil
}

// remainingConditions renders kube-controller-manager's two conditions
// that tell `kubectl describe ns` why a namespace is still Terminating.
func remainingConditions(remaining []contentCount, now metav1.Time) []corev1.NamespaceCondition {
	var content []string
	finalizers := map[string]int{}
	for _, r := range remaining {
		content = append(content, fmt.Sprintf("%s has %d resource instances", r.resource, r.items))
		for f, n := range r.finalizers {
			finalizers[f] += n
		}
	}
	conds := []corev1.NamespaceCondition{{
		Type: corev1.NamespaceContentRemaining, Status: corev1.ConditionTrue, LastTransitionTime: now,
		Reason: "SomeResourcesRemain", Message: "Some resources are remaining: " + strings.Join(content, ", "),
	}}
	fin := corev1.NamespaceCondition{Type: corev1.NamespaceFinalizersRemaining, Status: corev1.ConditionFalse,
		LastTransitionTime: now, Reason: "ContentHasNoFinalizers", Message: "All content-preserving finalizers finished"}
	if len(finalizers) > 0 {
		var parts []string
		for f, n := range finalizers {
			parts = append(parts, fmt.Sprintf("%s in %d resource instances", f, n))
		}
		sort.Strings(parts)
		fin.Status, fin.Reason = corev1.ConditionTrue, "SomeFinalizersRemain"
		fin.Message = "Some content in the namespace has finalizers remaining: " + strings.Join(parts, ", ")
	}
	return append(conds, fin)
}

func (c *namespaceController) reportRemaining(ctx context.Context, ns *corev1.Namespace, remaining []contentCount) error {
	want := remainingConditions(remaining, metav1.Now())
	updated := ns.DeepCopy()
	changed := false
	for _, w := range want {
		i := namespaceConditionIndex(updated.Status.Conditions, w.Type)
		if i < 0 {
			updated.Status.Conditions = append(updated.Status.Conditions, w)
			changed = true
			continue
		}
		old := updated.Status.Conditions[i]
		if old.Status != w.Status || old.Reason != w.Reason || old.Message != w.Message {
			if old.Status == w.Status {
				w.LastTransitionTime = old.LastTransitionTime
			}
			updated.Status.Conditions[i] = w
			changed = true
		}
	}
	if !changed {
		return nil
	}
	if _, err := c.d.client.CoreV1().Namespaces().UpdateStatus(ctx, updated, metav1.UpdateOptions{}); err != nil &&
		!apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		return fmt.Errorf("report remaining content of namespace %s: %w", ns.Name, err)
	}
	return nil
}

func namespaceConditionIndex(conds []corev1.NamespaceCondition, t corev1.NamespaceConditionType) int {
	for i, c := range conds {
		if c.Type == t {
			return i
		}
	}
	return -1
}
