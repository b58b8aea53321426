package scheduler

import (
	"fmt"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// FitError says why a pod fits no node: for each reason, on how many nodes it
// applied (a node may give several reasons, e.g. both cpu and memory short).
type FitError struct {
	NumAllNodes int
	Reasons     map[string]int
}

// Error renders the message kube-scheduler puts in the FailedScheduling event
// and the PodScheduled condition: "0/3 nodes are available: 1 Insufficient
// cpu, 2 node(s) didn't match Pod's node affinity/selector." with the
// "<count> <reason>" parts sorted as strings; with no nodes at all,
// "no nodes available to schedule pods".
func (e *FitError) Error() string {
	if e.NumAllNodes == 0 {
		return noNodesAvailableMsg
	}
	parts := make([]string, 0, len(e.Reasons))
	for reason, n := range e.Reasons {
		parts = append(parts, fmt.Sprintf("%d %s", n, reason))
	}
	sort.Strings(parts)
	return fmt.Sprintf("0/%d nodes are available: %s.", e.NumAllNodes, strings.Join(parts, ", "))
}

// Schedule picks the node for pod given the cluster's nodes and the pods
// already bound (terminated ones are ignored). It is the pure form of the
// decision the loop makes against its cache.
func Schedule(pod *corev1.Pod, nodes []*corev1.Node, boundPods []*corev1.Pod) (string, *FitError) {
	return ScheduleOn(pod, NewNodeInfos(nodes, boundPods))
}

// ScheduleOn picks the node for pod among infos. Filters reject nodes (see
// filterNode); among the rest, soft preferences come first (preferred node
// affinity weights, untolerated PreferNoSchedule taints; see preference),
// then the pod goes where the fewest pods of its controller already are
// (spreading a ReplicaSet), then to the least allocated node (cpu and
// memory, requests with defaults), then by a hash of the pod's UID and the
// node's name, so ties are broken deterministically but not always toward
// the same node.
func ScheduleOn(pod *corev1.Pod, infos []*NodeInfo) (string, *FitError) {
	return place(newPodInfo(pod), infos)
}

// rank orders feasible nodes: greater is better, compared field by field.
type rank struct {
	pref   int64 // soft preferences the pod or node states
	owners int   // pods of the same controller already there (fewer is better)
	score  int64 // least allocated
	hash   uint64
}

func (a rank) better(b rank) bool {
	if a.pref != b.pref {
		return a.pref > b.pref
	}
	if a.owners != b.owners {
		return a.owners < b.owners
	}
	if a.score != b.score {
		return a.score > b.score
	}
	return a.hash > b.hash
}

func place(pi *podInfo, infos []*NodeInfo) (string, *FitError) {
	var (
		best     *NodeInfo
		bestRank rank
		reasons  map[string]int
		numNodes int
	)
	for _, ni := range infos {
		if ni.node == nil {
			continue
		}
		numNodes++
		if rs := filterNode(pi, ni); len(rs) > 0 {
			if reasons == nil {
				reasons = map[string]int{}
			}
			for _, r := range rs {
				reasons[r]++
			}
			continue
		}
		r := rank{pref: preference(pi.pod, ni.node)}
		if pi.owner != 0 {
			r.owners = ni.owners[pi.owner]
		}
		if best != nil && (r.pref < bestRank.pref || r.pref == bestRank.pref && r.owners > bestRank.owners) {
			continue // cannot win: skip the scoring arithmetic
		}
		r.score = leastAllocatedScore(pi, ni)
		r.hash = mix64(pi.hashSeed ^ ni.nameHash)
		if best == nil || r.better(bestRank) {
			best, bestRank = ni, r
		}
	}
	if best == nil {
		return "", &FitError{NumAllNodes: numNodes, Reasons: reasons}
	}
	return best.node.Name, nil
}

// preference weighs what the pod and node ask for softly, above spreading
// (they are explicit wishes; kube-scheduler also weighs them more than
// resource balance): the summed weights of the pod's preferred node affinity
// terms the node matches, minus one per PreferNoSchedule taint the pod does
// not tolerate. Zero for the usual pod and node.
func preference(pod *corev1.Pod, node *corev1.Node) int64 {
	var p int64
	if a := pod.Spec.Affinity; a != nil && a.NodeAffinity != nil {
		for i := range a.NodeAffinity.PreferredDuringSchedulingIgnoredDuringExecution {
			t := &a.NodeAffinity.PreferredDuringSchedulingIgnoredDuringExecution[i]
			if t.Weight > 0 && (len(t.Preference.MatchExpressions) > 0 || len(t.Preference.MatchFields) > 0) && termMatches(&t.Preference, node) {
				p += int64(t.Weight) * 1000
			}
		}
	}
	for i := range node.Spec.Taints {
		t := &node.Spec.Taints[i]
		if t.Effect == corev1.TaintEffectPreferNoSchedule && !toleratesAny(pod.Spec.Tolerations, t) {
			p--
		}
	}
	return p
}

// leastAllocatedScore is kube-scheduler's LeastAllocated strategy with cpu
// and memory weighted equally: the share (0..100) of allocatable that would
// stay free once the pod is placed, averaged.
func leastAllocatedScore(pi *podInfo, ni *NodeInfo) int64 {
	cpu := freeShare(ni.allocatable.MilliCPU, ni.nonZero.MilliCPU+pi.nonZero.MilliCPU)
	mem := freeShare(ni.allocatable.Memory, ni.nonZero.Memory+pi.nonZero.Memory)
	return (cpu + mem) / 2
}

func freeShare(capacity, requested int64) int64 {
	if capacity <= 0 || requested > capacity {
		return 0
	}
	return (capacity - requested) * 100 / capacity
}

// mix64 is a finaliser (from splitmix64) so that nearby hashes spread well.
func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}
