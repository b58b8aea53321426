package sandbox

import (
	"fmt"
	"io"
	"math/rand"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/kubelab/kubelab/nodeagent/internal/testns"
)

func TestMain(m *testing.M) { testns.Main(m) }

// testManager has a prefix unique to this run, and removes whatever it made.
func testManager(t testing.TB, c string) *Manager {
	m := &Manager{Prefix: fmt.Sprintf("klsbt%d-%04x-", os.Getpid(), rand.Intn(1<<16)), CIDR: cidr(c)}
	t.Cleanup(func() {
		if err := m.Cleanup(); err != nil {
			t.Errorf("cleanup: %v", err)
		}
		assertNoLeaks(t, m)
	})
	return m
}

func assertNoLeaks(t testing.TB, m *Manager) {
	t.Helper()
	entries, _ := os.ReadDir(NetnsDir)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), m.Prefix) {
			t.Errorf("leaked namespace %s", e.Name())
		}
	}
	links, _ := netlink.LinkList()
	for _, l := range links {
		if strings.HasPrefix(l.Attrs().Name, HostLinkPrefix) {
			t.Errorf("leaked link %s", l.Attrs().Name)
		}
	}
}

// listenIn opens a TCP listener inside the namespace at path; it answers
// every connection with msg.
func listenIn(t *testing.T, path, addr, msg string) net.Listener {
	t.Helper()
	var l net.Listener
	if err := Do(path, func() (err error) { l, err = net.Listen("tcp", addr); return err }); err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			_, _ = io.WriteString(c, msg)
			c.Close()
		}
	}()
	t.Cleanup(func() { l.Close() })
	return l
}

func read(addr string) (string, error) {
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	b, err := io.ReadAll(c)
	return string(b), err
}

func TestSandboxLifecycle(t *testing.T) {
	testns.Require(t)
	if err := os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte("1"), 0o644); err != nil {
		t.Fatal(err)
	}
	m := testManager(t, "10.244.77.0/24")
	a, err := m.Create("uid-a", net.ParseIP("10.244.77.2"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := m.Create("uid-b", net.ParseIP("10.244.77.3"))
	if err != nil {
		t.Fatal(err)
	}
	if !m.Exists("uid-a") || !m.Exists("uid-b") {
		t.Fatal("sandboxes not found after Create")
	}
	// eth0 is IPv4 only: no IPv6 address configuration was done for it.
	if err := Do(a.Path(), func() error {
		l, err := netlink.LinkByName("eth0")
		if err != nil {
			return err
		}
		if v6, _ := netlink.AddrList(l, netlink.FAMILY_V6); len(v6) != 0 {
			return fmt.Errorf("eth0 has IPv6 addresses %v", v6)
		}
		return nil
	}); err != nil {
		t.Error(err)
	}
	// node -> pod
	la := listenIn(t, a.Path(), "10.244.77.2:8080", "pod-a")
	if got, err := read(la.Addr().String()); err != nil || got != "pod-a" {
		t.Fatalf("node to pod a: %q, %v", got, err)
	}
	// pod b -> pod a, routed through the node
	var got string
	if err := Do(b.Path(), func() (err error) { got, err = read("10.244.77.2:8080"); return err }); err != nil || got != "pod-a" {
		t.Fatalf("pod b to pod a: %q, %v", got, err)
	}
	// pod -> node (the gateway address)
	ln := listenIn(t, "/proc/self/ns/net", "10.244.77.1:0", "node")
	if err := Do(a.Path(), func() (err error) { got, err = read(ln.Addr().String()); return err }); err != nil || got != "node" {
		t.Fatalf("pod to node: %q, %v", got, err)
	}
	// Delete removes link and namespace; a process inside is killed first by callers.
	if err := m.Delete("uid-a"); err != nil {
		t.Fatal(err)
	}
	if m.Exists("uid-a") {
		t.Fatal("sandbox a still exists")
	}
	if _, err := os.Stat(filepath.Join(NetnsDir, m.NetnsName("uid-a"))); !os.IsNotExist(err) {
		t.Fatalf("namespace file of a: %v", err)
	}
	if _, err := netlink.LinkByName(HostLinkName("uid-a")); err == nil {
		t.Fatal("host link of a still exists")
	}
	if _, err := read("10.244.77.2:8080"); err == nil {
		t.Fatal("pod a still answers")
	}
	// Cleanup (t.Cleanup) removes b, checked by assertNoLeaks.
}

func TestCreateReplacesLeftovers(t *testing.T) {
	testns.Require(t)
	m := testManager(t, "10.244.78.0/24")
	if _, err := m.Create("uid-x", net.ParseIP("10.244.78.2")); err != nil {
		t.Fatal(err)
	}
	// An agent restarted without cleaning: Create must not fail on the old
	// pieces (namespace file, host link), and the new sandbox must work.
	sb, err := m.Create("uid-x", net.ParseIP("10.244.78.5"))
	if err != nil {
		t.Fatal(err)
	}
	l := listenIn(t, sb.Path(), "10.244.78.5:8080", "pod-x")
	if got, err := read(l.Addr().String()); err != nil || got != "pod-x" {
		t.Fatalf("node to the re-created pod: %q, %v", got, err)
	}
	// Only the host link left (its namespace file gone, as after a crash
	// between the two): Create replaces it too.
	if err := removeNamed(m.NetnsName("uid-y")); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Create("uid-y", net.ParseIP("10.244.78.6")); err != nil {
		t.Fatal(err)
	}
	if err := removeNamed(m.NetnsName("uid-y")); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Create("uid-y", net.ParseIP("10.244.78.6")); err != nil {
		t.Fatalf("create over a left host link: %v", err)
	}
}

func TestNames(t *testing.T) {
	m := &Manager{Prefix: "kubelab-node-1-"}
	if n := HostLinkName("0b6a4c3e-1111-2222-3333-444455556666"); len(n) > 15 || !isPodLink(n) {
		t.Fatalf("link name %q", n)
	}
	for _, other := range []string{"kl-", "kl-0123456789abc", "klp6612e71dbr", "kl-0123456789aX", "eth0"} {
		if isPodLink(other) {
			t.Errorf("%q taken for a pod link", other)
		}
	}
	if m.NetnsName("a") == m.NetnsName("b") {
		t.Fatal("different pods, same namespace name")
	}
	if !strings.HasPrefix(m.NetnsName("a"), "kubelab-node-1-") {
		t.Fatal("namespace name lacks the node prefix")
	}
}

// BenchmarkCreate measures one sandbox: namespace, veth pair, addresses, routes.
func BenchmarkCreate(b *testing.B) {
	if !testns.Isolated() {
		b.Skip("needs root and a private namespace")
	}
	m := testManager(b, "10.244.79.0/24")
	for i := 0; i < b.N; i++ {
		uid := fmt.Sprintf("bench-%d", i)
		b.StartTimer()
		if _, err := m.Create(uid, net.ParseIP(fmt.Sprintf("10.244.79.%d", 2+i%250))); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		if err := m.Delete(uid); err != nil {
			b.Fatal(err)
		}
	}
}
