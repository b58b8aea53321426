package nodeagent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/vishvananda/netlink"
	"k8s.io/client-go/kubernetes"
)

// Config is everything one agent needs. Zero values take the defaults noted.
type Config struct {
	ServerURL string // https://host:port of the API server (required)
	TokenFile string // join token (required unless DataDir already holds credentials)
	CAFile    string // cluster CA; default ca.crt next to TokenFile
	NodeName  string // default: the host name
	DataDir   string // agent state: credentials, IPAM, pod logs (required)
	NodeIP    net.IP // default: first IPv4 of eth0, else of the default-route link

	CPU    string // capacity override, e.g. "2" (default: host CPUs)
	Memory string // capacity override, e.g. "4Gi" (default: host MemTotal)

	KubeletPort int // default 10250

	// NetnsPrefix names pod network namespaces (prefix + hash of pod UID);
	// default "kubelab-<node>-". It must be unique per node on a host.
	NetnsPrefix string

	// Passed through to the proxy.
	ServiceInternalTrafficPolicy bool   // feature gate ServiceInternalTrafficPolicy
	NoLocalEndpoints             string // the proxy's answer when a Local policy has no local endpoint
	FeatureGates                 map[string]bool

	// StartProxy starts the service proxy for this node once the agent has its
	// client; its handler (may be nil) is mounted at /kubelab/ on the kubelet
	// API. nil means no proxy (the lead wires proxy.New here).
	StartProxy func(ctx context.Context, client kubernetes.Interface, p ProxyParams) (http.Handler, error)

	// WorkloadCommand starts the built-in workload: argv before its flags.
	// Default: WorkloadBinary when it sits next to this executable, else
	// this executable with "workload".
	WorkloadCommand []string
}

// WorkloadBinary is the name of the small built-in workload executable
// (cmd/kubelab-workload), preferred when installed next to
// the agent's executable.
const WorkloadBinary = "kubelab-workload"

// ProxyParams is what the agent knows that the proxy needs.
type ProxyParams struct {
	NodeName   string
	NodeIP     net.IP
	PodCIDR    *net.IPNet
	Registerer prometheus.Registerer // the agent's /metrics registry
}

func (c *Config) defaults() error {
	if c.ServerURL == "" {
		return errors.New("server URL is required")
	}
	if c.DataDir == "" {
		return errors.New("data dir is required")
	}
	if c.NodeName == "" {
		h, err := os.Hostname()
		if err != nil {
			return fmt.Errorf("node name: %w", err)
		}
		c.NodeName = strings.ToLower(h)
	}
	if c.CAFile == "" && c.TokenFile != "" {
		c.CAFile = filepath.Join(filepath.Dir(c.TokenFile), "ca.crt")
	}
	if c.KubeletPort == 0 {
		c.KubeletPort = 10250
	}
	if c.NetnsPrefix == "" {
		c.NetnsPrefix = "kubelab-" + c.NodeName + "-"
	}
	if c.NodeIP == nil {
		ip, err := DefaultNodeIP()
		if err != nil {
			return err
		}
		c.NodeIP = ip
	}
	if len(c.WorkloadCommand) == 0 {
		self, err := os.Executable()
		if err != nil {
			return err
		}
		c.WorkloadCommand = workloadCommand(self)
	}
	return nil
}

// workloadCommand prefers WorkloadBinary next to self: the same workload in
// a small binary starts in a few milliseconds of CPU instead of ~60 (the
// full binary's package initialisation), which is most of the CPU a burst of
// pods costs.
func workloadCommand(self string) []string {
	sibling := filepath.Join(filepath.Dir(self), WorkloadBinary)
	if st, err := os.Stat(sibling); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
		return []string{sibling}
	}
	return []string{self, "workload"}
}

// DefaultNodeIP is the first IPv4 address of eth0, or else of the link
// carrying the default route.
func DefaultNodeIP() (net.IP, error) {
	if l, err := netlink.LinkByName("eth0"); err == nil {
		if ip := firstV4(l); ip != nil {
			return ip, nil
		}
	}
	routes, err := netlink.RouteList(nil, netlink.FAMILY_V4)
	if err == nil {
		for _, r := range routes {
			if r.Dst == nil || r.Dst.IP.IsUnspecified() {
				if l, err := netlink.LinkByIndex(r.LinkIndex); err == nil {
					if ip := firstV4(l); ip != nil {
						return ip, nil
					}
				}
			}
		}
	}
	return nil, errors.New("no node IP: eth0 and the default-route link have no IPv4 address (use --node-ip)")
}

func firstV4(l netlink.Link) net.IP {
	addrs, err := netlink.AddrList(l, netlink.FAMILY_V4)
	if err != nil {
		return nil
	}
	for _, a := range addrs {
		if a.IP.To4() != nil && !a.IP.IsLoopback() {
			return a.IP.To4()
		}
	}
	return nil
}
