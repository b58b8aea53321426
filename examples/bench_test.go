package examples

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

// Lab benchmarks for issue 5's numbers. Run with -benchtime 1x:
//   go test -run '^$' -bench Lab -benchtime 1x ./examples/

// BenchmarkLabUpThreeNodes: `kubelab up --nodes 3` until every node is Ready
// (up prints "is up" only then).
func BenchmarkLabUpThreeNodes(b *testing.B) {
	for i := 0; i < b.N; i++ {
		l := newLab(b)
		start := time.Now()
		l.start(3)
		b.ReportMetric(time.Since(start).Seconds(), "s-to-all-Ready")
		l.stop()
	}
}

// BenchmarkLabHundredPods: a 100-replica Deployment from apply until every
// pod is Running and Ready, on a 3-node lab.
func BenchmarkLabHundredPods(b *testing.B) {
	l := newLab(b)
	l.start(3)
	cfg, err := clientcmd.BuildConfigFromFlags("", filepath.Join(l.dataDir, "kubeconfig"))
	if err != nil {
		b.Fatal(err)
	}
	client := kubernetes.NewForConfigOrDie(cfg)
	manifest := strings.Replace(mustRead(b, "spread.yaml"), "replicas: 4", "replicas: 100", 1)
	path := filepath.Join(b.TempDir(), "hundred.yaml")
	if err := os.WriteFile(path, []byte(manifest), 0o644); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		m := hundredPods(b, l, client, path)
		b.ReportMetric(m.ready.Seconds(), "s-to-100-Ready")
		b.ReportMetric(m.applied.Seconds(), "s-kubectl-apply")
		b.ReportMetric(m.created.Seconds(), "s-to-100-created")
		b.ReportMetric(m.bound.Seconds(), "s-to-100-bound")
		b.StopTimer()
		l.mustKubectl("delete", "-f", path, "--wait=true")
		b.StartTimer()
	}
}

// milestones are the times from the start of `kubectl apply` until it
// returned, and until 100 pods existed, were bound, and were Ready.
type milestones struct{ applied, created, bound, ready time.Duration }

// hundredPods applies the manifest and follows its pods with a watch
// opened beforehand, so each milestone is when its last event arrived
// (no polling grain, and no repeated lists loading the machine).
func hundredPods(b *testing.B, l *lab, client kubernetes.Interface, path string) milestones {
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	pods := client.CoreV1().Pods("default")
	sel := metav1.ListOptions{LabelSelector: "app=spread"}
	list, err := pods.List(ctx, sel)
	if err != nil {
		b.Fatal(err)
	}
	sel.ResourceVersion = list.ResourceVersion
	w, err := pods.Watch(ctx, sel)
	if err != nil {
		b.Fatal(err)
	}
	defer w.Stop()
	start := time.Now()
	followed := make(chan milestones, 1)
	go func() {
		var m milestones
		created, bound, ready := map[string]bool{}, map[string]bool{}, map[string]bool{}
		for ev := range w.ResultChan() {
			p, ok := ev.Object.(*corev1.Pod)
			if !ok || ev.Type == watch.Deleted {
				continue
			}
			created[p.Name] = true
			if p.Spec.NodeName != "" {
				bound[p.Name] = true
			}
			if podRunningAndReady(p) {
				ready[p.Name] = true
			} else {
				delete(ready, p.Name)
			}
			now := time.Since(start)
			if m.created == 0 && len(created) >= 100 {
				m.created = now
			}
			if m.bound == 0 && len(bound) >= 100 {
				m.bound = now
			}
			if len(ready) >= 100 {
				m.ready = now
				break
			}
		}
		followed <- m
	}()
	l.mustKubectl("apply", "-f", path)
	applied := time.Since(start)
	m := <-followed
	if m.ready == 0 {
		b.Fatalf("the 100 pods were not all Running and Ready within 2 minutes (watch ended)")
	}
	m.applied = applied
	return m
}

func podRunningAndReady(p *corev1.Pod) bool {
	if p.Status.Phase != corev1.PodRunning || p.DeletionTimestamp != nil {
		return false
	}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func mustRead(t testing.TB, name string) string {
	b, err := Manifests.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
