package controller

import "testing"

func TestCIDRAllocator(t *testing.T) {
	a, err := newCIDRAllocator("10.244.0.0/16", 24)
	if err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		op, node, want string
	}{
		{"alloc", "node-1", "10.244.1.0/24"}, // block 0 is never handed out
		{"alloc", "node-2", "10.244.2.0/24"},
		{"alloc", "node-1", "10.244.1.0/24"},  // asking again gives the same block
		{"occupy", "node-9", "10.244.3.0/24"}, // held by a node before a restart
		{"alloc", "node-3", "10.244.4.0/24"},
		{"release", "node-2", ""},
		{"alloc", "node-4", "10.244.2.0/24"}, // freed only once its node is gone
	}
	for i, s := range steps {
		switch s.op {
		case "alloc":
			got, err := a.allocate(s.node)
			if err != nil || got != s.want {
				t.Fatalf("step %d: allocate(%s) = %q, %v; want %q", i, s.node, got, err, s.want)
			}
		case "occupy":
			a.occupy(s.node, s.want)
		case "release":
			a.release(s.node)
		}
	}
	for _, bad := range []struct {
		cidr string
		size int
	}{{"10.244.0.0/16", 8}, {"nonsense", 24}, {"fd00::/64", 80}} {
		if _, err := newCIDRAllocator(bad.cidr, bad.size); err == nil {
			t.Errorf("newCIDRAllocator(%s, %d) accepted", bad.cidr, bad.size)
		}
	}
	small, _ := newCIDRAllocator("10.0.0.0/23", 24) // two blocks, block 0 reserved
	if _, err := small.allocate("a"); err != nil {
		t.Fatal(err)
	}
	if _, err := small.allocate("b"); err == nil {
		t.Error("allocated beyond the cluster CIDR")
	}
	if got := a.index("10.244.5.7/24"); got != -1 {
		t.Errorf("index of a non-block address = %d", got)
	}
}
