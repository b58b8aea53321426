package openapi

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/gorilla/mux"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubelab/kubelab/apiserver/resources"
)

// kubectlBinary finds a versioned kubectl (kubectl.1.28 ...) beside the real
// file behind `kubectl` on the PATH.
func kubectlBinary(t *testing.T, minor string) string {
	t.Helper()
	p, err := exec.LookPath("kubectl")
	if err == nil {
		if p, err = filepath.EvalSymlinks(p); err == nil {
			bin := filepath.Join(filepath.Dir(p), "kubectl.1."+minor)
			if _, err = os.Stat(bin); err == nil {
				return bin
			}
		}
	}
	if os.Getenv("CI") == "" {
		t.Skipf("kubectl 1.%s not installed beside kubectl on the PATH (%v); CI always runs this", minor, err)
	}
	t.Fatalf("kubectl 1.%s not found: %v", minor, err)
	return ""
}

// fakeAPI is the smallest API kubectl needs around the OpenAPI handlers:
// legacy discovery from the resource table, /version, and a NotFound Status
// for every object (so apply --dry-run=client takes the create path). It
// records the requests it saw.
type fakeAPI struct {
	mu       sync.Mutex
	requests []string
}

func (f *fakeAPI) saw(prefix string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, r := range f.requests {
		if strings.HasPrefix(r, prefix) {
			return true
		}
	}
	return false
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func startFakeAPI(t *testing.T) (*fakeAPI, string) {
	t.Helper()
	f := &fakeAPI{}
	r := mux.NewRouter()
	r.Use(func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			f.mu.Lock()
			f.requests = append(f.requests, req.Method+" "+req.URL.RequestURI()+" "+req.Header.Get("Accept"))
			f.mu.Unlock()
			next.ServeHTTP(w, req)
		})
	})
	if err := Register(r, resources.All); err != nil {
		t.Fatal(err)
	}
	r.Path("/version").HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, 200, map[string]string{"major": "1", "minor": "37", "gitVersion": kubeVersion()})
	})
	r.Path("/api").HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, 200, metav1.APIVersions{TypeMeta: metav1.TypeMeta{Kind: "APIVersions"}, Versions: []string{"v1"}})
	})
	r.Path("/apis").HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		list := metav1.APIGroupList{TypeMeta: metav1.TypeMeta{Kind: "APIGroupList", APIVersion: "v1"}}
		for _, gv := range resources.GroupVersions() {
			if gv.Group == "" {
				continue
			}
			v := metav1.GroupVersionForDiscovery{GroupVersion: gv.String(), Version: gv.Version}
			list.Groups = append(list.Groups, metav1.APIGroup{Name: gv.Group, Versions: []metav1.GroupVersionForDiscovery{v}, PreferredVersion: v})
		}
		writeJSON(w, 200, list)
	})
	discoveryFor := func(gvString string) http.HandlerFunc {
		return func(w http.ResponseWriter, _ *http.Request) {
			list := metav1.APIResourceList{TypeMeta: metav1.TypeMeta{Kind: "APIResourceList", APIVersion: "v1"}, GroupVersion: gvString}
			for _, res := range resources.All {
				if res.GVR.GroupVersion().String() == gvString {
					list.APIResources = append(list.APIResources, metav1.APIResource{Name: res.GVR.Resource, SingularName: res.Singular,
						Namespaced: res.Namespaced, Kind: res.Kind, Verbs: resources.Verbs, ShortNames: res.ShortNames, Categories: res.Categories})
				}
			}
			writeJSON(w, 200, list)
		}
	}
	for _, gv := range resources.GroupVersions() {
		r.Path(newGroupVersion(gv).prefix).HandlerFunc(discoveryFor(gv.String()))
	}
	r.NotFoundHandler = http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		writeJSON(w, 404, metav1.Status{TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"}, Status: "Failure",
			Reason: metav1.StatusReasonNotFound, Code: 404, Message: "not found: " + req.URL.Path})
	})
	srv := httptest.NewServer(r)
	t.Cleanup(srv.Close)

	dir := t.TempDir()
	kubeconfig := filepath.Join(dir, "kubeconfig")
	cfg := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters: [{name: lab, cluster: {server: %q}}]
users: [{name: lab, user: {}}]
contexts: [{name: lab, context: {cluster: lab, user: lab, namespace: default}}]
current-context: lab
`, srv.URL)
	if err := os.WriteFile(kubeconfig, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return f, kubeconfig
}

func runKubectl(t *testing.T, bin, kubeconfig, stdin string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+kubeconfig, "HOME="+t.TempDir())
	cmd.Stdin = strings.NewReader(stdin)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

// words normalises whitespace so wrapped kubectl output compares with a
// description.
func words(s string) string { return strings.Join(strings.Fields(s), " ") }

func TestKubectlExplain(t *testing.T) {
	for _, c := range []struct{ minor, format string }{
		{"1.32", ""}, {"1.32", "plaintext-openapiv2"}, {"1.29", ""}, {"1.33", ""}, {"1.27", ""},
	} {
		t.Run(c.minor+c.format, func(t *testing.T) {
			bin := kubectlBinary(t, strings.TrimPrefix(c.minor, "1."))
			_, kubeconfig := startFakeAPI(t)
			args := []string{"explain", "service.spec.internalTrafficPolicy"}
			if c.format != "" {
				args = append(args, "--output="+c.format)
			}
			out, err := runKubectl(t, bin, kubeconfig, "", args...)
			if err != nil {
				t.Fatalf("kubectl %v: %v\n%s", args, err, out)
			}
			// The first sentence is short enough never to be cut by wrapping.
			first, _, _ := strings.Cut(itpDoc, ".")
			if !strings.Contains(words(out), words(first)) || !strings.Contains(out, "internalTrafficPolicy") {
				t.Errorf("kubectl explain printed:\n%s\nwant the description %q", out, first)
			}
		})
	}
}

const manifests = `apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 1
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: nginx
        ports:
        - containerPort: 80
---
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  internalTrafficPolicy: Local
  selector: {app: web}
  ports:
  - port: 80
    targetPort: 80
`

// TestKubectlApplyValidation runs a strict client dry-run apply: every
// kubectl from 1.27 on must find what it needs (fieldValidation on the v3
// PATCH operations, the v2 protobuf for 1.27/1.28) and accept valid
// manifests.
func TestKubectlApplyValidation(t *testing.T) {
	for _, minor := range []string{"27", "28", "29", "32", "33"} {
		t.Run("1."+minor, func(t *testing.T) {
			bin := kubectlBinary(t, minor)
			api, kubeconfig := startFakeAPI(t)
			out, err := runKubectl(t, bin, kubeconfig, manifests, "apply", "--dry-run=client", "--validate=strict", "-f", "-")
			if err != nil {
				t.Fatalf("valid manifests: %v\n%s", err, out)
			}
			for _, want := range []string{"deployment.apps/web created (dry run)", "service/web created (dry run)"} {
				if !strings.Contains(out, want) {
					t.Errorf("output %q lacks %q", out, want)
				}
			}
			if minor >= "29" && !api.saw("GET /openapi/v3/api/v1?hash=") {
				t.Errorf("kubectl 1.%s did not fetch the v3 document: %v", minor, api.requests)
			}
			// A request for v2 from 1.29+ would mean v3 did not satisfy the
			// fieldValidation probe and kubectl fell back to client-side
			// validation.
			if minor >= "29" && api.saw("GET /openapi/v2") {
				t.Errorf("kubectl 1.%s fell back to OpenAPI v2: %v", minor, api.requests)
			}
			// 1.27 and 1.28 also load the v2 protobuf (and fail the apply when
			// it is missing or unparsable), then, like 1.29+, find
			// fieldValidation in v3 and leave validation to the server.
			if minor < "29" && !api.saw("GET /openapi/v2?") {
				t.Errorf("kubectl 1.%s did not fetch the v2 document: %v", minor, api.requests)
			}
		})
	}
}
