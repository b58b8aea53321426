package apiserver_test

import (
	"context"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"

	"github.com/kubelab/kubelab/apiserver/apitest"
)

func managers(m metav1.Object) string {
	var out []string
	for _, e := range m.GetManagedFields() {
		s := e.Manager + ":" + string(e.Operation)
		if e.Subresource != "" {
			s += ":" + e.Subresource
		}
		out = append(out, s)
	}
	return strings.Join(out, ",")
}

// TestServerSideApply: managedFields start at an object's first apply and
// record every write after by its field manager; apply owns fields, removes the ones a manifest drops,
// reports conflicts with other managers (kubectl's message) unless forced,
// and a write that changes nothing changes nothing.
func TestServerSideApply(t *testing.T) {
	inst := apitest.Start(t)
	ctx := context.Background()
	cms := inst.Client.CoreV1().ConfigMaps("default")

	apply := func(ac *corev1ac.ConfigMapApplyConfiguration, manager string, force bool) (*corev1.ConfigMap, error) {
		return cms.Apply(ctx, ac, metav1.ApplyOptions{FieldManager: manager, Force: force})
	}
	// An object created and updated without apply is not tracked ...
	c, err := cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "upd"}, Data: map[string]string{"a": "1"}}, metav1.CreateOptions{FieldManager: "creator"})
	if err != nil {
		t.Fatal(err)
	}
	c.Data["b"] = "2"
	if c, err = cms.Update(ctx, c, metav1.UpdateOptions{FieldManager: "updater"}); err != nil || managers(c) != "" {
		t.Fatalf("untracked update: %v %q", err, managers(c))
	}
	// ... until its first apply: what it had belongs to "before-first-apply".
	c, err = apply(corev1ac.ConfigMap("upd", "default").WithData(map[string]string{"z": "1"}), "alice", false)
	if err != nil || managers(c) != "alice:Apply,before-first-apply:Update" || len(c.Data) != 3 {
		t.Fatalf("first apply: %v %q %v", err, managers(c), c.Data)
	}
	_, err = apply(corev1ac.ConfigMap("upd", "default").WithData(map[string]string{"z": "1", "a": "9"}), "alice", false)
	if !apierrors.IsConflict(err) || !strings.Contains(err.Error(), `conflict with "before-first-apply"`) {
		t.Fatalf("apply over pre-existing fields: %v", err)
	}
	// From then on updates are recorded under ?fieldManager or the user agent.
	c.Data["b"] = "3"
	if c, err = cms.Update(ctx, c, metav1.UpdateOptions{FieldManager: "updater"}); err != nil {
		t.Fatal(err)
	}
	if m := managers(c); m != "alice:Apply,before-first-apply:Update,updater:Update" {
		t.Fatalf("update after apply: %q", m)
	}
	same, err := cms.Update(ctx, c, metav1.UpdateOptions{FieldManager: "updater"})
	if err != nil || same.ResourceVersion != c.ResourceVersion {
		t.Fatalf("no-op update wrote: %v %s -> %s", err, c.ResourceVersion, same.ResourceVersion)
	}
	if _, err := cms.Patch(ctx, "upd", types.MergePatchType, []byte(`{"data":{"c":"3"}}`), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	got, _ := cms.Get(ctx, "upd", metav1.GetOptions{})
	// client-go's user agent is the test binary's name.
	if m := managers(got); !strings.Contains(m, "apiserver.test:Update") {
		t.Fatalf("patch by user agent: %q", m)
	}

	// Status writes of an applied object are recorded against the status
	// subresource.
	pa := corev1ac.Pod("p", "default").WithSpec(corev1ac.PodSpec().WithNodeName("node-1").
		WithContainers(corev1ac.Container().WithName("c").WithImage("nginx")))
	pod, err := inst.Client.CoreV1().Pods("default").Apply(ctx, pa, metav1.ApplyOptions{FieldManager: "creator"})
	if err != nil {
		t.Fatal(err)
	}
	pod.Status.Phase = corev1.PodRunning
	if pod, err = inst.Client.CoreV1().Pods("default").UpdateStatus(ctx, pod, metav1.UpdateOptions{FieldManager: "agent"}); err != nil {
		t.Fatal(err)
	}
	if m := managers(pod); m != "creator:Apply,agent:Update:status" {
		t.Fatalf("status managedFields: %q", m)
	}

	// Apply creates; re-applying without a field removes it.
	a, err := apply(corev1ac.ConfigMap("ssa", "default").WithData(map[string]string{"x": "1", "y": "2"}), "alice", false)
	if err != nil {
		t.Fatal(err)
	}
	if m := managers(a); m != "alice:Apply" || a.Data["y"] != "2" {
		t.Fatalf("apply create: %q %v", m, a.Data)
	}
	a, err = apply(corev1ac.ConfigMap("ssa", "default").WithData(map[string]string{"x": "1"}), "alice", false)
	if err != nil || len(a.Data) != 1 {
		t.Fatalf("apply dropping y: %v %v", err, a.Data)
	}
	again, err := apply(corev1ac.ConfigMap("ssa", "default").WithData(map[string]string{"x": "1"}), "alice", false)
	if err != nil || again.ResourceVersion != a.ResourceVersion {
		t.Fatalf("re-applying the same configuration wrote: %v %s -> %s", err, a.ResourceVersion, again.ResourceVersion)
	}
	// Another applier touching alice's field conflicts, unless forced.
	_, err = apply(corev1ac.ConfigMap("ssa", "default").WithData(map[string]string{"x": "9"}), "bob", false)
	if !apierrors.IsConflict(err) || !strings.Contains(err.Error(), `conflict with "alice"`) || !strings.Contains(err.Error(), ".data.x") {
		t.Fatalf("conflict: %v", err)
	}
	b, err := apply(corev1ac.ConfigMap("ssa", "default").WithData(map[string]string{"x": "9"}), "bob", true)
	if err != nil || b.Data["x"] != "9" || managers(b) != "bob:Apply" {
		t.Fatalf("forced apply: %v %v %q", err, b.Data, managers(b))
	}
	// Apply needs a field manager (kube-apiserver's 422).
	err = inst.Client.CoreV1().RESTClient().Patch(types.ApplyPatchType).Namespace("default").Resource("configmaps").Name("ssa").
		Body([]byte("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ssa\n")).Do(ctx).Error()
	if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), "fieldManager: Required value") {
		t.Fatalf("apply without manager: %v", err)
	}

	// kubectl: apply --server-side, a patch by someone else, the conflict
	// kubectl prints, then --force-conflicts.
	f := writeFile(t, t.TempDir(), "web.yaml", webManifest)
	inst.MustKubectl(t, "apply", "--server-side", "-f", f)
	inst.MustKubectl(t, "patch", "deploy", "web", "--type=merge", "-p", `{"spec":{"replicas":3}}`)
	_, errOut, err := inst.Kubectl(t, "apply", "--server-side", "-f", f)
	if err == nil || !strings.Contains(errOut, "Apply failed with 1 conflict") || !strings.Contains(errOut, `conflict with "kubectl-patch"`) || !strings.Contains(errOut, ".spec.replicas") {
		t.Fatalf("kubectl conflict: %v\n%s", err, errOut)
	}
	inst.MustKubectl(t, "apply", "--server-side", "--force-conflicts", "-f", f)
	out := inst.MustKubectl(t, "get", "deploy", "web", "-o", "jsonpath={.spec.replicas}")
	if out != "1" {
		t.Fatalf("replicas after forced apply: %q", out)
	}
	out = inst.MustKubectl(t, "get", "deploy", "web", "-o", "yaml", "--show-managed-fields")
	if !strings.Contains(out, "manager: kubectl\n") || !strings.Contains(out, "operation: Apply") || !strings.Contains(out, "f:replicas: {}") {
		t.Fatalf("managed fields in -o yaml:\n%s", out)
	}
}
