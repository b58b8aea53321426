package scheduler

import (
	corev1 "k8s.io/api/core/v1"
)

// Defaults used for scoring only (never for fitting) when a container asks
// for nothing, so that a node full of request-less pods does not look empty.
// The figures are kube-scheduler's.
const (
	defaultMilliCPURequest int64 = 100               // 0.1 core
	defaultMemoryRequest   int64 = 200 * 1024 * 1024 // 200 MiB
)

// Resources is an amount of the resources placement accounts for.
type Resources struct {
	MilliCPU         int64
	Memory           int64
	EphemeralStorage int64
	// Scalar holds extended resources (e.g. example.com/gpu) and hugepages.
	Scalar map[corev1.ResourceName]int64
}

func (r *Resources) add(o Resources) {
	r.MilliCPU += o.MilliCPU
	r.Memory += o.Memory
	r.EphemeralStorage += o.EphemeralStorage
	for k, v := range o.Scalar {
		if r.Scalar == nil {
			r.Scalar = map[corev1.ResourceName]int64{}
		}
		r.Scalar[k] += v
	}
}

func (r *Resources) sub(o Resources) {
	r.MilliCPU -= o.MilliCPU
	r.Memory -= o.Memory
	r.EphemeralStorage -= o.EphemeralStorage
	for k, v := range o.Scalar {
		if r.Scalar == nil {
			r.Scalar = map[corev1.ResourceName]int64{}
		}
		r.Scalar[k] -= v
	}
}

// setMax raises every field of r to at least the one in o.
func (r *Resources) setMax(o Resources) {
	r.MilliCPU = max(r.MilliCPU, o.MilliCPU)
	r.Memory = max(r.Memory, o.Memory)
	r.EphemeralStorage = max(r.EphemeralStorage, o.EphemeralStorage)
	for k, v := range o.Scalar {
		if r.Scalar == nil {
			r.Scalar = map[corev1.ResourceName]int64{}
		}
		r.Scalar[k] = max(r.Scalar[k], v)
	}
}

func (r Resources) isZero() bool {
	if r.MilliCPU != 0 || r.Memory != 0 || r.EphemeralStorage != 0 {
		return false
	}
	for _, v := range r.Scalar {
		if v != 0 {
			return false
		}
	}
	return true
}

// resourcesFromList converts a ResourceList, keeping the resources the
// scheduler understands: cpu, memory, ephemeral-storage and anything that is
// not a native kubernetes.io resource (extended resources, hugepages-*).
func resourcesFromList(l corev1.ResourceList) Resources {
	var r Resources
	for name, q := range l {
		switch name {
		case corev1.ResourceCPU:
			r.MilliCPU = q.MilliValue()
		case corev1.ResourceMemory:
			r.Memory = q.Value()
		case corev1.ResourceEphemeralStorage:
			r.EphemeralStorage = q.Value()
		case corev1.ResourcePods:
			// counted separately, as a number of pods
		default:
			if isScalarResource(name) {
				if r.Scalar == nil {
					r.Scalar = map[corev1.ResourceName]int64{}
				}
				r.Scalar[name] = q.Value()
			}
		}
	}
	return r
}

func isScalarResource(name corev1.ResourceName) bool {
	s := string(name)
	if len(s) > len(corev1.ResourceHugePagesPrefix) && s[:len(corev1.ResourceHugePagesPrefix)] == corev1.ResourceHugePagesPrefix {
		return true
	}
	// Extended resources are domain-qualified names outside kubernetes.io.
	for i := 0; i < len(s); i++ {
		if s[i] == '/' {
			domain := s[:i]
			return domain != "kubernetes.io" && !hasSuffix(domain, ".kubernetes.io")
		}
	}
	return false
}

func hasSuffix(s, suffix string) bool {
	return len(s) >= len(suffix) && s[len(s)-len(suffix):] == suffix
}

// podRequests is what a pod asks of a node, computed as kube-scheduler does:
// pod-level resources when set; otherwise the larger of the regular
// containers' sum (plus restartable "sidecar" init containers) and each
// classic init container's peak (plus the sidecars started before it); plus
// the runtime-class overhead.
// nonZero is the same with per-container defaults filled in, for scoring.
func podRequests(pod *corev1.Pod) (req Resources, nonZero Resources) {
	var sum, sumNZ Resources
	for i := range pod.Spec.Containers {
		r := resourcesFromList(pod.Spec.Containers[i].Resources.Requests)
		sum.add(r)
		sumNZ.add(withDefaults(r))
	}
	var sidecars, sidecarsNZ Resources
	var initPeak, initPeakNZ Resources
	for i := range pod.Spec.InitContainers {
		c := &pod.Spec.InitContainers[i]
		r := resourcesFromList(c.Resources.Requests)
		if c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways {
			sidecars.add(r)
			sidecarsNZ.add(withDefaults(r))
			// A sidecar runs alongside the init containers that follow it.
			peak := sidecars
			initPeak.setMax(peak)
			peakNZ := sidecarsNZ
			initPeakNZ.setMax(peakNZ)
			continue
		}
		peak := r
		peak.Scalar = copyScalar(r.Scalar)
		peak.add(sidecars)
		initPeak.setMax(peak)
		peakNZ := withDefaults(r)
		peakNZ.Scalar = copyScalar(peakNZ.Scalar)
		peakNZ.add(sidecarsNZ)
		initPeakNZ.setMax(peakNZ)
	}
	sum.add(sidecars)
	sumNZ.add(sidecarsNZ)
	sum.setMax(initPeak)
	sumNZ.setMax(initPeakNZ)

	if pod.Spec.Resources != nil && len(pod.Spec.Resources.Requests) > 0 {
		// Pod-level requests replace the containers' for the resources they name.
		pl := resourcesFromList(pod.Spec.Resources.Requests)
		if _, ok := pod.Spec.Resources.Requests[corev1.ResourceCPU]; ok {
			sum.MilliCPU, sumNZ.MilliCPU = pl.MilliCPU, pl.MilliCPU
		}
		if _, ok := pod.Spec.Resources.Requests[corev1.ResourceMemory]; ok {
			sum.Memory, sumNZ.Memory = pl.Memory, pl.Memory
		}
	}

	if pod.Spec.Overhead != nil {
		o := resourcesFromList(pod.Spec.Overhead)
		sum.add(o)
		sumNZ.add(o)
	}
	return sum, sumNZ
}

func withDefaults(r Resources) Resources {
	out := r
	out.Scalar = nil
	if out.MilliCPU == 0 {
		out.MilliCPU = defaultMilliCPURequest
	}
	if out.Memory == 0 {
		out.Memory = defaultMemoryRequest
	}
	return out
}

func copyScalar(m map[corev1.ResourceName]int64) map[corev1.ResourceName]int64 {
	if m == nil {
		return nil
	}
	out := make(map[corev1.ResourceName]int64, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// allocatable is what the node offers to pods: status.allocatable, falling
// back to status.capacity for hand-made Node objects that only set capacity.
func nodeAllocatable(node *corev1.Node) (Resources, int64) {
	l := node.Status.Allocatable
	if len(l) == 0 {
		l = node.Status.Capacity
	}
	r := resourcesFromList(l)
	pods := int64(0)
	if q, ok := l[corev1.ResourcePods]; ok {
		pods = q.Value()
	}
	return r, pods
}
