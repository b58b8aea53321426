package scheduler

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"

	"github.com/kubelab/kubelab/apiserver/apitest"
)

// realClient returns a clientset for the test server without client-side
// rate limiting (the scheduler's own throughput is what we look at).
func realClient(t testing.TB, inst *apitest.Instance) kubernetes.Interface {
	t.Helper()
	cfg := ClientConfig(inst.Config)
	cfg.WrapTransport = func(rt http.RoundTripper) http.RoundTripper { return &bindStats{rt: rt} }
	c, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// bindStats measures pods/binding requests (count, total latency, time of
// the last response) so the benchmark can tell server latency from
// scheduler overhead.
type bindStats struct {
	rt http.RoundTripper
}

var (
	bindCount, bindNanos, bindFirst, bindLast atomic.Int64
)

func (b *bindStats) RoundTrip(r *http.Request) (*http.Response, error) {
	if !strings.HasSuffix(r.URL.Path, "/binding") {
		return b.rt.RoundTrip(r)
	}
	t0 := time.Now()
	resp, err := b.rt.RoundTrip(r)
	bindCount.Add(1)
	bindNanos.Add(int64(time.Since(t0)))
	bindFirst.CompareAndSwap(0, t0.UnixNano())
	bindLast.Store(time.Now().UnixNano())
	return resp, err
}

// createNode creates a Node object the way an agent would register: the
// object, then its status (Ready, allocatable) through nodes/status.
func createNode(ctx context.Context, c kubernetes.Interface, n *corev1.Node) error {
	status := n.Status
	created, err := c.CoreV1().Nodes().Create(ctx, n, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("create node %s: %w", n.Name, err)
	}
	if isReadyWithAllocatable(created) {
		return nil
	}
	created.Status = status
	if _, err := c.CoreV1().Nodes().UpdateStatus(ctx, created, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("node %s status: %w", n.Name, err)
	}
	return nil
}

func isReadyWithAllocatable(n *corev1.Node) bool {
	return readyStatus(n) == corev1.ConditionTrue && len(n.Status.Allocatable) > 0
}

func ensureNamespace(ctx context.Context, t testing.TB, c kubernetes.Interface, name string) {
	t.Helper()
	_, err := c.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatalf("namespace %s: %v", name, err)
	}
}

func runScheduler(t testing.TB, c kubernetes.Interface, opts Options) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, c, opts) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(15 * time.Second):
			t.Errorf("scheduler did not stop")
		}
	})
}

func waitUntil(t testing.TB, what string, timeout time.Duration, cond func() (bool, error)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, err := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s (last error: %v)", what, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestIntegrationRealAPIServer(t *testing.T) {
	inst := apitest.Start(t)
	c := realClient(t, inst)
	ctx := context.Background()
	const ns = "sched-it"
	ensureNamespace(ctx, t, c, ns)
	for i := 1; i <= 3; i++ {
		if err := createNode(ctx, c, mkNode(fmt.Sprintf("node-%d", i))); err != nil {
			t.Fatal(err)
		}
	}
	runScheduler(t, c, Options{InitialBackoff: 100 * time.Millisecond, MaxBackoff: time.Second})

	// Six pods of one ReplicaSet: bound through pods/binding, two per node.
	for i := 0; i < 6; i++ {
		p := mkPod(fmt.Sprintf("web-%d", i), ownedBy("0b5cd7a2-0000-4000-8000-000000000001"), req("100m", "64Mi"))
		p.Namespace, p.UID = ns, ""
		if _, err := c.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{}); err != nil {
			t.Fatalf("create pod: %v", err)
		}
	}
	perNode := map[string]int{}
	waitUntil(t, "6 pods bound", 20*time.Second, func() (bool, error) {
		l, err := c.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, err
		}
		perNode = map[string]int{}
		for _, p := range l.Items {
			if strings.HasPrefix(p.Name, "web-") && p.Spec.NodeName != "" {
				perNode[p.Spec.NodeName]++
			}
		}
		return perNode["node-1"]+perNode["node-2"]+perNode["node-3"] == 6, nil
	})
	if perNode["node-1"] != 2 || perNode["node-2"] != 2 || perNode["node-3"] != 2 {
		t.Fatalf("spread %v, want 2 per node", perNode)
	}
	waitUntil(t, "Scheduled events", 20*time.Second, func() (bool, error) {
		l, err := c.CoreV1().Events(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, err
		}
		n := 0
		for _, e := range l.Items {
			if e.Reason == "Scheduled" && e.Type == corev1.EventTypeNormal && e.Source.Component == DefaultSchedulerName &&
				e.InvolvedObject.Kind == "Pod" && e.Message == fmt.Sprintf("Successfully assigned %s/%s to %s", ns, e.InvolvedObject.Name, nodeOf(ctx, c, ns, e.InvolvedObject.Name)) {
				n++
			}
		}
		return n == 6, fmt.Errorf("%d matching Scheduled events", n)
	})

	// A pod no node fits: PodScheduled=False/Unschedulable via pods/status and a
	// FailedScheduling event, both with kube-scheduler's wording.
	picky := mkPod("picky", selector("disk", "ssd"))
	picky.Namespace, picky.UID = ns, ""
	if _, err := c.CoreV1().Pods(ns).Create(ctx, picky, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	const want = "0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector."
	waitUntil(t, "PodScheduled=False condition", 20*time.Second, func() (bool, error) {
		p, err := c.CoreV1().Pods(ns).Get(ctx, "picky", metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		for _, cond := range p.Status.Conditions {
			if cond.Type == corev1.PodScheduled {
				ok := cond.Status == corev1.ConditionFalse && cond.Reason == corev1.PodReasonUnschedulable && cond.Message == want
				return ok, fmt.Errorf("condition %+v", cond)
			}
		}
		return false, fmt.Errorf("no PodScheduled condition")
	})
	waitUntil(t, "FailedScheduling event", 20*time.Second, func() (bool, error) {
		l, err := c.CoreV1().Events(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, err
		}
		for _, e := range l.Items {
			if e.Reason == "FailedScheduling" && e.Type == corev1.EventTypeWarning && e.InvolvedObject.Name == "picky" && e.Message == want {
				return true, nil
			}
		}
		return false, fmt.Errorf("%d events, none matching", len(l.Items))
	})

	// Labelling a node makes the parked pod schedulable there.
	n, err := c.CoreV1().Nodes().Get(ctx, "node-2", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	n.Labels["disk"] = "ssd"
	if _, err := c.CoreV1().Nodes().Update(ctx, n, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "picky bound to node-2", 20*time.Second, func() (bool, error) {
		return nodeOf(ctx, c, ns, "picky") == "node-2", nil
	})
}

func nodeOf(ctx context.Context, c kubernetes.Interface, ns, name string) string {
	p, err := c.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return ""
	}
	return p.Spec.NodeName
}

// parallel runs f(i) for i in [0,n) on w goroutines, returning the first error.
func parallel(n, w int, f func(i int) error) error {
	var (
		next  atomic.Int64
		once  sync.Once
		first error
		wg    sync.WaitGroup
	)
	for k := 0; k < w; k++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				if err := f(i); err != nil {
					once.Do(func() { first = err })
					return
				}
			}
		}()
	}
	wg.Wait()
	return first
}

// BenchmarkEndToEndRealAPI: 10,000 pending pods (10 ReplicaSets) onto 1,000
// Node objects, bound through a real kubelab API server. Nodes and pods are
// created first (not timed); the clock runs from starting the scheduler
// (informers' initial lists included) until a watch has seen every pod bound.
//
//	go test ./scheduler -run '^$' -bench EndToEndRealAPI -benchtime 1x
func BenchmarkEndToEndRealAPI(b *testing.B) {
	const numNodes, numPods, ns = 1000, 10000, "bench"
	for iter := 0; iter < b.N; iter++ {
		b.StopTimer()
		inst := apitest.Start(b)
		c := realClient(b, inst)
		ctx, cancel := context.WithCancel(context.Background())
		ensureNamespace(ctx, b, c, ns)
		t0 := time.Now()
		if err := parallel(numNodes, 32, func(i int) error {
			return createNode(ctx, c, mkNode(fmt.Sprintf("node-%04d", i)))
		}); err != nil {
			b.Fatal(err)
		}
		tNodes := time.Since(t0)
		t0 = time.Now()
		if err := parallel(numPods, 32, func(i int) error {
			p := mkPod(fmt.Sprintf("pod-%05d", i), ownedBy(fmt.Sprintf("0b5cd7a2-0000-4000-8000-%012d", i%10)), req("100m", "128Mi"))
			p.Namespace, p.UID = ns, ""
			_, err := c.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{})
			return err
		}); err != nil {
			b.Fatal(err)
		}
		tPods := time.Since(t0)

		l, err := c.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			b.Fatal(err)
		}
		w, err := c.CoreV1().Pods(ns).Watch(ctx, metav1.ListOptions{ResourceVersion: l.ResourceVersion})
		if err != nil {
			b.Fatal(err)
		}
		bound := map[string]string{}
		allBound := make(chan struct{})
		go func() {
			defer close(allBound)
			for ev := range w.ResultChan() {
				if ev.Type != watch.Modified && ev.Type != watch.Added {
					continue
				}
				if p, ok := ev.Object.(*corev1.Pod); ok && p.Spec.NodeName != "" {
					bound[p.Name] = p.Spec.NodeName
					if len(bound) == numPods {
						return
					}
				}
			}
		}()

		b.StartTimer()
		start := time.Now()
		schedCtx, stopSched := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- Run(schedCtx, c, Options{}) }()
		select {
		case <-allBound:
		case <-time.After(5 * time.Minute):
			b.Fatalf("only %d/%d pods bound after 5m", len(bound), numPods)
		}
		elapsed := time.Since(start)
		b.StopTimer()
		w.Stop()
		stopSched()
		if err := <-done; err != nil {
			b.Fatal(err)
		}
		perNode := map[string]int{}
		for _, n := range bound {
			perNode[n]++
		}
		minP, maxP := numPods, 0
		for _, n := range perNode {
			minP, maxP = min(minP, n), max(maxP, n)
		}
		if len(perNode) != numNodes {
			minP = 0
		}
		if n := bindCount.Load(); n > 0 {
			b.Logf("%d binding requests, mean latency %v, first sent %v and last answered %v after start",
				n, time.Duration(bindNanos.Load()/n), time.Unix(0, bindFirst.Load()).Sub(start), time.Unix(0, bindLast.Load()).Sub(start))
		}
		bindCount.Store(0)
		bindNanos.Store(0)
		bindFirst.Store(0)
		b.ReportMetric(float64(numPods)/elapsed.Seconds(), "pods/s")
		b.ReportMetric(elapsed.Seconds(), "s-total")
		b.Logf("nodes created in %v, pods created in %v (%.0f/s); scheduled+bound %d pods in %v (%.0f pods/s); pods per node min %d max %d",
			tNodes, tPods, float64(numPods)/tPods.Seconds(), numPods, elapsed, float64(numPods)/elapsed.Seconds(), minP, maxP)
		cancel()
		inst.Stop(b)
	}
}

// TestIntegrationKubectlDescribeUnschedulable: what a user sees with the real
// kubectl when a pod fits nowhere (one node too small, one unreachable).
func TestIntegrationKubectlDescribeUnschedulable(t *testing.T) {
	inst := apitest.Start(t)
	c := realClient(t, inst)
	ctx := context.Background()
	const ns = "sched-describe"
	ensureNamespace(ctx, t, c, ns)
	if err := createNode(ctx, c, mkNode("small", withAlloc("1", "2Gi", "110"))); err != nil {
		t.Fatal(err)
	}
	gone := mkNode("gone", withTaint("node.kubernetes.io/unreachable", "", corev1.TaintEffectNoExecute))
	gone.Status.Conditions[0].Status = corev1.ConditionUnknown
	if err := createNode(ctx, c, gone); err != nil {
		t.Fatal(err)
	}
	runScheduler(t, c, Options{})
	p := mkPod("hungry", req("2", ""))
	p.Namespace, p.UID = ns, ""
	if _, err := c.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	const want = "0/2 nodes are available: 1 Insufficient cpu, 1 node(s) had untolerated taint(s)."
	var out string
	waitUntil(t, "kubectl describe to show the reason", 20*time.Second, func() (bool, error) {
		o, errOut, err := inst.Kubectl(t, "describe", "pod", "-n", ns, "hungry")
		out = o
		if err != nil {
			return false, fmt.Errorf("%v: %s", err, errOut)
		}
		return strings.Contains(o, "FailedScheduling") && strings.Contains(o, "default-scheduler") && strings.Contains(o, want) &&
			strings.Contains(o, "PodScheduled") && strings.Contains(o, "False"), nil
	})
	t.Logf("kubectl describe:\n%s", out)
}
