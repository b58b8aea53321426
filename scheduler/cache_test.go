package scheduler

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
)

func TestCacheAssumeConfirmForget(t *testing.T) {
	c := newCache()
	c.setNode(mkNode("a", withAlloc("2", "2Gi", "10")))
	c.setNode(mkNode("b", withAlloc("1", "1Gi", "10")))

	p := mkPod("p", req("1500m", ""))
	node, fitErr := c.schedule(p)
	if fitErr != nil || node != "a" {
		t.Fatalf("schedule: %q %v", node, fitErr)
	}
	if !c.isAssumed(p.UID) {
		t.Fatal("not assumed after schedule")
	}
	if r, n, _ := c.nodeRequested("a"); r.MilliCPU != 1500 || n != 1 {
		t.Fatalf("a: %+v %d", r, n)
	}
	// The room is taken: the same request fits nowhere now.
	if _, fitErr := c.schedule(mkPod("q", req("1500m", ""))); fitErr == nil ||
		fitErr.Error() != "0/2 nodes are available: 2 Insufficient cpu." {
		t.Fatalf("second decision: %v", fitErr)
	}

	// A status update of the still-unbound pod keeps it assumed.
	upd := p.DeepCopy()
	upd.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodScheduled, Status: corev1.ConditionFalse}}
	c.setPod(upd)
	if !c.isAssumed(p.UID) {
		t.Fatal("status update dropped the assumption")
	}

	// The informer reports it bound: ordinary pod, same accounting.
	bound := p.DeepCopy()
	bound.Spec.NodeName = "a"
	c.setPod(bound)
	if c.isAssumed(p.UID) {
		t.Fatal("still assumed after confirmation")
	}
	if r, n, _ := c.nodeRequested("a"); r.MilliCPU != 1500 || n != 1 {
		t.Fatalf("a after confirm: %+v %d", r, n)
	}
	// forget only touches assumed pods.
	c.forget(p.UID)
	if _, n, _ := c.nodeRequested("a"); n != 1 {
		t.Fatal("forget removed a confirmed pod")
	}
	// Terminated: its resources are free again.
	done := bound.DeepCopy()
	done.Status.Phase = corev1.PodSucceeded
	c.setPod(done)
	if r, n, _ := c.nodeRequested("a"); r.MilliCPU != 0 || n != 0 {
		t.Fatalf("a after termination: %+v %d", r, n)
	}
}

func TestCacheForgetFreesRoom(t *testing.T) {
	c := newCache()
	c.setNode(mkNode("a", withAlloc("1", "1Gi", "10")))
	p := mkPod("p", req("1", ""))
	if _, fitErr := c.schedule(p); fitErr != nil {
		t.Fatal(fitErr)
	}
	c.forget(p.UID)
	if c.isAssumed(p.UID) {
		t.Fatal("still assumed")
	}
	if _, fitErr := c.schedule(mkPod("q", req("1", ""))); fitErr != nil {
		t.Fatalf("room not freed: %v", fitErr)
	}
}

func TestCachePodsBeforeTheirNodeAndNodeRemoval(t *testing.T) {
	c := newCache()
	// A bound pod may arrive before its node: it is counted once the node shows up.
	c.setPod(mkPod("early", req("1", ""), onNode("a")))
	if _, fitErr := c.schedule(mkPod("x")); fitErr == nil || fitErr.Error() != "no nodes available to schedule pods" {
		t.Fatalf("want no nodes, got %v", fitErr)
	}
	c.setNode(mkNode("a", withAlloc("1", "1Gi", "10")))
	if _, fitErr := c.schedule(mkPod("big", req("1", ""))); fitErr == nil {
		t.Fatal("early pod not accounted")
	}
	c.removeNode("a")
	if got := len(c.sortedNodes()); got != 0 {
		t.Fatalf("%d nodes after removal", got)
	}
	c.removePod(mkPod("early", onNode("a")))
	if len(c.nodes) != 0 {
		t.Fatalf("leftover node infos: %d", len(c.nodes))
	}
}

func TestNodeSchedulingChanged(t *testing.T) {
	base := mkNode("a")
	hb := base.DeepCopy()
	hb.Status.Conditions[0].Message = "kubelet is posting ready status"
	hb.ResourceVersion = "9"
	tests := []struct {
		name string
		b    *corev1.Node
		want bool
	}{
		{"heartbeat only", hb, false},
		{"label", mkNode("a", withLabel("disk", "ssd")), true},
		{"taint", mkNode("a", withTaint("k", "v", corev1.TaintEffectNoSchedule)), true},
		{"cordon", mkNode("a", cordoned), true},
		{"ready flips", mkNode("a", withReady(corev1.ConditionFalse)), true},
		{"allocatable", mkNode("a", withAlloc("8", "8Gi", "110")), true},
	}
	for _, tc := range tests {
		if got := nodeSchedulingChanged(base, tc.b); got != tc.want {
			t.Errorf("%s: got %v want %v", tc.name, got, tc.want)
		}
	}
}
