package apiserver

import (
	"strconv"
	"sync"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// nsCache remembers which namespaces exist and whether they are
// terminating, so that a namespaced create does not open a read
// transaction and decode the Namespace every time (it was a third of the
// create handler's CPU). Every namespace write goes through this server,
// which records the result after the store accepted it; entries carry the
// store revision so a slow reader can never overwrite a newer state. A
// miss or a deleted namespace falls back to the store.
type nsCache struct {
	mu sync.RWMutex
	m  map[string]nsState
}

type nsState struct {
	rev         int64
	terminating bool
	gone        bool
}

func newNSCache() *nsCache { return &nsCache{m: map[string]nsState{}} }

// get reports a live namespace's state; ok is false when the store must be
// asked (unknown or deleted).
func (c *nsCache) get(name string) (terminating, ok bool) {
	c.mu.RLock()
	st, found := c.m[name]
	c.mu.RUnlock()
	if !found || st.gone {
		return false, false
	}
	return st.terminating, true
}

// put records a state seen at rev unless a newer one is known.
func (c *nsCache) put(name string, st nsState) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if cur, ok := c.m[name]; ok && cur.rev >= st.rev {
		return
	}
	c.m[name] = st
}

// observe records a namespace as stored (deleted when gone).
func (c *nsCache) observe(obj runtime.Object, gone bool) {
	ns, ok := obj.(*corev1.Namespace)
	if !ok {
		return
	}
	rev, err := strconv.ParseInt(ns.ResourceVersion, 10, 64)
	if err != nil {
		return
	}
	c.put(ns.Name, nsState{rev: rev, gone: gone, terminating: namespaceTerminating(ns)})
}

func namespaceTerminating(ns *corev1.Namespace) bool {
	return ns.DeletionTimestamp != nil || ns.Status.Phase == corev1.NamespaceTerminating
}
