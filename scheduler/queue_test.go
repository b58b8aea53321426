package scheduler

import (
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
)

type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time       { return c.t }
func (c *fakeClock) step(d time.Duration) { c.t = c.t.Add(d) }
func newTestQueue(c *fakeClock) *queue {
	return newQueue(time.Second, 60*time.Second, 5*time.Minute, c.now)
}
func activeLen(q *queue) int                 { a, _, _, _ := q.counts(); return a }
func stateOf(q *queue, p *corev1.Pod) string { return stateName(q, p) }

func stateName(q *queue, p *corev1.Pod) string {
	q.mu.Lock()
	defer q.mu.Unlock()
	// Invariant: the unschedulable index holds exactly the parked pods.
	n := 0
	for uid, qp := range q.pods {
		if qp.state == stateUnschedulable {
			n++
			if q.unsched[uid] != qp {
				panic("parked pod missing from the unschedulable index")
			}
		}
	}
	if n != len(q.unsched) {
		panic(fmt.Sprintf("unschedulable index has %d pods, %d parked", len(q.unsched), n))
	}
	qp, ok := q.pods[p.UID]
	if !ok {
		return "absent"
	}
	return [...]string{"active", "backoff", "unschedulable", "inflight"}[qp.state]
}

func TestQueueBackoffDoublesAndCaps(t *testing.T) {
	q := newQueue(time.Second, 60*time.Second, 0, time.Now)
	want := []time.Duration{1, 2, 4, 8, 16, 32, 60, 60}
	for i, w := range want {
		if got := q.backoffFor(i + 1); got != w*time.Second {
			t.Fatalf("attempt %d: got %v want %v", i+1, got, w*time.Second)
		}
	}
}

func TestQueuePriorityThenFIFO(t *testing.T) {
	c := &fakeClock{t: time.Unix(1000, 0)}
	q := newTestQueue(c)
	hi := int32(100)
	a, b := mkPod("a"), mkPod("b")
	p := mkPod("prio")
	p.Spec.Priority = &hi
	q.add(a)
	c.step(time.Millisecond)
	q.add(b)
	c.step(time.Millisecond)
	q.add(p)
	for _, want := range []string{"prio", "a", "b"} {
		if got := q.pop().pod.Name; got != want {
			t.Fatalf("popped %s, want %s", got, want)
		}
	}
}

func TestQueueUnschedulableWaitsForChangeAndBackoff(t *testing.T) {
	c := &fakeClock{t: time.Unix(1000, 0)}
	q := newTestQueue(c)
	p := mkPod("p")
	q.add(p)
	q.pop()
	q.unschedulable(p.UID)
	if s := stateOf(q, p); s != "unschedulable" {
		t.Fatalf("state %s", s)
	}
	// Time alone (short of the 5 min safety net) does not bring it back.
	c.step(10 * time.Second)
	q.flush()
	if s := stateOf(q, p); s != "unschedulable" {
		t.Fatalf("state after time passed: %s", s)
	}
	// A status-only update (e.g. our own condition) does not either.
	st := p.DeepCopy()
	st.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodScheduled, Status: corev1.ConditionFalse}}
	st.ResourceVersion = "42"
	q.add(st)
	if s := stateOf(q, p); s != "unschedulable" {
		t.Fatalf("state after status update: %s", s)
	}
	// A cluster change does; backoff (1s) has passed, so straight to active.
	q.moveAll()
	if s := stateOf(q, p); s != "active" {
		t.Fatalf("state after move: %s", s)
	}
	// Second failure: backoff 2s; a change right away parks it in backoff.
	q.pop()
	q.unschedulable(p.UID)
	q.moveAll()
	if s := stateOf(q, p); s != "backoff" {
		t.Fatalf("state after early move: %s", s)
	}
	c.step(1999 * time.Millisecond)
	q.flush()
	if s := stateOf(q, p); s != "backoff" {
		t.Fatalf("state before backoff expiry: %s", s)
	}
	c.step(time.Millisecond)
	q.flush()
	if s := stateOf(q, p); s != "active" {
		t.Fatalf("state after backoff expiry: %s", s)
	}
}

func TestQueueSpecUpdateRequeues(t *testing.T) {
	c := &fakeClock{t: time.Unix(1000, 0)}
	q := newTestQueue(c)
	p := mkPod("p", selector("disk", "ssd"))
	q.add(p)
	q.pop()
	q.unschedulable(p.UID)
	c.step(2 * time.Second)
	p2 := p.DeepCopy()
	p2.Spec.NodeSelector = nil
	q.add(p2)
	if s := stateOf(q, p); s != "active" {
		t.Fatalf("state %s", s)
	}
	if got := q.pop().pod; got.Spec.NodeSelector != nil {
		t.Fatal("queue kept the old pod object")
	}
}

func TestQueueChangeWhileInFlightIsNotLost(t *testing.T) {
	c := &fakeClock{t: time.Unix(1000, 0)}
	q := newTestQueue(c)
	p := mkPod("p")
	q.add(p)
	q.pop()
	q.moveAll() // a node was added while the pod was being tried
	q.unschedulable(p.UID)
	if s := stateOf(q, p); s != "backoff" {
		t.Fatalf("state %s, want backoff", s)
	}
}

func TestQueueSafetyNetAfterMaxUnschedulable(t *testing.T) {
	c := &fakeClock{t: time.Unix(1000, 0)}
	q := newTestQueue(c)
	p := mkPod("p")
	q.add(p)
	q.pop()
	q.unschedulable(p.UID)
	c.step(5 * time.Minute)
	q.flush()
	if s := stateOf(q, p); s != "active" {
		t.Fatalf("state %s", s)
	}
}

func TestQueueRemoveAndDone(t *testing.T) {
	c := &fakeClock{t: time.Unix(1000, 0)}
	q := newTestQueue(c)
	a, b := mkPod("a"), mkPod("b")
	q.add(a)
	q.add(b)
	q.remove(a.UID)
	if activeLen(q) != 1 {
		t.Fatalf("active %d", activeLen(q))
	}
	got := q.pop()
	q.done(got.pod.UID)
	if s := stateOf(q, b); s != "absent" {
		t.Fatalf("state %s", s)
	}
	// pop unblocks on close.
	done := make(chan *queuedPod)
	go func() { done <- q.pop() }()
	q.close()
	if qp := <-done; qp != nil {
		t.Fatal("pop after close returned a pod")
	}
}

func TestQueueRemoveParkedPod(t *testing.T) {
	c := &fakeClock{t: time.Unix(1000, 0)}
	q := newTestQueue(c)
	p := mkPod("p")
	q.add(p)
	q.pop()
	q.unschedulable(p.UID)
	q.remove(p.UID)
	if s := stateOf(q, p); s != "absent" {
		t.Fatalf("state %s", s)
	}
	q.moveAll() // must not resurrect it
	if s := stateOf(q, p); s != "absent" {
		t.Fatalf("state after move %s", s)
	}
}
