package examples

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kubelab/kubelab/cmd/kubelabtest"
)

// These tests run the reference scenario of design §6 the way a user does:
// the kubelab binary (`kubelab up`), the real kubectl, and curl inside the
// lab's node namespaces. They need root; in CI they always run.

func requireRoot(t testing.TB) {
	t.Helper()
	if os.Getuid() != 0 {
		if os.Getenv("CI") != "" {
			t.Fatal("end-to-end lab tests need root, and CI runs as root")
		}
		t.Skip("needs root to create the lab's network namespaces (runs in CI as root)")
	}
	for _, tool := range []string{"iptables", "ip", "curl", "kubectl"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not found: run `make deps`", tool)
		}
	}
}

// lab is one running `kubelab up`, with a unique name, subnet and API port.
type lab struct {
	t       testing.TB
	bin     string
	name    string
	subnet  string
	dataDir string
	port    int
	extra   []string
	cmd     *exec.Cmd
	out     *kubelabtest.Output
}

func freePort(t testing.TB) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// newLab prepares (but does not start) a lab whose every host object is
// unique to this test and removed when it ends, even on failure.
func newLab(t testing.TB, extra ...string) *lab {
	requireRoot(t)
	r := rand.New(rand.NewSource(time.Now().UnixNano()))
	l := &lab{
		t: t, bin: kubelabtest.Binary(t),
		name:    fmt.Sprintf("kle%04x", r.Intn(1<<16)),
		subnet:  fmt.Sprintf("10.202.%d.0/24", r.Intn(250)),
		dataDir: t.TempDir(),
		port:    freePort(t),
		extra:   extra,
	}
	t.Cleanup(func() {
		l.stop()
		out, err := exec.Command(l.bin, "down", "--data-dir", l.dataDir, "--name", l.name).CombinedOutput()
		if err != nil {
			t.Errorf("kubelab down: %v\n%s", err, out)
		}
		if left, _ := filepath.Glob("/var/run/netns/" + l.name + "-*"); len(left) > 0 {
			t.Errorf("namespaces left behind: %v", left)
		}
		if t.Failed() {
			l.dumpLogs()
		}
	})
	return l
}

func (l *lab) start(nodes int) {
	l.t.Helper()
	args := append([]string{"up", "--nodes", fmt.Sprint(nodes), "--name", l.name, "--data-dir", l.dataDir,
		"--api-port", fmt.Sprint(l.port), "--subnet", l.subnet}, l.extra...)
	l.out = &kubelabtest.Output{}
	l.cmd = exec.Command(l.bin, args...)
	l.cmd.Stdout, l.cmd.Stderr = l.out, l.out
	if err := l.cmd.Start(); err != nil {
		l.t.Fatal(err)
	}
	deadline := time.Now().Add(90 * time.Second)
	for !strings.Contains(l.out.String(), "is up with") {
		if l.cmd.ProcessState != nil || time.Now().After(deadline) {
			l.t.Fatalf("kubelab up did not come up:\n%s", l.out.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	if strings.Contains(l.out.String(), "warning:") {
		l.t.Fatalf("kubelab up reported a problem:\n%s", l.out.String())
	}
}

// stop ends `kubelab up` as a user does with Ctrl-C.
func (l *lab) stop() {
	if l.cmd == nil || l.cmd.Process == nil {
		return
	}
	_ = l.cmd.Process.Signal(syscall.SIGINT)
	done := make(chan error, 1)
	go func() { done <- l.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			l.t.Errorf("kubelab up exited with %v:\n%s", err, l.out.String())
		}
	case <-time.After(60 * time.Second):
		_ = l.cmd.Process.Kill()
		<-done
		l.t.Errorf("kubelab up did not stop within a minute:\n%s", l.out.String())
	}
	l.cmd = nil
}

func (l *lab) dumpLogs() {
	logs, _ := filepath.Glob(filepath.Join(l.dataDir, "nodes", "*", "agent.log"))
	for _, f := range logs {
		b, _ := os.ReadFile(f)
		if len(b) > 4000 {
			b = b[len(b)-4000:]
		}
		l.t.Logf("---- %s (tail)\n%s", f, b)
	}
}

// kubectl runs the real kubectl against the lab and returns stdout, stderr.
func (l *lab) kubectl(args ...string) (string, string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "kubectl", args...)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+filepath.Join(l.dataDir, "kubeconfig"))
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	return stdout.String(), stderr.String(), err
}

func (l *lab) mustKubectl(args ...string) string {
	l.t.Helper()
	out, errOut, err := l.kubectl(args...)
	if err != nil {
		l.t.Fatalf("kubectl %s: %v\n%s%s", strings.Join(args, " "), err, out, errOut)
	}
	return out
}

// curlResult is what a user sees from curl in a node.
type curlResult struct {
	exit   int
	stdout string
	stderr string
}

// curl runs curl inside a node's namespace through `kubelab node exec`.
func (l *lab) curl(node, url string, maxTime int, extra ...string) curlResult {
	l.t.Helper()
	args := append([]string{"node", "exec", "--data-dir", l.dataDir, node, "--", "curl", "-sS", "-m", fmt.Sprint(maxTime)}, extra...)
	cmd := exec.Command(l.bin, append(args, url)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	res := curlResult{stdout: stdout.String(), stderr: stderr.String()}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		res.exit = ee.ExitCode()
	} else if err != nil {
		l.t.Fatalf("node exec curl: %v", err)
	}
	return res
}

// eventually retries check until it returns nil or the time is up; the
// proxy and controllers converge asynchronously, as in a real cluster.
func eventually(t testing.TB, what string, timeout time.Duration, check func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func writeManifest(t testing.TB, name string) string {
	t.Helper()
	b, err := Manifests.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

const app = "my-nginx-internal-traffic"

// podsByNode returns pod name -> node for the scenario's ready pods.
func (l *lab) readyPodsByNode() map[string]string {
	out, _, err := l.kubectl("get", "pods", "-l", "run="+app, "-o",
		`jsonpath={range .items[*]}{.metadata.name} {.spec.nodeName} {.status.podIP} {.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}`)
	if err != nil {
		return nil
	}
	m := map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 4 && f[3] == "True" && f[2] != "" {
			m[f[0]] = f[1]
		}
	}
	return m
}

func (l *lab) clusterIP(svc string) string {
	l.t.Helper()
	ip := strings.TrimSpace(l.mustKubectl("get", "svc", svc, "-o", "jsonpath={.spec.clusterIP}"))
	if net.ParseIP(ip) == nil {
		l.t.Fatalf("service %s has no ClusterIP: %q", svc, ip)
	}
	return ip
}

// applyScenario applies the reference example and waits for its one pod.
func (l *lab) applyScenario() (podNode, otherNode, clusterIP string) {
	l.t.Helper()
	out := l.mustKubectl("apply", "-f", writeManifest(l.t, "internal-traffic-policy.yaml"))
	for _, want := range []string{"deployment.apps/" + app + " created", "service/" + app + " created"} {
		if !strings.Contains(out, want) {
			l.t.Fatalf("kubectl apply printed %q, want %q", out, want)
		}
	}
	var pods map[string]string
	eventually(l.t, "the pod runs and is ready", 60*time.Second, func() error {
		if pods = l.readyPodsByNode(); len(pods) != 1 {
			return fmt.Errorf("ready pods: %v", pods)
		}
		return nil
	})
	for _, n := range pods {
		podNode = n
	}
	otherNode = "node-1"
	if podNode == "node-1" {
		otherNode = "node-2"
	}
	return podNode, otherNode, l.clusterIP(app)
}

// expectPage waits until curl from node returns a page naming one of pods.
func (l *lab) expectPage(node, url string, pods map[string]string) string {
	l.t.Helper()
	var got string
	eventually(l.t, "curl from "+node+" returns the page", 30*time.Second, func() error {
		r := l.curl(node, url, 5)
		if r.exit != 0 {
			return fmt.Errorf("curl exit %d: %s", r.exit, r.stderr)
		}
		for p := range pods {
			if strings.Contains(r.stdout, p) {
				got = p
				return nil
			}
		}
		return fmt.Errorf("page %q names none of %v", r.stdout, pods)
	})
	return got
}

// expectRefused waits until curl from node fails at once with exit code 7.
// curl 7.88 words every connect failure "Couldn't connect to server"; its
// verbose trace names the errno, so -v tells a refusal from anything else.
func (l *lab) expectRefused(node, url string) {
	l.t.Helper()
	eventually(l.t, "curl from "+node+" is refused", 30*time.Second, func() error {
		r := l.curl(node, url, 5, "-v")
		if r.exit != 7 || !strings.Contains(r.stderr, "Connection refused") {
			return fmt.Errorf("curl exit %d, stderr %q, stdout %q; want exit 7 and Connection refused", r.exit, r.stderr, r.stdout)
		}
		return nil
	})
}

func TestReferenceScenario(t *testing.T) {
	l := newLab(t)
	l.start(2)
	podNode, otherNode, ip := l.applyScenario()
	url := "http://" + ip + "/"

	header := strings.Fields(strings.SplitN(l.mustKubectl("get", "svc"), "\n", 2)[0])
	if want := []string{"NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"}; strings.Join(header, " ") != strings.Join(want, " ") {
		t.Errorf("kubectl get svc columns = %v, want %v", header, want)
	}
	pods := l.readyPodsByNode()

	// Local: the page from the pod's node, refused at once from the other.
	page := l.expectPage(podNode, url, pods)
	l.expectRefused(otherNode, url)
	checkWalkthrough(t, header, page, l.curl(otherNode, url, 5))

	// Cluster: the page from both nodes.
	l.mustKubectl("patch", "svc", app, "-p", `{"spec":{"internalTrafficPolicy":"Cluster"}}`)
	l.expectPage(otherNode, url, pods)
	l.expectPage(podNode, url, pods)

	// Two replicas, one per node, back to Local: each node reaches only its own pod.
	l.mustKubectl("scale", "deployment", app, "--replicas=2")
	eventually(t, "two ready pods, one per node", 60*time.Second, func() error {
		pods = l.readyPodsByNode()
		nodes := map[string]bool{}
		for _, n := range pods {
			nodes[n] = true
		}
		if len(pods) != 2 || len(nodes) != 2 {
			return fmt.Errorf("ready pods by node: %v", pods)
		}
		return nil
	})
	l.mustKubectl("patch", "svc", app, "-p", `{"spec":{"internalTrafficPolicy":"Local"}}`)
	for _, node := range []string{"node-1", "node-2"} {
		for i := 0; i < 5; i++ {
			got := l.expectPage(node, url, pods)
			if pods[got] != node {
				t.Fatalf("from %s under Local the page came from %s on %s", node, got, pods[got])
			}
		}
	}
}

// checkWalkthrough keeps the README's walkthrough honest: the lines it shows
// are the ones this run printed (addresses and names elided with x).
func checkWalkthrough(t *testing.T, svcHeader []string, podName string, refused curlResult) {
	t.Helper()
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	text := string(readme)
	for _, want := range []string{
		"deployment.apps/" + app + " created",
		"service/" + app + " created",
		strings.Join(svcHeader, " "),
		"kubelab: pod default/" + app + "-",
		"curl: (7) Failed to connect to ",
		"failed: Connection refused",
	} {
		if !strings.Contains(strings.Join(strings.Fields(text), " "), want) {
			t.Errorf("README walkthrough lacks %q", want)
		}
	}
	if !strings.HasPrefix(podName, app+"-") {
		t.Errorf("pod %q is not named as the README shows", podName)
	}
	if got := strings.SplitN(refused.stderr, " port ", 2)[0]; !strings.HasPrefix(got, "curl: (7) Failed to connect to ") {
		t.Errorf("curl printed %q, the README shows \"curl: (7) Failed to connect to ...\"", refused.stderr)
	}
}

func TestScenarioWithDropAndGateOff(t *testing.T) {
	t.Run("no-local-endpoints=drop", func(t *testing.T) {
		l := newLab(t, "--no-local-endpoints", "drop")
		l.start(2)
		podNode, otherNode, ip := l.applyScenario()
		url := "http://" + ip + "/"
		l.expectPage(podNode, url, l.readyPodsByNode())
		eventually(t, "curl from "+otherNode+" times out", 30*time.Second, func() error {
			if r := l.curl(otherNode, url, 2); r.exit != 28 {
				return fmt.Errorf("curl exit %d (%s), want 28 (timed out: dropped)", r.exit, r.stderr)
			}
			return nil
		})
	})
	t.Run("gate off", func(t *testing.T) {
		l := newLab(t, "--feature-gates", "ServiceInternalTrafficPolicy=false")
		l.start(2)
		podNode, otherNode, ip := l.applyScenario()
		url := "http://" + ip + "/"
		pods := l.readyPodsByNode()
		l.expectPage(podNode, url, pods)
		l.expectPage(otherNode, url, pods)
		if got := l.mustKubectl("get", "svc", app, "-o", "jsonpath={.spec.internalTrafficPolicy}"); got != "" {
			t.Errorf("with the gate off the field was stored: %q", got)
		}
	})
}

func TestRestartKeepsClusterIPAndScenario(t *testing.T) {
	l := newLab(t)
	l.start(2)
	_, _, ip := l.applyScenario()
	l.stop()
	l.start(2)
	if got := l.clusterIP(app); got != ip {
		t.Fatalf("ClusterIP after restart = %s, want %s", got, ip)
	}
	var pods map[string]string
	eventually(t, "the pod is ready again after restart", 60*time.Second, func() error {
		if pods = l.readyPodsByNode(); len(pods) != 1 {
			return fmt.Errorf("ready pods: %v", pods)
		}
		return nil
	})
	var podNode string
	for _, n := range pods {
		podNode = n
	}
	other := map[string]string{"node-1": "node-2", "node-2": "node-1"}[podNode]
	l.expectPage(podNode, "http://"+ip+"/", pods)
	l.expectRefused(other, "http://"+ip+"/")
}

// TestEveryExampleApplies applies each manifest in this folder with the real
// kubectl, checking what the API says back (the ETP Local warning included).
func TestEveryExampleApplies(t *testing.T) {
	l := newLab(t)
	l.start(2)
	entries, err := Manifests.ReadDir(".")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		out, errOut, err := l.kubectl("apply", "-f", writeManifest(t, e.Name()))
		if err != nil {
			t.Errorf("apply %s: %v\n%s%s", e.Name(), err, out, errOut)
			continue
		}
		if !strings.Contains(out, "created") {
			t.Errorf("apply %s printed %q", e.Name(), out)
		}
		if e.Name() == "external-traffic-policy-local.yaml" && !strings.Contains(errOut, "Warning:") {
			t.Errorf("apply %s: no warning that internalTrafficPolicy has no effect; stderr %q", e.Name(), errOut)
		}
	}
	// spread.yaml: 4 replicas on 2 nodes land 2 and 2.
	eventually(t, "spread pods are placed 2 and 2", 60*time.Second, func() error {
		out, _, err := l.kubectl("get", "pods", "-l", "app=spread", "-o", "jsonpath={.items[*].spec.nodeName}")
		if err != nil {
			return err
		}
		perNode := map[string]int{}
		for _, n := range strings.Fields(out) {
			perNode[n]++
		}
		if perNode["node-1"] != 2 || perNode["node-2"] != 2 {
			return fmt.Errorf("pods per node: %v", perNode)
		}
		return nil
	})
}
