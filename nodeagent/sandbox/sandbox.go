// Package sandbox builds and removes pod sandboxes: a named network namespace
// per pod, joined to the node's namespace by a veth pair, with one IP from the
// node's pod CIDR, and the node-side address bookkeeping (IPAM).
//
// Addressing is point-to-point, as the CNI ptp plugin does: the pod's eth0 has
// its IP as a /32 with a default route via the gateway (the pod CIDR's .1,
// reached on-link), and every host-side veth carries that same gateway
// address as a /32 plus a /32 route to its pod. There is no bridge to manage,
// each pod's traffic enters the node's routing (and so its iptables) on its
// own link, and deleting a pod is deleting one link.
package sandbox

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/kubelab/kubelab/nodeagent/internal/netnsdir"
	"github.com/kubelab/kubelab/nodeagent/internal/nlutil"
)

// NetnsDir is where named namespaces are bind-mounted (as `ip netns` does).
const NetnsDir = netnsdir.Path

// HostLinkPrefix starts every host-side pod veth name ("kl-" + 12 hex digits).
const HostLinkPrefix = "kl-"

// isPodLink matches exactly the names HostLinkName makes.
func isPodLink(name string) bool {
	if len(name) != len(HostLinkPrefix)+12 || !strings.HasPrefix(name, HostLinkPrefix) {
		return false
	}
	for _, c := range name[len(HostLinkPrefix):] {
		if !strings.ContainsRune("0123456789abcdef", c) {
			return false
		}
	}
	return true
}

// Manager creates sandboxes whose namespaces are named Prefix+hash(uid).
type Manager struct {
	Prefix string     // e.g. "kubelab-node-1-": keeps nodes and labs apart
	CIDR   *net.IPNet // node's pod CIDR
	// Node is a netlink handle for the node's namespace, where host-side links
	// live; nil means the caller's own namespace (the agent runs inside it).
	Node *netlink.Handle

	once sync.Once
	own  *netlink.Handle
}

// nl is the node-side handle. Without Node, one socket opened in the
// caller's namespace on first use serves every request (a socket per
// request costs five more system calls each time).
func (m *Manager) nl() *netlink.Handle {
	if m.Node != nil {
		return m.Node
	}
	m.once.Do(func() {
		h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
		if err != nil {
			h = &netlink.Handle{} // a socket per request, as a fallback
		}
		m.own = h
	})
	return m.own
}

// Sandbox is one pod's network.
type Sandbox struct {
	UID      string
	Netns    string // name under NetnsDir
	HostLink string
	IP       net.IP
}

// Path is the namespace's bind-mount path; a host-network pod (Netns empty)
// runs in the agent's own namespace.
func (s Sandbox) Path() string {
	if s.Netns == "" {
		return "/proc/self/ns/net"
	}
	return filepath.Join(NetnsDir, s.Netns)
}

// HostNetwork reports whether the pod shares the node's namespace.
func (s Sandbox) HostNetwork() bool { return s.Netns == "" }

func hash(uid string) string {
	sum := sha256.Sum256([]byte(uid))
	return hex.EncodeToString(sum[:])[:12]
}

// NetnsName is the namespace name of pod uid.
func (m *Manager) NetnsName(uid string) string { return m.Prefix + hash(uid) }

// HostLinkName is the node-side veth name of pod uid (15 bytes, IFNAMSIZ-1).
func HostLinkName(uid string) string { return HostLinkPrefix + hash(uid) }

// Create builds the sandbox of uid with address ip. Leftovers of an earlier
// attempt (namespace file, host link) are removed when they are in the way.
//
// Every netlink request below takes the kernel's one rtnl lock, shared by
// every namespace on the host (other nodes' agents included), and a burst of
// pods queues on it; so the sandbox is built in as few requests as the
// kernel allows: point-to-point addresses (a local address with its peer)
// make the kernel add the /32 route to the peer itself, the host link is
// created up, and loopback is known by its fixed index.
func (m *Manager) Create(uid string, ip net.IP) (sb *Sandbox, err error) {
	sb = &Sandbox{UID: uid, Netns: m.NetnsName(uid), HostLink: HostLinkName(uid), IP: ip.To4()}
	defer func() {
		if err != nil {
			_ = m.Delete(uid)
		}
	}()
	ns, pod, err := newNamed(sb.Netns)
	if err != nil {
		return nil, fmt.Errorf("create netns %s: %w", sb.Netns, err)
	}
	defer ns.Close()
	defer pod.Close()
	gw := Gateway(m.CIDR)
	host32 := &net.IPNet{IP: gw, Mask: net.CIDRMask(32, 32)}
	pod32 := &net.IPNet{IP: sb.IP, Mask: net.CIDRMask(32, 32)}
	// The peer is born inside the pod's namespace as eth0 (no rename).
	veth := &netlink.Veth{
		LinkAttrs:     netlink.LinkAttrs{Name: sb.HostLink, TxQLen: 1000, Flags: net.FlagUp},
		PeerName:      "eth0",
		PeerNamespace: netlink.NsFd(int(ns)),
	}
	nh := m.nl()
	if err := nh.LinkAdd(veth); errors.Is(err, syscall.EEXIST) {
		// A host link left by an earlier attempt: its pair goes with it.
		if l, lerr := nh.LinkByName(sb.HostLink); lerr == nil {
			_ = nh.LinkDel(l)
		}
		veth.Index = 0
		err = nh.LinkAdd(veth)
		if err != nil {
			return nil, fmt.Errorf("add veth %s: %w", sb.HostLink, err)
		}
	} else if err != nil {
		return nil, fmt.Errorf("add veth %s: %w", sb.HostLink, err)
	}
	if veth.Index == 0 { // LinkAdd looks the index up, ignoring failure
		host, err := nh.LinkByName(sb.HostLink)
		if err != nil {
			return nil, err
		}
		veth.Index = host.Attrs().Index
	}
	if err := nh.AddrAdd(veth, &netlink.Addr{IPNet: host32, Peer: pod32}); err != nil {
		return nil, fmt.Errorf("gateway address on %s: %w", sb.HostLink, err)
	}
	pl, err := pod.LinkByName("eth0")
	if err != nil {
		return nil, err
	}
	if err := pod.AddrAdd(pl, &netlink.Addr{IPNet: pod32, Peer: host32}); err != nil {
		return nil, fmt.Errorf("pod address %s: %w", sb.IP, err)
	}
	if err := pod.LinkSetUp(pl); err != nil {
		return nil, err
	}
	if err := pod.LinkSetUp(&netlink.Device{LinkAttrs: netlink.LinkAttrs{Name: "lo", Index: loopbackIndex}}); err != nil {
		return nil, err
	}
	if err := pod.RouteAdd(&netlink.Route{LinkIndex: pl.Attrs().Index, Gw: gw}); err != nil {
		return nil, fmt.Errorf("pod default route: %w", err)
	}
	return sb, nil
}

// loopbackIndex is the ifindex the kernel gives "lo" in every namespace.
const loopbackIndex = 1

// podSysctls let unprivileged containers bind low ports and ping, as a
// container runtime allows inside a pod's own namespace.
var podSysctls = map[string]string{
	"net/ipv4/ip_unprivileged_port_start": "0",
	"net/ipv4/ping_group_range":           "0 2147483647",
	// Pods are IPv4 only: eth0, created after this, gets no IPv6 address
	// configuration (link-local address, duplicate detection, multicast
	// joins), work that would queue on the kernel's rtnl lock. Only the
	// default is set; "all" would walk every device under that lock.
	"net/ipv6/conf/default/disable_ipv6": "1",
}

// newNamed creates a named namespace, sets its sysctls and opens a netlink
// handle inside it, without leaving the calling thread (or any other Go
// thread) inside it. A file of the same name left by an earlier attempt is
// removed first.
func newNamed(name string) (netns.NsHandle, *netlink.Handle, error) {
	if _, err := os.Lstat(filepath.Join(NetnsDir, name)); err == nil {
		if err := removeNamed(name); err != nil {
			return netns.None(), nil, err
		}
	}
	if err := netnsdir.Prepare(); err != nil {
		return netns.None(), nil, err
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		return netns.None(), nil, err
	}
	defer orig.Close()
	ns, err := netns.NewNamed(name)
	var serr error
	var h *netlink.Handle
	if err == nil {
		for k, v := range podSysctls {
			if werr := os.WriteFile(filepath.Join("/proc/sys", k), []byte(v), 0o644); werr != nil && serr == nil {
				serr = fmt.Errorf("sysctl %s: %w", k, werr)
			}
		}
		if serr == nil {
			// Opened here, the socket belongs to the pod's namespace for
			// good: no second trip into it later.
			h, serr = netlink.NewHandle(unix.NETLINK_ROUTE)
		}
	}
	if rerr := netns.Set(orig); rerr != nil {
		// This thread sits in the wrong namespace: never hand it back to Go.
		runtime.LockOSThread()
		if h != nil {
			h.Close()
		}
		return netns.None(), nil, fmt.Errorf("return to node namespace: %w", rerr)
	}
	if err != nil {
		// NewNamed may have left the file behind when the bind mount failed.
		_ = os.Remove(filepath.Join(NetnsDir, name))
		return netns.None(), nil, err
	}
	if serr != nil {
		ns.Close()
		return netns.None(), nil, serr
	}
	return ns, h, nil
}

// Delete removes uid's host link and namespace; missing pieces are fine.
// Processes still inside the namespace keep it alive, so callers stop them first.
func (m *Manager) Delete(uid string) error {
	var errs []error
	if l, err := m.nl().LinkByName(HostLinkName(uid)); err == nil {
		if err := m.nl().LinkDel(l); err != nil && !errors.Is(err, syscall.ENODEV) {
			errs = append(errs, fmt.Errorf("delete link %s: %w", l.Attrs().Name, err))
		}
	}
	if err := removeNamed(m.NetnsName(uid)); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// removeNamed unmounts and removes a named namespace. A plain file (a mount
// made in another mount namespace that has since gone) is simply removed.
func removeNamed(name string) error {
	p := filepath.Join(NetnsDir, name)
	if err := syscall.Unmount(p, syscall.MNT_DETACH); err != nil && !errors.Is(err, syscall.EINVAL) && !errors.Is(err, syscall.ENOENT) {
		return fmt.Errorf("unmount %s: %w", p, err)
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove %s: %w", p, err)
	}
	return nil
}

// Exists reports whether uid's namespace and host link are both present.
func (m *Manager) Exists(uid string) bool {
	if _, err := m.nl().LinkByName(HostLinkName(uid)); err != nil {
		return false
	}
	h, err := netns.GetFromPath(filepath.Join(NetnsDir, m.NetnsName(uid)))
	if err != nil {
		return false
	}
	defer h.Close()
	var st syscall.Stat_t
	if err := syscall.Fstat(int(h), &st); err != nil {
		return false
	}
	return st.Dev != 0 && isNetns(int(h))
}

// isNetns tells a mounted namespace from the empty file left when its mount is gone.
func isNetns(fd int) bool {
	var st syscall.Statfs_t
	if err := syscall.Fstatfs(fd, &st); err != nil {
		return false
	}
	const nsfsMagic = 0x6e736673
	return st.Type == nsfsMagic
}

// Adopt takes over the sandbox of uid that an earlier agent made, given a
// process running inside it: the namespace is mounted again at its name when
// this mount namespace lacks the mount (an agent started by `ip netns exec`
// gets a fresh mount namespace each time), and the host link must still be
// there. ip is the address leased to uid; the pod's eth0 must carry it.
func (m *Manager) Adopt(uid string, ip net.IP, pid int) (*Sandbox, error) {
	sb := &Sandbox{UID: uid, Netns: m.NetnsName(uid), HostLink: HostLinkName(uid), IP: ip.To4()}
	procNS := fmt.Sprintf("/proc/%d/ns/net", pid)
	var want syscall.Stat_t
	if err := syscall.Stat(procNS, &want); err != nil {
		return nil, fmt.Errorf("namespace of pid %d: %w", pid, err)
	}
	p := sb.Path()
	var have syscall.Stat_t
	if err := syscall.Stat(p, &have); err != nil || have.Ino != want.Ino || have.Dev != want.Dev {
		_ = syscall.Unmount(p, syscall.MNT_DETACH)
		if err := netnsdir.Prepare(); err != nil {
			return nil, err
		}
		f, err := os.OpenFile(p, os.O_CREATE|os.O_RDONLY, 0o444)
		if err != nil {
			return nil, err
		}
		f.Close()
		if err := syscall.Mount(procNS, p, "none", syscall.MS_BIND, ""); err != nil {
			return nil, fmt.Errorf("mount %s at %s: %w", procNS, p, err)
		}
	}
	l, err := m.nl().LinkByName(sb.HostLink)
	if err != nil {
		return nil, fmt.Errorf("host link %s: %w", sb.HostLink, err)
	}
	if l.Attrs().OperState != netlink.OperUp && l.Attrs().Flags&net.FlagUp == 0 {
		return nil, fmt.Errorf("host link %s is down", sb.HostLink)
	}
	ns, err := netns.GetFromPath(p)
	if err != nil {
		return nil, err
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return nil, err
	}
	defer h.Close()
	eth0, err := h.LinkByName("eth0")
	if err != nil {
		return nil, fmt.Errorf("pod eth0: %w", err)
	}
	addrs, err := h.AddrList(eth0, netlink.FAMILY_V4)
	if err != nil {
		return nil, err
	}
	for _, a := range addrs {
		if a.IP.Equal(sb.IP) {
			return sb, nil
		}
	}
	return nil, fmt.Errorf("pod eth0 lacks its leased address %s", sb.IP)
}

// Cleanup removes every namespace named with the manager's prefix (killing the
// processes inside first) and every pod link in the current namespace. It is
// what `kubelab down` and a restarting agent use to leave nothing behind.
func (m *Manager) Cleanup() error { return m.CleanupExcept(nil) }

// CleanupExcept is Cleanup sparing the sandboxes of the pod UIDs in keep.
func (m *Manager) CleanupExcept(keep map[string]bool) error {
	keepNS, keepLink := map[string]bool{}, map[string]bool{}
	for uid := range keep {
		keepNS[m.NetnsName(uid)], keepLink[HostLinkName(uid)] = true, true
	}
	var errs []error
	entries, err := os.ReadDir(NetnsDir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, err)
	}
	for _, e := range entries {
		if m.Prefix == "" || !strings.HasPrefix(e.Name(), m.Prefix) || keepNS[e.Name()] {
			continue
		}
		KillProcessesIn(filepath.Join(NetnsDir, e.Name()))
		if err := removeNamed(e.Name()); err != nil {
			errs = append(errs, err)
		}
	}
	links, err := nlutil.LinkList(m.nl())
	if err != nil {
		errs = append(errs, err)
	}
	for _, l := range links {
		if isPodLink(l.Attrs().Name) && l.Type() == "veth" && !keepLink[l.Attrs().Name] {
			if err := m.nl().LinkDel(l); err != nil && !errors.Is(err, syscall.ENODEV) {
				var nf netlink.LinkNotFoundError
				if !errors.As(err, &nf) {
					errs = append(errs, fmt.Errorf("delete link %s: %w", l.Attrs().Name, err))
				}
			}
		}
	}
	return errors.Join(errs...)
}

// ProcessesIn lists PIDs whose network namespace is the one mounted at path.
func ProcessesIn(path string) []int {
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		return nil
	}
	want := fmt.Sprintf("net:[%d]", st.Ino)
	entries, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		if l, err := os.Readlink(filepath.Join("/proc", e.Name(), "ns", "net")); err == nil && l == want {
			pids = append(pids, pid)
		}
	}
	return pids
}

// KillProcessesIn SIGKILLs everything inside the namespace at path.
func KillProcessesIn(path string) {
	for _, pid := range ProcessesIn(path) {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
}

// Do runs fn on a thread switched into the namespace at path. Processes fn
// starts (exec.Cmd.Start) are born in that namespace, since a child inherits
// the namespaces of the thread that forks it.
func Do(path string, fn func() error) error {
	ns, err := netns.GetFromPath(path)
	if err != nil {
		return fmt.Errorf("open netns %s: %w", path, err)
	}
	defer ns.Close()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		return err
	}
	defer orig.Close()
	if err := netns.Set(ns); err != nil {
		return fmt.Errorf("enter netns %s: %w", path, err)
	}
	ferr := fn()
	if err := netns.Set(orig); err != nil {
		runtime.LockOSThread() // poisoned thread: let it die with the goroutine
		return fmt.Errorf("leave netns %s: %w", path, err)
	}
	return ferr
}
