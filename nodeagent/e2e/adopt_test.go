package e2e

import (
	"context"
	"fmt"
	"math/rand"
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
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"github.com/kubelab/kubelab/apiserver/apitest"
	"github.com/kubelab/kubelab/nodeagent"
	"github.com/kubelab/kubelab/nodeagent/internal/testns"
	"github.com/kubelab/kubelab/nodeagent/sandbox"
)

// agentProc is the agent in its own process and its own mount namespace, as
// `ip netns exec` starts it in the lab: pod namespaces it mounts are its own,
// so a restarted agent must mount them again.
type agentProc struct {
	cmd  *exec.Cmd
	done chan struct{}
}

func startAgentProc(t *testing.T, inst *apitest.Instance, env []string) *agentProc {
	t.Helper()
	self, _ := os.Executable()
	cmd := exec.Command("unshare", "--mount", "--propagation", "slave", "--", self, "agent")
	cmd.Env = append(append(os.Environ(), "E2E_SERVER="+inst.Config.Host, "E2E_TOKEN="+filepath.Join(inst.DataDir, "node-token"),
		"E2E_CA="+filepath.Join(inst.DataDir, "pki", "ca.crt")), env...)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	a := &agentProc{cmd: cmd, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(a.done) }()
	t.Cleanup(func() { a.stop(t, syscall.SIGTERM) })
	return a
}

func (a *agentProc) stop(t *testing.T, sig syscall.Signal) {
	select {
	case <-a.done:
		return
	default:
	}
	_ = a.cmd.Process.Signal(sig)
	select {
	case <-a.done:
	case <-time.After(20 * time.Second):
		_ = a.cmd.Process.Kill()
		t.Error("agent did not stop")
	}
}

func workloadPID(t *testing.T, pod string) int {
	t.Helper()
	return findProcessMatching(t, "workload\x00--pod\x00default/"+pod+"\x00")
}

func findProcessMatching(t *testing.T, sub string) int {
	t.Helper()
	var pid int
	eventually(t, 10*time.Second, "process "+strings.ReplaceAll(sub, "\x00", " "), func() error {
		entries, _ := os.ReadDir("/proc")
		for _, e := range entries {
			n, err := strconv.Atoi(e.Name())
			if err != nil {
				continue
			}
			b, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
			if strings.Contains(string(b), sub) {
				pid = n
				return nil
			}
		}
		return fmt.Errorf("not found")
	})
	return pid
}

// TestAgentAdoptsPodsAfterKill kills the agent outright (SIGKILL) and starts
// it again: the pods still bound to the node keep their processes (same
// PIDs), IPs, restart counts and readiness; logs written meanwhile and after
// reach `kubectl logs`; probes run again; an adopted process that dies is
// noticed and restarted; a pod deleted while the agent was down has its
// process stopped and sandbox removed.
func TestAgentAdoptsPodsAfterKill(t *testing.T) {
	testns.Require(t)
	inst := apitest.Start(t)
	admin := inst.Client
	ctx := context.Background()
	nodeIP := nodeLink(t, "10.200.0.1/24")
	dataDir := t.TempDir()
	prefix := fmt.Sprintf("kload%d-", os.Getpid())
	env := []string{"E2E_DATA=" + dataDir, "E2E_NODE=node-1", "E2E_IP=" + nodeIP.String(), "E2E_PREFIX=" + prefix}
	t.Cleanup(func() {
		if err := nodeagent.Cleanup(nodeagent.Config{NetnsPrefix: prefix, DataDir: dataDir}); err != nil {
			t.Errorf("cleanup: %v", err)
		}
		entries, _ := os.ReadDir(sandbox.NetnsDir)
		for _, e := range entries {
			if strings.HasPrefix(e.Name(), prefix) {
				t.Errorf("leaked namespace %s", e.Name())
			}
		}
	})
	a1 := startAgentProc(t, inst, env)
	eventually(t, 20*time.Second, "node registered", func() error {
		_, err := admin.CoreV1().Nodes().Get(ctx, "node-1", metav1.GetOptions{})
		return err
	})
	setPodCIDR(t, admin, "node-1", "10.244.1.0/24")

	marker := strconv.Itoa(4000 + rand.Intn(4000))
	// Unique pod names: other packages' tests may run workloads for pods
	// named alike at the same time, and processes are found by command line.
	webName, doomedName := "web-"+marker, "doomed-"+marker
	web := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: webName, Namespace: "default"}, Spec: corev1.PodSpec{NodeName: "node-1",
		Containers: []corev1.Container{{Name: "web", Image: "nginx", Ports: []corev1.ContainerPort{{ContainerPort: 80}},
			ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/", Port: intstr.FromInt32(80)}},
				PeriodSeconds: 1}}}}}
	sleeper := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "sleeper", Namespace: "default"}, Spec: corev1.PodSpec{NodeName: "node-1",
		Containers: []corev1.Container{{Name: "c", Image: "busybox", Command: []string{"sleep", marker}}}}}
	doomed := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: doomedName, Namespace: "default"}, Spec: corev1.PodSpec{NodeName: "node-1",
		TerminationGracePeriodSeconds: ptr.To[int64](0),
		Containers:                    []corev1.Container{{Name: "web", Image: "nginx"}}}}
	for _, p := range []*corev1.Pod{web, sleeper, doomed} {
		if _, err := admin.CoreV1().Pods("default").Create(ctx, p, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	before := map[string]*corev1.Pod{}
	for _, name := range []string{webName, "sleeper", doomedName} {
		eventually(t, 20*time.Second, name+" Ready", func() error {
			p, err := admin.CoreV1().Pods("default").Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			if !podReady(p) {
				return fmt.Errorf("phase %s", p.Status.Phase)
			}
			before[name] = p
			return nil
		})
	}
	webPID, doomedPID := workloadPID(t, webName), workloadPID(t, doomedName)
	sleepPID := findProcessMatching(t, "sleep\x00"+marker+"\x00")
	ip := before[webName].Status.PodIP
	if _, err := httpGet("http://" + ip + "/"); err != nil {
		t.Fatal(err)
	}

	a1.stop(t, syscall.SIGKILL)
	// Down time: the pods run on, the workload keeps serving and logging
	// (into its pipe, which the next agent drains).
	if _, err := httpGet("http://" + ip + "/during-" + marker); err != nil {
		t.Fatalf("web stopped answering when the agent died: %v", err)
	}
	if err := admin.CoreV1().Pods("default").Delete(ctx, doomedName, metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)}); err != nil {
		t.Fatal(err)
	}

	startAgentProc(t, inst, env)
	eventually(t, 20*time.Second, "doomed's process stopped and sandbox removed", func() error {
		if alive(doomedPID) {
			return fmt.Errorf("pid %d alive", doomedPID)
		}
		if _, err := os.Stat(filepath.Join(sandbox.NetnsDir, (&sandbox.Manager{Prefix: prefix}).NetnsName(string(before[doomedName].UID)))); err == nil {
			return fmt.Errorf("namespace remains")
		}
		return nil
	})
	if !alive(webPID) || !alive(sleepPID) {
		t.Fatalf("adopted processes died: web %v sleep %v", alive(webPID), alive(sleepPID))
	}
	if got := workloadPID(t, webName); got != webPID {
		t.Fatalf("web's workload is pid %d, was %d: restarted, not adopted", got, webPID)
	}
	// Logs: the request made while no agent ran, and one made now.
	if _, err := httpGet("http://" + ip + "/after-" + marker); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "logs through the API after adoption", func() error {
		b, err := admin.CoreV1().Pods("default").GetLogs(webName, &corev1.PodLogOptions{}).DoRaw(ctx)
		if err != nil {
			return err
		}
		for _, want := range []string{"GET /during-" + marker, "GET /after-" + marker} {
			if !strings.Contains(string(b), want) {
				return fmt.Errorf("no %q in %q", want, b)
			}
		}
		return nil
	})
	// Status: same IP, no restart, still Ready, and the probe runs again (its
	// requests reach the workload's log).
	p, err := admin.CoreV1().Pods("default").Get(ctx, webName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if p.Status.PodIP != ip || !podReady(p) || p.Status.ContainerStatuses[0].RestartCount != 0 ||
		p.Status.ContainerStatuses[0].ContainerID != before[webName].Status.ContainerStatuses[0].ContainerID {
		t.Fatalf("after adoption: ip %s ready %v status %+v", p.Status.PodIP, podReady(p), p.Status.ContainerStatuses)
	}
	eventually(t, 10*time.Second, "readiness probe runs again", func() error {
		b, err := admin.CoreV1().Pods("default").GetLogs(webName, &corev1.PodLogOptions{}).DoRaw(ctx)
		if err != nil {
			return err
		}
		if i := strings.Index(string(b), "GET /after-"+marker); i < 0 || !strings.Contains(string(b)[i:], "kube-probe") {
			return fmt.Errorf("no probe request after adoption in %q", b)
		}
		return nil
	})

	// An adopted process that dies is noticed (no exit code: not our child).
	if err := syscall.Kill(sleepPID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "death of an adopted process noticed", func() error {
		p, err := admin.CoreV1().Pods("default").Get(ctx, "sleeper", metav1.GetOptions{})
		if err != nil {
			return err
		}
		cs := p.Status.ContainerStatuses[0]
		if term := cs.LastTerminationState.Terminated; term == nil || term.Reason != "ContainerStatusUnknown" || cs.State.Running != nil {
			return fmt.Errorf("status %+v", cs)
		}
		return nil
	})

	// Deleting an adopted pod stops its process.
	if err := admin.CoreV1().Pods("default").Delete(ctx, webName, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, "adopted web process stopped on delete", func() error {
		if alive(webPID) {
			return fmt.Errorf("pid %d alive", webPID)
		}
		return nil
	})
}

func alive(pid int) bool {
	if err := syscall.Kill(pid, 0); err != nil {
		return false
	}
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	return !strings.Contains(string(b), ") Z ")
}

func httpGet(url string) (string, error) {
	out, err := exec.Command("curl", "-sS", "-m", "3", "-A", "e2e", url).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("%v: %s", err, out)
	}
	return string(out), nil
}
