package controller

import (
	"sort"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
)

// podReadyCondition returns the pod's Ready condition, or nil.
func podReadyCondition(p *corev1.Pod) *corev1.PodCondition {
	for i := range p.Status.Conditions {
		if p.Status.Conditions[i].Type == corev1.PodReady {
			return &p.Status.Conditions[i]
		}
	}
	return nil
}

func podReady(p *corev1.Pod) bool {
	c := podReadyCondition(p)
	return c != nil && c.Status == corev1.ConditionTrue
}

// podAvailable: ready for at least minReady. The second result is how
// long until it will be (0 when available or not ready).
func podAvailable(p *corev1.Pod, minReady time.Duration, now time.Time) (bool, time.Duration) {
	c := podReadyCondition(p)
	if c == nil || c.Status != corev1.ConditionTrue {
		return false, 0
	}
	if minReady <= 0 {
		return true, 0
	}
	left := c.LastTransitionTime.Add(minReady).Sub(now)
	if left <= 0 {
		return true, 0
	}
	return false, left
}

// podActive: counts toward a ReplicaSet's replicas (not finished, not
// being deleted).
func podActive(p *corev1.Pod) bool {
	return p.DeletionTimestamp == nil && p.Status.Phase != corev1.PodSucceeded && p.Status.Phase != corev1.PodFailed
}

func podTerminating(p *corev1.Pod) bool {
	return p.DeletionTimestamp != nil && p.Status.Phase != corev1.PodSucceeded && p.Status.Phase != corev1.PodFailed
}

// controllerOf returns the controller owner reference, or nil.
func controllerOf(m metav1.Object) *metav1.OwnerReference {
	for i, r := range m.GetOwnerReferences() {
		if r.Controller != nil && *r.Controller {
			return &m.GetOwnerReferences()[i]
		}
	}
	return nil
}

func controllerRef(owner metav1.Object, apiVersion, kind string) metav1.OwnerReference {
	t := true
	return metav1.OwnerReference{APIVersion: apiVersion, Kind: kind, Name: owner.GetName(), UID: owner.GetUID(),
		Controller: &t, BlockOwnerDeletion: &t}
}

// claim splits objects into those owned by the controller with uid and the
// orphans its selector matches (candidates for adoption). Objects with
// another controller are left alone.
func claim[T metav1.Object](objs []T, uid types.UID, sel labels.Selector) (owned, orphans []T) {
	for _, o := range objs {
		ref := controllerOf(o)
		switch {
		case ref != nil && ref.UID == uid:
			owned = append(owned, o)
		case ref == nil && o.GetDeletionTimestamp() == nil && sel.Matches(labels.Set(o.GetLabels())):
			orphans = append(orphans, o)
		}
	}
	return owned, orphans
}

// podRank orders pods for deletion, the first deleted first: unscheduled
// before scheduled, Pending before Unknown before Running, not ready
// before ready, ready for less time before longer, more restarts before
// fewer, newer before older (the order ReplicaSets use upstream).
func podLess(a, b *corev1.Pod) bool {
	if (a.Spec.NodeName == "") != (b.Spec.NodeName == "") {
		return a.Spec.NodeName == ""
	}
	phase := map[corev1.PodPhase]int{corev1.PodPending: 0, corev1.PodUnknown: 1, corev1.PodRunning: 2}
	if phase[a.Status.Phase] != phase[b.Status.Phase] {
		return phase[a.Status.Phase] < phase[b.Status.Phase]
	}
	ra, rb := podReady(a), podReady(b)
	if ra != rb {
		return !ra
	}
	if ra && rb {
		ta, tb := podReadyCondition(a).LastTransitionTime, podReadyCondition(b).LastTransitionTime
		if !ta.Equal(&tb) {
			return tb.Before(&ta) // ready more recently goes first
		}
	}
	if ca, cb := restarts(a), restarts(b); ca != cb {
		return ca > cb
	}
	if !a.CreationTimestamp.Equal(&b.CreationTimestamp) {
		return b.CreationTimestamp.Before(&a.CreationTimestamp)
	}
	return a.Name > b.Name
}

func restarts(p *corev1.Pod) int32 {
	var n int32
	for _, s := range p.Status.ContainerStatuses {
		n = max(n, s.RestartCount)
	}
	return n
}

// podsToDelete picks the n pods a ReplicaSet with too many removes.
func podsToDelete(pods []*corev1.Pod, n int) []*corev1.Pod {
	if n <= 0 {
		return nil
	}
	s := append([]*corev1.Pod(nil), pods...)
	sort.SliceStable(s, func(i, j int) bool { return podLess(s[i], s[j]) })
	if n > len(s) {
		n = len(s)
	}
	return s[:n]
}

// expectations remember creations and deletions a controller asked for and
// has not yet seen in its informer, so that a lagging cache does not make
// it act twice.
type expectations struct {
	mu  sync.Mutex
	m   map[string]*expected
	now func() time.Time
}

type expected struct {
	add, del int
	at       time.Time
}

// expectationsTTL bounds how long a controller waits for events it never
// gets (a watch that dropped them); then it syncs anyway.
const expectationsTTL = 5 * time.Minute

func newExpectations() *expectations {
	return &expectations{m: map[string]*expected{}, now: time.Now}
}

func (e *expectations) expect(key string, add, del int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.m[key] = &expected{add: add, del: del, at: e.now()}
}

func (e *expectations) observe(key string, add, del int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if x := e.m[key]; x != nil {
		x.add -= add
		x.del -= del
	}
}

func (e *expectations) satisfied(key string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	x := e.m[key]
	return x == nil || (x.add <= 0 && x.del <= 0) || e.now().Sub(x.at) > expectationsTTL
}

func (e *expectations) forget(key string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	delete(e.m, key)
}

// slowStart runs fn count times in batches of 1, 2, 4, ... and stops at the
// first batch with a failure, so a failing create (quota, invalid template)
// costs a few calls rather than count. It returns how many calls were
// made and the first error.
func slowStart(count int, fn func() error) (int, error) {
	done := 0
	for batch := 1; done < count; batch *= 2 {
		batch = min(batch, count-done)
		errs := make(chan error, batch)
		var wg sync.WaitGroup
		for i := 0; i < batch; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := fn(); err != nil {
					errs <- err
				}
			}()
		}
		wg.Wait()
		close(errs)
		done += batch
		if err, ok := <-errs; ok {
			return done, err
		}
	}
	return done, nil
}
