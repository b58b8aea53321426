package scheduler

import (
	"fmt"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

func TestScheduleFilters(t *testing.T) {
	ns := corev1.TaintEffectNoSchedule
	ne := corev1.TaintEffectNoExecute
	tests := []struct {
		name    string
		pod     *corev1.Pod
		nodes   []*corev1.Node
		bound   []*corev1.Pod
		want    string // node name, "" when unschedulable
		wantMsg string
	}{
		{
			name:    "no nodes at all",
			pod:     mkPod("p"),
			wantMsg: "no nodes available to schedule pods",
		},
		{
			name:  "single ready node",
			pod:   mkPod("p"),
			nodes: nodes(1),
			want:  "node-1",
		},
		{
			name:    "cordoned node",
			pod:     mkPod("p"),
			nodes:   []*corev1.Node{mkNode("a", cordoned)},
			wantMsg: "0/1 nodes are available: 1 node(s) were unschedulable.",
		},
		{
			name:  "cordoned node tolerated",
			pod:   mkPod("p", tolerate("node.kubernetes.io/unschedulable", corev1.TolerationOpExists, "", ns)),
			nodes: []*corev1.Node{mkNode("a", cordoned)},
			want:  "a",
		},
		{
			name:    "node Ready=False acts as not-ready taint",
			pod:     mkPod("p"),
			nodes:   []*corev1.Node{mkNode("a", withReady(corev1.ConditionFalse))},
			wantMsg: "0/1 nodes are available: 1 node(s) had untolerated taint(s).",
		},
		{
			name:    "node Ready=Unknown and node without conditions are unreachable",
			pod:     mkPod("p"),
			nodes:   []*corev1.Node{mkNode("a", withReady(corev1.ConditionUnknown)), mkNode("b", withReady(""))},
			wantMsg: "0/2 nodes are available: 2 node(s) had untolerated taint(s).",
		},
		{
			name:  "not-ready tolerated",
			pod:   mkPod("p", tolerate("node.kubernetes.io/not-ready", corev1.TolerationOpExists, "", "")),
			nodes: []*corev1.Node{mkNode("a", withReady(corev1.ConditionFalse))},
			want:  "a",
		},
		{
			name: "unreachable node: tolerating only NoExecute (default toleration seconds) is not enough",
			pod:  mkPod("p", tolerate("node.kubernetes.io/unreachable", corev1.TolerationOpExists, "", ne)),
			nodes: []*corev1.Node{
				mkNode("a", withReady(corev1.ConditionUnknown), withTaint("node.kubernetes.io/unreachable", "", ne), withTaint("node.kubernetes.io/unreachable", "", ns)),
				mkNode("b", withReady(corev1.ConditionUnknown), withTaint("node.kubernetes.io/unreachable", "", ne)),
			},
			wantMsg: "0/2 nodes are available: 2 node(s) had untolerated taint(s).",
		},
		{
			name: "unreachable node: tolerating the key for every effect fits",
			pod:  mkPod("p", tolerate("node.kubernetes.io/unreachable", corev1.TolerationOpExists, "", "")),
			nodes: []*corev1.Node{
				mkNode("a", withReady(corev1.ConditionTrue), withTaint("dedicated", "x", ns)),
				mkNode("b", withReady(corev1.ConditionUnknown), withTaint("node.kubernetes.io/unreachable", "", ne)),
			},
			want: "b",
		},
		{
			name:    "untolerated NoSchedule taint",
			pod:     mkPod("p"),
			nodes:   []*corev1.Node{mkNode("a", withTaint("dedicated", "gpu", ns)), mkNode("b", withTaint("dedicated", "gpu", ne))},
			wantMsg: "0/2 nodes are available: 2 node(s) had untolerated taint(s).",
		},
		{
			name:  "PreferNoSchedule does not filter",
			pod:   mkPod("p"),
			nodes: []*corev1.Node{mkNode("a", withTaint("dedicated", "gpu", corev1.TaintEffectPreferNoSchedule))},
			want:  "a",
		},
		{
			name:  "Equal toleration with matching value",
			pod:   mkPod("p", tolerate("dedicated", corev1.TolerationOpEqual, "gpu", ns)),
			nodes: []*corev1.Node{mkNode("a", withTaint("dedicated", "gpu", ns))},
			want:  "a",
		},
		{
			name:    "Equal toleration with other value",
			pod:     mkPod("p", tolerate("dedicated", corev1.TolerationOpEqual, "cpu", ns)),
			nodes:   []*corev1.Node{mkNode("a", withTaint("dedicated", "gpu", ns))},
			wantMsg: "0/1 nodes are available: 1 node(s) had untolerated taint(s).",
		},
		{
			name:  "empty key Exists tolerates everything",
			pod:   mkPod("p", tolerate("", corev1.TolerationOpExists, "", "")),
			nodes: []*corev1.Node{mkNode("a", withTaint("x", "1", ns), withTaint("y", "", ne), cordoned)},
			want:  "a",
		},
		{
			name:    "toleration effect must match",
			pod:     mkPod("p", tolerate("dedicated", corev1.TolerationOpExists, "", ns)),
			nodes:   []*corev1.Node{mkNode("a", withTaint("dedicated", "gpu", ne))},
			wantMsg: "0/1 nodes are available: 1 node(s) had untolerated taint(s).",
		},
		{
			name:    "nodeSelector matches none",
			pod:     mkPod("p", selector("disk", "ssd")),
			nodes:   nodes(3),
			wantMsg: "0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector.",
		},
		{
			name:  "nodeSelector picks the labelled node",
			pod:   mkPod("p", selector("disk", "ssd")),
			nodes: []*corev1.Node{mkNode("a"), mkNode("b", withLabel("disk", "ssd")), mkNode("c", withLabel("disk", "hdd"))},
			want:  "b",
		},
		{
			name:  "affinity In",
			pod:   mkPod("p", affinityTerms(corev1.NodeSelectorTerm{MatchExpressions: []corev1.NodeSelectorRequirement{expr("zone", corev1.NodeSelectorOpIn, "z2", "z3")}})),
			nodes: []*corev1.Node{mkNode("a", withLabel("zone", "z1")), mkNode("b", withLabel("zone", "z3"))},
			want:  "b",
		},
		{
			name:  "affinity NotIn (absent label matches)",
			pod:   mkPod("p", affinityTerms(corev1.NodeSelectorTerm{MatchExpressions: []corev1.NodeSelectorRequirement{expr("zone", corev1.NodeSelectorOpNotIn, "z1")}})),
			nodes: []*corev1.Node{mkNode("a", withLabel("zone", "z1")), mkNode("b")},
			want:  "b",
		},
		{
			name:  "affinity Exists",
			pod:   mkPod("p", affinityTerms(corev1.NodeSelectorTerm{MatchExpressions: []corev1.NodeSelectorRequirement{expr("gpu", corev1.NodeSelectorOpExists)}})),
			nodes: []*corev1.Node{mkNode("a"), mkNode("b", withLabel("gpu", ""))},
			want:  "b",
		},
		{
			name:  "affinity DoesNotExist",
			pod:   mkPod("p", affinityTerms(corev1.NodeSelectorTerm{MatchExpressions: []corev1.NodeSelectorRequirement{expr("gpu", corev1.NodeSelectorOpDoesNotExist)}})),
			nodes: []*corev1.Node{mkNode("a", withLabel("gpu", "1")), mkNode("b")},
			want:  "b",
		},
		{
			name: "affinity Gt and Lt (non-numeric never matches)",
			pod: mkPod("p", affinityTerms(corev1.NodeSelectorTerm{MatchExpressions: []corev1.NodeSelectorRequirement{
				expr("cores", corev1.NodeSelectorOpGt, "4"), expr("cores", corev1.NodeSelectorOpLt, "16"),
			}})),
			nodes: []*corev1.Node{mkNode("a", withLabel("cores", "4")), mkNode("b", withLabel("cores", "16")), mkNode("c", withLabel("cores", "eight")), mkNode("d", withLabel("cores", "8"))},
			want:  "d",
		},
		{
			name:  "affinity terms are ORed",
			pod:   mkPod("p", affinityTerms(corev1.NodeSelectorTerm{MatchExpressions: []corev1.NodeSelectorRequirement{expr("a", corev1.NodeSelectorOpExists)}}, corev1.NodeSelectorTerm{MatchExpressions: []corev1.NodeSelectorRequirement{expr("b", corev1.NodeSelectorOpExists)}})),
			nodes: []*corev1.Node{mkNode("x"), mkNode("y", withLabel("b", "1"))},
			want:  "y",
		},
		{
			name:    "empty term matches nothing",
			pod:     mkPod("p", affinityTerms(corev1.NodeSelectorTerm{})),
			nodes:   nodes(2),
			wantMsg: "0/2 nodes are available: 2 node(s) didn't match Pod's node affinity/selector.",
		},
		{
			name:  "matchFields metadata.name In",
			pod:   mkPod("p", affinityTerms(corev1.NodeSelectorTerm{MatchFields: []corev1.NodeSelectorRequirement{expr("metadata.name", corev1.NodeSelectorOpIn, "node-2")}})),
			nodes: nodes(3),
			want:  "node-2",
		},
		{
			name:    "matchFields metadata.name NotIn and a label",
			pod:     mkPod("p", affinityTerms(corev1.NodeSelectorTerm{MatchFields: []corev1.NodeSelectorRequirement{expr("metadata.name", corev1.NodeSelectorOpNotIn, "a")}, MatchExpressions: []corev1.NodeSelectorRequirement{expr("disk", corev1.NodeSelectorOpIn, "ssd")}})),
			nodes:   []*corev1.Node{mkNode("a", withLabel("disk", "ssd")), mkNode("b")},
			wantMsg: "0/2 nodes are available: 2 node(s) didn't match Pod's node affinity/selector.",
		},
		{
			name:    "nodeSelector and affinity must both match",
			pod:     mkPod("p", selector("disk", "ssd"), affinityTerms(corev1.NodeSelectorTerm{MatchExpressions: []corev1.NodeSelectorRequirement{expr("zone", corev1.NodeSelectorOpIn, "z1")}})),
			nodes:   []*corev1.Node{mkNode("a", withLabel("disk", "ssd")), mkNode("b", withLabel("zone", "z1"))},
			wantMsg: "0/2 nodes are available: 2 node(s) didn't match Pod's node affinity/selector.",
		},
		{
			name:    "insufficient cpu counts bound pods",
			pod:     mkPod("p", req("2", "")),
			nodes:   []*corev1.Node{mkNode("a", withAlloc("3", "4Gi", "10"))},
			bound:   []*corev1.Pod{mkPod("q", req("1500m", ""), onNode("a"))},
			wantMsg: "0/1 nodes are available: 1 Insufficient cpu.",
		},
		{
			name:  "terminated pods free their requests",
			pod:   mkPod("p", req("2", "")),
			nodes: []*corev1.Node{mkNode("a", withAlloc("3", "4Gi", "10"))},
			bound: []*corev1.Pod{mkPod("q", req("1500m", ""), onNode("a"), phase(corev1.PodSucceeded)), mkPod("r", req("1500m", ""), onNode("a"), phase(corev1.PodFailed))},
			want:  "a",
		},
		{
			name:    "insufficient cpu and memory on one node are both counted",
			pod:     mkPod("p", req("2", "2Gi")),
			nodes:   []*corev1.Node{mkNode("a", withAlloc("1", "1Gi", "10")), mkNode("b", withAlloc("1", "8Gi", "10"))},
			wantMsg: "0/2 nodes are available: 1 Insufficient memory, 2 Insufficient cpu.",
		},
		{
			name:    "too many pods",
			pod:     mkPod("p"),
			nodes:   []*corev1.Node{mkNode("a", withAlloc("4", "4Gi", "1"))},
			bound:   []*corev1.Pod{mkPod("q", onNode("a"))},
			wantMsg: "0/1 nodes are available: 1 Too many pods.",
		},
		{
			name:  "exactly full still fits",
			pod:   mkPod("p", req("1", "1Gi")),
			nodes: []*corev1.Node{mkNode("a", withAlloc("2", "2Gi", "2"))},
			bound: []*corev1.Pod{mkPod("q", req("1", "1Gi"), onNode("a"))},
			want:  "a",
		},
		{
			name:    "hostPort conflict on any address",
			pod:     mkPod("p", hostPortOpt(8080, "", "")),
			nodes:   []*corev1.Node{mkNode("a")},
			bound:   []*corev1.Pod{mkPod("q", hostPortOpt(8080, corev1.ProtocolTCP, "10.0.0.1"), onNode("a"))},
			wantMsg: "0/1 nodes are available: 1 node(s) didn't have free ports for the requested pod ports.",
		},
		{
			name:  "hostPort other protocol or other IP is fine",
			pod:   mkPod("p", hostPortOpt(8080, corev1.ProtocolUDP, ""), hostPortOpt(9090, corev1.ProtocolTCP, "10.0.0.2")),
			nodes: []*corev1.Node{mkNode("a")},
			bound: []*corev1.Pod{mkPod("q", hostPortOpt(8080, corev1.ProtocolTCP, ""), hostPortOpt(9090, corev1.ProtocolTCP, "10.0.0.1"), onNode("a"))},
			want:  "a",
		},
		{
			name:  "hostPort moves the pod to the free node",
			pod:   mkPod("p", hostPortOpt(80, "", "")),
			nodes: nodes(2),
			bound: []*corev1.Pod{mkPod("q", hostPortOpt(80, "", ""), onNode("node-1"))},
			want:  "node-2",
		},
		{
			name: "mixed reasons are counted and sorted like kube-scheduler",
			pod:  mkPod("p", req("2", "")),
			nodes: []*corev1.Node{
				mkNode("a", withAlloc("1", "4Gi", "10")),
				mkNode("b", withReady(corev1.ConditionUnknown), withTaint("node.kubernetes.io/unreachable", "", ne)),
			},
			wantMsg: "0/2 nodes are available: 1 Insufficient cpu, 1 node(s) had untolerated taint(s).",
		},
		{
			name: "first failing filter wins per node",
			pod:  mkPod("p", selector("disk", "ssd"), req("100", "")),
			nodes: []*corev1.Node{
				mkNode("a", cordoned),
				mkNode("b", withTaint("k", "v", ns)),
				mkNode("c"),
				mkNode("d", withLabel("disk", "ssd")),
			},
			wantMsg: "0/4 nodes are available: 1 Insufficient cpu, 1 node(s) didn't match Pod's node affinity/selector, 1 node(s) had untolerated taint(s), 1 node(s) were unschedulable.",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, fitErr := Schedule(tc.pod, tc.nodes, tc.bound)
			if tc.wantMsg != "" {
				if fitErr == nil {
					t.Fatalf("got node %q, want failure %q", got, tc.wantMsg)
				}
				if fitErr.Error() != tc.wantMsg {
					t.Fatalf("message:\n got %q\nwant %q", fitErr.Error(), tc.wantMsg)
				}
				return
			}
			if fitErr != nil {
				t.Fatalf("unexpected failure: %v", fitErr)
			}
			if got != tc.want {
				t.Fatalf("got node %q, want %q", got, tc.want)
			}
		})
	}
}

func TestPodRequests(t *testing.T) {
	always := corev1.ContainerRestartPolicyAlways
	rl := func(cpu, mem string) corev1.ResourceRequirements {
		l := corev1.ResourceList{}
		if cpu != "" {
			l[corev1.ResourceCPU] = resource.MustParse(cpu)
		}
		if mem != "" {
			l[corev1.ResourceMemory] = resource.MustParse(mem)
		}
		return corev1.ResourceRequirements{Requests: l}
	}
	tests := []struct {
		name             string
		spec             corev1.PodSpec
		wantCPU, wantMem int64
		nzCPU            int64
	}{
		{
			name:    "containers sum",
			spec:    corev1.PodSpec{Containers: []corev1.Container{{Resources: rl("100m", "1Mi")}, {Resources: rl("200m", "")}}},
			wantCPU: 300, wantMem: 1 << 20, nzCPU: 300,
		},
		{
			name:    "no requests: zero to fit, defaults to score",
			spec:    corev1.PodSpec{Containers: []corev1.Container{{}, {}}},
			wantCPU: 0, wantMem: 0, nzCPU: 200,
		},
		{
			name: "init container peak dominates",
			spec: corev1.PodSpec{
				InitContainers: []corev1.Container{{Resources: rl("2", "")}},
				Containers:     []corev1.Container{{Resources: rl("500m", "")}},
			},
			wantCPU: 2000, nzCPU: 2000,
		},
		{
			name: "sidecar adds to containers and to later init containers",
			spec: corev1.PodSpec{
				InitContainers: []corev1.Container{{Resources: rl("300m", ""), RestartPolicy: &always}, {Resources: rl("1", "")}},
				Containers:     []corev1.Container{{Resources: rl("500m", "")}},
			},
			wantCPU: 1300, nzCPU: 1300,
		},
		{
			name: "overhead added",
			spec: corev1.PodSpec{
				Containers: []corev1.Container{{Resources: rl("500m", "")}},
				Overhead:   corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("250m")},
			},
			wantCPU: 750, nzCPU: 750,
		},
		{
			name: "pod-level requests replace containers'",
			spec: corev1.PodSpec{
				Containers: []corev1.Container{{Resources: rl("500m", "")}},
				Resources:  &corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("2")}},
			},
			wantCPU: 2000, nzCPU: 2000,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, nz := podRequests(&corev1.Pod{Spec: tc.spec})
			if r.MilliCPU != tc.wantCPU || r.Memory != tc.wantMem || nz.MilliCPU != tc.nzCPU {
				t.Fatalf("got cpu=%d mem=%d nzcpu=%d, want %d %d %d", r.MilliCPU, r.Memory, nz.MilliCPU, tc.wantCPU, tc.wantMem, tc.nzCPU)
			}
		})
	}
}

func TestExtendedResources(t *testing.T) {
	gpu := corev1.ResourceName("example.com/gpu")
	pod := mkPod("p")
	pod.Spec.Containers[0].Resources.Requests = corev1.ResourceList{gpu: resource.MustParse("1")}
	a := mkNode("a")
	b := mkNode("b")
	b.Status.Allocatable[gpu] = resource.MustParse("1")
	got, fitErr := Schedule(pod, []*corev1.Node{a, b}, nil)
	if fitErr != nil || got != "b" {
		t.Fatalf("got %q %v, want b", got, fitErr)
	}
	_, fitErr = Schedule(pod, []*corev1.Node{a, b}, []*corev1.Pod{func() *corev1.Pod { q := pod.DeepCopy(); q.UID = "other"; q.Spec.NodeName = "b"; return q }()})
	if fitErr == nil || fitErr.Error() != "0/2 nodes are available: 2 Insufficient example.com/gpu." {
		t.Fatalf("got %v", fitErr)
	}
}

func TestScoreSpreadsOwnerFirst(t *testing.T) {
	// node-1 is nearly empty but already runs a pod of the same ReplicaSet;
	// node-2 is busier but has none: spreading wins over least allocated.
	ns := []*corev1.Node{mkNode("node-1"), mkNode("node-2")}
	bound := []*corev1.Pod{
		mkPod("rs-a", ownedBy("rs1"), onNode("node-1")),
		mkPod("big", req("3", "6Gi"), onNode("node-2")),
	}
	got, fitErr := Schedule(mkPod("rs-b", ownedBy("rs1")), ns, bound)
	if fitErr != nil || got != "node-2" {
		t.Fatalf("got %q %v, want node-2", got, fitErr)
	}
	// A pod of another owner goes to the least allocated node.
	got, _ = Schedule(mkPod("other", ownedBy("rs2")), ns, bound)
	if got != "node-1" {
		t.Fatalf("got %q, want node-1", got)
	}
}

func TestScoreLeastAllocated(t *testing.T) {
	ns := nodes(3)
	bound := []*corev1.Pod{
		mkPod("x", req("2", "1Gi"), onNode("node-1")),
		mkPod("y", req("1", "1Gi"), onNode("node-2")),
		mkPod("z", req("3", "1Gi"), onNode("node-3")),
	}
	got, _ := Schedule(mkPod("p", req("100m", "100Mi")), ns, bound)
	if got != "node-2" {
		t.Fatalf("got %q, want node-2", got)
	}
	// Request-less pods still weigh in scoring (defaults 100m/200Mi):
	// node-1 with 10 of them is busier than node-2 with none.
	var many []*corev1.Pod
	for i := 0; i < 10; i++ {
		many = append(many, mkPod(fmt.Sprintf("bare-%d", i), onNode("node-1")))
	}
	got, _ = Schedule(mkPod("p"), nodes(2), many)
	if got != "node-2" {
		t.Fatalf("got %q, want node-2", got)
	}
}

func TestTieBreakDeterministicButVaried(t *testing.T) {
	ns := nodes(5)
	seen := map[string]int{}
	for i := 0; i < 200; i++ {
		p := mkPod(fmt.Sprintf("p-%d", i))
		a, _ := Schedule(p, ns, nil)
		b, _ := Schedule(p, ns, nil)
		if a != b {
			t.Fatalf("pod %s: %q then %q: not deterministic", p.Name, a, b)
		}
		seen[a]++
	}
	if len(seen) != 5 {
		t.Fatalf("identical empty nodes should all be chosen sometimes, got %v", seen)
	}
}

func TestSpreadReplicaSetEvenly(t *testing.T) {
	// Place 12 pods of one ReplicaSet one by one, each decision seeing the
	// previous ones bound: they spread 4/4/4 over 3 nodes.
	ns := nodes(3)
	var bound []*corev1.Pod
	for i := 0; i < 12; i++ {
		p := mkPod(fmt.Sprintf("web-%d", i), ownedBy("rs-web"), req("100m", "64Mi"))
		n, fitErr := Schedule(p, ns, bound)
		if fitErr != nil {
			t.Fatal(fitErr)
		}
		p.Spec.NodeName = n
		bound = append(bound, p)
	}
	count := map[string]int{}
	for _, p := range bound {
		count[p.Spec.NodeName]++
	}
	for _, n := range ns {
		if count[n.Name] != 4 {
			t.Fatalf("uneven spread %v", count)
		}
	}
}

func TestFitErrorMessageTruncated(t *testing.T) {
	reasons := map[string]int{}
	for i := 0; i < 100; i++ {
		reasons[strings.Repeat("x", 20)+fmt.Sprint(i)] = 1
	}
	msg := truncate((&FitError{NumAllNodes: 100, Reasons: reasons}).Error())
	if len(msg) != noteLengthLimit || !strings.HasSuffix(msg, " ...") {
		t.Fatalf("len %d, %q", len(msg), msg[len(msg)-10:])
	}
}

func TestNodeInfoAddRemove(t *testing.T) {
	ni := NewNodeInfos([]*corev1.Node{mkNode("a")}, nil)[0]
	p := newPodInfo(mkPod("p", req("1", "1Gi"), hostPortOpt(80, "", ""), ownedBy("o"), onNode("a")))
	ni.addPod(p)
	ni.addPod(p) // re-adding the same UID replaces, not doubles
	if ni.requested.MilliCPU != 1000 || len(ni.pods) != 1 || len(ni.owners) != 1 || len(ni.ports) != 1 {
		t.Fatalf("after add: %+v pods=%d owners=%v ports=%v", ni.requested, len(ni.pods), ni.owners, ni.ports)
	}
	ni.removePod(p)
	if ni.requested.MilliCPU != 0 || ni.requested.Memory != 0 || len(ni.pods) != 0 || len(ni.owners) != 0 || len(ni.ports) != 0 {
		t.Fatalf("after remove: %+v pods=%d owners=%v ports=%v", ni.requested, len(ni.pods), ni.owners, ni.ports)
	}
}

func TestScorePreferences(t *testing.T) {
	preferred := func(weight int32, key, value string) podOpt {
		return func(p *corev1.Pod) {
			if p.Spec.Affinity == nil {
				p.Spec.Affinity = &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{}}
			}
			na := p.Spec.Affinity.NodeAffinity
			na.PreferredDuringSchedulingIgnoredDuringExecution = append(na.PreferredDuringSchedulingIgnoredDuringExecution, corev1.PreferredSchedulingTerm{
				Weight:     weight,
				Preference: corev1.NodeSelectorTerm{MatchExpressions: []corev1.NodeSelectorRequirement{expr(key, corev1.NodeSelectorOpIn, value)}},
			})
		}
	}
	pns := corev1.TaintEffectPreferNoSchedule
	tests := []struct {
		name  string
		pod   *corev1.Pod
		nodes []*corev1.Node
		bound []*corev1.Pod
		want  string
	}{
		{
			name:  "preferred affinity over an emptier node",
			pod:   mkPod("p", preferred(10, "disk", "ssd")),
			nodes: []*corev1.Node{mkNode("a"), mkNode("b", withLabel("disk", "ssd"))},
			bound: []*corev1.Pod{mkPod("x", req("3", "6Gi"), onNode("b"))},
			want:  "b",
		},
		{
			name:  "heavier preference wins",
			pod:   mkPod("p", preferred(10, "disk", "ssd"), preferred(50, "zone", "z2")),
			nodes: []*corev1.Node{mkNode("a", withLabel("disk", "ssd")), mkNode("b", withLabel("zone", "z2")), mkNode("c")},
			want:  "b",
		},
		{
			name:  "preferred affinity over spreading",
			pod:   mkPod("p", ownedBy("rs"), preferred(1, "disk", "ssd")),
			nodes: []*corev1.Node{mkNode("a"), mkNode("b", withLabel("disk", "ssd"))},
			bound: []*corev1.Pod{mkPod("x", ownedBy("rs"), onNode("b"))},
			want:  "b",
		},
		{
			name:  "PreferNoSchedule avoided when another node fits",
			pod:   mkPod("p"),
			nodes: []*corev1.Node{mkNode("a", withTaint("k", "v", pns)), mkNode("b")},
			bound: []*corev1.Pod{mkPod("x", req("3", "6Gi"), onNode("b"))},
			want:  "b",
		},
		{
			name:  "PreferNoSchedule tolerated is no penalty",
			pod:   mkPod("p", tolerate("k", corev1.TolerationOpEqual, "v", pns)),
			nodes: []*corev1.Node{mkNode("a", withTaint("k", "v", pns)), mkNode("b")},
			bound: []*corev1.Pod{mkPod("x", req("3", "6Gi"), onNode("b"))},
			want:  "a",
		},
		{
			name:  "PreferNoSchedule node still used when it is the only fit",
			pod:   mkPod("p", selector("only", "a")),
			nodes: []*corev1.Node{mkNode("a", withLabel("only", "a"), withTaint("k", "v", pns)), mkNode("b")},
			want:  "a",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, fitErr := Schedule(tc.pod, tc.nodes, tc.bound)
			if fitErr != nil || got != tc.want {
				t.Fatalf("got %q %v, want %q", got, fitErr, tc.want)
			}
		})
	}
}
