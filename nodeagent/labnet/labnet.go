// Package labnet builds and removes the host side of a kubelab lab network:
// one isolated bridge in the host namespace and one network namespace per
// node, wired to the bridge by a veth pair. Pods, routes between nodes and
// iptables inside each node are the node agent's business, not this package's.
//
// Every object it creates carries the lab's name as a prefix, so two labs (or
// two tests) never collide and `down` can find what a crashed `up` left.
package labnet

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"

	"github.com/vishvananda/netlink"

	"github.com/vishvananda/netns"

	"github.com/kubelab/kubelab/nodeagent/internal/netnsdir"
	"github.com/kubelab/kubelab/nodeagent/internal/nlutil"
)

// netnsDir is where `ip netns` keeps named namespaces; using it keeps our
// namespaces visible to `ip netns list` and `ip netns exec`.
const netnsDir = netnsdir.Path

// MaxNameLen keeps "<name>-n<99>" within Linux's 15-byte interface names.
const MaxNameLen = 10

// Config describes a lab network.
type Config struct {
	// Name prefixes every host-level object (bridge <name>0, netns <name>-node-i, veth <name>-n<i>).
	Name string
	// Subnet is the bridge network; the bridge takes .254 and node i takes .i.
	Subnet *net.IPNet
	// ServiceCIDR is routed on-link via eth0 in each node namespace, so locally
	// originated connections to ClusterIPs reach the OUTPUT chain's DNAT.
	ServiceCIDR *net.IPNet
}

// DefaultSubnet and DefaultServiceCIDR are the design's lab addresses.
var (
	DefaultSubnet      = mustCIDR("10.200.0.0/24")
	DefaultServiceCIDR = mustCIDR("10.96.0.0/12")
)

func mustCIDR(s string) *net.IPNet {
	_, n, err := net.ParseCIDR(s)
	if err != nil {
		panic(err)
	}
	return n
}

// Validate checks the name fits the interface-name budget.
func (c Config) Validate() error {
	if c.Name == "" || len(c.Name) > MaxNameLen {
		return fmt.Errorf("lab name %q must be 1 to %d characters", c.Name, MaxNameLen)
	}
	for _, r := range c.Name {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-') {
			return fmt.Errorf("lab name %q may hold only lower-case letters, digits and '-'", c.Name)
		}
	}
	if c.Subnet == nil || c.ServiceCIDR == nil {
		return errors.New("lab subnet and service CIDR are required")
	}
	return nil
}

// BridgeName is the lab bridge in the host namespace.
func (c Config) BridgeName() string { return c.Name + "0" }

// NodeNamespace is the network namespace of node i (1-based).
func (c Config) NodeNamespace(node string) string { return c.Name + "-" + node }

// NodeName is the Kubernetes node name of node i (1-based).
func NodeName(i int) string { return fmt.Sprintf("node-%d", i) }

func (c Config) hostVeth(i int) string { return fmt.Sprintf("%s-n%d", c.Name, i) }

// BridgeIP is the host's address on the lab bridge (where the API listens).
func (c Config) BridgeIP() net.IP { return hostAddr(c.Subnet, 254) }

// NodeIP is node i's address on eth0.
func (c Config) NodeIP(i int) net.IP { return hostAddr(c.Subnet, byte(i)) }

func hostAddr(n *net.IPNet, last byte) net.IP {
	ip := make(net.IP, 4)
	copy(ip, n.IP.To4())
	ip[3] = last
	return ip
}

// Up creates the bridge and the namespaces of nodes 1..nodes. It is
// idempotent: whatever already exists with the right name is reused, so a
// lab brought back on the same data dir gets the same addresses.
func Up(c Config, nodes int) error {
	if err := c.Validate(); err != nil {
		return err
	}
	if nodes < 1 || nodes > 99 {
		return fmt.Errorf("node count %d out of range 1..99", nodes)
	}
	br, err := ensureBridge(c)
	if err != nil {
		return fmt.Errorf("lab bridge %s: %w", c.BridgeName(), err)
	}
	for i := 1; i <= nodes; i++ {
		if err := ensureNode(c, br, i); err != nil {
			return fmt.Errorf("lab node %s: %w", NodeName(i), err)
		}
	}
	return nil
}

func ensureBridge(c Config) (netlink.Link, error) {
	name := c.BridgeName()
	link, err := netlink.LinkByName(name)
	if err != nil {
		var notFound netlink.LinkNotFoundError
		if !errors.As(err, &notFound) {
			return nil, err
		}
		la := netlink.NewLinkAttrs()
		la.Name = name
		if err := netlink.LinkAdd(&netlink.Bridge{LinkAttrs: la}); err != nil {
			return nil, fmt.Errorf("add: %w", err)
		}
		if link, err = netlink.LinkByName(name); err != nil {
			return nil, err
		}
	}
	if _, ok := link.(*netlink.Bridge); !ok {
		return nil, fmt.Errorf("%s exists and is a %s, not a bridge", name, link.Type())
	}
	addr := &netlink.Addr{IPNet: &net.IPNet{IP: c.BridgeIP(), Mask: c.Subnet.Mask}}
	if err := netlink.AddrReplace(link, addr); err != nil {
		return nil, fmt.Errorf("address %s: %w", addr.IPNet, err)
	}
	if err := netlink.LinkSetUp(link); err != nil {
		return nil, fmt.Errorf("up: %w", err)
	}
	return link, nil
}

func ensureNode(c Config, br netlink.Link, i int) error {
	nsName := c.NodeNamespace(NodeName(i))
	ns, err := ensureNamespace(nsName)
	if err != nil {
		return fmt.Errorf("namespace %s: %w", nsName, err)
	}
	defer ns.Close()

	hostName := c.hostVeth(i)
	if _, err := netlink.LinkByName(hostName); err != nil {
		// The node side is created under a temporary unique name in the host
		// namespace, then moved and renamed to eth0 inside the node.
		la := netlink.NewLinkAttrs()
		la.Name = hostName
		la.MasterIndex = br.Attrs().Index
		peer := fmt.Sprintf("%s-p%d", c.Name, i)
		if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: la, PeerName: peer}); err != nil {
			return fmt.Errorf("veth %s: %w", hostName, err)
		}
		peerLink, err := netlink.LinkByName(peer)
		if err != nil {
			return err
		}
		if err := netlink.LinkSetNsFd(peerLink, int(ns)); err != nil {
			return fmt.Errorf("move %s into %s: %w", peer, nsName, err)
		}
		if err := inNamespace(ns, func(h *netlink.Handle) error {
			l, err := h.LinkByName(peer)
			if err != nil {
				return err
			}
			return h.LinkSetName(l, "eth0")
		}); err != nil {
			return fmt.Errorf("rename eth0: %w", err)
		}
	}
	host, err := netlink.LinkByName(hostName)
	if err != nil {
		return err
	}
	if err := netlink.LinkSetMaster(host, br); err != nil {
		return fmt.Errorf("attach %s: %w", hostName, err)
	}
	if err := netlink.LinkSetUp(host); err != nil {
		return err
	}
	return inNamespace(ns, func(h *netlink.Handle) error {
		lo, err := h.LinkByName("lo")
		if err != nil {
			return err
		}
		if err := h.LinkSetUp(lo); err != nil {
			return err
		}
		eth, err := h.LinkByName("eth0")
		if err != nil {
			return err
		}
		addr := &netlink.Addr{IPNet: &net.IPNet{IP: c.NodeIP(i), Mask: c.Subnet.Mask}}
		if err := h.AddrReplace(eth, addr); err != nil {
			return fmt.Errorf("address %s: %w", addr.IPNet, err)
		}
		if err := h.LinkSetUp(eth); err != nil {
			return err
		}
		// On-link route for the service range: with no default route in the
		// node, a connection to a ClusterIP would fail with "network is
		// unreachable" before iptables' OUTPUT chain could DNAT it.
		svc := &netlink.Route{LinkIndex: eth.Attrs().Index, Dst: c.ServiceCIDR, Scope: netlink.SCOPE_LINK}
		if err := h.RouteReplace(svc); err != nil {
			return fmt.Errorf("service route %s: %w", c.ServiceCIDR, err)
		}
		return nil
	})
}

// ensureNamespace opens the named namespace, creating it when missing,
// without leaving the calling thread inside it.
func ensureNamespace(name string) (netns.NsHandle, error) {
	if h, err := netns.GetFromName(name); err == nil {
		return h, nil
	}
	if err := netnsdir.Prepare(); err != nil {
		return 0, err
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		return 0, err
	}
	defer orig.Close()
	h, err := netns.NewNamed(name) // switches this thread into the new namespace
	if serr := netns.Set(orig); serr != nil {
		// This thread is now in the wrong namespace; never hand it back to Go.
		runtime.LockOSThread()
		return 0, fmt.Errorf("return to host namespace: %w", serr)
	}
	if err != nil {
		return 0, err
	}
	return h, nil
}

// inNamespace runs fn with a netlink handle bound to ns; the calling thread
// never leaves its own namespace.
func inNamespace(ns netns.NsHandle, fn func(*netlink.Handle) error) error {
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return err
	}
	defer h.Close()
	return fn(h)
}

// Namespaces lists the named network namespaces that belong to lab name:
// node namespaces and any pod namespaces agents created under the same prefix.
func Namespaces(name string) ([]string, error) {
	entries, err := os.ReadDir(netnsDir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), name+"-") {
			out = append(out, e.Name())
		}
	}
	return out, nil
}

// Down removes everything Up created for lab name, plus any namespace that
// carries its prefix (pods of a crashed agent). Missing objects are not errors.
func Down(c Config) error {
	if err := c.Validate(); err != nil {
		return err
	}
	var errs []error
	// Pods of a crashed agent first: their namespaces are found through
	// other mount namespaces, which the kills below may end.
	killHiddenNamespaceProcesses(c.Name + "-")
	names, err := Namespaces(c.Name)
	if err != nil {
		errs = append(errs, err)
	}
	for _, n := range names {
		killNamespaceProcesses(n)
		err := netns.DeleteNamed(n)
		if errors.Is(err, syscall.EINVAL) {
			// Not a mount point here: an agent started with `ip netns exec`
			// mounted it in its own mount namespace, which died with it.
			// The namespace is already gone; only the file is left.
			err = os.Remove(NamespacePath(n))
		}
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("delete namespace %s: %w", n, err))
		}
	}
	// Pod volume directories of this lab's agents (nodeagent's volumes.go:
	// /run/kubelab/volumes/<lab>-<node>), left behind by a crashed agent.
	vols, _ := filepath.Glob(filepath.Join(VolumeRoot, c.Name+"-*"))
	for _, v := range vols {
		if err := os.RemoveAll(v); err != nil {
			errs = append(errs, err)
		}
	}
	links, err := nlutil.LinkList(&netlink.Handle{})
	if err != nil {
		errs = append(errs, err)
	}
	for _, l := range links {
		n := l.Attrs().Name
		if n == c.BridgeName() || strings.HasPrefix(n, c.Name+"-") {
			if err := netlink.LinkDel(l); err != nil {
				// A veth vanishes with its peer's namespace, possibly between
				// listing and deleting it.
				var notFound netlink.LinkNotFoundError
				if !errors.As(err, &notFound) && !errors.Is(err, syscall.ENODEV) {
					errs = append(errs, fmt.Errorf("delete link %s: %w", n, err))
				}
			}
		}
	}
	return errors.Join(errs...)
}

// VolumeRoot holds the pod volume directories of every agent on this host,
// one directory per node named after its namespace prefix.
const VolumeRoot = "/run/kubelab/volumes"

// NamespacePath is the bind-mount path of a named namespace.
func NamespacePath(name string) string { return filepath.Join(netnsDir, name) }
