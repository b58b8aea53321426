package apiserver_test

import (
	"bufio"
	"context"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubelab/kubelab/apiserver/apitest"
)

func TestKubectlGetVariants(t *testing.T) {
	inst := apitest.Start(t)
	ctx := context.Background()
	f := writeFile(t, t.TempDir(), "web.yaml", webManifest)
	inst.MustKubectl(t, "apply", "-f", f)
	inst.MustKubectl(t, "create", "namespace", "other")
	for _, p := range []*corev1.Pod{newPod("web-1", "node-1"), newPod("web-2", "node-2")} {
		p.Labels = map[string]string{"app": "web"}
		if _, err := inst.Client.CoreV1().Pods("default").Create(ctx, p, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := inst.Client.CoreV1().Pods("other").Create(ctx, newPod("o-1", ""), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	out := inst.MustKubectl(t, "get", "pods")
	if !strings.Contains(out, "NAME") || !strings.Contains(out, "READY") || !strings.Contains(out, "STATUS") || !strings.Contains(out, "web-1") || strings.Contains(out, "o-1") {
		t.Errorf("get pods:\n%s", out)
	}
	out = inst.MustKubectl(t, "get", "pods", "-o", "wide")
	if !strings.Contains(out, "NODE") || !strings.Contains(out, "node-1") {
		t.Errorf("get pods -o wide:\n%s", out)
	}
	out = inst.MustKubectl(t, "get", "pods", "-A")
	if !strings.Contains(out, "NAMESPACE") || !strings.Contains(out, "other") || !strings.Contains(out, "o-1") {
		t.Errorf("get pods -A:\n%s", out)
	}
	out = inst.MustKubectl(t, "get", "pods", "--field-selector", "spec.nodeName=node-2")
	if !strings.Contains(out, "web-2") || strings.Contains(out, "web-1") {
		t.Errorf("field selector:\n%s", out)
	}
	out = inst.MustKubectl(t, "get", "pods", "-l", "app=web", "--show-labels")
	if !strings.Contains(out, "web-1") || !strings.Contains(out, "app=web") {
		t.Errorf("label selector:\n%s", out)
	}
	out = inst.MustKubectl(t, "get", "deploy", "web", "-o", "yaml")
	if !strings.Contains(out, "kind: Deployment") || !strings.Contains(out, "kubectl.kubernetes.io/last-applied-configuration") {
		t.Errorf("-o yaml:\n%s", out)
	}
	out = inst.MustKubectl(t, "get", "all")
	if !strings.Contains(out, "pod/web-1") || !strings.Contains(out, "service/web") || !strings.Contains(out, "deployment.apps/web") {
		t.Errorf("get all:\n%s", out)
	}
	out = inst.MustKubectl(t, "label", "pod", "web-1", "tier=frontend")
	if !strings.Contains(out, "pod/web-1 labeled") {
		t.Errorf("label: %s", out)
	}
	out = inst.MustKubectl(t, "patch", "deploy", "web", "-p", `{"spec":{"replicas":2}}`)
	if !strings.Contains(out, "deployment.apps/web patched") {
		t.Errorf("patch: %s", out)
	}
	out = inst.MustKubectl(t, "patch", "svc", "web", "--type=merge", "-p", `{"spec":{"internalTrafficPolicy":"Cluster"}}`)
	if !strings.Contains(out, "service/web patched") {
		t.Errorf("patch svc: %s", out)
	}
	out = inst.MustKubectl(t, "api-resources")
	for _, want := range []string{"deployments", "deploy", "apps/v1", "services", "svc", "endpointslices", "leases"} {
		if !strings.Contains(out, want) {
			t.Errorf("api-resources lacks %q:\n%s", want, out)
		}
	}
	out = inst.MustKubectl(t, "api-versions")
	if !strings.Contains(out, "apps/v1") || !strings.Contains(out, "discovery.k8s.io/v1") {
		t.Errorf("api-versions:\n%s", out)
	}
	out = inst.MustKubectl(t, "delete", "pod", "web-1", "--grace-period=0", "--force")
	if !strings.Contains(out, `pod "web-1" force deleted`) {
		t.Errorf("delete: %s", out)
	}
	out = inst.MustKubectl(t, "delete", "-f", f)
	if !strings.Contains(out, `deployment.apps "web" deleted`) {
		t.Errorf("delete -f: %s", out)
	}
}

func TestKubectlInvalidService(t *testing.T) {
	inst := apitest.Start(t)
	bad := strings.Replace(webManifest[strings.Index(webManifest, "---")+4:], "internalTrafficPolicy: Local", "internalTrafficPolicy: Foo", 1)
	bad = strings.Replace(bad, "name: web", "name: x", 1)
	f := writeFile(t, t.TempDir(), "bad.yaml", bad)
	_, errOut, err := inst.Kubectl(t, "apply", "-f", f)
	want := `The Service "x" is invalid: spec.internalTrafficPolicy: Unsupported value: "Foo": supported values: "Cluster", "Local"`
	if err == nil || !strings.Contains(errOut, want) {
		t.Fatalf("got %v\n%s\nwant %s", err, errOut, want)
	}
}

func TestKubectlGetWatch(t *testing.T) {
	inst := apitest.Start(t)
	ctx := context.Background()
	cmd := exec.Command(apitest.KubectlPath(t, ""), "--cache-dir", t.TempDir(), "get", "pods", "-w")
	cmd.Env = append(cmd.Environ(), "KUBECONFIG="+inst.Kubeconfig)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	lines := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	time.Sleep(time.Second) // let the watch start (the list is empty)
	if _, err := inst.Client.CoreV1().Pods("default").Create(ctx, newPod("w1", ""), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var got []string
	deadline := time.After(10 * time.Second)
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("kubectl exited; output %q", got)
			}
			got = append(got, l)
			if strings.HasPrefix(l, "w1 ") && strings.Contains(l, "Pending") {
				if !strings.HasPrefix(got[0], "NAME") {
					t.Fatalf("no table header: %q", got)
				}
				return
			}
		case <-deadline:
			t.Fatalf("no watch row for w1; output %q", got)
		}
	}
}

// TestVersionedKubectl drives apply and get with the versioned kubectl
// binaries users bring (skipped when a version is not installed).
func TestVersionedKubectl(t *testing.T) {
	for _, v := range []string{"1.27", "1.33"} {
		t.Run(v, func(t *testing.T) {
			bin := apitest.KubectlPath(t, v)
			inst := apitest.Start(t)
			f := writeFile(t, t.TempDir(), "web.yaml", webManifest)
			out, errOut, err := inst.KubectlBin(t, bin, "", "apply", "-f", f)
			if err != nil || !strings.Contains(out, "deployment.apps/web created") {
				t.Fatalf("apply: %v\n%s\n%s", err, out, errOut)
			}
			out, errOut, err = inst.KubectlBin(t, bin, "", "get", "deploy,svc")
			if err != nil || !strings.Contains(out, "deployment.apps/web") || !strings.Contains(out, "service/web") || !strings.Contains(out, "CLUSTER-IP") {
				t.Fatalf("get: %v\n%s\n%s", err, out, errOut)
			}
			out, errOut, err = inst.KubectlBin(t, bin, "", "create", "namespace", "n"+strings.ReplaceAll(v, ".", ""))
			if err != nil || !strings.Contains(out, "created") {
				t.Fatalf("create ns: %v\n%s\n%s", err, out, errOut)
			}
		})
	}
}

var _ = io.EOF

func TestKubectlDescribeEditExplainServerSide(t *testing.T) {
	inst := apitest.Start(t)
	f := writeFile(t, t.TempDir(), "web.yaml", webManifest)
	inst.MustKubectl(t, "apply", "-f", f)
	out := inst.MustKubectl(t, "describe", "svc", "web")
	if !strings.Contains(out, "Internal Traffic Policy:") || !strings.Contains(out, "Local") {
		t.Errorf("describe svc:\n%s", out)
	}
	out = inst.MustKubectl(t, "describe", "deploy", "web")
	if !strings.Contains(out, "Replicas:") || !strings.Contains(out, "StrategyType:") {
		t.Errorf("describe deploy:\n%s", out)
	}
	out = inst.MustKubectl(t, "explain", "service.spec.internalTrafficPolicy")
	if !strings.Contains(out, "internalTrafficPolicy") || !strings.Contains(out, "same node") {
		t.Errorf("explain:\n%s", out)
	}
	// edit through an editor script that changes the image
	editor := writeFile(t, t.TempDir(), "editor.sh", "#!/bin/sh\nsed -i 's/image: nginx$/image: nginx:1.27/' \"$1\"\n")
	if err := os.Chmod(editor, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(apitest.KubectlPath(t, ""), "--cache-dir", t.TempDir(), "edit", "deploy", "web")
	cmd.Env = append(cmd.Environ(), "KUBECONFIG="+inst.Kubeconfig, "KUBE_EDITOR="+editor)
	b, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(b), "deployment.apps/web edited") {
		t.Fatalf("edit: %v %s", err, b)
	}
	out = inst.MustKubectl(t, "get", "deploy", "web", "-o", "jsonpath={.spec.template.spec.containers[0].image} {.metadata.generation}")
	if out != "nginx:1.27 2" {
		t.Errorf("after edit: %q", out)
	}
	// server-side apply creates and updates
	cm := writeFile(t, t.TempDir(), "cm.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ssa\ndata:\n  a: \"1\"\n")
	out = inst.MustKubectl(t, "apply", "--server-side", "-f", cm)
	if !strings.Contains(out, "configmap/ssa serverside-applied") {
		t.Errorf("apply --server-side: %s", out)
	}
	// an unknown field is refused by strict validation
	typo := writeFile(t, t.TempDir(), "typo.yaml", strings.Replace(webManifest, "  replicas: 1", "  replica: 1", 1))
	_, errOut, err := inst.Kubectl(t, "apply", "-f", typo)
	if err == nil || !strings.Contains(errOut, `unknown field "spec.replica"`) {
		t.Errorf("strict apply: %v %s", err, errOut)
	}
}
