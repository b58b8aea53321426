package proxy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netns"
	"k8s.io/client-go/kubernetes"
)

// A test lab: network namespaces made by the test, never the host's.
//
//	<p>br      bridge br0 (the "lab network", 10.200.0.0/24) and nothing else
//	<p>n<i>    node i: eth0 10.200.0.i on br0, cbr0 10.244.i.1/24 for its pods,
//	           routes to the other nodes' pod CIDRs, 10.96.0.0/12 on-link
//	<p>ext     an outside client, 10.200.0.100 on br0
//	<p>p<k>    pod k: eth0 on its node's cbr0, default route via the node
type lab struct {
	t      testing.TB
	prefix string
	nodes  []*labNode
	ext    string
	npods  int
	mode   string // proxy mode for runProxier ("" = the default)
}

type labNode struct {
	name string // Kubernetes node name
	ns   string
	ip   string
}

type labPod struct {
	name string
	ns   string
	ip   string
	node *labNode
}

func requireRoot(t testing.TB) {
	t.Helper()
	if os.Getuid() != 0 && os.Getenv("CI") == "" {
		t.Skip("needs root: creates network namespaces and iptables rules (runs in CI and as root)")
	}
	for _, tool := range []string{"ip", "iptables", "iptables-restore", "conntrack"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not installed (make deps): %v", tool, err)
		}
	}
}

func sh(t testing.TB, args ...string) string {
	t.Helper()
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v: %s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func newLab(t testing.TB, nodes int) *lab {
	requireRoot(t)
	l := &lab{t: t, prefix: fmt.Sprintf("klp%d%04x", os.Getpid()%10000, rand.IntN(0x10000))}
	br := l.prefix + "br"
	l.addNS(br)
	sh(t, "ip", "-n", br, "link", "add", "br0", "type", "bridge")
	sh(t, "ip", "-n", br, "link", "set", "br0", "up")
	for i := 1; i <= nodes; i++ {
		n := &labNode{name: fmt.Sprintf("node-%d", i), ns: fmt.Sprintf("%sn%d", l.prefix, i), ip: fmt.Sprintf("10.200.0.%d", i)}
		l.addNS(n.ns)
		l.plug(n.ns, br, fmt.Sprintf("n%d", i), n.ip+"/24")
		sh(t, "ip", "-n", n.ns, "route", "add", "10.96.0.0/12", "dev", "eth0")
		sh(t, "ip", "netns", "exec", n.ns, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1")
		sh(t, "ip", "-n", n.ns, "link", "add", "cbr0", "type", "bridge")
		sh(t, "ip", "-n", n.ns, "addr", "add", fmt.Sprintf("10.244.%d.1/24", i), "dev", "cbr0")
		sh(t, "ip", "-n", n.ns, "link", "set", "cbr0", "up")
		for j := 1; j <= nodes; j++ {
			if j != i {
				sh(t, "ip", "-n", n.ns, "route", "add", fmt.Sprintf("10.244.%d.0/24", j), "via", fmt.Sprintf("10.200.0.%d", j))
			}
		}
		l.nodes = append(l.nodes, n)
	}
	l.ext = l.prefix + "ext"
	l.addNS(l.ext)
	l.plug(l.ext, br, "x0", "10.200.0.100/24")
	return l
}

func (l *lab) addNS(name string) {
	sh(l.t, "ip", "netns", "add", name)
	l.t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", name).Run() })
	sh(l.t, "ip", "-n", name, "link", "set", "lo", "up")
}

// plug connects namespace ns (as eth0 with addr) to bridge br0 in brNS, the
// bridge side named port.
func (l *lab) plug(ns, brNS, port, addr string) {
	sh(l.t, "ip", "-n", ns, "link", "add", "eth0", "type", "veth", "peer", "name", port, "netns", brNS)
	sh(l.t, "ip", "-n", brNS, "link", "set", port, "master", brIn(brNS), "up")
	sh(l.t, "ip", "-n", ns, "addr", "add", addr, "dev", "eth0")
	sh(l.t, "ip", "-n", ns, "link", "set", "eth0", "up")
}

func brIn(ns string) string {
	if strings.HasSuffix(ns, "br") {
		return "br0"
	}
	return "cbr0"
}

// addPod makes a pod namespace on node n with address ip (in n's pod CIDR).
func (l *lab) addPod(n *labNode, name, ip string) *labPod {
	l.npods++
	p := &labPod{name: name, ns: fmt.Sprintf("%sp%d", l.prefix, l.npods), ip: ip, node: n}
	l.addNS(p.ns)
	l.plug(p.ns, n.ns, fmt.Sprintf("p%d", l.npods), ip+"/24")
	gw := ip[:strings.LastIndex(ip, ".")] + ".1"
	sh(l.t, "ip", "-n", p.ns, "route", "add", "default", "via", gw)
	return p
}

// inNS runs f with the calling goroutine's thread in namespace ns; sockets
// made inside stay in ns afterwards.
func inNS(t testing.TB, ns string, f func()) {
	t.Helper()
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		t.Fatalf("get netns: %v", err)
	}
	defer orig.Close()
	h, err := netns.GetFromName(ns)
	if err != nil {
		runtime.UnlockOSThread()
		t.Fatalf("open netns %s: %v", ns, err)
	}
	defer h.Close()
	if err := netns.Set(h); err != nil {
		runtime.UnlockOSThread()
		t.Fatalf("enter netns %s: %v", ns, err)
	}
	defer func() {
		if err := netns.Set(orig); err != nil {
			// Leave the thread locked: the runtime retires it with the goroutine.
			panic(fmt.Sprintf("restore netns: %v", err))
		}
		runtime.UnlockOSThread()
	}()
	f()
}

// serveTCP answers each connection with "<name> <client addr>\n", then
// echoes lines until the client closes.
func (l *lab) serveTCP(p *labPod, port int) {
	var ln net.Listener
	inNS(l.t, p.ns, func() {
		var err error
		ln, err = net.Listen("tcp4", fmt.Sprintf("%s:%d", p.ip, port))
		if err != nil {
			l.t.Fatalf("listen in %s: %v", p.name, err)
		}
	})
	l.t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				fmt.Fprintf(c, "%s %s\n", p.name, c.RemoteAddr().(*net.TCPAddr).IP)
				sc := bufio.NewScanner(c)
				for sc.Scan() {
					fmt.Fprintf(c, "%s\n", sc.Text())
				}
			}()
		}
	}()
}

// serveUDP answers each datagram with "<name> <client addr>".
func (l *lab) serveUDP(p *labPod, port int) {
	var pc net.PacketConn
	inNS(l.t, p.ns, func() {
		var err error
		pc, err = net.ListenPacket("udp4", fmt.Sprintf("%s:%d", p.ip, port))
		if err != nil {
			l.t.Fatalf("listen udp in %s: %v", p.name, err)
		}
	})
	l.t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 1500)
		for {
			_, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			_, _ = pc.WriteTo([]byte(fmt.Sprintf("%s %s", p.name, from.(*net.UDPAddr).IP)), from)
		}
	}()
}

// dialTCP connects from namespace ns and returns the server's greeting
// ("<pod> <client ip>") and the open connection.
func dialTCP(t testing.TB, ns, addr string, timeout time.Duration) (string, net.Conn, error) {
	t.Helper()
	var c net.Conn
	var err error
	inNS(t, ns, func() { c, err = net.DialTimeout("tcp4", addr, timeout) })
	if err != nil {
		return "", nil, err
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		c.Close()
		return "", nil, fmt.Errorf("read greeting: %w", err)
	}
	_ = c.SetReadDeadline(time.Time{})
	return strings.TrimSpace(line), c, nil
}

// get is dialTCP returning only the serving pod's name.
func get(t testing.TB, ns, addr string, timeout time.Duration) (string, error) {
	t.Helper()
	g, c, err := dialTCP(t, ns, addr, timeout)
	if err != nil {
		return "", err
	}
	c.Close()
	return strings.Fields(g)[0], nil
}

func udpAsk(t testing.TB, ns, addr string) (string, error) {
	t.Helper()
	var c net.Conn
	var err error
	inNS(t, ns, func() { c, err = net.Dial("udp4", addr) })
	if err != nil {
		return "", err
	}
	defer c.Close()
	buf := make([]byte, 1500)
	for range 3 {
		if _, err = c.Write([]byte("hi")); err != nil {
			return "", err
		}
		_ = c.SetReadDeadline(time.Now().Add(700 * time.Millisecond))
		var n int
		n, err = c.Read(buf)
		if err == nil {
			return string(buf[:n]), nil
		}
		if !isTimeout(err) {
			return "", err
		}
	}
	return "", err
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// runProxier starts a Proxier for node n against client, programming n's
// namespace, and returns it with a stop function (also run at cleanup).
func (l *lab) runProxier(n *labNode, client kubernetes.Interface, mod func(*Config)) (*Proxier, func()) {
	t := l.t
	cfg := Config{
		NodeName: n.name, NodeIP: net.ParseIP(n.ip), ClusterCIDR: "10.244.0.0/16", ServiceCIDR: "10.96.0.0/12",
		ServiceInternalTrafficPolicy: true, MinSyncInterval: 10 * time.Millisecond, FullSyncInterval: time.Hour,
		Executor: NetnsExecutor(n.ns, t.TempDir()), Mode: l.mode,
	}
	if mod != nil {
		mod(&cfg)
	}
	p, err := New(client, cfg)
	if err != nil {
		t.Fatalf("New proxier for %s: %v", n.name, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("proxier %s Run: %v", n.name, err)
			}
		})
	}
	t.Cleanup(stop)
	return p, stop
}

// waitVerdict waits until p has programmed svc ("ns/name:port") with the
// given internal verdict.
func waitVerdict(t testing.TB, p *Proxier, svc string, v Verdict) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		for _, s := range p.Explain().Services {
			if s.Service == svc && s.Internal.Verdict == v {
				return
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("%s: %s never reached verdict %q; explain: %+v", p.cfg.NodeName, svc, v, p.Explain())
}

func waitGone(t testing.TB, p *Proxier, svc string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		found := false
		for _, s := range p.Explain().Services {
			found = found || s.Service == svc
		}
		if !found {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("%s: %s still programmed", p.cfg.NodeName, svc)
}

func iptablesSave(t testing.TB, ns string) string {
	return sh(t, "ip", "netns", "exec", ns, "iptables-save")
}

// rulesDump is everything netfilter holds in ns: iptables-save and the
// nftables ruleset (kubelab's own table included).
func rulesDump(t testing.TB, ns string) string {
	return iptablesSave(t, ns) + sh(t, "ip", "netns", "exec", ns, "nft", "list", "ruleset")
}

// forModes runs a data path test once per proxy mode.
func forModes(t *testing.T, f func(t *testing.T, mode string)) {
	for _, m := range []string{ModeIptables, ModeNftables} {
		t.Run(m, func(t *testing.T) { f(t, m) })
	}
}

// portMarker is a string present in the dumped rules exactly while the
// port's DNAT rules are installed: its SVC chain (iptables), or the comment
// of its ClusterIP element in service-ips (nftables).
func portMarker(mode string, sp ServicePort) string {
	if mode == ModeNftables {
		return `"` + sp.String() + ` cluster IP"`
	}
	return svcChain(sp.Key())
}
