package labnet

import (
	"fmt"
	"math/rand"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Getuid() != 0 && os.Getenv("CI") == "" {
		t.Skip("needs root to create network namespaces and links (runs in CI as root)")
	}
}

// testConfig gives each test run its own lab name and subnet, so parallel
// runs and leftovers of a crashed run never collide.
func testConfig(t *testing.T) Config {
	r := rand.New(rand.NewSource(time.Now().UnixNano()))
	name := fmt.Sprintf("klt%04x", r.Intn(1<<16))
	_, subnet, _ := net.ParseCIDR(fmt.Sprintf("10.201.%d.0/24", r.Intn(250)))
	c := Config{Name: name, Subnet: subnet, ServiceCIDR: DefaultServiceCIDR}
	t.Cleanup(func() {
		if err := Down(c); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	return c
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		ok   bool
	}{
		{"kubelab", true}, {"lab-1", true}, {"", false}, {"waytoolongname", false}, {"Lab", false}, {"a_b", false},
	} {
		err := Config{Name: tc.name, Subnet: DefaultSubnet, ServiceCIDR: DefaultServiceCIDR}.Validate()
		if (err == nil) != tc.ok {
			t.Errorf("Validate(%q) = %v, want ok=%v", tc.name, err, tc.ok)
		}
	}
	c := Config{Name: "kubelab", Subnet: DefaultSubnet}
	if got := c.NodeIP(2).String(); got != "10.200.0.2" {
		t.Errorf("NodeIP(2) = %s", got)
	}
	if got := c.BridgeIP().String(); got != "10.200.0.254" {
		t.Errorf("BridgeIP = %s", got)
	}
}

// dialFrom connects from inside the named namespace.
func dialFrom(nsName, addr string) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		return err
	}
	defer orig.Close()
	target, err := netns.GetFromName(nsName)
	if err != nil {
		return err
	}
	defer target.Close()
	if err := netns.Set(target); err != nil {
		return err
	}
	defer netns.Set(orig)
	conn, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return err
	}
	return conn.Close()
}

func TestUpReachesBridgeAndDownRemovesEverything(t *testing.T) {
	requireRoot(t)
	c := testConfig(t)
	if err := Up(c, 2); err != nil {
		t.Fatal(err)
	}
	// Idempotent: a second Up on the same lab changes nothing and succeeds.
	if err := Up(c, 2); err != nil {
		t.Fatalf("second Up: %v", err)
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(c.BridgeIP().String(), "0"))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			conn.Close()
		}
	}()
	for i := 1; i <= 2; i++ {
		if err := dialFrom(c.NodeNamespace(NodeName(i)), ln.Addr().String()); err != nil {
			t.Errorf("node %d cannot reach the bridge: %v", i, err)
		}
	}
	// The service route must exist on-link in each node.
	h, _ := netns.GetFromName(c.NodeNamespace(NodeName(1)))
	nh, err := netlink.NewHandleAt(h)
	if err != nil {
		t.Fatal(err)
	}
	routes, _ := nh.RouteList(nil, netlink.FAMILY_V4)
	found := false
	for _, r := range routes {
		if r.Dst != nil && r.Dst.String() == DefaultServiceCIDR.String() {
			found = true
		}
	}
	nh.Close()
	h.Close()
	if !found {
		t.Errorf("no route for %s in node-1: %v", DefaultServiceCIDR, routes)
	}

	if err := Down(c); err != nil {
		t.Fatal(err)
	}
	if left, _ := Namespaces(c.Name); len(left) != 0 {
		t.Errorf("namespaces left after Down: %v", left)
	}
	if _, err := netlink.LinkByName(c.BridgeName()); err == nil {
		t.Errorf("bridge %s left after Down", c.BridgeName())
	}
}

// `ip netns add` run while a lab is up (another tool, or another test on the
// same host) must not leave the lab's namespaces impossible to remove. It
// stacked a copy of /run/netns over the lab's mounts when the directory was
// not yet a mount point, and Down then failed with EBUSY.
func TestDownAfterIPNetnsAdd(t *testing.T) {
	requireRoot(t)
	c := testConfig(t)
	if err := Up(c, 2); err != nil {
		t.Fatal(err)
	}
	other := c.Name + "x-other" // outside the lab's prefix, removed by this test
	if out, err := exec.Command("ip", "netns", "add", other).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v: %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", other).Run() })
	if err := Down(c); err != nil {
		t.Fatalf("Down: %v", err)
	}
	if left, _ := Namespaces(c.Name); len(left) != 0 {
		t.Errorf("namespaces left after Down: %v", left)
	}
	if out, err := exec.Command("ip", "netns", "del", other).CombinedOutput(); err != nil {
		t.Errorf("ip netns del: %v: %s", err, out)
	}
}

// A namespace file that is not a mount point (its mount lived in a crashed
// agent's private mount namespace) must not stop Down.
func TestDownRemovesUnmountedNamespaceFile(t *testing.T) {
	requireRoot(t)
	c := testConfig(t)
	if err := os.MkdirAll(netnsDir, 0o755); err != nil {
		t.Fatal(err)
	}
	stale := NamespacePath(c.Name + "-node-1-deadbeef")
	if err := os.WriteFile(stale, nil, 0o444); err != nil {
		t.Fatal(err)
	}
	vol := filepath.Join(VolumeRoot, c.Name+"-node-1", "uid-1", "cfg")
	if err := os.MkdirAll(vol, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := Down(c); err != nil {
		t.Fatalf("Down: %v", err)
	}
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Errorf("stale namespace file left: %v", err)
	}
	if _, err := os.Stat(filepath.Join(VolumeRoot, c.Name+"-node-1")); !os.IsNotExist(err) {
		t.Errorf("pod volume directory left: %v", err)
	}
}

// The pods of a crashed agent live in namespaces mounted only in that
// agent's mount namespace; Down finds them through other processes' mount
// tables and stops what runs inside.
func TestDownKillsProcessesInNamespacesMountedElsewhere(t *testing.T) {
	requireRoot(t)
	c := testConfig(t)
	name := c.Name + "-node-1-0123456789ab"
	marker := fmt.Sprint(5000 + rand.Intn(5000))
	cmd := exec.Command("unshare", "--mount", "--propagation", "slave", "--", "sh", "-c",
		"ip netns add "+name+" && exec ip netns exec "+name+" sleep "+marker)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	deadline := time.Now().Add(5 * time.Second)
	for {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", cmd.Process.Pid))
		if strings.HasPrefix(string(b), "sleep\x00"+marker) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("sleep did not start in %s (cmdline %q)", name, b)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if pids, _ := ProcessesIn(name); len(pids) != 0 {
		t.Fatalf("namespace %s visible here (pids %v): the test needs it mounted elsewhere only", name, pids)
	}
	if err := Down(c); err != nil {
		t.Fatalf("Down: %v", err)
	}
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("process in the hidden namespace still runs after Down")
	}
	if _, err := os.Stat(NamespacePath(name)); !os.IsNotExist(err) {
		t.Errorf("namespace file left: %v", err)
	}
}
