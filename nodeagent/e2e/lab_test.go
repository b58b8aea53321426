package e2e

import (
	"context"
	"fmt"
	"io"
	"math/rand"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubelab/kubelab/apiserver"
	"github.com/kubelab/kubelab/apiserver/apitest"
	"github.com/kubelab/kubelab/nodeagent/internal/testns"
	"github.com/kubelab/kubelab/nodeagent/labnet"
	"github.com/kubelab/kubelab/nodeagent/sandbox"
)

// TestTwoNodeLab builds the lab topology of design §3 (labnet's bridge and
// node namespaces, inside this test's private namespace), runs one agent
// process per node inside its namespace as `kubelab up` does, and checks
// that a pod on node-2 reaches a pod on node-1 by pod IP across the nodes.
func TestTwoNodeLab(t *testing.T) {
	testns.Require(t)
	_, subnet, _ := net.ParseCIDR(fmt.Sprintf("10.201.%d.0/24", rand.Intn(250)))
	lab := labnet.Config{Name: fmt.Sprintf("kle%04x", rand.Intn(1<<16)), Subnet: subnet, ServiceCIDR: labnet.DefaultServiceCIDR}
	t.Cleanup(func() {
		if err := labnet.Down(lab); err != nil {
			t.Errorf("lab down: %v", err)
		}
	})
	if err := labnet.Up(lab, 2); err != nil {
		t.Fatal(err)
	}
	bridge := lab.BridgeIP().String()
	inst := apitest.Start(t, func(c *apiserver.Config) {
		c.Listen = []string{bridge + ":0"}
		c.TLSSANs = append(c.TLSSANs, bridge)
	})
	ctx := context.Background()
	self, _ := os.Executable()
	for i := 1; i <= 2; i++ {
		node := labnet.NodeName(i)
		cmd := exec.Command("ip", "netns", "exec", lab.NodeNamespace(node), self, "agent")
		cmd.Env = append(os.Environ(), "E2E_SERVER="+inst.Config.Host, "E2E_TOKEN="+filepath.Join(inst.DataDir, "node-token"),
			"E2E_CA="+filepath.Join(inst.DataDir, "pki", "ca.crt"), "E2E_DATA="+t.TempDir(), "E2E_NODE="+node,
			"E2E_PREFIX="+lab.NodeNamespace(node)+"-")
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			_ = cmd.Process.Signal(syscall.SIGTERM)
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("agent %s: %v", node, err)
				}
			case <-time.After(20 * time.Second):
				_ = cmd.Process.Kill()
				t.Errorf("agent %s did not stop", node)
			}
		})
	}
	for i := 1; i <= 2; i++ {
		node := labnet.NodeName(i)
		eventually(t, 20*time.Second, node+" registered", func() error {
			_, err := inst.Client.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
			return err
		})
		setPodCIDR(t, inst.Client, node, fmt.Sprintf("10.244.%d.0/24", i))
		if n, _ := inst.Client.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{}); n.Status.Addresses[0].Address != lab.NodeIP(i).String() {
			t.Fatalf("%s InternalIP %v, want its eth0 %s", node, n.Status.Addresses, lab.NodeIP(i))
		}
	}
	marker := strconv.Itoa(3000 + rand.Intn(600))
	pods := []*corev1.Pod{
		{ObjectMeta: metav1.ObjectMeta{Name: "server", Namespace: "default"}, Spec: corev1.PodSpec{NodeName: "node-1",
			Containers: []corev1.Container{{Name: "web", Image: "nginx", Ports: []corev1.ContainerPort{{ContainerPort: 80}}}}}},
		{ObjectMeta: metav1.ObjectMeta{Name: "client", Namespace: "default"}, Spec: corev1.PodSpec{NodeName: "node-2",
			Containers: []corev1.Container{{Name: "sh", Image: "busybox", Command: []string{"sleep", marker}}}}},
	}
	ips := map[string]string{}
	for _, p := range pods {
		if _, err := inst.Client.CoreV1().Pods("default").Create(ctx, p, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range pods {
		eventually(t, 20*time.Second, p.Name+" Running", func() error {
			got, err := inst.Client.CoreV1().Pods("default").Get(ctx, p.Name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			if got.Status.Phase != corev1.PodRunning || got.Status.PodIP == "" {
				return fmt.Errorf("phase %s", got.Status.Phase)
			}
			ips[p.Name] = got.Status.PodIP
			return nil
		})
	}
	if !strings.HasPrefix(ips["server"], "10.244.1.") || !strings.HasPrefix(ips["client"], "10.244.2.") {
		t.Fatalf("pod IPs %v", ips)
	}
	// The client pod's namespace, through its process (the pod namespaces are
	// mounted in the agent's mount namespace, not in this one).
	pid := findProcess(t, "sleep", marker)
	var body string
	eventually(t, 10*time.Second, "client pod on node-2 reaches server pod on node-1", func() error {
		// Dial on Do's thread (an http.Client would dial from another goroutine).
		var conn net.Conn
		err := sandbox.Do(fmt.Sprintf("/proc/%d/ns/net", pid), func() (err error) {
			conn, err = net.DialTimeout("tcp", net.JoinHostPort(ips["server"], "80"), 2*time.Second)
			return err
		})
		if err != nil {
			return err
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(2 * time.Second))
		if _, err := io.WriteString(conn, "GET / HTTP/1.0\r\n\r\n"); err != nil {
			return err
		}
		b, err := io.ReadAll(conn)
		_, body, _ = strings.Cut(string(b), "\r\n\r\n")
		return err
	})
	if body != "kubelab: pod default/server on node node-1\n" {
		t.Fatalf("page %q", body)
	}
}

// findProcess finds the PID whose command line is argv (argv[0] may be a full path).
func findProcess(t *testing.T, argv ...string) int {
	t.Helper()
	want := "/" + strings.Join(argv, "\x00") + "\x00"
	var pid int
	eventually(t, 10*time.Second, "process "+strings.Join(argv, " "), func() error {
		entries, _ := os.ReadDir("/proc")
		for _, e := range entries {
			n, err := strconv.Atoi(e.Name())
			if err != nil {
				continue
			}
			b, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
			if strings.HasSuffix(string(b), want) && !strings.Contains(string(b), "agent") {
				pid = n
				return nil
			}
		}
		return fmt.Errorf("not found")
	})
	return pid
}
