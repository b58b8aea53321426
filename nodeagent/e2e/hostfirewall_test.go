package e2e

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubelab/kubelab/nodeagent/internal/testns"
)

// TestDockerLikeHostFirewall reproduces, inside this package's private
// namespace, a host where Docker set the FORWARD policy to DROP while
// br_netfilter passes bridged traffic to iptables: `kubelab up` warns and
// names the rule that helps, traffic between pods on different nodes is
// indeed dropped, and with that one rule added it flows. kubelab itself
// changes nothing in the (here: simulated) host's rules.
func TestDockerLikeHostFirewall(t *testing.T) {
	testns.Require(t)
	if out, err := exec.Command("sysctl", "-n", "net.bridge.bridge-nf-call-iptables").Output(); err != nil || strings.TrimSpace(string(out)) != "1" {
		t.Skipf("br_netfilter does not pass bridged traffic to iptables here (%q, %v): nothing to reproduce", out, err)
	}
	iptables := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("iptables", append([]string{"-w"}, args...)...).CombinedOutput(); err != nil {
			t.Fatalf("iptables %v: %v: %s", args, err, out)
		}
	}
	iptables("-P", "FORWARD", "DROP")
	t.Cleanup(func() { _ = exec.Command("iptables", "-w", "-P", "FORWARD", "ACCEPT").Run() })

	l := startKubelabWarned(t, 2, "FORWARD policy DROP")
	bridge := l.name + "0"
	fix := fmt.Sprintf("iptables -I FORWARD -i %[1]s -o %[1]s -j ACCEPT", bridge)
	if !strings.Contains(l.out.String(), fix) {
		t.Fatalf("warning does not name the rule %q:\n%s", fix, l.out.String())
	}

	l.apply(`apiVersion: v1
kind: Pod
metadata:
  name: far
spec:
  nodeName: node-2
  containers:
  - name: web
    image: registry.example/web:1.0
    ports:
    - containerPort: 8080
`)
	var ip string
	eventually(t, 60*time.Second, "pod far Ready on node-2", func() error {
		p, err := l.client.CoreV1().Pods("default").Get(context.Background(), "far", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if !podReady(p) {
			return fmt.Errorf("phase %s", p.Status.Phase)
		}
		ip = p.Status.PodIP
		return nil
	})
	curl := func() (string, error) {
		out, err := exec.Command(l.bin, "node", "exec", "--data-dir", l.dataDir, "node-1", "--",
			"curl", "-sS", "-m", "2", fmt.Sprintf("http://%s:8080/", ip)).CombinedOutput()
		return string(out), err
	}
	// From node-1 the packets cross the bridge to node-2: dropped.
	if out, err := curl(); err == nil {
		t.Fatalf("node-1 reached the pod on node-2 through a FORWARD DROP policy: %s", out)
	}
	iptables("-I", "FORWARD", "-i", bridge, "-o", bridge, "-j", "ACCEPT")
	t.Cleanup(func() {
		_ = exec.Command("iptables", "-w", "-D", "FORWARD", "-i", bridge, "-o", bridge, "-j", "ACCEPT").Run()
	})
	eventually(t, 10*time.Second, "node-1 reaches the pod on node-2 with the suggested rule", func() error {
		out, err := curl()
		if err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		if !strings.Contains(out, "on node node-2") {
			return fmt.Errorf("unexpected page %q", out)
		}
		return nil
	})
}
