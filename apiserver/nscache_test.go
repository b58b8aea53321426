package apiserver

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestNSCacheKeepsNewestState(t *testing.T) {
	ns := func(rev string, terminating bool) *corev1.Namespace {
		n := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "a", ResourceVersion: rev}}
		if terminating {
			now := metav1.Now()
			n.DeletionTimestamp = &now
		}
		return n
	}
	c := newNSCache()
	if _, ok := c.get("a"); ok {
		t.Fatal("unknown namespace reported as cached")
	}
	c.observe(ns("5", false), false)
	if term, ok := c.get("a"); !ok || term {
		t.Fatalf("active namespace: term=%v ok=%v", term, ok)
	}
	c.observe(ns("7", true), false)
	// A reader that fetched revision 5 before the delete must not bring
	// the namespace back to active.
	c.observe(ns("5", false), false)
	if term, ok := c.get("a"); !ok || !term {
		t.Fatalf("terminating namespace: term=%v ok=%v", term, ok)
	}
	c.observe(ns("8", true), true)
	if _, ok := c.get("a"); ok {
		t.Fatal("deleted namespace must be looked up in the store")
	}
	c.observe(ns("7", true), false)
	if _, ok := c.get("a"); ok {
		t.Fatal("stale state revived a deleted namespace")
	}
	c.observe(ns("9", false), false) // re-created
	if term, ok := c.get("a"); !ok || term {
		t.Fatalf("re-created namespace: term=%v ok=%v", term, ok)
	}
}
