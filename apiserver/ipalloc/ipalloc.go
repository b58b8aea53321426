// Package ipalloc hands out Service ClusterIPs from a CIDR and NodePorts from
// a port range. It keeps its state in memory only: the API server rebuilds it
// at start from the Services in the store (which are the durable record of
// every allocation), so nothing is allocated twice after a restart.
package ipalloc

import (
	"errors"
	"fmt"
	"math/big"
	"math/rand/v2"
	"net"
	"strconv"
	"strings"
	"sync"
)

// Errors, matched by the API server to build kube-apiserver's messages.
var (
	ErrAllocated  = errors.New("provided IP is already allocated")
	ErrFull       = errors.New("range is full")
	ErrNotInRange = errors.New("not in range")
)

// IPRange allocates addresses from one IPv4 or IPv6 CIDR. The network address
// is never handed out; for IPv4 neither is the broadcast address. The first
// usable address is reserved for the `kubernetes` Service: Allocate never
// returns it, AllocateIP gives it only to the reserved owner.
type IPRange struct {
	mu       sync.Mutex
	cidr     *net.IPNet
	base     *big.Int
	size     int64 // usable offsets are 1..size
	used     map[int64]string
	next     int64
	reserved string // owner allowed to take offset 1
}

// NewIPRange parses cidr; reservedOwner (e.g. "default/kubernetes") may take the first address.
func NewIPRange(cidr, reservedOwner string) (*IPRange, error) {
	_, n, err := net.ParseCIDR(cidr)
	if err != nil {
		return nil, fmt.Errorf("service CIDR %q: %w", cidr, err)
	}
	ones, bits := n.Mask.Size()
	hostBits := bits - ones
	if hostBits > 62 {
		hostBits = 62
	}
	size := int64(1)<<hostBits - 1 // exclude the network address
	if bits == 32 {
		size-- // and the broadcast
	}
	if size < 2 {
		return nil, fmt.Errorf("service CIDR %q is too small", cidr)
	}
	return &IPRange{cidr: n, base: new(big.Int).SetBytes(n.IP.To16()), size: size,
		used: map[int64]string{}, next: 2, reserved: reservedOwner}, nil
}

// CIDR returns the range as a string.
func (r *IPRange) CIDR() string { return r.cidr.String() }

// First is the first usable address (the `kubernetes` Service's).
func (r *IPRange) First() net.IP { return r.ipAt(1) }

func (r *IPRange) ipAt(off int64) net.IP {
	v := new(big.Int).Add(r.base, big.NewInt(off))
	b := v.Bytes()
	ip := make(net.IP, 16)
	copy(ip[16-len(b):], b)
	if r.cidr.IP.To4() != nil {
		return ip.To4()
	}
	return ip
}

func (r *IPRange) offset(ip net.IP) (int64, bool) {
	if ip == nil || !r.cidr.Contains(ip) {
		return 0, false
	}
	off := new(big.Int).Sub(new(big.Int).SetBytes(ip.To16()), r.base).Int64()
	if off < 1 || off > r.size {
		return 0, false
	}
	return off, true
}

// AllocateIP marks ip as used by owner. Re-allocating an address to its own
// owner succeeds (idempotent restarts and retries).
func (r *IPRange) AllocateIP(ip net.IP, owner string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	off, ok := r.offset(ip)
	if !ok {
		return ErrNotInRange
	}
	if cur, taken := r.used[off]; taken && cur != owner {
		return ErrAllocated
	}
	if off == 1 && owner != r.reserved {
		return ErrAllocated
	}
	r.used[off] = owner
	return nil
}

// Allocate picks a free address for owner, scanning from a moving cursor.
func (r *IPRange) Allocate(owner string) (net.IP, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if int64(len(r.used)) >= r.size-1 {
		return nil, ErrFull
	}
	// Start at a random offset so that a range with holes fills evenly and
	// a restarted server does not probe the same taken addresses first.
	if r.next < 2 || r.next > r.size {
		r.next = 2
	}
	start := r.next
	if r.size > 16 {
		start = 2 + rand.Int64N(r.size-1)
	}
	for i := int64(0); i < r.size; i++ {
		off := 2 + (start-2+i)%(r.size-1)
		if _, taken := r.used[off]; !taken {
			r.used[off] = owner
			r.next = off + 1
			return r.ipAt(off), nil
		}
	}
	return nil, ErrFull
}

// Release frees ip if owner holds it.
func (r *IPRange) Release(ip net.IP, owner string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if off, ok := r.offset(ip); ok && r.used[off] == owner {
		delete(r.used, off)
	}
}

// Owner says who holds ip ("" if free).
func (r *IPRange) Owner(ip net.IP) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	off, ok := r.offset(ip)
	if !ok {
		return ""
	}
	return r.used[off]
}

// PortRange allocates ports from [Base, Base+Size).
type PortRange struct {
	mu   sync.Mutex
	Base int
	Size int
	used map[int]string
}

// ParsePortRange parses "30000-32767".
func ParsePortRange(s string) (*PortRange, error) {
	lo, hi, ok := strings.Cut(s, "-")
	a, err1 := strconv.Atoi(strings.TrimSpace(lo))
	b, err2 := strconv.Atoi(strings.TrimSpace(hi))
	if !ok || err1 != nil || err2 != nil || a < 1 || b > 65535 || b < a {
		return nil, fmt.Errorf("node port range %q: want LOW-HIGH", s)
	}
	return &PortRange{Base: a, Size: b - a + 1, used: map[int]string{}}, nil
}

func (p *PortRange) String() string { return fmt.Sprintf("%d-%d", p.Base, p.Base+p.Size-1) }

// AllocatePort marks port as used by owner (idempotent for the same owner).
func (p *PortRange) AllocatePort(port int, owner string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if port < p.Base || port >= p.Base+p.Size {
		return ErrNotInRange
	}
	if cur, taken := p.used[port]; taken && cur != owner {
		return ErrAllocated
	}
	p.used[port] = owner
	return nil
}

// Allocate picks a free port for owner.
func (p *PortRange) Allocate(owner string) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	start := rand.IntN(p.Size)
	for i := 0; i < p.Size; i++ {
		port := p.Base + (start+i)%p.Size
		if _, taken := p.used[port]; !taken {
			p.used[port] = owner
			return port, nil
		}
	}
	return 0, ErrFull
}

// Release frees port if owner holds it.
func (p *PortRange) Release(port int, owner string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.used[port] == owner {
		delete(p.used, port)
	}
}
