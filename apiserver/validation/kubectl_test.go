package validation

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// fakeServiceAPI accepts Service creates the way the API server core is
// meant to: decode, drop gated fields, default, allocate, validate; 422
// Status on errors and Warning headers for warnings.
func fakeServiceAPI(t *testing.T, opts Options) *httptest.Server {
	write := func(w http.ResponseWriter, code int, v interface{}) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		if err := json.NewEncoder(w).Encode(v); err != nil {
			t.Error(err)
		}
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/version", func(w http.ResponseWriter, r *http.Request) {
		write(w, 200, map[string]string{"major": "1", "minor": "32", "gitVersion": "v1.32.0"})
	})
	mux.HandleFunc("/api", func(w http.ResponseWriter, r *http.Request) {
		write(w, 200, metav1.APIVersions{TypeMeta: metav1.TypeMeta{Kind: "APIVersions"}, Versions: []string{"v1"},
			ServerAddressByClientCIDRs: []metav1.ServerAddressByClientCIDR{{ClientCIDR: "0.0.0.0/0", ServerAddress: r.Host}}})
	})
	mux.HandleFunc("/apis", func(w http.ResponseWriter, r *http.Request) {
		write(w, 200, metav1.APIGroupList{TypeMeta: metav1.TypeMeta{Kind: "APIGroupList", APIVersion: "v1"}})
	})
	mux.HandleFunc("/api/v1", func(w http.ResponseWriter, r *http.Request) {
		write(w, 200, metav1.APIResourceList{TypeMeta: metav1.TypeMeta{Kind: "APIResourceList", APIVersion: "v1"}, GroupVersion: "v1",
			APIResources: []metav1.APIResource{{Name: "services", SingularName: "service", Namespaced: true, Kind: "Service",
				Verbs: metav1.Verbs{"create", "get", "list"}, ShortNames: []string{"svc"}}}})
	})
	mux.HandleFunc("/api/v1/namespaces/default/services", func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			http.Error(w, "only create here", http.StatusMethodNotAllowed)
			return
		}
		body, _ := io.ReadAll(r.Body)
		svc := &corev1.Service{}
		if err := json.Unmarshal(body, svc); err != nil {
			write(w, 400, errors.NewBadRequest(err.Error()).Status())
			return
		}
		warnings, errs := prepareCreate(svc, opts)
		for _, w2 := range warnings {
			w.Header().Add("Warning", "299 - "+strconv.Quote(w2))
		}
		if len(errs) > 0 {
			st := errors.NewInvalid(schema.GroupKind{Kind: "Service"}, svc.Name, errs).Status()
			st.Kind, st.APIVersion = "Status", "v1"
			write(w, int(st.Code), st)
			return
		}
		svc.Kind, svc.APIVersion, svc.ResourceVersion = "Service", "v1", "1"
		write(w, 201, svc)
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

func prepareCreate(svc *corev1.Service, opts Options) ([]string, field.ErrorList) {
	DropDisabledFields(svc, nil, opts)
	Default(svc, nil, opts)
	allocated(svc)
	Default(svc, nil, opts)
	return Validate(svc, nil, opts)
}

func kubectlCreate(t *testing.T, minor, server, manifest string) (string, error) {
	t.Helper()
	p, err := exec.LookPath("kubectl")
	if err != nil {
		t.Skip("kubectl is not installed")
	}
	real, _ := filepath.EvalSymlinks(p)
	bin := filepath.Join(filepath.Dir(real), "kubectl.1."+minor)
	if _, err := os.Stat(bin); err != nil {
		t.Skipf("kubectl 1.%s is not installed", minor)
	}
	dir := t.TempDir()
	kc := filepath.Join(dir, "kubeconfig")
	cfg := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters: [{name: lab, cluster: {server: %q}}]
users: [{name: lab, user: {token: test}}]
contexts: [{name: lab, context: {cluster: lab, user: lab, namespace: default}}]
current-context: lab
`, server)
	mf := filepath.Join(dir, "svc.yaml")
	if err := os.WriteFile(kc, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(mf, []byte(manifest), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "--kubeconfig", kc, "--cache-dir", filepath.Join(dir, "cache"), "create", "--validate=false", "-f", mf)
	cmd.Env = append(os.Environ(), "HOME="+dir)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

const svcManifest = `apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  type: %s
  selector: {app: web}
  ports: [{port: 80}]
  internalTrafficPolicy: %s
%s`

func TestRealKubectlPrintsServiceErrorsAndWarnings(t *testing.T) {
	srv := fakeServiceAPI(t, DefaultOptions())
	for _, minor := range []string{"32", "27"} {
		t.Run("kubectl-1."+minor, func(t *testing.T) {
			out, err := kubectlCreate(t, minor, srv.URL, fmt.Sprintf(svcManifest, "ClusterIP", "Foo", ""))
			want := `The Service "web" is invalid: spec.internalTrafficPolicy: Unsupported value: "Foo": supported values: "Cluster", "Local"`
			if err == nil || !strings.Contains(out, want) {
				t.Errorf("bad ITP: err %v, output:\n%s\nwant a line: %s", err, out, want)
			}

			out, err = kubectlCreate(t, minor, srv.URL, fmt.Sprintf(svcManifest, "NodePort", "Local", "  externalTrafficPolicy: Local\n"))
			if err != nil {
				t.Fatalf("ETP+ITP Local refused: %v\n%s", err, out)
			}
			if !strings.Contains(out, "Warning: "+ITPWarning) || !strings.Contains(out, "service/web created") {
				t.Errorf("warning not printed:\n%s", out)
			}

			out, err = kubectlCreate(t, minor, srv.URL, fmt.Sprintf(svcManifest, "ClusterIP", "Local", "  externalTrafficPolicy: Local\n"))
			want = `The Service "web" is invalid: spec.externalTrafficPolicy: Invalid value: "Local": may only be set for externally-accessible services`
			if err == nil || !strings.Contains(out, want) {
				t.Errorf("ETP on ClusterIP: err %v, output:\n%s", err, out)
			}
		})
	}
}
