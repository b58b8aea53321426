package nodeagent

import (
	"context"
	"fmt"
	"io"
	"math/rand"
	"net"
	"net/http"
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
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/utils/ptr"

	"github.com/kubelab/kubelab/nodeagent/internal/testns"
	"github.com/kubelab/kubelab/nodeagent/sandbox"
	"github.com/kubelab/kubelab/nodeagent/workload"
)

// TestMain doubles as the built-in workload (the agent re-executes its own
// binary with "workload") and moves root test runs into a private netns.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == "workload" {
		if err := workload.Main(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	testns.Main(m)
}

// rig runs pods with the real runtime (namespaces, processes, logs); the API
// side is client-go's fake clientset, which this test only uses to read back
// the status the worker posts. The end-to-end test against the real API
// server lives in nodeagent/e2e.
type rig struct {
	t    *testing.T
	pm   *podManager
	cs   *fake.Clientset
	cfg  *Config
	sb   *sandbox.Manager
	stop context.CancelFunc
}

func newRig(t *testing.T) *rig {
	testns.Require(t)
	if err := os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte("1"), 0o644); err != nil {
		t.Fatal(err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	_, cidr, _ := net.ParseCIDR(fmt.Sprintf("10.244.%d.0/24", 100+rand.Intn(100)))
	cfg := &Config{NodeName: "node-t", NodeIP: net.ParseIP("10.200.0.1"), DataDir: t.TempDir(),
		NetnsPrefix: fmt.Sprintf("klrt%d-%04x-", os.Getpid(), rand.Intn(1<<16)), WorkloadCommand: []string{self, "workload"}}
	sbm := &sandbox.Manager{Prefix: cfg.NetnsPrefix, CIDR: cidr}
	ipam := sandbox.NewIPAM(filepath.Join(cfg.DataDir, "ipam.json"), cidr)
	cs := fake.NewSimpleClientset()
	ctx, cancel := context.WithCancel(context.Background())
	r := &rig{t: t, pm: newPodManager(ctx, cfg, cs, sbm, ipam), cs: cs, cfg: cfg, sb: sbm, stop: cancel}
	t.Cleanup(func() {
		cancel()
		r.pm.wait()
		if err := Cleanup(Config{NetnsPrefix: cfg.NetnsPrefix}); err != nil {
			t.Errorf("cleanup: %v", err)
		}
		entries, _ := os.ReadDir(sandbox.NetnsDir)
		for _, e := range entries {
			if strings.HasPrefix(e.Name(), cfg.NetnsPrefix) {
				t.Errorf("leaked namespace %s", e.Name())
			}
		}
	})
	return r
}

func (r *rig) add(p *corev1.Pod) *corev1.Pod {
	r.t.Helper()
	p.Namespace = "default"
	p.UID = types.UID(fmt.Sprintf("uid-%s-%d", p.Name, rand.Int63()))
	p.Spec.NodeName = r.cfg.NodeName
	created, err := r.cs.CoreV1().Pods("default").Create(context.Background(), p, metav1.CreateOptions{})
	if err != nil {
		r.t.Fatal(err)
	}
	r.pm.update(created)
	return created
}

// waitFor polls the pod as posted until cond holds.
func (r *rig) waitFor(name string, d time.Duration, cond func(*corev1.Pod) bool) *corev1.Pod {
	r.t.Helper()
	deadline := time.Now().Add(d)
	var p *corev1.Pod
	for time.Now().Before(deadline) {
		var err error
		p, err = r.cs.CoreV1().Pods("default").Get(context.Background(), name, metav1.GetOptions{})
		if err == nil && cond(p) {
			return p
		}
		time.Sleep(50 * time.Millisecond)
	}
	r.t.Fatalf("pod %s: condition not met in %s; status: %+v", name, d, p.Status)
	return nil
}

func running(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodRunning && p.Status.PodIP != "" }

func isReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func httpGet(url string) (string, error) {
	c := &http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

func (r *rig) logOf(p *corev1.Pod, container string, instance int32) string {
	b, _ := os.ReadFile(logPath(logDir(r.cfg.DataDir, string(p.UID), container), instance))
	return string(b)
}

func TestBuiltinWorkloadAnswersInPodNetns(t *testing.T) {
	r := newRig(t)
	p := r.add(&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "web"}, Spec: corev1.PodSpec{Containers: []corev1.Container{{
		Name: "nginx", Image: "nginx", Ports: []corev1.ContainerPort{{ContainerPort: 80}, {ContainerPort: 7, Name: "tcp-echo"}},
		ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/", Port: intOrStr(80)}}, PeriodSeconds: 1},
	}}}})
	got := r.waitFor("web", 10*time.Second, func(p *corev1.Pod) bool { return running(p) && isReady(p) })
	body, err := httpGet("http://" + got.Status.PodIP + "/hello")
	if err != nil || body != "kubelab: pod default/web on node node-t\n" {
		t.Fatalf("GET: %q, %v", body, err)
	}
	c, err := net.DialTimeout("tcp", got.Status.PodIP+":7", 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = c.Write([]byte("ping\n"))
	buf := make([]byte, 5)
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "ping\n" {
		t.Fatalf("echo: %q %v", buf, err)
	}
	c.Close()
	cs := got.Status.ContainerStatuses[0]
	if !cs.Ready || cs.State.Running == nil || !strings.HasPrefix(cs.ContainerID, "kubelab://") || got.Status.HostIP != "10.200.0.1" {
		t.Fatalf("container status %+v hostIP %s", cs, got.Status.HostIP)
	}
	// One log line per request, on stdout.
	deadline := time.Now().Add(3 * time.Second)
	for !strings.Contains(r.logOf(p, "nginx", 0), "GET /hello") {
		if time.Now().After(deadline) {
			t.Fatalf("request not logged: %q", r.logOf(p, "nginx", 0))
		}
		time.Sleep(50 * time.Millisecond)
	}
	// The workload process itself runs as nobody, inside the pod's namespace.
	pids := sandbox.ProcessesIn(filepath.Join(sandbox.NetnsDir, r.sb.NetnsName(string(p.UID))))
	if len(pids) == 0 {
		t.Fatal("no process in the pod namespace")
	}
	for _, pid := range pids {
		if uid := procUID(t, pid); uid != "65534" {
			t.Errorf("pid %d runs as uid %s", pid, uid)
		}
	}
}

func procUID(t *testing.T, pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "Uid:") {
			return strings.Fields(l)[1]
		}
	}
	return ""
}

func TestCommandContainerRunsAsNobodyInPodNetns(t *testing.T) {
	r := newRig(t)
	script := `echo uid=$(id -u); echo ns=$(readlink /proc/self/ns/net); echo pod=$POD_NAME/$POD_NS node=$NODE ip=$POD_IP; exec sleep 60`
	env := []corev1.EnvVar{
		{Name: "POD_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}},
		{Name: "POD_NS", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.namespace"}}},
		{Name: "NODE", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "spec.nodeName"}}},
		{Name: "POD_IP", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "status.podIP"}}},
	}
	p := r.add(&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "cmd"}, Spec: corev1.PodSpec{Containers: []corev1.Container{
		{Name: "sh", Image: "busybox", Command: []string{"sh", "-c", script}, Env: env}}}})
	root := r.add(&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "root"}, Spec: corev1.PodSpec{Containers: []corev1.Container{
		{Name: "sh", Image: "busybox", Command: []string{"sh", "-c", "echo uid=$(id -u); exec sleep 60"},
			SecurityContext: &corev1.SecurityContext{RunAsUser: ptr.To[int64](0)}}}}})
	got := r.waitFor("cmd", 10*time.Second, running)
	var st syscallStat
	nsPath := filepath.Join(sandbox.NetnsDir, r.sb.NetnsName(string(p.UID)))
	ino := st.inode(t, nsPath)
	want := []string{"uid=65534", fmt.Sprintf("ns=net:[%d]", ino), "pod=cmd/default node=node-t ip=" + got.Status.PodIP}
	deadline := time.Now().Add(5 * time.Second)
	for {
		l := r.logOf(p, "sh", 0)
		ok := true
		for _, w := range want {
			ok = ok && strings.Contains(l, w)
		}
		if ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("log %q lacks %q", l, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
	r.waitFor("root", 10*time.Second, running)
	deadline = time.Now().Add(5 * time.Second)
	for !strings.Contains(r.logOf(root, "sh", 0), "uid=0") {
		if time.Now().After(deadline) {
			t.Fatalf("runAsUser 0 log: %q", r.logOf(root, "sh", 0))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestCrashLoopBackOff(t *testing.T) {
	r := newRig(t)
	r.add(&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "crash"}, Spec: corev1.PodSpec{Containers: []corev1.Container{
		{Name: "c", Image: "busybox", Command: []string{"sh", "-c", "echo dying; exit 3"}}}}})
	got := r.waitFor("crash", 10*time.Second, func(p *corev1.Pod) bool {
		if len(p.Status.ContainerStatuses) == 0 {
			return false
		}
		cs := p.Status.ContainerStatuses[0]
		return cs.State.Waiting != nil && cs.State.Waiting.Reason == "CrashLoopBackOff"
	})
	cs := got.Status.ContainerStatuses[0]
	if cs.LastTerminationState.Terminated == nil || cs.LastTerminationState.Terminated.ExitCode != 3 || cs.LastTerminationState.Terminated.Reason != "Error" {
		t.Fatalf("last state %+v", cs.LastTerminationState)
	}
	if !strings.Contains(cs.State.Waiting.Message, "back-off 10s") || cs.RestartCount != 0 || got.Status.Phase != corev1.PodRunning {
		t.Fatalf("waiting %+v restarts %d phase %s", cs.State.Waiting, cs.RestartCount, got.Status.Phase)
	}
}

func TestRestartPolicyNever(t *testing.T) {
	r := newRig(t)
	r.add(&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "ok"}, Spec: corev1.PodSpec{RestartPolicy: corev1.RestartPolicyNever,
		Containers: []corev1.Container{{Name: "c", Image: "busybox", Command: []string{"true"}}}}})
	r.add(&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "bad"}, Spec: corev1.PodSpec{RestartPolicy: corev1.RestartPolicyOnFailure,
		Containers: []corev1.Container{{Name: "c", Image: "busybox", Command: []string{"true"}}}}})
	r.waitFor("ok", 10*time.Second, func(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodSucceeded })
	r.waitFor("bad", 10*time.Second, func(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodSucceeded })
}

func TestLivenessProbeRestarts(t *testing.T) {
	r := newRig(t)
	r.add(&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "live"}, Spec: corev1.PodSpec{
		TerminationGracePeriodSeconds: ptr.To[int64](1),
		Containers: []corev1.Container{{Name: "c", Image: "busybox", Command: []string{"sleep", "60"},
			LivenessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"test", "-e", "/nonexistent"}}},
				PeriodSeconds: 1, FailureThreshold: 2}}}}})
	got := r.waitFor("live", 15*time.Second, func(p *corev1.Pod) bool {
		return len(p.Status.ContainerStatuses) > 0 && p.Status.ContainerStatuses[0].LastTerminationState.Terminated != nil
	})
	if code := got.Status.ContainerStatuses[0].LastTerminationState.Terminated.ExitCode; code != 128+15 {
		t.Fatalf("liveness kill exit code %d, want 143 (SIGTERM)", code)
	}
}

func TestGracefulDeletion(t *testing.T) {
	r := newRig(t)
	// One container exits on SIGTERM at once, the other ignores it and needs SIGKILL.
	polite := r.add(&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "polite"}, Spec: corev1.PodSpec{Containers: []corev1.Container{
		{Name: "c", Image: "busybox", Command: []string{"sh", "-c", "trap 'exit 0' TERM; while :; do sleep 0.05; done"}}}}})
	stubborn := r.add(&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "stubborn"}, Spec: corev1.PodSpec{Containers: []corev1.Container{
		{Name: "c", Image: "busybox", Command: []string{"sh", "-c", "trap '' TERM; while :; do sleep 0.05; done"}}}}})
	p1 := r.waitFor("polite", 10*time.Second, running)
	r.waitFor("stubborn", 10*time.Second, running)
	del := func(p *corev1.Pod, grace int64) time.Duration {
		cur, _ := r.cs.CoreV1().Pods("default").Get(context.Background(), p.Name, metav1.GetOptions{})
		now := metav1.Now()
		cur.DeletionTimestamp, cur.DeletionGracePeriodSeconds = &now, &grace
		t0 := time.Now()
		r.pm.update(cur)
		r.waitGone(p.Name, time.Duration(grace+10)*time.Second)
		return time.Since(t0)
	}
	if d := del(polite, 30); d > 5*time.Second {
		t.Errorf("polite pod took %s: SIGTERM not delivered", d)
	}
	if d := del(stubborn, 1); d < time.Second {
		t.Errorf("stubborn pod gone after %s, before its grace period", d)
	}
	for _, p := range []*corev1.Pod{polite, stubborn} {
		if r.sb.Exists(string(p.UID)) {
			t.Errorf("sandbox of %s left", p.Name)
		}
		if owners, _ := r.pm.ipam.Owners(); len(owners) != 0 {
			t.Errorf("IP leases left: %v", owners)
		}
	}
	if _, err := httpGet("http://" + p1.Status.PodIP + "/"); err == nil {
		t.Error("deleted pod's IP still answers")
	}
}

// waitGone waits until the agent has finished the pod (final delete done).
func (r *rig) waitGone(name string, d time.Duration) {
	r.t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if _, err := r.cs.CoreV1().Pods("default").Get(context.Background(), name, metav1.GetOptions{}); err != nil {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	r.t.Fatalf("pod %s not deleted by the agent within %s", name, d)
}

func TestHostNetworkPod(t *testing.T) {
	r := newRig(t)
	r.cfg.NodeIP = net.ParseIP("127.0.0.1")
	p := r.add(&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "hostnet"}, Spec: corev1.PodSpec{HostNetwork: true,
		Containers: []corev1.Container{{Name: "c", Image: "busybox", Command: []string{"sh", "-c", "readlink /proc/self/ns/net; exec sleep 60"}}}}})
	got := r.waitFor("hostnet", 10*time.Second, running)
	if got.Status.PodIP != "127.0.0.1" {
		t.Fatalf("podIP %s, want the node IP", got.Status.PodIP)
	}
	self, _ := os.Readlink("/proc/self/ns/net")
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(r.logOf(p, "c", 0), self) {
		if time.Now().After(deadline) {
			t.Fatalf("host-network container not in the node namespace %s: %q", self, r.logOf(p, "c", 0))
		}
		time.Sleep(50 * time.Millisecond)
	}
	entries, _ := os.ReadDir(sandbox.NetnsDir)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), r.cfg.NetnsPrefix) {
			t.Errorf("host-network pod got a namespace %s", e.Name())
		}
	}
}

func TestInitContainers(t *testing.T) {
	r := newRig(t)
	p := r.add(&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "withinit"}, Spec: corev1.PodSpec{
		InitContainers: []corev1.Container{
			{Name: "first", Image: "busybox", Command: []string{"sh", "-c", "echo first; sleep 0.2"}},
			{Name: "second", Image: "busybox", Command: []string{"sh", "-c", "echo second"}}},
		Containers: []corev1.Container{{Name: "main", Image: "busybox", Command: []string{"sleep", "60"}}}}})
	// While the first init container runs the pod is Pending and not Initialized.
	r.waitFor("withinit", 5*time.Second, func(p *corev1.Pod) bool {
		return p.Status.Phase == corev1.PodPending && len(p.Status.InitContainerStatuses) == 2 &&
			p.Status.InitContainerStatuses[0].State.Running != nil && p.Status.ContainerStatuses[0].State.Waiting.Reason == "PodInitializing"
	})
	got := r.waitFor("withinit", 10*time.Second, running)
	for _, cs := range got.Status.InitContainerStatuses {
		if cs.State.Terminated == nil || cs.State.Terminated.Reason != "Completed" {
			t.Errorf("init %s: %+v", cs.Name, cs.State)
		}
	}
	for _, c := range got.Status.Conditions {
		if c.Type == corev1.PodInitialized && c.Status != corev1.ConditionTrue {
			t.Errorf("Initialized %s", c.Status)
		}
	}
	if !strings.Contains(r.logOf(p, "second", 0), "second") {
		t.Errorf("init log %q", r.logOf(p, "second", 0))
	}
	r.add(&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "badinit"}, Spec: corev1.PodSpec{RestartPolicy: corev1.RestartPolicyNever,
		InitContainers: []corev1.Container{{Name: "fail", Image: "busybox", Command: []string{"false"}}},
		Containers:     []corev1.Container{{Name: "main", Image: "busybox", Command: []string{"sleep", "60"}}}}})
	bad := r.waitFor("badinit", 10*time.Second, func(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodFailed })
	if bad.Status.ContainerStatuses[0].State.Waiting == nil {
		t.Errorf("main container of a failed init ran: %+v", bad.Status.ContainerStatuses[0].State)
	}
}

func alive(pid int) bool {
	if err := syscall.Kill(pid, 0); err != nil {
		return false
	}
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	return !strings.Contains(string(b), ") Z ") // a zombie has already died
}

func TestWorkloadDiesWithAgent(t *testing.T) {
	testns.Require(t)
	self, _ := os.Executable()
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	// sh stands in for the agent: it starts the workload (which switches to
	// nobody, clearing the kernel's parent-death signal) and exits.
	out, err := exec.Command("sh", "-c", fmt.Sprintf("%s workload --parent-pid $$ --uid 65534 --port %d >/dev/null 2>&1 & echo $!; sleep 0.5", self, port)).Output()
	if err != nil {
		t.Fatal(err)
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(out)))
	deadline := time.Now().Add(3 * time.Second)
	for alive(pid) {
		if time.Now().After(deadline) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
			t.Fatalf("workload %d outlived its parent", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestKillRecorded(t *testing.T) {
	dir := t.TempDir()
	cmd := exec.Command("sleep", "60")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	writePidFile(filepath.Join(dir, "pods", "uid-1", "c.pid"), containerRecord{PID: cmd.Process.Pid})
	// A stale record (recycled PID: wrong start time) must be left alone.
	_ = os.WriteFile(filepath.Join(dir, "pods", "uid-1", "stale.pid"), []byte(fmt.Sprintf("%d 1\n", os.Getpid())), 0o600)
	if n := killRecorded(dir); n != 1 {
		t.Fatalf("killed %d, want 1", n)
	}
	select {
	case <-done:
	case <-time.After(3 * time.Second):
		t.Fatal("recorded process still running")
	}
	if files, _ := filepath.Glob(filepath.Join(dir, "pods", "*", "*.pid")); len(files) != 0 {
		t.Fatalf("records left: %v", files)
	}
}

func TestStartupProbeGatesReadiness(t *testing.T) {
	r := newRig(t)
	marker := filepath.Join(t.TempDir(), "started")
	r.add(&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "slow"}, Spec: corev1.PodSpec{Containers: []corev1.Container{{
		Name: "c", Image: "busybox", Command: []string{"sh", "-c", "sleep 1; touch " + marker + "; exec sleep 60"},
		// root: the test's temporary directory is private to root.
		SecurityContext: &corev1.SecurityContext{RunAsUser: ptr.To[int64](0)},
		StartupProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"test", "-e", marker}}},
			PeriodSeconds: 1, FailureThreshold: 10}}}}})
	got := r.waitFor("slow", 5*time.Second, running)
	cs := got.Status.ContainerStatuses[0]
	if _, err := os.Stat(marker); err != nil && (cs.Started == nil || *cs.Started || cs.Ready) {
		t.Fatalf("started/ready before the startup probe passed: %+v", cs)
	}
	r.waitFor("slow", 10*time.Second, func(p *corev1.Pod) bool {
		cs := p.Status.ContainerStatuses[0]
		return cs.Started != nil && *cs.Started && cs.Ready && isReady(p)
	})
}
