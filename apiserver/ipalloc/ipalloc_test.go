package ipalloc

import (
	"errors"
	"net"
	"testing"
)

func TestIPRangeSmallCIDR(t *testing.T) {
	r, err := NewIPRange("10.0.0.0/29", "default/kubernetes")
	if err != nil {
		t.Fatal(err)
	}
	if got := r.First().String(); got != "10.0.0.1" {
		t.Fatalf("First = %s", got)
	}
	// .0 network, .7 broadcast, .1 reserved: .2-.6 are dynamic.
	seen := map[string]bool{}
	for i := 0; i < 5; i++ {
		ip, err := r.Allocate("ns/s" + string(rune('a'+i)))
		if err != nil {
			t.Fatalf("allocate %d: %v", i, err)
		}
		if s := ip.String(); seen[s] || s == "10.0.0.0" || s == "10.0.0.1" || s == "10.0.0.7" {
			t.Fatalf("bad or duplicate IP %s", s)
		}
		seen[ip.String()] = true
	}
	if _, err := r.Allocate("ns/full"); !errors.Is(err, ErrFull) {
		t.Fatalf("full range: %v", err)
	}
	r.Release(net.ParseIP("10.0.0.4"), "someone-else")
	if _, err := r.Allocate("ns/full"); !errors.Is(err, ErrFull) {
		t.Fatal("release by a non-owner freed the address")
	}
	owner := r.Owner(net.ParseIP("10.0.0.4"))
	r.Release(net.ParseIP("10.0.0.4"), owner)
	if ip, err := r.Allocate("ns/full"); err != nil || ip.String() != "10.0.0.4" {
		t.Fatalf("after release: %v %v", ip, err)
	}
}

func TestIPRangeAllocateIP(t *testing.T) {
	r, _ := NewIPRange("10.96.0.0/12", "default/kubernetes")
	cases := []struct {
		ip, owner string
		want      error
	}{
		{"10.96.0.1", "default/other", ErrAllocated},
		{"10.96.0.1", "default/kubernetes", nil},
		{"10.96.0.1", "default/kubernetes", nil}, // idempotent
		{"10.96.5.5", "a/x", nil},
		{"10.96.5.5", "a/y", ErrAllocated},
		{"10.96.5.5", "a/x", nil},
		{"10.112.0.1", "a/x", ErrNotInRange},
		{"10.96.0.0", "a/x", ErrNotInRange},
		{"10.111.255.255", "a/x", ErrNotInRange},
		{"10.111.255.254", "a/x", nil},
	}
	for _, c := range cases {
		if err := r.AllocateIP(net.ParseIP(c.ip), c.owner); !errors.Is(err, c.want) {
			t.Errorf("AllocateIP(%s, %s) = %v, want %v", c.ip, c.owner, err, c.want)
		}
	}
}

func TestPortRange(t *testing.T) {
	for _, bad := range []string{"", "30000", "3-2", "0-5", "1-70000", "a-b"} {
		if _, err := ParsePortRange(bad); err == nil {
			t.Errorf("ParsePortRange(%q) accepted", bad)
		}
	}
	p, err := ParsePortRange("30000-30002")
	if err != nil || p.String() != "30000-30002" {
		t.Fatal(p, err)
	}
	if err := p.AllocatePort(30001, "a/x"); err != nil {
		t.Fatal(err)
	}
	if err := p.AllocatePort(30001, "a/y"); !errors.Is(err, ErrAllocated) {
		t.Fatal(err)
	}
	if err := p.AllocatePort(29999, "a/y"); !errors.Is(err, ErrNotInRange) {
		t.Fatal(err)
	}
	got := map[int]bool{30001: true}
	for i := 0; i < 2; i++ {
		n, err := p.Allocate("b/z")
		if err != nil || got[n] {
			t.Fatalf("allocate: %d %v", n, err)
		}
		got[n] = true
	}
	if _, err := p.Allocate("b/z"); !errors.Is(err, ErrFull) {
		t.Fatal(err)
	}
	p.Release(30001, "a/x")
	if n, err := p.Allocate("c/c"); err != nil || n != 30001 {
		t.Fatal(n, err)
	}
}
