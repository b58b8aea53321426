package examples

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
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
		start := time.Now()
		l.mustKubectl("apply", "-f", path)
		applied := time.Since(start)
		// Where the time goes: kubectl, the controllers creating pods, the
		// scheduler binding them, then the agents (at the poll's 200 ms grain).
		var created, bound time.Duration
		eventually(b, "100 pods Running and Ready", 120*time.Second, func() error {
			pods, err := client.CoreV1().Pods("default").List(context.Background(), metav1.ListOptions{LabelSelector: "app=spread"})
			if err != nil {
				return err
			}
			nBound := 0
			for _, p := range pods.Items {
				if p.Spec.NodeName != "" {
					nBound++
				}
			}
			if created == 0 && len(pods.Items) >= 100 {
				created = time.Since(start)
			}
			if bound == 0 && nBound >= 100 {
				bound = time.Since(start)
			}
			ready := 0
			for _, p := range pods.Items {
				for _, c := range p.Status.Conditions {
					if c.Type == "Ready" && c.Status == "True" {
						ready++
					}
				}
			}
			if ready < 100 {
				return fmt.Errorf("%d of 100 ready", ready)
			}
			return nil
		})
		b.ReportMetric(time.Since(start).Seconds(), "s-to-100-Ready")
		b.ReportMetric(applied.Seconds(), "s-kubectl-apply")
		b.ReportMetric(created.Seconds(), "s-to-100-created")
		b.ReportMetric(bound.Seconds(), "s-to-100-bound")
		b.StopTimer()
		l.mustKubectl("delete", "-f", path, "--wait=true")
		b.StartTimer()
	}
}

func mustRead(t testing.TB, name string) string {
	b, err := Manifests.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
