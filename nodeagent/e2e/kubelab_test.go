package e2e

import (
	"bytes"
	"context"
	"fmt"
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

	"github.com/vishvananda/netlink"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/kubelab/kubelab/cmd/kubelabtest"
	"github.com/kubelab/kubelab/nodeagent/internal/testns"
	"github.com/kubelab/kubelab/nodeagent/labnet"
	"github.com/kubelab/kubelab/nodeagent/sandbox"
)

// These tests drive the kubelab binary as a user does (`kubelab up`, the real
// kubectl, `kubelab down`), inside this package's private network namespace,
// so the lab's bridge and routes never touch the host's network.

// kubelabLab is one `kubelab up` with names unique to the test.
type kubelabLab struct {
	t       *testing.T
	bin     string
	name    string
	dataDir string
	cmd     *exec.Cmd
	out     *kubelabtest.Output
	exited  chan error
	client  kubernetes.Interface
}

func startKubelab(t *testing.T, nodes int) *kubelabLab {
	t.Helper()
	return startKubelabWarned(t, nodes, "")
}

// startKubelabWarned starts a lab that must print exactly the warnings
// containing expectWarning (none when empty).
func startKubelabWarned(t *testing.T, nodes int, expectWarning string) *kubelabLab {
	t.Helper()
	testns.Require(t)
	for _, tool := range []string{"kubectl", "curl", "ip", "iptables"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not found: run `make deps`", tool)
		}
	}
	l := &kubelabLab{t: t, bin: kubelabtest.Binary(t), name: fmt.Sprintf("kln%04x", rand.Intn(1<<16)), dataDir: t.TempDir(),
		out: &kubelabtest.Output{}, exited: make(chan error, 1)}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	l.cmd = exec.Command(l.bin, "up", "--nodes", strconv.Itoa(nodes), "--name", l.name, "--data-dir", l.dataDir,
		"--api-port", strconv.Itoa(port), "--subnet", fmt.Sprintf("10.203.%d.0/24", rand.Intn(250)))
	l.cmd.Stdout, l.cmd.Stderr = l.out, l.out
	if err := l.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { l.exited <- l.cmd.Wait() }()
	t.Cleanup(func() {
		if l.cmd != nil {
			_ = l.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-l.exited:
			case <-time.After(60 * time.Second):
				_ = l.cmd.Process.Kill()
			}
		}
		_ = exec.Command(l.bin, "down", "--data-dir", l.dataDir, "--name", l.name).Run()
		if t.Failed() {
			t.Logf("kubelab up output:\n%s", l.out.String())
			logs, _ := filepath.Glob(filepath.Join(l.dataDir, "nodes", "*", "agent.log"))
			for _, f := range logs {
				b, _ := os.ReadFile(f)
				if len(b) > 3000 {
					b = b[len(b)-3000:]
				}
				t.Logf("---- %s (tail)\n%s", f, b)
			}
		}
	})
	deadline := time.Now().Add(90 * time.Second)
	for !strings.Contains(l.out.String(), "is up with") {
		select {
		case err := <-l.exited:
			l.cmd = nil
			t.Fatalf("kubelab up exited (%v):\n%s", err, l.out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("kubelab up did not come up:\n%s", l.out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, line := range strings.Split(l.out.String(), "\n") {
		if strings.Contains(line, "warning:") && (expectWarning == "" || !strings.Contains(line, expectWarning)) {
			t.Fatalf("kubelab up reported a problem:\n%s", l.out.String())
		}
	}
	if expectWarning != "" && !strings.Contains(l.out.String(), expectWarning) {
		t.Fatalf("kubelab up did not warn %q:\n%s", expectWarning, l.out.String())
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", filepath.Join(l.dataDir, "kubeconfig"))
	if err != nil {
		t.Fatal(err)
	}
	l.client = kubernetes.NewForConfigOrDie(cfg)
	return l
}

func (l *kubelabLab) kubectl(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "kubectl", args...)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+filepath.Join(l.dataDir, "kubeconfig"))
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("kubectl %s: %v: %s", strings.Join(args, " "), err, errOut.String())
	}
	return out.String(), nil
}

func (l *kubelabLab) mustKubectl(args ...string) string {
	l.t.Helper()
	out, err := l.kubectl(args...)
	if err != nil {
		l.t.Fatal(err)
	}
	return out
}

func (l *kubelabLab) apply(manifest string) {
	l.t.Helper()
	p := filepath.Join(l.t.TempDir(), fmt.Sprintf("m%d.yaml", rand.Int()))
	if err := os.WriteFile(p, []byte(manifest), 0o644); err != nil {
		l.t.Fatal(err)
	}
	l.mustKubectl("apply", "-f", p)
}

func (l *kubelabLab) pod(name string) (*corev1.Pod, error) {
	return l.client.CoreV1().Pods("default").Get(context.Background(), name, metav1.GetOptions{})
}

func podReady(p *corev1.Pod) bool {
	if p.Status.Phase != corev1.PodRunning || p.Status.PodIP == "" {
		return false
	}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// readyPods lists the Running and Ready pods with label app=<app>.
func (l *kubelabLab) readyPods(app string) []corev1.Pod {
	list, err := l.client.CoreV1().Pods("default").List(context.Background(), metav1.ListOptions{LabelSelector: "app=" + app})
	if err != nil {
		return nil
	}
	var out []corev1.Pod
	for _, p := range list.Items {
		if p.DeletionTimestamp == nil && podReady(&p) {
			out = append(out, p)
		}
	}
	return out
}

// agentPID finds the agent process running in a node's namespace.
func (l *kubelabLab) agentPID(node string) int {
	pids, _ := labnet.ProcessesIn(labnet.Config{Name: l.name}.NodeNamespace(node))
	for _, pid := range pids {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if args := strings.Split(string(b), "\x00"); len(args) > 1 && args[0] == l.bin && args[1] == "agent" {
			return pid
		}
	}
	return 0
}

// processesOf lists live processes whose argv[0] is in bin's directory (the
// kubelab binary and the small workload binary), or whose command line
// contains marker.
func processesOf(bin, marker string) []string {
	entries, _ := os.ReadDir("/proc")
	var out []string
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || len(b) == 0 {
			continue
		}
		args := strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
		if filepath.Dir(args[0]) == filepath.Dir(bin) || (marker != "" && strings.Contains(string(b), marker)) {
			out = append(out, fmt.Sprintf("%d %s", pid, strings.Join(args, " ")))
		}
	}
	return out
}

const labDeployment = `apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 3
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: registry.example/web:1.0
        ports:
        - containerPort: 8080
`

// TestKubelabUpThreeNodeLab is issue 5's "done when", run through the
// kubelab binary: `kubelab up --nodes 3`; a Deployment whose pods reach each
// other across nodes by pod IP (curl run in one pod by `kubectl exec`);
// `kubectl logs` showing those requests; a crashing container restarted with
// growing back-off; a graceful delete (SIGTERM honoured, pod and sandbox
// gone); an agent killed and restarted by `up` with its pods still Running
// on the same IPs and processes (adopted); and after `kubelab down` no
// namespace, link or process left.
func TestKubelabUpThreeNodeLab(t *testing.T) {
	l := startKubelab(t, 3)
	ctx := context.Background()
	marker := strconv.Itoa(7000 + rand.Intn(2000))

	// Started first: its back-off runs while the rest of the test does.
	l.apply(`apiVersion: v1
kind: Pod
metadata: {name: crasher}
spec:
  containers:
  - name: c
    image: busybox
    command: ["sh", "-c", "echo crash ` + marker + `; exit 3"]
`)
	l.apply(labDeployment)
	var pods []corev1.Pod
	eventually(t, 60*time.Second, "3 web pods Ready on 3 nodes", func() error {
		pods = l.readyPods("web")
		nodes := map[string]bool{}
		for _, p := range pods {
			nodes[p.Spec.NodeName] = true
		}
		if len(pods) != 3 || len(nodes) != 3 {
			return fmt.Errorf("%d ready pods on nodes %v", len(pods), nodes)
		}
		return nil
	})

	// Pod to pod across nodes, by pod IP, from inside each pod.
	for i, from := range pods {
		to := pods[(i+1)%len(pods)]
		var page string
		eventually(t, 20*time.Second, from.Name+" reaches "+to.Name, func() error {
			out, err := l.kubectl("exec", from.Name, "--", "curl", "-sS", "-m", "3", "-A", "e2e-"+marker, "http://"+to.Status.PodIP+":8080/")
			page = out
			return err
		})
		if want := fmt.Sprintf("kubelab: pod default/%s on node %s\n", to.Name, to.Spec.NodeName); page != want {
			t.Fatalf("%s -> %s: page %q, want %q", from.Name, to.Name, page, want)
		}
		// The request is in the target's log, from the source's pod IP (no NAT between pods).
		eventually(t, 10*time.Second, "kubectl logs "+to.Name, func() error {
			logs, err := l.kubectl("logs", to.Name)
			if err != nil {
				return err
			}
			for _, line := range strings.Split(logs, "\n") {
				if strings.HasPrefix(line, from.Status.PodIP+":") && strings.Contains(line, "GET / e2e-"+marker) {
					return nil
				}
			}
			return fmt.Errorf("no request line from %s in:\n%s", from.Status.PodIP, logs)
		})
	}

	// Crash loop: CrashLoopBackOff while waiting, restarts counted, the
	// back-off doubling (10 s, then 20 s), and each run's output in the logs.
	eventually(t, 60*time.Second, "crasher restarted with back-off", func() error {
		p, err := l.pod("crasher")
		if err != nil {
			return err
		}
		if len(p.Status.ContainerStatuses) != 1 {
			return fmt.Errorf("statuses %v", p.Status.ContainerStatuses)
		}
		cs := p.Status.ContainerStatuses[0]
		w := cs.State.Waiting
		if cs.RestartCount < 1 || w == nil || w.Reason != "CrashLoopBackOff" || !strings.Contains(w.Message, "back-off 20s") {
			return fmt.Errorf("restarts %d state %+v", cs.RestartCount, cs.State)
		}
		if t := cs.LastTerminationState.Terminated; t == nil || t.ExitCode != 3 {
			return fmt.Errorf("last termination %+v", cs.LastTerminationState)
		}
		return nil
	})
	if logs := l.mustKubectl("logs", "crasher", "--previous"); !strings.Contains(logs, "crash "+marker) {
		t.Errorf("kubectl logs --previous crasher: %q", logs)
	}

	// Graceful deletion: the container traps SIGTERM and exits well inside
	// its long grace period; the pod and its sandbox go.
	l.apply(`apiVersion: v1
kind: Pod
metadata: {name: polite}
spec:
  terminationGracePeriodSeconds: 60
  containers:
  - name: c
    image: busybox
    command: ["sh", "-c", "trap 'echo got TERM; exit 0' TERM; while :; do sleep 0.1; done"]
`)
	var polite *corev1.Pod
	eventually(t, 30*time.Second, "polite Ready", func() error {
		p, err := l.pod("polite")
		if err != nil || !podReady(p) {
			return fmt.Errorf("not ready (%v)", err)
		}
		polite = p
		return nil
	})
	netnsFile := filepath.Join(sandbox.NetnsDir, (&sandbox.Manager{Prefix: labnet.Config{Name: l.name}.NodeNamespace(polite.Spec.NodeName) + "-"}).NetnsName(string(polite.UID)))
	if _, err := os.Stat(netnsFile); err != nil {
		t.Fatalf("sandbox of polite: %v", err)
	}
	began := time.Now()
	l.mustKubectl("delete", "pod", "polite", "--wait=true")
	if took := time.Since(began); took > 30*time.Second {
		t.Errorf("graceful delete took %s: SIGTERM was not honoured, the 60 s grace ran out", took)
	}
	if _, err := l.pod("polite"); !apierrors.IsNotFound(err) {
		t.Errorf("polite still exists: %v", err)
	}
	eventually(t, 5*time.Second, "polite's sandbox gone", func() error {
		if _, err := os.Stat(netnsFile); err == nil {
			return fmt.Errorf("%s remains", netnsFile)
		}
		out, err := exec.Command("ip", "netns", "exec", labnet.Config{Name: l.name}.NodeNamespace(polite.Spec.NodeName),
			"ip", "-o", "link", "show", sandbox.HostLinkName(string(polite.UID))).CombinedOutput()
		if err == nil {
			return fmt.Errorf("host link remains: %s", out)
		}
		return nil
	})

	// Agent restart: kill one agent outright; `up` starts it again and its
	// pods stay Running and Ready on the same IPs, still reachable.
	victim := pods[0]
	victimPID := workloadPID(t, victim.Name)
	old := l.agentPID(victim.Spec.NodeName)
	if old == 0 {
		t.Fatalf("no agent process in %s's namespace", victim.Spec.NodeName)
	}
	if err := syscall.Kill(old, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "agent of "+victim.Spec.NodeName+" restarted", func() error {
		if pid := l.agentPID(victim.Spec.NodeName); pid == 0 || pid == old {
			return fmt.Errorf("agent pid %d (killed %d)", pid, old)
		}
		return nil
	})
	eventually(t, 30*time.Second, "node Ready after agent restart", func() error {
		n, err := l.client.CoreV1().Nodes().Get(ctx, victim.Spec.NodeName, metav1.GetOptions{})
		if err != nil {
			return err
		}
		for _, c := range n.Status.Conditions {
			if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue && time.Since(c.LastHeartbeatTime.Time) < 5*time.Second {
				return nil
			}
		}
		return fmt.Errorf("conditions %v", n.Status.Conditions)
	})
	from := pods[1]
	eventually(t, 30*time.Second, victim.Name+" Running on the same IP and reachable after the agent restart", func() error {
		p, err := l.pod(victim.Name)
		if err != nil {
			return err
		}
		if !podReady(p) || p.Status.PodIP != victim.Status.PodIP {
			return fmt.Errorf("phase %s ip %s (was %s)", p.Status.Phase, p.Status.PodIP, victim.Status.PodIP)
		}
		_, err = l.kubectl("exec", from.Name, "--", "curl", "-sS", "-m", "3", "http://"+victim.Status.PodIP+":8080/")
		return err
	})
	if pid := workloadPID(t, victim.Name); pid != victimPID {
		t.Errorf("%s's workload is pid %d, was %d: the restarted agent did not adopt it", victim.Name, pid, victimPID)
	}

	// kubelab down: nothing of the lab is left.
	if out, err := exec.Command(l.bin, "down", "--data-dir", l.dataDir).CombinedOutput(); err != nil {
		t.Fatalf("kubelab down: %v\n%s", err, out)
	}
	select {
	case err := <-l.exited:
		l.cmd = nil
		if err != nil {
			t.Errorf("kubelab up exited with %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("kubelab up still running after kubelab down")
	}
	out, _ := exec.Command("ip", "netns", "list").CombinedOutput()
	for _, line := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(line, l.name+"-") {
			t.Errorf("namespace left after down: %s", line)
		}
	}
	links, err := netlink.LinkList()
	if err != nil {
		t.Fatal(err)
	}
	for _, ln := range links {
		if n := ln.Attrs().Name; strings.HasPrefix(n, l.name) || strings.HasPrefix(n, sandbox.HostLinkPrefix) {
			t.Errorf("link left after down: %s", n)
		}
	}
	eventually(t, 5*time.Second, "no lab process left", func() error {
		if left := processesOf(l.bin, "crash "+marker); len(left) > 0 {
			return fmt.Errorf("left: %v", left)
		}
		return nil
	})
}

// TestKubelabDownAfterCrash kills `kubelab up` and every agent outright, as a
// crash would: the pods run on (they outlive their agent, to be adopted),
// their namespaces are mounted only in the dead agents' mount namespaces, and
// `kubelab down` must still stop them and leave nothing behind.
func TestKubelabDownAfterCrash(t *testing.T) {
	l := startKubelab(t, 2)
	l.apply(strings.Replace(labDeployment, "replicas: 3", "replicas: 2", 1))
	var pods []corev1.Pod
	eventually(t, 60*time.Second, "2 web pods Ready", func() error {
		if pods = l.readyPods("web"); len(pods) != 2 {
			return fmt.Errorf("%d ready", len(pods))
		}
		return nil
	})
	var workloads []int
	for _, p := range pods {
		workloads = append(workloads, workloadPID(t, p.Name))
	}
	agents := []int{l.agentPID("node-1"), l.agentPID("node-2")}
	_ = l.cmd.Process.Kill()
	<-l.exited
	l.cmd = nil
	for _, pid := range agents {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	eventually(t, 5*time.Second, "agents dead", func() error {
		for _, pid := range agents {
			if alive(pid) {
				return fmt.Errorf("agent %d alive", pid)
			}
		}
		return nil
	})
	for _, pid := range workloads {
		if !alive(pid) {
			t.Fatalf("workload %d died with its agent; the crash case needs it running", pid)
		}
	}
	if out, err := exec.Command(l.bin, "down", "--data-dir", l.dataDir).CombinedOutput(); err != nil {
		t.Fatalf("kubelab down: %v\n%s", err, out)
	}
	eventually(t, 5*time.Second, "no lab process left", func() error {
		if left := processesOf(l.bin, ""); len(left) > 0 {
			return fmt.Errorf("left: %v", left)
		}
		return nil
	})
	if left, _ := labnet.Namespaces(l.name); len(left) > 0 {
		t.Errorf("namespaces left: %v", left)
	}
	links, _ := netlink.LinkList()
	for _, ln := range links {
		if n := ln.Attrs().Name; strings.HasPrefix(n, l.name) {
			t.Errorf("link left: %s", n)
		}
	}
}
