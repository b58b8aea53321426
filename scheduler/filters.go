package scheduler

import (
	"strconv"

	corev1 "k8s.io/api/core/v1"
)

// Reasons a node is rejected, worded as kube-scheduler 1.37 words them
// (users and tools match on these strings).
const (
	ReasonUnschedulable   = "node(s) were unschedulable"
	ReasonTaint           = "node(s) had untolerated taint(s)"
	ReasonNodeAffinity    = "node(s) didn't match Pod's node affinity/selector"
	ReasonHostPorts       = "node(s) didn't have free ports for the requested pod ports"
	ReasonTooManyPods     = "Too many pods"
	reasonInsufficient    = "Insufficient "
	noNodesAvailableMsg   = "no nodes available to schedule pods"
	taintKeyNotReady      = "node.kubernetes.io/not-ready"
	taintKeyUnreachable   = "node.kubernetes.io/unreachable"
	taintKeyUnschedulable = "node.kubernetes.io/unschedulable"
)

// impliedReadinessTaint is the taint a node that is not Ready is treated as
// carrying, as the node lifecycle controller would add: not-ready when the
// Ready condition is False, unreachable when it is Unknown or missing. So a
// not-ready node rejects pods exactly like a tainted one, and pods tolerating
// these taints still fit. nil when Ready is True or the node already carries
// the NoSchedule taint.
func impliedReadinessTaint(node *corev1.Node) *corev1.Taint {
	status := corev1.ConditionUnknown
	for _, c := range node.Status.Conditions {
		if c.Type == corev1.NodeReady {
			status = c.Status
			break
		}
	}
	if status == corev1.ConditionTrue {
		return nil
	}
	key := taintKeyUnreachable
	if status == corev1.ConditionFalse {
		key = taintKeyNotReady
	}
	// Only the NoSchedule variant makes ours redundant: pods commonly
	// tolerate the NoExecute one for a while (DefaultTolerationSeconds), which
	// must not let them be placed on a node that is down.
	for _, t := range node.Spec.Taints {
		if t.Key == key && t.Effect == corev1.TaintEffectNoSchedule {
			return nil
		}
	}
	return &corev1.Taint{Key: key, Effect: corev1.TaintEffectNoSchedule}
}

// Single-reason results, shared so a rejection does not allocate.
var (
	rejectUnschedulable = []string{ReasonUnschedulable}
	rejectTaint         = []string{ReasonTaint}
	rejectNodeAffinity  = []string{ReasonNodeAffinity}
	rejectHostPorts     = []string{ReasonHostPorts}
)

// filterNode runs the filters in kube-scheduler's order and returns the
// reasons the first failing one gives (several for resources), nil if the
// pod fits. The result must not be modified.
func filterNode(pi *podInfo, ni *NodeInfo) []string {
	pod, node := pi.pod, ni.node
	if node.Spec.Unschedulable && !toleratesAny(pod.Spec.Tolerations, &corev1.Taint{Key: taintKeyUnschedulable, Effect: corev1.TaintEffectNoSchedule}) {
		return rejectUnschedulable
	}
	if !toleratesNode(pod.Spec.Tolerations, ni) {
		return rejectTaint
	}
	if !matchesNodeSelectorAndAffinity(pod, node) {
		return rejectNodeAffinity
	}
	if portsConflict(pi.ports, ni.ports) {
		return rejectHostPorts
	}
	return insufficientResources(pi, ni)
}

// toleratesNode: every NoSchedule/NoExecute taint (PreferNoSchedule is only a
// preference) must be tolerated.
func toleratesNode(tols []corev1.Toleration, ni *NodeInfo) bool {
	if ni.notReady != nil && !toleratesAny(tols, ni.notReady) {
		return false
	}
	for i := range ni.node.Spec.Taints {
		t := &ni.node.Spec.Taints[i]
		if t.Effect != corev1.TaintEffectNoSchedule && t.Effect != corev1.TaintEffectNoExecute {
			continue
		}
		if !toleratesAny(tols, t) {
			return false
		}
	}
	return true
}

func toleratesAny(tols []corev1.Toleration, t *corev1.Taint) bool {
	for i := range tols {
		if tolerates(&tols[i], t) {
			return true
		}
	}
	return false
}

// tolerates follows the API's rules: an empty effect matches all effects, an
// empty key with Exists matches every taint, Equal (the default) compares
// values.
func tolerates(tol *corev1.Toleration, t *corev1.Taint) bool {
	if tol.Effect != "" && tol.Effect != t.Effect {
		return false
	}
	if tol.Key != "" && tol.Key != t.Key {
		return false
	}
	switch tol.Operator {
	case corev1.TolerationOpExists:
		return true
	case corev1.TolerationOpEqual, "":
		return tol.Value == t.Value
	}
	return false
}

func matchesNodeSelectorAndAffinity(pod *corev1.Pod, node *corev1.Node) bool {
	for k, v := range pod.Spec.NodeSelector {
		if lv, ok := node.Labels[k]; !ok || lv != v {
			return false
		}
	}
	a := pod.Spec.Affinity
	if a == nil || a.NodeAffinity == nil || a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution == nil {
		return true
	}
	return matchesNodeSelector(a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution, node)
}

// matchesNodeSelector: terms are ORed; within a term all expressions and
// fields are ANDed; a term with neither matches nothing.
func matchesNodeSelector(sel *corev1.NodeSelector, node *corev1.Node) bool {
	for i := range sel.NodeSelectorTerms {
		t := &sel.NodeSelectorTerms[i]
		if len(t.MatchExpressions) == 0 && len(t.MatchFields) == 0 {
			continue
		}
		if termMatches(t, node) {
			return true
		}
	}
	return false
}

func termMatches(t *corev1.NodeSelectorTerm, node *corev1.Node) bool {
	for i := range t.MatchExpressions {
		r := &t.MatchExpressions[i]
		v, ok := node.Labels[r.Key]
		if !requirementMatches(r, v, ok) {
			return false
		}
	}
	for i := range t.MatchFields {
		r := &t.MatchFields[i]
		// metadata.name is the only field selectable, and only with In/NotIn.
		if r.Key != "metadata.name" || (r.Operator != corev1.NodeSelectorOpIn && r.Operator != corev1.NodeSelectorOpNotIn) {
			return false
		}
		if !requirementMatches(r, node.Name, true) {
			return false
		}
	}
	return true
}

func requirementMatches(r *corev1.NodeSelectorRequirement, value string, present bool) bool {
	switch r.Operator {
	case corev1.NodeSelectorOpIn:
		return present && contains(r.Values, value)
	case corev1.NodeSelectorOpNotIn:
		return !present || !contains(r.Values, value)
	case corev1.NodeSelectorOpExists:
		return present
	case corev1.NodeSelectorOpDoesNotExist:
		return !present
	case corev1.NodeSelectorOpGt, corev1.NodeSelectorOpLt:
		if !present || len(r.Values) != 1 {
			return false
		}
		want, err := strconv.ParseInt(r.Values[0], 10, 64)
		if err != nil {
			return false
		}
		have, err := strconv.ParseInt(value, 10, 64)
		if err != nil {
			return false
		}
		if r.Operator == corev1.NodeSelectorOpGt {
			return have > want
		}
		return have < want
	}
	return false
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// portsConflict: a wanted port clashes with a used one of the same protocol
// and number when either side binds every address or both bind the same one.
func portsConflict(want []hostPort, used map[protoPort]map[string]int) bool {
	for _, hp := range want {
		ips := used[protoPort{hp.protocol, hp.port}]
		if len(ips) == 0 {
			continue
		}
		if hp.ip == anyIP {
			return true
		}
		if ips[anyIP] > 0 || ips[hp.ip] > 0 {
			return true
		}
	}
	return false
}

// insufficientResources lists every resource the node lacks, as
// kube-scheduler's NodeResourcesFit does: pod count first, then requested
// resources against allocatable minus what bound pods request.
func insufficientResources(pi *podInfo, ni *NodeInfo) []string {
	var out []string
	if int64(len(ni.pods))+1 > ni.allocPods {
		out = append(out, ReasonTooManyPods)
	}
	r := pi.req
	if r.isZero() {
		return out
	}
	if r.MilliCPU > 0 && r.MilliCPU > ni.allocatable.MilliCPU-ni.requested.MilliCPU {
		out = append(out, reasonInsufficient+string(corev1.ResourceCPU))
	}
	if r.Memory > 0 && r.Memory > ni.allocatable.Memory-ni.requested.Memory {
		out = append(out, reasonInsufficient+string(corev1.ResourceMemory))
	}
	if r.EphemeralStorage > 0 && r.EphemeralStorage > ni.allocatable.EphemeralStorage-ni.requested.EphemeralStorage {
		out = append(out, reasonInsufficient+string(corev1.ResourceEphemeralStorage))
	}
	for name, v := range r.Scalar {
		if v > 0 && v > ni.allocatable.Scalar[name]-ni.requested.Scalar[name] {
			out = append(out, reasonInsufficient+string(name))
		}
	}
	return out
}
