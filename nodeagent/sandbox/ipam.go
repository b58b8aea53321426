package sandbox

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"sort"
	"sync"
)

// Allocations is the IPAM state of one node: which pod UID owns which IP, and
// the last address handed out. Allocation continues after Last, so an address
// freed by a deleted pod is reused only after the whole range went round, which
// keeps stale connections and caches from reaching a new pod.
type Allocations struct {
	CIDR  string            `json:"cidr"`
	Last  string            `json:"last,omitempty"`
	Owner map[string]string `json:"owner"` // ip -> pod UID
}

// ErrExhausted means every usable address of the pod CIDR is taken.
var ErrExhausted = errors.New("pod CIDR exhausted")

// Gateway is the node-side address of every pod link: the first host address
// of the pod CIDR.
func Gateway(cidr *net.IPNet) net.IP { return offset(cidr.IP.Mask(cidr.Mask), 1) }

func offset(ip net.IP, n int64) net.IP {
	ip4 := ip.To4()
	v := new(big.Int).SetBytes(ip4)
	v.Add(v, big.NewInt(n))
	b := v.Bytes()
	out := make(net.IP, 4)
	copy(out[4-len(b):], b)
	return out
}

// usable reports the first and last assignable offsets: the network address,
// the gateway (.1) and the broadcast address are never given to pods.
func usable(cidr *net.IPNet) (first, last int64) {
	ones, bits := cidr.Mask.Size()
	size := int64(1) << uint(bits-ones)
	return 2, size - 2
}

// Allocate returns the IP owned by uid, or the next free one after Last. It is
// pure: it changes only the receiver.
func (a *Allocations) Allocate(cidr *net.IPNet, uid string) (net.IP, error) {
	if a.Owner == nil {
		a.Owner = map[string]string{}
	}
	if a.CIDR != cidr.String() {
		// A new pod CIDR (node re-registered elsewhere): old leases are void.
		*a = Allocations{CIDR: cidr.String(), Owner: map[string]string{}}
	}
	for ip, owner := range a.Owner {
		if owner == uid {
			return net.ParseIP(ip).To4(), nil
		}
	}
	first, last := usable(cidr)
	if last < first {
		return nil, ErrExhausted
	}
	base := cidr.IP.Mask(cidr.Mask)
	start := first
	if l := net.ParseIP(a.Last).To4(); l != nil && cidr.Contains(l) {
		cur := new(big.Int).Sub(new(big.Int).SetBytes(l), new(big.Int).SetBytes(base.To4())).Int64()
		start = cur + 1
	}
	n := last - first + 1
	for i := int64(0); i < n; i++ {
		off := first + ((start-first)+i)%n
		if off < first {
			off += n
		}
		ip := offset(base, off)
		if _, taken := a.Owner[ip.String()]; !taken {
			a.Owner[ip.String()] = uid
			a.Last = ip.String()
			return ip, nil
		}
	}
	return nil, ErrExhausted
}

// Release frees whatever uid owns.
func (a *Allocations) Release(uid string) {
	for ip, owner := range a.Owner {
		if owner == uid {
			delete(a.Owner, ip)
		}
	}
}

// Owners lists the pod UIDs holding an address, sorted.
func (a *Allocations) Owners() []string {
	var out []string
	for _, o := range a.Owner {
		out = append(out, o)
	}
	sort.Strings(out)
	return out
}

// IPAM persists Allocations in a JSON file so a restarted agent neither hands
// a live pod's address to another pod nor forgets what it handed out.
type IPAM struct {
	mu   sync.Mutex
	path string
	cidr *net.IPNet
	// cur is the file's content once read: this agent is its only writer,
	// so a burst of pods costs one write each, not a read and a parse too.
	cur *Allocations
}

// NewIPAM uses the file at path for the pod CIDR cidr.
func NewIPAM(path string, cidr *net.IPNet) *IPAM { return &IPAM{path: path, cidr: cidr} }

func (m *IPAM) load() (*Allocations, error) {
	if m.cur != nil {
		return m.cur, nil
	}
	a, err := m.read()
	if err == nil {
		m.cur = a
	}
	return a, err
}

func (m *IPAM) read() (*Allocations, error) {
	var a Allocations
	b, err := os.ReadFile(m.path)
	if errors.Is(err, os.ErrNotExist) {
		return &Allocations{CIDR: m.cidr.String(), Owner: map[string]string{}}, nil
	}
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(b, &a); err != nil {
		return nil, fmt.Errorf("parse %s: %w", m.path, err)
	}
	return &a, nil
}

// save writes a; on failure the cached state is dropped, so the next load
// reads what the file really holds.
func (m *IPAM) save(a *Allocations) (err error) {
	defer func() {
		if err != nil {
			m.cur = nil
		}
	}()
	b, err := json.Marshal(a)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(m.path), 0o700); err != nil {
		return err
	}
	tmp := m.path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, m.path)
}

// Allocate gives uid its address, persisting the choice before returning it.
func (m *IPAM) Allocate(uid string) (net.IP, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	a, err := m.load()
	if err != nil {
		return nil, err
	}
	ip, err := a.Allocate(m.cidr, uid)
	if err != nil {
		m.cur = nil // Allocate may have changed a before failing
		return nil, err
	}
	return ip, m.save(a)
}

// Release frees uid's address.
func (m *IPAM) Release(uid string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	a, err := m.load()
	if err != nil {
		return err
	}
	a.Release(uid)
	return m.save(a)
}

// Owners lists the UIDs that hold addresses.
func (m *IPAM) Owners() ([]string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	a, err := m.load()
	if err != nil {
		return nil, err
	}
	return a.Owners(), nil
}

// Leases maps each pod UID holding an address to that address.
func (m *IPAM) Leases() (map[string]net.IP, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	a, err := m.load()
	if err != nil {
		return nil, err
	}
	out := map[string]net.IP{}
	for ip, uid := range a.Owner {
		out[uid] = net.ParseIP(ip).To4()
	}
	return out, nil
}
