package scheduler

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/fake"
	clienttesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/record"
)

// fakeCluster is client-go's fake clientset with pods/binding implemented
// (the stock fake ignores it) and counters for the calls the loop makes.
// It checks the loop's logic; the real API server test is in
// integration_test.go.
type fakeCluster struct {
	*fake.Clientset
	binds, statusUpdates atomic.Int64
}

func newFakeCluster(objs ...runtime.Object) *fakeCluster {
	fc := &fakeCluster{Clientset: fake.NewClientset(objs...)}
	podsGVR := schema.GroupVersionResource{Version: "v1", Resource: "pods"}
	fc.PrependReactor("create", "pods", func(action clienttesting.Action) (bool, runtime.Object, error) {
		ca := action.(clienttesting.CreateAction)
		if ca.GetSubresource() != "binding" {
			return false, nil, nil
		}
		b := ca.GetObject().(*corev1.Binding)
		obj, err := fc.Tracker().Get(podsGVR, b.Namespace, b.Name)
		if err != nil {
			return true, nil, err
		}
		pod := obj.(*corev1.Pod).DeepCopy()
		if pod.Spec.NodeName != "" {
			return true, nil, fmt.Errorf("pod %s is already assigned to node %q", pod.Name, pod.Spec.NodeName)
		}
		pod.Spec.NodeName = b.Target.Name
		fc.binds.Add(1)
		return true, b, fc.Tracker().Update(podsGVR, pod, pod.Namespace)
	})
	fc.PrependReactor("update", "pods", func(action clienttesting.Action) (bool, runtime.Object, error) {
		if action.GetSubresource() == "status" {
			fc.statusUpdates.Add(1)
		}
		return false, nil, nil
	})
	return fc
}

func startScheduler(t *testing.T, client *fakeCluster, rec record.EventRecorder) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, client, Options{InitialBackoff: 20 * time.Millisecond, MaxBackoff: 100 * time.Millisecond, Recorder: rec, BindWorkers: 4})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func getPod(t *testing.T, c *fakeCluster, name string) *corev1.Pod {
	t.Helper()
	p, err := c.CoreV1().Pods("default").Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

type eventLog struct {
	mu     sync.Mutex
	events []string
}

func (l *eventLog) drain(rec *record.FakeRecorder) {
	for e := range rec.Events {
		l.mu.Lock()
		l.events = append(l.events, e)
		l.mu.Unlock()
	}
}

func (l *eventLog) matching(substr string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, e := range l.events {
		if strings.Contains(e, substr) {
			out = append(out, e)
		}
	}
	return out
}

func newEventLog(t *testing.T) (*record.FakeRecorder, *eventLog) {
	rec := record.NewFakeRecorder(1000)
	l := &eventLog{}
	go l.drain(rec)
	t.Cleanup(func() { close(rec.Events) })
	return rec, l
}

func TestRunBindsAndSpreadsReplicaSet(t *testing.T) {
	c := newFakeCluster(mkNode("node-1"), mkNode("node-2"), mkNode("node-3"))
	rec, events := newEventLog(t)
	startScheduler(t, c, rec)
	for i := 0; i < 6; i++ {
		p := mkPod(fmt.Sprintf("web-%d", i), ownedBy("rs-web"), req("100m", "64Mi"))
		if _, err := c.CoreV1().Pods("default").Create(context.Background(), p, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	// A pod for another scheduler is left alone.
	other := mkPod("other")
	other.Spec.SchedulerName = "my-scheduler"
	if _, err := c.CoreV1().Pods("default").Create(context.Background(), other, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "6 bindings", func() bool { return c.binds.Load() == 6 })
	count := map[string]int{}
	for i := 0; i < 6; i++ {
		count[getPod(t, c, fmt.Sprintf("web-%d", i)).Spec.NodeName]++
	}
	if count["node-1"] != 2 || count["node-2"] != 2 || count["node-3"] != 2 {
		t.Fatalf("spread %v, want 2 per node", count)
	}
	waitFor(t, "Scheduled events", func() bool { return len(events.matching("Normal Scheduled Successfully assigned default/web-")) == 6 })
	time.Sleep(100 * time.Millisecond)
	if n := getPod(t, c, "other").Spec.NodeName; n != "" {
		t.Fatalf("pod of another scheduler bound to %s", n)
	}
}

func TestRunAssumesBeforeInformerCatchesUp(t *testing.T) {
	// Two nodes with room for one 600m pod each; five such pods created at
	// once. Without assuming, several decisions would see the same free room.
	c := newFakeCluster(mkNode("a", withAlloc("1", "1Gi", "10")), mkNode("b", withAlloc("1", "1Gi", "10")))
	rec, events := newEventLog(t)
	for i := 0; i < 5; i++ {
		if _, err := c.CoreV1().Pods("default").Create(context.Background(), mkPod(fmt.Sprintf("p%d", i), req("600m", "")), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	startScheduler(t, c, rec)
	waitFor(t, "2 bindings and 3 failures", func() bool {
		return c.binds.Load() == 2 && len(events.matching("FailedScheduling")) >= 3
	})
	time.Sleep(200 * time.Millisecond)
	if n := c.binds.Load(); n != 2 {
		t.Fatalf("%d pods bound onto room for 2", n)
	}
	for _, e := range events.matching("FailedScheduling") {
		if !strings.HasSuffix(e, "0/2 nodes are available: 2 Insufficient cpu.") {
			t.Fatalf("event %q", e)
		}
	}
}

func TestRunUnschedulableConditionEventAndRetry(t *testing.T) {
	c := newFakeCluster(mkNode("node-1"), mkNode("node-2"), mkNode("node-3"))
	rec, events := newEventLog(t)
	startScheduler(t, c, rec)
	if _, err := c.CoreV1().Pods("default").Create(context.Background(), mkPod("picky", selector("disk", "ssd")), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	const want = "0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector."
	waitFor(t, "PodScheduled=False", func() bool {
		for _, cond := range getPod(t, c, "picky").Status.Conditions {
			if cond.Type == corev1.PodScheduled && cond.Status == corev1.ConditionFalse && cond.Reason == corev1.PodReasonUnschedulable && cond.Message == want {
				return true
			}
		}
		return false
	})
	waitFor(t, "FailedScheduling event", func() bool { return len(events.matching("Warning FailedScheduling "+want)) == 1 })

	// Nothing changes: no hot loop. Heartbeat-like node status churn does
	// not count as a change either.
	n, _ := c.CoreV1().Nodes().Get(context.Background(), "node-1", metav1.GetOptions{})
	for i := 0; i < 5; i++ {
		n.Status.Conditions[0].LastHeartbeatTime = metav1.NewTime(time.Now().Add(time.Duration(i) * time.Second))
		if n, _ = c.CoreV1().Nodes().UpdateStatus(context.Background(), n, metav1.UpdateOptions{}); n == nil {
			t.Fatal("node update failed")
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond)
	if got := len(events.matching("FailedScheduling")); got != 1 {
		t.Fatalf("%d FailedScheduling events while nothing relevant changed", got)
	}
	if got := c.statusUpdates.Load(); got != 1 {
		t.Fatalf("%d status updates, want 1", got)
	}

	// Label a node: the parked pod is retried and bound there.
	n.Labels["disk"] = "ssd"
	if _, err := c.CoreV1().Nodes().Update(context.Background(), n, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "binding after node change", func() bool { return getPod(t, c, "picky").Spec.NodeName == "node-1" })
	waitFor(t, "Scheduled event", func() bool { return len(events.matching("Successfully assigned default/picky to node-1")) == 1 })
}

func TestRunNoNodesThenNodeAppears(t *testing.T) {
	c := newFakeCluster()
	rec, events := newEventLog(t)
	startScheduler(t, c, rec)
	if _, err := c.CoreV1().Pods("default").Create(context.Background(), mkPod("p"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "no-nodes event", func() bool {
		return len(events.matching("Warning FailedScheduling no nodes available to schedule pods")) == 1
	})
	if _, err := c.CoreV1().Nodes().Create(context.Background(), mkNode("late"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "binding to the new node", func() bool { return getPod(t, c, "p").Spec.NodeName == "late" })
}

func TestRunDeletedPodFreesRoom(t *testing.T) {
	c := newFakeCluster(mkNode("a", withAlloc("1", "1Gi", "10")))
	rec, events := newEventLog(t)
	startScheduler(t, c, rec)
	ctx := context.Background()
	if _, err := c.CoreV1().Pods("default").Create(ctx, mkPod("first", req("800m", "")), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "first bound", func() bool { return getPod(t, c, "first").Spec.NodeName == "a" })
	if _, err := c.CoreV1().Pods("default").Create(ctx, mkPod("second", req("800m", "")), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "second unschedulable", func() bool {
		return len(events.matching("FailedScheduling 0/1 nodes are available: 1 Insufficient cpu.")) >= 1
	})
	if err := c.CoreV1().Pods("default").Delete(ctx, "first", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "second bound", func() bool { return getPod(t, c, "second").Spec.NodeName == "a" })
}

func TestWithUnschedulableCondition(t *testing.T) {
	t0 := time.Unix(1000, 0)
	p := mkPod("p")
	p1, changed := withUnschedulableCondition(p, "m1", t0)
	if !changed || len(p1.Status.Conditions) != 1 || !p1.Status.Conditions[0].LastTransitionTime.Time.Equal(t0) {
		t.Fatalf("first: %v %+v", changed, p1.Status.Conditions)
	}
	if _, changed := withUnschedulableCondition(p1, "m1", t0.Add(time.Minute)); changed {
		t.Fatal("same condition reported as changed")
	}
	p2, changed := withUnschedulableCondition(p1, "m2", t0.Add(time.Minute))
	if !changed || p2.Status.Conditions[0].Message != "m2" || !p2.Status.Conditions[0].LastTransitionTime.Time.Equal(t0) {
		t.Fatalf("message change: %+v", p2.Status.Conditions)
	}
	if len(p.Status.Conditions) != 0 {
		t.Fatal("input pod modified")
	}
}

func TestRunBindErrorRetriesWithBackoff(t *testing.T) {
	c := newFakeCluster(mkNode("a"))
	var failures atomic.Int64
	c.PrependReactor("create", "pods", func(action clienttesting.Action) (bool, runtime.Object, error) {
		if action.GetSubresource() == "binding" && failures.Add(1) <= 2 {
			return true, nil, fmt.Errorf("etcdserver: request timed out")
		}
		return false, nil, nil
	})
	rec, events := newEventLog(t)
	startScheduler(t, c, rec)
	if _, err := c.CoreV1().Pods("default").Create(context.Background(), mkPod("p", req("1", "")), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "bound after two failed attempts", func() bool { return getPod(t, c, "p").Spec.NodeName == "a" })
	if got := len(events.matching("Warning FailedScheduling Binding rejected: etcdserver: request timed out")); got != 2 {
		t.Fatalf("%d binding failure events, want 2", got)
	}
	waitFor(t, "Scheduled event", func() bool { return len(events.matching("Successfully assigned default/p to a")) == 1 })
}

func TestRunSkipsPodBeingDeletedAndTerminated(t *testing.T) {
	now := metav1.Now()
	deleting := mkPod("deleting")
	deleting.DeletionTimestamp = &now
	deleting.Finalizers = []string{"example.com/hold"}
	failed := mkPod("failed", phase(corev1.PodFailed))
	c := newFakeCluster(mkNode("a"), deleting, failed, mkPod("ok"))
	rec, _ := newEventLog(t)
	startScheduler(t, c, rec)
	waitFor(t, "ok bound", func() bool { return getPod(t, c, "ok").Spec.NodeName == "a" })
	time.Sleep(100 * time.Millisecond)
	if n := c.binds.Load(); n != 1 {
		t.Fatalf("%d bindings, want only the live pod", n)
	}
}
