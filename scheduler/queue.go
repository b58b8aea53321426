package scheduler

import (
	"container/heap"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/types"
)

// queue holds the pods waiting for a node, in three places as kube-scheduler
// does: active (ready to be tried, highest priority then oldest first),
// backoff (failed recently, waiting out an exponential delay) and
// unschedulable (failed and waiting for a change in the cluster that might
// help: a node added or changed, a pod removed). An unschedulable pod is
// retried only after such a change and never before its backoff expires, so
// a pod that does not fit costs nothing while nothing changes.
type queue struct {
	mu   sync.Mutex
	cond *sync.Cond

	initialBackoff   time.Duration
	maxBackoff       time.Duration
	maxUnschedulable time.Duration
	now              func() time.Time

	pods    map[types.UID]*queuedPod
	unsched map[types.UID]*queuedPod // the pods in stateUnschedulable
	active  podHeap
	backoff podHeap
	// moves counts the cluster changes that may make pods schedulable, so
	// a pod that fails while one happened is not parked as unschedulable.
	moves  uint64
	closed bool
}

type podState int

const (
	stateActive podState = iota
	stateBackoff
	stateUnschedulable
	stateInFlight
)

type queuedPod struct {
	pod       *corev1.Pod
	state     podState
	index     int // in the active or backoff heap
	attempts  int
	added     time.Time // first seen, for FIFO order within a priority
	backoffTo time.Time
	parkedAt  time.Time // when it became unschedulable
	movesSeen uint64    // q.moves when popped
	updated   bool      // updated while in flight
}

func newQueue(initial, maxB, maxUnsched time.Duration, now func() time.Time) *queue {
	q := &queue{
		initialBackoff:   initial,
		maxBackoff:       maxB,
		maxUnschedulable: maxUnsched,
		now:              now,
		pods:             map[types.UID]*queuedPod{},
		unsched:          map[types.UID]*queuedPod{},
		active:           podHeap{less: byPriorityThenAge},
		backoff:          podHeap{less: byBackoffExpiry},
	}
	q.cond = sync.NewCond(&q.mu)
	return q
}

// add enqueues a new pending pod or refreshes a known one. A pod parked as
// unschedulable is only requeued when something that may change the answer
// changed (not for status-only updates such as the condition we write).
func (q *queue) add(pod *corev1.Pod) {
	q.mu.Lock()
	defer q.mu.Unlock()
	qp, ok := q.pods[pod.UID]
	if !ok {
		qp = &queuedPod{pod: pod, added: q.now(), index: -1}
		q.pods[pod.UID] = qp
		q.pushActive(qp)
		return
	}
	old := qp.pod
	qp.pod = pod
	switch qp.state {
	case stateInFlight:
		qp.updated = specChanged(old, pod)
	case stateUnschedulable:
		if specChanged(old, pod) {
			q.requeue(qp)
		}
	}
}

// specChanged ignores what changes without affecting placement: status,
// resourceVersion, managedFields, generation.
func specChanged(a, b *corev1.Pod) bool {
	return !equality.Semantic.DeepEqual(a.Spec, b.Spec) ||
		!equality.Semantic.DeepEqual(a.Labels, b.Labels) ||
		!equality.Semantic.DeepEqual(a.Annotations, b.Annotations) ||
		!equality.Semantic.DeepEqual(a.OwnerReferences, b.OwnerReferences)
}

// remove forgets a pod (deleted, or bound by someone).
func (q *queue) remove(uid types.UID) {
	q.mu.Lock()
	defer q.mu.Unlock()
	qp, ok := q.pods[uid]
	if !ok {
		return
	}
	switch qp.state {
	case stateActive:
		heap.Remove(&q.active, qp.index)
	case stateBackoff:
		heap.Remove(&q.backoff, qp.index)
	case stateUnschedulable:
		delete(q.unsched, uid)
	}
	delete(q.pods, uid)
}

// pop blocks until a pod is ready to be tried, and marks it in flight.
// It returns nil once the queue is closed.
func (q *queue) pop() *queuedPod {
	q.mu.Lock()
	defer q.mu.Unlock()
	for q.active.Len() == 0 && !q.closed {
		q.cond.Wait()
	}
	if q.closed {
		return nil
	}
	qp := heap.Pop(&q.active).(*queuedPod)
	qp.state = stateInFlight
	qp.movesSeen = q.moves
	qp.updated = false
	return qp
}

// done drops an in-flight pod (bound, or skipped).
func (q *queue) done(uid types.UID) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if qp, ok := q.pods[uid]; ok && qp.state == stateInFlight {
		delete(q.pods, uid)
	}
}

// unschedulable parks an in-flight pod that fit no node. If the cluster
// changed (or the pod did) while it was being tried, it goes to backoff
// instead, so that change is not missed.
func (q *queue) unschedulable(uid types.UID) {
	q.mu.Lock()
	defer q.mu.Unlock()
	qp, ok := q.pods[uid]
	if !ok || qp.state != stateInFlight {
		return
	}
	qp.attempts++
	qp.backoffTo = q.now().Add(q.backoffFor(qp.attempts))
	if qp.movesSeen != q.moves || qp.updated {
		q.pushBackoff(qp)
		return
	}
	qp.state = stateUnschedulable
	qp.parkedAt = q.now()
	q.unsched[uid] = qp
}

// retryLater puts an in-flight pod whose attempt failed for a transient
// reason (API error) into backoff.
func (q *queue) retryLater(uid types.UID) {
	q.mu.Lock()
	defer q.mu.Unlock()
	qp, ok := q.pods[uid]
	if !ok || qp.state != stateInFlight {
		return
	}
	qp.attempts++
	qp.backoffTo = q.now().Add(q.backoffFor(qp.attempts))
	q.pushBackoff(qp)
}

// moveAll is called on a cluster change that may help unschedulable pods:
// each goes to active, or to backoff if its delay has not passed yet.
func (q *queue) moveAll() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.moves++
	for _, qp := range q.unsched {
		q.requeue(qp)
	}
}

// requeue moves a parked pod back into play.
func (q *queue) requeue(qp *queuedPod) {
	delete(q.unsched, qp.pod.UID)
	if q.now().Before(qp.backoffTo) {
		q.pushBackoff(qp)
	} else {
		q.pushActive(qp)
	}
}

// flush moves pods whose backoff has expired to active, and pods parked as
// unschedulable for too long back into play (a safety net for changes the
// scheduler does not watch). It returns when the next backoff expires.
func (q *queue) flush() time.Time {
	q.mu.Lock()
	defer q.mu.Unlock()
	now := q.now()
	for q.backoff.Len() > 0 && !q.backoff.items[0].backoffTo.After(now) {
		qp := heap.Pop(&q.backoff).(*queuedPod)
		q.pushActive(qp)
	}
	if q.maxUnschedulable > 0 {
		for _, qp := range q.unsched {
			if now.Sub(qp.parkedAt) >= q.maxUnschedulable {
				q.requeue(qp)
			}
		}
	}
	if q.backoff.Len() > 0 {
		return q.backoff.items[0].backoffTo
	}
	return time.Time{}
}

func (q *queue) close() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	q.cond.Broadcast()
}

// backoffFor: initial * 2^(attempts-1), capped at max.
func (q *queue) backoffFor(attempts int) time.Duration {
	d := q.initialBackoff
	for i := 1; i < attempts; i++ {
		d *= 2
		if d >= q.maxBackoff {
			return q.maxBackoff
		}
	}
	if d > q.maxBackoff {
		d = q.maxBackoff
	}
	return d
}

func (q *queue) pushActive(qp *queuedPod) {
	qp.state = stateActive
	heap.Push(&q.active, qp)
	q.cond.Signal()
}

func (q *queue) pushBackoff(qp *queuedPod) {
	qp.state = stateBackoff
	heap.Push(&q.backoff, qp)
}

// counts returns how many pods are in each place (for tests and logs).
func (q *queue) counts() (active, backoff, unsched, inFlight int) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, qp := range q.pods {
		switch qp.state {
		case stateActive:
			active++
		case stateBackoff:
			backoff++
		case stateUnschedulable:
			unsched++
		case stateInFlight:
			inFlight++
		}
	}
	return
}

func podPriority(p *corev1.Pod) int32 {
	if p.Spec.Priority != nil {
		return *p.Spec.Priority
	}
	return 0
}

// byPriorityThenAge orders the active heap: higher priority first, then FIFO.
func byPriorityThenAge(a, b *queuedPod) bool {
	pa, pb := podPriority(a.pod), podPriority(b.pod)
	if pa != pb {
		return pa > pb
	}
	return a.added.Before(b.added)
}

// byBackoffExpiry orders the backoff heap: the pod whose backoff ends first.
func byBackoffExpiry(a, b *queuedPod) bool { return a.backoffTo.Before(b.backoffTo) }

// podHeap is a container/heap of queued pods in the order less gives; each
// pod records its index so it can be removed from the middle.
type podHeap struct {
	items []*queuedPod
	less  func(a, b *queuedPod) bool
}

func (h *podHeap) Len() int           { return len(h.items) }
func (h *podHeap) Less(i, j int) bool { return h.less(h.items[i], h.items[j]) }
func (h *podHeap) Swap(i, j int) {
	h.items[i], h.items[j] = h.items[j], h.items[i]
	h.items[i].index, h.items[j].index = i, j
}
func (h *podHeap) Push(x any) {
	qp := x.(*queuedPod)
	qp.index = len(h.items)
	h.items = append(h.items, qp)
}
func (h *podHeap) Pop() any {
	n := len(h.items)
	qp := h.items[n-1]
	h.items[n-1] = nil
	h.items = h.items[:n-1]
	qp.index = -1
	return qp
}
