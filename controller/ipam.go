package controller

import (
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	listerscorev1 "k8s.io/client-go/listers/core/v1"
)

// cidrAllocator hands out fixed-size blocks of the cluster CIDR. Block 0 is
// never used, so node-1 naturally gets 10.244.1.0/24.
type cidrAllocator struct {
	mu     sync.Mutex
	base   uint32
	bits   int // block prefix length
	blocks int
	used   map[int]string // block index -> node name
}

func newCIDRAllocator(cidr string, maskSize int) (*cidrAllocator, error) {
	_, n, err := net.ParseCIDR(cidr)
	if err != nil || n.IP.To4() == nil {
		return nil, fmt.Errorf("cluster CIDR %q: want an IPv4 CIDR", cidr)
	}
	ones, _ := n.Mask.Size()
	if maskSize < ones || maskSize > 30 {
		return nil, fmt.Errorf("node CIDR mask size %d does not fit cluster CIDR %s", maskSize, cidr)
	}
	return &cidrAllocator{base: binary.BigEndian.Uint32(n.IP.To4()), bits: maskSize, blocks: 1 << (maskSize - ones), used: map[int]string{}}, nil
}

func (a *cidrAllocator) blockCIDR(i int) string {
	ip := make(net.IP, 4)
	binary.BigEndian.PutUint32(ip, a.base+uint32(i)<<(32-a.bits))
	return fmt.Sprintf("%s/%d", ip, a.bits)
}

// index returns the block index of cidr, or -1 when it is not one of ours.
func (a *cidrAllocator) index(cidr string) int {
	ip, n, err := net.ParseCIDR(cidr)
	if err != nil || ip.To4() == nil {
		return -1
	}
	if ones, _ := n.Mask.Size(); ones != a.bits {
		return -1
	}
	off := binary.BigEndian.Uint32(ip.To4()) - a.base
	i := int(off >> (32 - a.bits))
	if i < 0 || i >= a.blocks || a.blockCIDR(i) != cidr {
		return -1
	}
	return i
}

// occupy records a CIDR a node already holds (from the API, at start).
func (a *cidrAllocator) occupy(node, cidr string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if i := a.index(cidr); i >= 0 {
		a.used[i] = node
	}
}

// allocate returns the node's CIDR, taking the lowest free block for a new node.
func (a *cidrAllocator) allocate(node string) (string, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for i, n := range a.used {
		if n == node {
			return a.blockCIDR(i), nil
		}
	}
	// A node named like "node-3" gets block 3 when it is free, so the lab's
	// node-i has pod CIDR 10.244.i.0/24 whatever order the nodes join in.
	if i, ok := nodeNumber(node); ok && i < a.blocks {
		if _, taken := a.used[i]; !taken {
			a.used[i] = node
			return a.blockCIDR(i), nil
		}
	}
	for i := 1; i < a.blocks; i++ {
		if _, taken := a.used[i]; !taken {
			a.used[i] = node
			return a.blockCIDR(i), nil
		}
	}
	return "", fmt.Errorf("no free pod CIDR for node %s", node)
}

// nodeNumber reads the trailing "-N" of a node name (N >= 1).
func nodeNumber(name string) (int, bool) {
	i := strings.LastIndexByte(name, '-')
	if i < 0 {
		return 0, false
	}
	n, err := strconv.Atoi(name[i+1:])
	return n, err == nil && n >= 1 && name[i+1] != '0' && name[i+1] != '+'
}

// release frees the node's block once the node is gone.
func (a *cidrAllocator) release(node string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for i, n := range a.used {
		if n == node {
			delete(a.used, i)
		}
	}
}

type ipamController struct {
	d     *deps
	alloc *cidrAllocator
	nodes listerscorev1.NodeLister
	queue *queue
}

func newIPAMController(d *deps, alloc *cidrAllocator) (runner, error) {
	inf := d.factory.Core().V1().Nodes()
	c := &ipamController{d: d, alloc: alloc, nodes: inf.Lister()}
	c.queue = newQueue("ipam", d.log, c.sync)
	err := d.handle(inf.Informer(), cacheHandler(c.queue))
	return c, err
}

func (c *ipamController) run(ctx context.Context) {
	// Every CIDR already held is occupied before any new node is served, so
	// a restart never hands a held block to another node.
	nodes, _ := c.nodes.List(everything())
	for _, n := range nodes {
		if n.Spec.PodCIDR != "" {
			c.alloc.occupy(n.Name, n.Spec.PodCIDR)
		}
	}
	c.queue.run(ctx, 1)
}

func (c *ipamController) sync(ctx context.Context, name string) error {
	node, err := c.nodes.Get(name)
	if isNotFound(err) {
		c.alloc.release(name)
		return nil
	}
	if err != nil {
		return err
	}
	if node.Spec.PodCIDR != "" {
		c.alloc.occupy(name, node.Spec.PodCIDR)
		return nil
	}
	cidr, err := c.alloc.allocate(name)
	if err != nil {
		return err
	}
	patch := fmt.Sprintf(`{"spec":{"podCIDR":%q,"podCIDRs":[%q]}}`, cidr, cidr)
	if _, err := c.d.client.CoreV1().Nodes().Patch(ctx, name, types.StrategicMergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		return fmt.Errorf("assign pod CIDR %s to node %s: %w", cidr, name, err)
	}
	return nil
}

var _ = corev1.NodeReady
