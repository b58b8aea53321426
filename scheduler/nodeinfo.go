package scheduler

import (
	"hash/fnv"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// podInfo is what placement needs to know about a pod, computed once.
type podInfo struct {
	pod      *corev1.Pod
	req      Resources
	nonZero  Resources
	ports    []hostPort
	owner    uint64 // hash of the controller ownerReference UID, 0 if none
	hashSeed uint64
}

func newPodInfo(pod *corev1.Pod) *podInfo {
	req, nz := podRequests(pod)
	pi := &podInfo{pod: pod, req: req, nonZero: nz, ports: podHostPorts(pod)}
	if ref := metav1.GetControllerOf(pod); ref != nil && ref.UID != "" {
		// A 64-bit hash keys the per-node counts: integer map lookups keep
		// scoring 1,000 nodes cheap, and collisions are negligible.
		h := fnv.New64a()
		h.Write([]byte(ref.UID))
		pi.owner = h.Sum64() | 1
	}
	h := fnv.New64a()
	if pod.UID != "" {
		h.Write([]byte(pod.UID))
	} else {
		h.Write([]byte(pod.Namespace + "/" + pod.Name))
	}
	pi.hashSeed = h.Sum64()
	return pi
}

// hostPort is one (hostIP, protocol, port) a pod claims on its node.
type hostPort struct {
	ip       string // "0.0.0.0" means every address
	protocol corev1.Protocol
	port     int32
}

type protoPort struct {
	protocol corev1.Protocol
	port     int32
}

const anyIP = "0.0.0.0"

func podHostPorts(pod *corev1.Pod) []hostPort {
	var out []hostPort
	add := func(cs []corev1.Container, onlySidecars bool) {
		for i := range cs {
			c := &cs[i]
			if onlySidecars && (c.RestartPolicy == nil || *c.RestartPolicy != corev1.ContainerRestartPolicyAlways) {
				continue
			}
			for _, p := range c.Ports {
				if p.HostPort <= 0 {
					continue
				}
				hp := hostPort{ip: p.HostIP, protocol: p.Protocol, port: p.HostPort}
				if hp.ip == "" || hp.ip == "::" {
					hp.ip = anyIP
				}
				if hp.protocol == "" {
					hp.protocol = corev1.ProtocolTCP
				}
				out = append(out, hp)
			}
		}
	}
	add(pod.Spec.InitContainers, true)
	add(pod.Spec.Containers, false)
	return out
}

// NodeInfo is a node plus the aggregate of the pods placed on it: the unit
// the filters and scores work on. The loop keeps one per node up to date
// incrementally; tests and Schedule build them from a snapshot.
type NodeInfo struct {
	node        *corev1.Node
	allocatable Resources
	allocPods   int64
	notReady    *corev1.Taint // implied taint when the Ready condition is not True
	nameHash    uint64

	pods      map[types.UID]*podInfo
	requested Resources
	nonZero   Resources
	ports     map[protoPort]map[string]int
	owners    map[uint64]int
}

func newNodeInfo() *NodeInfo {
	return &NodeInfo{
		pods:   map[types.UID]*podInfo{},
		ports:  map[protoPort]map[string]int{},
		owners: map[uint64]int{},
	}
}

// Node returns the node, nil while only pods naming it are known.
func (n *NodeInfo) Node() *corev1.Node { return n.node }

// NumPods is the number of non-terminated pods accounted on the node.
func (n *NodeInfo) NumPods() int { return len(n.pods) }

// Requested is the sum of the accounted pods' requests.
func (n *NodeInfo) Requested() Resources { return n.requested }

func (n *NodeInfo) setNode(node *corev1.Node) {
	n.node = node
	n.allocatable, n.allocPods = nodeAllocatable(node)
	n.notReady = impliedReadinessTaint(node)
	h := fnv.New64a()
	h.Write([]byte(node.Name))
	n.nameHash = h.Sum64()
}

func (n *NodeInfo) addPod(pi *podInfo) {
	uid := pi.pod.UID
	if old, ok := n.pods[uid]; ok {
		n.removePod(old)
	}
	n.pods[uid] = pi
	n.requested.add(pi.req)
	n.nonZero.add(pi.nonZero)
	for _, hp := range pi.ports {
		k := protoPort{hp.protocol, hp.port}
		m := n.ports[k]
		if m == nil {
			m = map[string]int{}
			n.ports[k] = m
		}
		m[hp.ip]++
	}
	if pi.owner != 0 {
		n.owners[pi.owner]++
	}
}

func (n *NodeInfo) removePod(pi *podInfo) {
	uid := pi.pod.UID
	cur, ok := n.pods[uid]
	if !ok {
		return
	}
	delete(n.pods, uid)
	n.requested.sub(cur.req)
	n.nonZero.sub(cur.nonZero)
	for _, hp := range cur.ports {
		k := protoPort{hp.protocol, hp.port}
		if m := n.ports[k]; m != nil {
			m[hp.ip]--
			if m[hp.ip] <= 0 {
				delete(m, hp.ip)
			}
			if len(m) == 0 {
				delete(n.ports, k)
			}
		}
	}
	if cur.owner != 0 {
		n.owners[cur.owner]--
		if n.owners[cur.owner] <= 0 {
			delete(n.owners, cur.owner)
		}
	}
}

// NewNodeInfos builds one NodeInfo per node, accounting the given pods that
// are bound to one of them and not terminated. It is the snapshot the pure
// placement works on; the order of nodes is kept.
func NewNodeInfos(nodes []*corev1.Node, boundPods []*corev1.Pod) []*NodeInfo {
	out := make([]*NodeInfo, 0, len(nodes))
	byName := make(map[string]*NodeInfo, len(nodes))
	for _, node := range nodes {
		ni := newNodeInfo()
		ni.setNode(node)
		out = append(out, ni)
		byName[node.Name] = ni
	}
	for _, p := range boundPods {
		if !countsOnNode(p) {
			continue
		}
		if ni := byName[p.Spec.NodeName]; ni != nil {
			ni.addPod(newPodInfo(p))
		}
	}
	return out
}

// countsOnNode reports whether a pod holds resources on its node: it is bound
// and has not terminated.
func countsOnNode(p *corev1.Pod) bool {
	return p.Spec.NodeName != "" && p.Status.Phase != corev1.PodSucceeded && p.Status.Phase != corev1.PodFailed
}
