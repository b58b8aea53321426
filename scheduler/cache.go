package scheduler

import (
	"sort"
	"sync"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
)

// cache is the scheduler's view of nodes and of the pods holding resources
// on them, fed by the informers, plus the pods it has just placed and is
// binding ("assumed"): those count on their node at once, so the next
// decision does not reuse the same room before the informer reports the
// binding. An assumed pod becomes an ordinary one when the informer shows it
// bound, and is forgotten if its binding fails.
type cache struct {
	mu    sync.Mutex
	nodes map[string]*NodeInfo
	pods  map[types.UID]*cachedPod
	// list is the NodeInfos with a node, sorted by name; rebuilt lazily.
	list      []*NodeInfo
	listDirty bool
}

type cachedPod struct {
	info    *podInfo
	node    string
	assumed bool
}

func newCache() *cache {
	return &cache{nodes: map[string]*NodeInfo{}, pods: map[types.UID]*cachedPod{}}
}

func (c *cache) nodeInfo(name string) *NodeInfo {
	ni := c.nodes[name]
	if ni == nil {
		ni = newNodeInfo()
		c.nodes[name] = ni
	}
	return ni
}

func (c *cache) setNode(node *corev1.Node) {
	c.mu.Lock()
	defer c.mu.Unlock()
	ni := c.nodeInfo(node.Name)
	if ni.node == nil {
		c.listDirty = true
	}
	ni.setNode(node)
}

func (c *cache) removeNode(name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	ni := c.nodes[name]
	if ni == nil {
		return
	}
	ni.node = nil
	c.listDirty = true
	if len(ni.pods) == 0 {
		delete(c.nodes, name)
	}
}

// setPod records a pod the informer reports. Only bound, non-terminated pods
// hold resources; anything else is dropped from the accounting.
func (c *cache) setPod(pod *corev1.Pod) {
	c.mu.Lock()
	defer c.mu.Unlock()
	cur := c.pods[pod.UID]
	if !countsOnNode(pod) {
		if cur != nil && !(cur.assumed && pod.Spec.NodeName == "" && pod.Status.Phase != corev1.PodSucceeded && pod.Status.Phase != corev1.PodFailed) {
			c.unaccount(cur)
			delete(c.pods, pod.UID)
		}
		// An unbound pod we assumed stays assumed until its binding shows up.
		return
	}
	if cur != nil {
		c.unaccount(cur)
	}
	pi := newPodInfo(pod)
	c.pods[pod.UID] = &cachedPod{info: pi, node: pod.Spec.NodeName}
	c.nodeInfo(pod.Spec.NodeName).addPod(pi)
}

func (c *cache) removePod(pod *corev1.Pod) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if cur := c.pods[pod.UID]; cur != nil {
		c.unaccount(cur)
		delete(c.pods, pod.UID)
	}
}

func (c *cache) unaccount(cp *cachedPod) {
	ni := c.nodes[cp.node]
	if ni == nil {
		return
	}
	ni.removePod(cp.info)
	if ni.node == nil && len(ni.pods) == 0 {
		delete(c.nodes, cp.node)
	}
}

// isAssumed reports whether the pod was placed by us and is not yet seen bound.
func (c *cache) isAssumed(uid types.UID) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	cp := c.pods[uid]
	return cp != nil && cp.assumed
}

// schedule runs the placement against the current state and, when a node
// is found, assumes the pod there, all under one lock so that two decisions
// never see the same free room.
func (c *cache) schedule(pod *corev1.Pod) (string, *FitError) {
	pi := newPodInfo(pod)
	c.mu.Lock()
	defer c.mu.Unlock()
	node, fitErr := place(pi, c.sortedNodes())
	if fitErr != nil {
		return "", fitErr
	}
	// The pod's accounting does not depend on spec.nodeName, so the pending
	// object is kept as is; cachedPod.node says where it is assumed.
	if cur := c.pods[pod.UID]; cur != nil {
		c.unaccount(cur)
	}
	c.pods[pod.UID] = &cachedPod{info: pi, node: node, assumed: true}
	c.nodeInfo(node).addPod(pi)
	return node, nil
}

// forget drops an assumed pod whose binding failed.
func (c *cache) forget(uid types.UID) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if cp := c.pods[uid]; cp != nil && cp.assumed {
		c.unaccount(cp)
		delete(c.pods, uid)
	}
}

func (c *cache) sortedNodes() []*NodeInfo {
	if c.listDirty || c.list == nil {
		c.list = c.list[:0]
		for _, ni := range c.nodes {
			if ni.node != nil {
				c.list = append(c.list, ni)
			}
		}
		sort.Slice(c.list, func(i, j int) bool { return c.list[i].node.Name < c.list[j].node.Name })
		c.listDirty = false
	}
	return c.list
}

// nodeRequested returns what is accounted on a node (for tests).
func (c *cache) nodeRequested(name string) (Resources, int, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	ni := c.nodes[name]
	if ni == nil {
		return Resources{}, 0, false
	}
	return ni.requested, len(ni.pods), true
}
