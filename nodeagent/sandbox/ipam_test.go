package sandbox

import (
	"net"
	"path/filepath"
	"testing"
)

func cidr(s string) *net.IPNet { _, n, _ := net.ParseCIDR(s); return n }

func TestAllocate(t *testing.T) {
	for _, tc := range []struct {
		name  string
		cidr  string
		start Allocations
		uid   string
		want  string
		err   bool
	}{
		{"first address skips network and gateway", "10.244.1.0/24", Allocations{}, "a", "10.244.1.2", false},
		{"continues after last", "10.244.1.0/24", Allocations{CIDR: "10.244.1.0/24", Last: "10.244.1.7", Owner: map[string]string{}}, "a", "10.244.1.8", false},
		{"same uid same address", "10.244.1.0/24", Allocations{CIDR: "10.244.1.0/24", Last: "10.244.1.9", Owner: map[string]string{"10.244.1.3": "a"}}, "a", "10.244.1.3", false},
		{"wraps, never broadcast", "10.244.1.0/24", Allocations{CIDR: "10.244.1.0/24", Last: "10.244.1.254", Owner: map[string]string{}}, "b", "10.244.1.2", false},
		{"skips taken", "10.244.1.0/24", Allocations{CIDR: "10.244.1.0/24", Last: "10.244.1.2", Owner: map[string]string{"10.244.1.3": "x", "10.244.1.4": "y"}}, "b", "10.244.1.5", false},
		{"exhausted /30", "10.0.0.0/30", Allocations{CIDR: "10.0.0.0/30", Owner: map[string]string{"10.0.0.2": "x"}}, "b", "", true},
		{"new CIDR voids old leases", "10.244.2.0/24", Allocations{CIDR: "10.244.1.0/24", Last: "10.244.1.50", Owner: map[string]string{"10.244.1.3": "a"}}, "a", "10.244.2.2", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := tc.start
			ip, err := a.Allocate(cidr(tc.cidr), tc.uid)
			if (err != nil) != tc.err {
				t.Fatalf("err = %v, want error %v", err, tc.err)
			}
			if !tc.err && ip.String() != tc.want {
				t.Fatalf("got %s, want %s", ip, tc.want)
			}
		})
	}
}

func TestReleasedAddressNotReusedAtOnce(t *testing.T) {
	var a Allocations
	c := cidr("10.244.1.0/24")
	ip1, _ := a.Allocate(c, "a")
	a.Release("a")
	ip2, _ := a.Allocate(c, "b")
	if ip1.Equal(ip2) {
		t.Fatalf("freed %s handed out again immediately", ip1)
	}
}

func TestIPAMPersists(t *testing.T) {
	p := filepath.Join(t.TempDir(), "ipam.json")
	c := cidr("10.244.3.0/24")
	m := NewIPAM(p, c)
	a, err := m.Allocate("pod-a")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := m.Allocate("pod-b")
	// A restarted agent: a new IPAM on the same file.
	m2 := NewIPAM(p, c)
	again, _ := m2.Allocate("pod-a")
	if !again.Equal(a) {
		t.Fatalf("pod-a got %s after restart, had %s", again, a)
	}
	cNew, _ := m2.Allocate("pod-c")
	if cNew.Equal(a) || cNew.Equal(b) {
		t.Fatalf("pod-c got a live address %s", cNew)
	}
	if err := m2.Release("pod-b"); err != nil {
		t.Fatal(err)
	}
	owners, _ := NewIPAM(p, c).Owners()
	if len(owners) != 2 || owners[0] != "pod-a" || owners[1] != "pod-c" {
		t.Fatalf("owners = %v", owners)
	}
}
