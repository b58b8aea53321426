package scheduler

import (
	"fmt"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
)

// BenchmarkScheduleDecision measures one placement decision plus the assume
// step, as the loop runs it, against 1,000 nodes that fill up with 10,000
// pods of 10 ReplicaSets (the cache is rebuilt every 10,000 pods).
//
//	go test ./scheduler -run '^$' -bench ScheduleDecision -benchtime 20000x
func BenchmarkScheduleDecision(b *testing.B) {
	const numNodes, numPods = 1000, 10000
	ns := nodes(numNodes)
	pods := make([]*corev1.Pod, numPods)
	for i := range pods {
		p := mkPod(fmt.Sprintf("p-%d", i), ownedBy(fmt.Sprintf("rs-%d", i%10)), req("100m", "128Mi"))
		p.UID = types.UID(fmt.Sprintf("uid-%d", i))
		pods[i] = p
	}
	fresh := func() *cache {
		c := newCache()
		for _, n := range ns {
			c.setNode(n)
		}
		return c
	}
	c := fresh()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if i > 0 && i%numPods == 0 {
			b.StopTimer()
			c = fresh()
			b.StartTimer()
		}
		if _, fitErr := c.schedule(pods[i%numPods]); fitErr != nil {
			b.Fatal(fitErr)
		}
	}
}

// BenchmarkScheduleUnschedulable is the cost of a failed decision (all
// 1,000 nodes rejected, reasons counted).
func BenchmarkScheduleUnschedulable(b *testing.B) {
	infos := NewNodeInfos(nodes(1000), nil)
	pod := mkPod("picky", selector("disk", "ssd"))
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if _, fitErr := ScheduleOn(pod, infos); fitErr == nil {
			b.Fatal("fit")
		}
	}
}
