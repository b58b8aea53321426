// Package e2e runs the node agent against a real kubelab API server
// (apiserver/apitest) inside a private network namespace.
package e2e

import (
	"context"
	"fmt"
	"io"
	"math/rand"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/kubelab/kubelab/apiserver/apitest"
	"github.com/kubelab/kubelab/cmd/kubelabtest"
	"github.com/kubelab/kubelab/nodeagent"
	"github.com/kubelab/kubelab/nodeagent/internal/testns"
	"github.com/kubelab/kubelab/nodeagent/sandbox"
	"github.com/kubelab/kubelab/nodeagent/workload"
)

func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == "workload" {
		if err := workload.Main(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	if len(os.Args) > 1 && os.Args[1] == "agent" {
		// The agent alone in its own process (for the RSS benchmark).
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
		defer stop()
		err := nodeagent.Run(ctx, nodeagent.Config{ServerURL: os.Getenv("E2E_SERVER"), TokenFile: os.Getenv("E2E_TOKEN"),
			CAFile: os.Getenv("E2E_CA"), NodeName: envOr("E2E_NODE", "node-rss"), DataDir: os.Getenv("E2E_DATA"), NodeIP: net.ParseIP(os.Getenv("E2E_IP")),
			NetnsPrefix: os.Getenv("E2E_PREFIX")})
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	testns.Main(m)
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func eventually(t *testing.T, d time.Duration, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	var err error
	for time.Now().Before(deadline) {
		if err = f(); err == nil {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s: %v", what, err)
}

// nodeLink gives the private namespace a node address, as the lab's eth0.
func nodeLink(t *testing.T, cidr string) net.IP { return nodeLinkTB(t, cidr) }

func nodeLinkTB(t testing.TB, cidr string) net.IP {
	la := netlink.NewLinkAttrs()
	la.Name = fmt.Sprintf("kle%d", rand.Intn(1<<16))
	l := &netlink.Bridge{LinkAttrs: la} // a bridge: the dummy module may be absent
	if err := netlink.LinkAdd(l); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = netlink.LinkDel(l) })
	addr, _ := netlink.ParseAddr(cidr)
	if err := netlink.AddrAdd(l, addr); err != nil {
		t.Fatal(err)
	}
	if err := netlink.LinkSetUp(l); err != nil {
		t.Fatal(err)
	}
	return addr.IP
}

func startAgent(t *testing.T, inst *apitest.Instance, cfg nodeagent.Config) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- nodeagent.Run(ctx, cfg) }()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("agent: %v", err)
			}
		case <-time.After(20 * time.Second):
			t.Error("agent did not stop")
		}
	}
	t.Cleanup(stop)
	return stop
}

func TestAgentRunsPodAgainstRealAPIServer(t *testing.T) {
	testns.Require(t)
	inst := apitest.Start(t)
	admin := inst.Client
	ctx := context.Background()
	nodeIP := nodeLink(t, "10.200.0.1/24")
	cfg := nodeagent.Config{
		ServerURL: inst.Config.Host, TokenFile: filepath.Join(inst.DataDir, "node-token"), CAFile: filepath.Join(inst.DataDir, "pki", "ca.crt"),
		NodeName: "node-1", DataDir: t.TempDir(), NodeIP: nodeIP, CPU: "2", Memory: "2Gi",
		NetnsPrefix: fmt.Sprintf("kle2e%d-", os.Getpid()),
	}
	t.Cleanup(func() {
		if err := nodeagent.Cleanup(cfg); err != nil {
			t.Errorf("cleanup: %v", err)
		}
		entries, _ := os.ReadDir(sandbox.NetnsDir)
		for _, e := range entries {
			if strings.HasPrefix(e.Name(), cfg.NetnsPrefix) {
				t.Errorf("leaked namespace %s", e.Name())
			}
		}
	})
	stop := startAgent(t, inst, cfg)

	// Registration: Node with addresses, capacity, Ready; a Lease.
	var node *corev1.Node
	eventually(t, 20*time.Second, "node registered and Ready", func() error {
		var err error
		if node, err = admin.CoreV1().Nodes().Get(ctx, "node-1", metav1.GetOptions{}); err != nil {
			return err
		}
		for _, c := range node.Status.Conditions {
			if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue {
				return nil
			}
		}
		return fmt.Errorf("not Ready: %v", node.Status.Conditions)
	})
	if node.Status.Addresses[0].Address != "10.200.0.1" || node.Status.Capacity.Cpu().String() != "2" || node.Status.DaemonEndpoints.KubeletEndpoint.Port != 10250 {
		t.Errorf("node status: %+v", node.Status)
	}
	eventually(t, 5*time.Second, "lease", func() error {
		_, err := admin.CoordinationV1().Leases("kube-node-lease").Get(ctx, "node-1", metav1.GetOptions{})
		return err
	})
	// The IPAM controller's job, done by hand here; plus a second node to route to.
	setPodCIDR(t, admin, "node-1", "10.244.1.0/24")
	other := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-2"}, Spec: corev1.NodeSpec{PodCIDR: "10.244.2.0/24"},
		Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "10.200.0.2"}}}}
	if _, err := admin.CoreV1().Nodes().Create(ctx, other, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	setPodCIDR(t, admin, "node-2", "10.244.2.0/24")
	if n, err := admin.CoreV1().Nodes().Get(ctx, "node-2", metav1.GetOptions{}); err == nil && len(n.Status.Addresses) == 0 {
		n.Status.Addresses = other.Status.Addresses
		if _, err := admin.CoreV1().Nodes().UpdateStatus(ctx, n, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, 10*time.Second, "route to node-2's pod CIDR", func() error {
		_, dst, _ := net.ParseCIDR("10.244.2.0/24")
		rs, err := netlink.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Dst: dst}, netlink.RT_FILTER_DST)
		if err != nil || len(rs) == 0 || rs[0].Gw.String() != "10.200.0.2" {
			return fmt.Errorf("routes %v %v", rs, err)
		}
		return nil
	})

	// A pod bound to node-1 runs, answers, and its logs come through the API.
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default"},
		Spec: corev1.PodSpec{NodeName: "node-1", Containers: []corev1.Container{{Name: "nginx", Image: "nginx",
			Ports: []corev1.ContainerPort{{ContainerPort: 80}}}}}}
	if _, err := admin.CoreV1().Pods("default").Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var running *corev1.Pod
	eventually(t, 20*time.Second, "pod Running and Ready", func() error {
		p, err := admin.CoreV1().Pods("default").Get(ctx, "web", metav1.GetOptions{})
		if err != nil {
			return err
		}
		for _, c := range p.Status.Conditions {
			if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue && p.Status.Phase == corev1.PodRunning {
				running = p
				return nil
			}
		}
		return fmt.Errorf("phase %s conditions %v", p.Status.Phase, p.Status.Conditions)
	})
	if !strings.HasPrefix(running.Status.PodIP, "10.244.1.") || running.Status.HostIP != "10.200.0.1" {
		t.Fatalf("podIP %s hostIP %s", running.Status.PodIP, running.Status.HostIP)
	}
	// The node lifecycle controller marks the pods of a silent node not
	// ready; a live agent puts its own view back, as the kubelet does.
	marked := running.DeepCopy()
	for i, c := range marked.Status.Conditions {
		if c.Type == corev1.PodReady {
			marked.Status.Conditions[i].Status, marked.Status.Conditions[i].Reason = corev1.ConditionFalse, "NodeNotReady"
		}
	}
	if _, err := admin.CoreV1().Pods("default").UpdateStatus(ctx, marked, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "the agent restores Ready", func() error {
		p, err := admin.CoreV1().Pods("default").Get(ctx, "web", metav1.GetOptions{})
		if err != nil {
			return err
		}
		for _, c := range p.Status.Conditions {
			if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
				return nil
			}
		}
		return fmt.Errorf("conditions %v", p.Status.Conditions)
	})
	var body string
	eventually(t, 5*time.Second, "pod answers HTTP", func() error {
		resp, err := (&http.Client{Timeout: 2 * time.Second}).Get("http://" + running.Status.PodIP + "/")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		body = string(b)
		return nil
	})
	if body != "kubelab: pod default/web on node node-1\n" {
		t.Fatalf("page %q", body)
	}
	eventually(t, 5*time.Second, "kubectl logs path (API -> kubelet API)", func() error {
		b, err := admin.CoreV1().Pods("default").GetLogs("web", &corev1.PodLogOptions{Container: "nginx"}).DoRaw(ctx)
		if err != nil {
			return err
		}
		if !strings.Contains(string(b), "GET / ") {
			return fmt.Errorf("logs %q", b)
		}
		return nil
	})

	eventually(t, 5*time.Second, "Started event", func() error {
		evs, err := admin.CoreV1().Events("default").List(ctx, metav1.ListOptions{})
		if err != nil {
			return err
		}
		for _, e := range evs.Items {
			if e.InvolvedObject.Name == "web" && e.Reason == "Started" && e.Source.Component == "kubelet" {
				return nil
			}
		}
		return fmt.Errorf("no Started event among %d", len(evs.Items))
	})

	// Graceful deletion: the agent finishes it (final delete with UID precondition).
	if err := admin.CoreV1().Pods("default").Delete(ctx, "web", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 40*time.Second, "pod gone", func() error {
		_, err := admin.CoreV1().Pods("default").Get(ctx, "web", metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("still there (%v)", err)
	})
	sbm := &sandbox.Manager{Prefix: cfg.NetnsPrefix}
	if sbm.Exists(string(running.UID)) {
		t.Error("sandbox of the deleted pod remains")
	}

	// Restart: a second pod survives an agent restart with the same IP.
	pod2 := pod.DeepCopy()
	pod2.Name = "web2"
	if _, err := admin.CoreV1().Pods("default").Create(ctx, pod2, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	ip := waitPodIP(t, admin, "web2")
	stop()
	stop2 := startAgent(t, inst, cfg)
	defer stop2()
	if again := waitPodIP(t, admin, "web2"); again != ip {
		t.Fatalf("IP changed across restart: %s -> %s", ip, again)
	}
	eventually(t, 10*time.Second, "pod answers after agent restart", func() error {
		resp, err := (&http.Client{Timeout: 2 * time.Second}).Get("http://" + ip + "/")
		if err != nil {
			return err
		}
		resp.Body.Close()
		return nil
	})
}

func setPodCIDR(t *testing.T, c kubernetes.Interface, node, cidr string) {
	t.Helper()
	n, err := c.CoreV1().Nodes().Get(context.Background(), node, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if n.Spec.PodCIDR != "" {
		return // the server's IPAM controller was faster
	}
	n.Spec.PodCIDR, n.Spec.PodCIDRs = cidr, []string{cidr}
	if _, err := c.CoreV1().Nodes().Update(context.Background(), n, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// waitPodIP waits for the pod to be Running with an IP that answers.
func waitPodIP(t *testing.T, c kubernetes.Interface, name string) string {
	t.Helper()
	var ip string
	eventually(t, 20*time.Second, "pod "+name+" Running", func() error {
		p, err := c.CoreV1().Pods("default").Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if p.Status.Phase != corev1.PodRunning || p.Status.PodIP == "" {
			return fmt.Errorf("phase %s", p.Status.Phase)
		}
		resp, err := (&http.Client{Timeout: time.Second}).Get("http://" + p.Status.PodIP + "/")
		if err != nil {
			return err
		}
		resp.Body.Close()
		ip = p.Status.PodIP
		return nil
	})
	return ip
}

// BenchmarkIdleAgentRSS starts one `kubelab agent` (the real binary, as a
// lab runs it) against a real API server, lets it settle idle (registered,
// lease renewing, no pods) and reports its RSS, how much of that is
// file-backed (the binary's pages) and its PSS; then, per mapping, where the
// resident pages are and how many minor faults mapped them.
func BenchmarkIdleAgentRSS(b *testing.B) {
	if !testns.Isolated() {
		b.Skip("needs root and a private namespace")
	}
	bin := kubelabtest.Binary(b)
	inst := apitest.Start(b)
	ip := nodeLinkTB(b, "10.200.0.9/24")
	prefix := fmt.Sprintf("klrss%d-", os.Getpid())
	cmd := exec.Command(bin, "agent", "--server", inst.Config.Host,
		"--token-file", filepath.Join(inst.DataDir, "node-token"),
		"--ca-file", filepath.Join(inst.DataDir, "pki", "ca.crt"),
		"--node-name", "node-rss", "--data-dir", b.TempDir(), "--node-ip", ip.String(),
		"--netns-prefix", prefix)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
		_ = nodeagent.Cleanup(nodeagent.Config{NetnsPrefix: prefix})
	}()
	ctx := context.Background()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if n, err := inst.Client.CoreV1().Nodes().Get(ctx, "node-rss", metav1.GetOptions{}); err == nil {
			if n.Spec.PodCIDR == "" {
				n.Spec.PodCIDR, n.Spec.PodCIDRs = "10.244.9.0/24", []string{"10.244.9.0/24"}
				_, _ = inst.Client.CoreV1().Nodes().Update(ctx, n, metav1.UpdateOptions{})
			}
			if c, err := net.Dial("tcp", net.JoinHostPort(ip.String(), "10250")); err == nil {
				c.Close()
				break
			}
		}
		if time.Now().After(deadline) {
			b.Fatal("agent not ready")
		}
		time.Sleep(100 * time.Millisecond)
	}
	// Idle long enough for several Lease renewals: the steady state.
	time.Sleep(35 * time.Second)
	if roll, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", cmd.Process.Pid)); err == nil {
		for _, l := range strings.Split(string(roll), "\n") {
			if f := strings.Fields(l); len(f) >= 2 && f[0] == "Pss:" {
				kb, _ := strconv.Atoi(f[1])
				b.ReportMetric(float64(kb)/1024, "MB-pss")
			}
		}
	}
	st, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", cmd.Process.Pid))
	if err != nil {
		b.Fatal(err)
	}
	for _, l := range strings.Split(string(st), "\n") {
		f := strings.Fields(l)
		if len(f) < 2 {
			continue
		}
		kb, _ := strconv.Atoi(f[1])
		switch f[0] {
		case "VmRSS:":
			b.ReportMetric(float64(kb)/1024, "MB-rss")
		case "RssAnon:":
			b.ReportMetric(float64(kb)/1024, "MB-rss-anon")
		case "RssFile:":
			b.ReportMetric(float64(kb)/1024, "MB-rss-file")
		}
	}
	reportMappings(b, cmd.Process.Pid, bin)
	for i := 0; i < b.N; i++ {
	}
}

// reportMappings adds where the resident pages are: the executable's text
// (r-x), read-only data (r--: rodata, pclntab, type links) and writable data
// (rw-, file-backed), and the anonymous rest (heap arenas, runtime
// metadata, stacks), from /proc/PID/smaps; and the process's minor page
// faults, each of which mapped one more piece of the executable or memory.
func reportMappings(b *testing.B, pid int, bin string) {
	smaps, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps", pid))
	if err != nil {
		b.Fatal(err)
	}
	exe, err := filepath.EvalSymlinks(bin)
	if err != nil {
		b.Fatal(err)
	}
	kb := map[string]int{}
	var class string
	for _, l := range strings.Split(string(smaps), "\n") {
		f := strings.Fields(l)
		switch {
		case len(f) >= 5 && strings.Contains(f[0], "-") && !strings.HasSuffix(f[0], ":"):
			// A mapping's header: range perms offset dev inode [path].
			switch {
			case len(f) >= 6 && f[5] == exe && f[1] == "r-xp":
				class = "text"
			case len(f) >= 6 && f[5] == exe && f[1] == "r--p":
				class = "rodata"
			case len(f) >= 6 && f[5] == exe:
				class = "data"
			default:
				class = "anon"
			}
		case len(f) >= 2 && f[0] == "Rss:":
			n, _ := strconv.Atoi(f[1])
			kb[class] += n
		}
	}
	for _, c := range []string{"text", "rodata", "data", "anon"} {
		b.ReportMetric(float64(kb[c])/1024, "MB-"+c)
	}
	if stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil {
		// Fields after the command name, which is in parentheses: minflt is
		// the 10th field of the line, the 8th after ")".
		if i := strings.LastIndexByte(string(stat), ')'); i > 0 {
			if f := strings.Fields(string(stat)[i+1:]); len(f) > 7 {
				n, _ := strconv.Atoi(f[7])
				b.ReportMetric(float64(n), "minflt")
			}
		}
	}
}
