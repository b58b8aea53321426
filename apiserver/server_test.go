package apiserver_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubelab/kubelab/apiserver/apitest"
)

const webManifest = `apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {app: web}
spec:
  replicas: 1
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: nginx
        image: nginx
        ports:
        - containerPort: 80
---
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  selector: {app: web}
  internalTrafficPolicy: Local
  ports:
  - port: 80
    targetPort: 80
`

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestBuiltinNamespacesAndCRUD(t *testing.T) {
	inst := apitest.Start(t)
	ctx := context.Background()
	nss, err := inst.Client.CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, n := range nss.Items {
		names = append(names, n.Name)
		if n.Status.Phase != corev1.NamespaceActive {
			t.Errorf("namespace %s phase %q", n.Name, n.Status.Phase)
		}
	}
	if got := strings.Join(names, ","); got != "default,kube-node-lease,kube-public,kube-system" {
		t.Fatalf("namespaces = %s", got)
	}
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "c1"}, Data: map[string]string{"a": "b"}}
	got, err := inst.Client.CoreV1().ConfigMaps("default").Create(ctx, cm, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got.UID == "" || got.ResourceVersion == "" || got.CreationTimestamp.IsZero() {
		t.Fatalf("metadata not set: %+v", got.ObjectMeta)
	}
	if _, err := inst.Client.CoreV1().ConfigMaps("default").Create(ctx, cm, metav1.CreateOptions{}); !apierrors.IsAlreadyExists(err) {
		t.Fatalf("second create: %v", err)
	}
	if _, err := inst.Client.CoreV1().ConfigMaps("nope").Create(ctx, cm, metav1.CreateOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("create in missing namespace: %v", err)
	}
	d := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "d"}, Spec: appsv1.DeploymentSpec{
		Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"a": "b"}},
		Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"a": "b"}},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "nginx"}}}},
	}}
	dd, err := inst.Client.AppsV1().Deployments("default").Create(ctx, d, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if dd.Generation != 1 {
		t.Fatalf("generation = %d", dd.Generation)
	}
	dd.Labels = map[string]string{"x": "y"}
	dd2, err := inst.Client.AppsV1().Deployments("default").Update(ctx, dd, metav1.UpdateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if dd2.Generation != 1 {
		t.Fatalf("metadata-only update bumped generation to %d", dd2.Generation)
	}
	dd2.Spec.Template.Spec.Containers[0].Image = "nginx:2"
	dd3, err := inst.Client.AppsV1().Deployments("default").Update(ctx, dd2, metav1.UpdateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if dd3.Generation != 2 {
		t.Fatalf("spec update generation = %d", dd3.Generation)
	}
	if _, err := inst.Client.AppsV1().Deployments("default").Update(ctx, dd2, metav1.UpdateOptions{}); !apierrors.IsConflict(err) {
		t.Fatalf("stale update: %v", err)
	}
	if err := inst.Client.AppsV1().Deployments("default").Delete(ctx, "d", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := inst.Client.AppsV1().Deployments("default").Get(ctx, "d", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("get after delete: %v", err)
	}
}

func TestKubectlApplyGet(t *testing.T) {
	inst := apitest.Start(t)
	f := writeFile(t, t.TempDir(), "web.yaml", webManifest)
	out := inst.MustKubectl(t, "apply", "-f", f)
	if !strings.Contains(out, "deployment.apps/web created") || !strings.Contains(out, "service/web created") {
		t.Fatalf("first apply: %s", out)
	}
	out = inst.MustKubectl(t, "apply", "-f", f)
	if !strings.Contains(out, "deployment.apps/web unchanged") || !strings.Contains(out, "service/web unchanged") {
		t.Fatalf("second apply: %s", out)
	}
	f2 := writeFile(t, t.TempDir(), "web.yaml", strings.Replace(webManifest, "replicas: 1", "replicas: 3", 1))
	out = inst.MustKubectl(t, "apply", "-f", f2)
	if !strings.Contains(out, "deployment.apps/web configured") || !strings.Contains(out, "service/web unchanged") {
		t.Fatalf("third apply: %s", out)
	}
	out = inst.MustKubectl(t, "get", "svc")
	t.Log(out)
	for _, col := range []string{"NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE", "ClusterIP", "80/TCP"} {
		if !strings.Contains(out, col) {
			t.Errorf("get svc lacks %q:\n%s", col, out)
		}
	}
	out = inst.MustKubectl(t, "get", "deploy", "-o", "wide")
	t.Log(out)
	if !strings.Contains(out, "CONTAINERS") || !strings.Contains(out, "nginx") {
		t.Errorf("get deploy -o wide:\n%s", out)
	}
}
