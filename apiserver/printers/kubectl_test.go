package printers

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
)

// kubectlBinary finds a real kubectl of the given minor: the versioned
// binaries sit beside the dispatcher that `kubectl` on the PATH links to.
func kubectlBinary(t *testing.T, minor string) string {
	t.Helper()
	p, err := exec.LookPath("kubectl")
	if err != nil {
		t.Skip("kubectl is not installed")
	}
	real, err := filepath.EvalSymlinks(p)
	if err != nil {
		t.Fatal(err)
	}
	v := filepath.Join(filepath.Dir(real), "kubectl.1."+minor)
	if _, err := os.Stat(v); err != nil {
		t.Skipf("kubectl 1.%s is not installed beside %s", minor, real)
	}
	return v
}

// fakeAPI is the smallest API kubectl get needs: legacy discovery and list
// endpoints that answer with ToTable when asked for a Table, as the real
// server core will.
func fakeAPI(t *testing.T, lists map[string]runtime.Object) *httptest.Server {
	write := func(w http.ResponseWriter, v interface{}) {
		w.Header().Set("Content-Type", "application/json")
		if err := json.NewEncoder(w).Encode(v); err != nil {
			t.Error(err)
		}
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/version", func(w http.ResponseWriter, r *http.Request) {
		write(w, map[string]string{"major": "1", "minor": "32", "gitVersion": "v1.32.0"})
	})
	mux.HandleFunc("/api", func(w http.ResponseWriter, r *http.Request) {
		write(w, metav1.APIVersions{TypeMeta: metav1.TypeMeta{Kind: "APIVersions"}, Versions: []string{"v1"},
			ServerAddressByClientCIDRs: []metav1.ServerAddressByClientCIDR{{ClientCIDR: "0.0.0.0/0", ServerAddress: r.Host}}})
	})
	mux.HandleFunc("/apis", func(w http.ResponseWriter, r *http.Request) {
		gv := metav1.GroupVersionForDiscovery{GroupVersion: "apps/v1", Version: "v1"}
		write(w, metav1.APIGroupList{TypeMeta: metav1.TypeMeta{Kind: "APIGroupList", APIVersion: "v1"},
			Groups: []metav1.APIGroup{{Name: "apps", Versions: []metav1.GroupVersionForDiscovery{gv}, PreferredVersion: gv}}})
	})
	verbs := metav1.Verbs{"get", "list"}
	mux.HandleFunc("/api/v1", func(w http.ResponseWriter, r *http.Request) {
		write(w, metav1.APIResourceList{TypeMeta: metav1.TypeMeta{Kind: "APIResourceList", APIVersion: "v1"}, GroupVersion: "v1",
			APIResources: []metav1.APIResource{
				{Name: "pods", SingularName: "pod", Namespaced: true, Kind: "Pod", Verbs: verbs, ShortNames: []string{"po"}},
				{Name: "services", SingularName: "service", Namespaced: true, Kind: "Service", Verbs: verbs, ShortNames: []string{"svc"}},
			}})
	})
	mux.HandleFunc("/apis/apps/v1", func(w http.ResponseWriter, r *http.Request) {
		write(w, metav1.APIResourceList{TypeMeta: metav1.TypeMeta{Kind: "APIResourceList", APIVersion: "v1"}, GroupVersion: "apps/v1",
			APIResources: []metav1.APIResource{{Name: "deployments", SingularName: "deployment", Namespaced: true, Kind: "Deployment", Verbs: verbs, ShortNames: []string{"deploy"}}}})
	})
	for path, list := range lists {
		mux.HandleFunc(path, func(w http.ResponseWriter, r *http.Request) {
			if !strings.Contains(r.Header.Get("Accept"), "as=Table") {
				t.Errorf("kubectl did not ask for a Table: %q", r.Header.Get("Accept"))
			}
			opts := Options{IncludeObject: metav1.IncludeObjectPolicy(r.URL.Query().Get("includeObject"))}
			tab, err := ToTable(list, opts)
			if err != nil {
				t.Error(err)
				http.Error(w, err.Error(), 500)
				return
			}
			write(w, tab)
		})
	}
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

func runKubectl(t *testing.T, bin, server string, args ...string) string {
	t.Helper()
	dir := t.TempDir()
	cfg := `apiVersion: v1
kind: Config
clusters: [{name: lab, cluster: {server: "` + server + `"}}]
users: [{name: lab, user: {token: test}}]
contexts: [{name: lab, context: {cluster: lab, user: lab, namespace: default}}]
current-context: lab
`
	kc := filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(kc, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, append([]string{"--kubeconfig", kc, "--cache-dir", filepath.Join(dir, "cache")}, args...)...)
	cmd.Env = append(os.Environ(), "HOME="+dir)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("kubectl %v: %v\n%s", args, err, out)
	}
	return string(out)
}

var spaces = regexp.MustCompile(` {2,}`)

// squeeze makes kubectl's aligned columns comparable: runs of spaces
// become one " | ".
func squeeze(s string) string {
	var lines []string
	for _, l := range strings.Split(strings.TrimRight(s, "\n"), "\n") {
		lines = append(lines, spaces.ReplaceAllString(strings.TrimRight(l, " "), " | "))
	}
	return strings.Join(lines, "\n")
}

func TestRealKubectlRendersTables(t *testing.T) {
	created := metav1.NewTime(time.Now().Add(-5*time.Minute - 10*time.Second))
	pods := &corev1.PodList{ListMeta: metav1.ListMeta{ResourceVersion: "20"}, Items: []corev1.Pod{{
		ObjectMeta: metav1.ObjectMeta{Name: "web-7d9f-abcde", Namespace: "default", Labels: map[string]string{"app": "web"}, CreationTimestamp: created},
		Spec:       corev1.PodSpec{NodeName: "node-2", Containers: []corev1.Container{{Name: "nginx", Image: "nginx"}}},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "10.244.2.5", PodIPs: []corev1.PodIP{{IP: "10.244.2.5"}},
			ContainerStatuses: []corev1.ContainerStatus{{Name: "nginx", Ready: true, State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}}}},
	}}}
	svcs := &corev1.ServiceList{ListMeta: metav1.ListMeta{ResourceVersion: "21"}, Items: []corev1.Service{{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default", CreationTimestamp: created},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeClusterIP, ClusterIP: "10.96.0.10", ClusterIPs: []string{"10.96.0.10"},
			Selector: map[string]string{"app": "web"},
			Ports:    []corev1.ServicePort{{Port: 80, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromInt32(80)}}},
	}}}
	deps := &appsv1.DeploymentList{ListMeta: metav1.ListMeta{ResourceVersion: "22"}, Items: []appsv1.Deployment{{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default", CreationTimestamp: created},
		Spec: appsv1.DeploymentSpec{Replicas: ptr.To[int32](1), Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
			Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "nginx", Image: "nginx"}}}}},
		Status: appsv1.DeploymentStatus{ReadyReplicas: 1, UpdatedReplicas: 1, AvailableReplicas: 1},
	}}}
	srv := fakeAPI(t, map[string]runtime.Object{
		"/api/v1/namespaces/default/pods":              pods,
		"/api/v1/pods":                                 pods,
		"/api/v1/namespaces/default/services":          svcs,
		"/apis/apps/v1/namespaces/default/deployments": deps,
	})

	for _, minor := range []string{"32", "27", "33"} {
		t.Run("kubectl-1."+minor, func(t *testing.T) {
			bin := kubectlBinary(t, minor)
			cases := []struct {
				args []string
				want string
			}{
				{[]string{"get", "pods"}, "NAME | READY | STATUS | RESTARTS | AGE\nweb-7d9f-abcde | 1/1 | Running | 0 | 5m10s"},
				{[]string{"get", "pods", "-o", "wide"},
					"NAME | READY | STATUS | RESTARTS | AGE | IP | NODE | NOMINATED NODE | READINESS GATES\n" +
						"web-7d9f-abcde | 1/1 | Running | 0 | 5m10s | 10.244.2.5 | node-2 | <none> | <none>"},
				{[]string{"get", "pods", "-A", "--show-labels"},
					"NAMESPACE | NAME | READY | STATUS | RESTARTS | AGE | LABELS\ndefault | web-7d9f-abcde | 1/1 | Running | 0 | 5m10s | app=web"},
				{[]string{"get", "svc"}, "NAME | TYPE | CLUSTER-IP | EXTERNAL-IP | PORT(S) | AGE\nweb | ClusterIP | 10.96.0.10 | <none> | 80/TCP | 5m10s"},
				{[]string{"get", "deploy", "-o", "wide"},
					"NAME | READY | UP-TO-DATE | AVAILABLE | AGE | CONTAINERS | IMAGES | SELECTOR\nweb | 1/1 | 1 | 1 | 5m10s | nginx | nginx | app=web"},
				{[]string{"get", "pods,svc"},
					"NAME | READY | STATUS | RESTARTS | AGE\npod/web-7d9f-abcde | 1/1 | Running | 0 | 5m10s\n\n" +
						"NAME | TYPE | CLUSTER-IP | EXTERNAL-IP | PORT(S) | AGE\nservice/web | ClusterIP | 10.96.0.10 | <none> | 80/TCP | 5m10s"},
				{[]string{"get", "pods", "--sort-by", ".metadata.name", "--no-headers"}, "web-7d9f-abcde | 1/1 | Running | 0 | 5m10s"},
			}
			for _, c := range cases {
				got := squeeze(runKubectl(t, bin, srv.URL, c.args...))
				// Ages tick while the test runs; accept the next seconds too.
				got = regexp.MustCompile(`\b5m([0-9]+s)?\b`).ReplaceAllString(got, "5m10s")
				if got != c.want {
					t.Errorf("kubectl %s\n got:\n%s\nwant:\n%s", strings.Join(c.args, " "), got, c.want)
				}
			}
		})
	}
}
