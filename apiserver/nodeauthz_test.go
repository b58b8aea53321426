package apiserver_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/utils/ptr"

	"github.com/kubelab/kubelab/apiserver"
	"github.com/kubelab/kubelab/apiserver/apitest"
)

// joinNode obtains a node credential through the join endpoint, as the
// agent does, and returns a client configuration and a kubeconfig file.
func joinNode(t *testing.T, inst *apitest.Instance, name string) (*rest.Config, string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: name}}, key)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := json.Marshal(apiserver.JoinRequest{NodeName: name, CSR: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csr}))})
	tok, err := os.ReadFile(inst.TokenFile())
	if err != nil {
		t.Fatal(err)
	}
	resp, rb := doReq(t, httpClient(t, inst, false), "POST", inst.URL()+"/kubelab/v1/join", "application/json", body, "Authorization", "Bearer "+strings.TrimSpace(string(tok)))
	if resp.StatusCode != 200 {
		t.Fatalf("join %s: %d %s", name, resp.StatusCode, rb)
	}
	var jr apiserver.JoinResponse
	if err := json.Unmarshal(rb, &jr); err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalECPrivateKey(key)
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})
	// Protobuf both ways, as the agent's client (nodeagent/join.go).
	cfg := &rest.Config{Host: inst.URL(), QPS: -1, UserAgent: "kubelab-agent", TLSClientConfig: rest.TLSClientConfig{
		CAData: []byte(jr.CA), CertData: []byte(jr.Certificate), KeyData: keyPEM},
		ContentConfig: rest.ContentConfig{ContentType: "application/vnd.kubernetes.protobuf",
			AcceptContentTypes: "application/vnd.kubernetes.protobuf,application/json"}}
	kc := clientcmdapi.NewConfig()
	kc.Clusters["c"] = &clientcmdapi.Cluster{Server: inst.URL(), CertificateAuthorityData: []byte(jr.CA)}
	kc.AuthInfos["n"] = &clientcmdapi.AuthInfo{ClientCertificateData: []byte(jr.Certificate), ClientKeyData: keyPEM}
	kc.Contexts["n"] = &clientcmdapi.Context{Cluster: "c", AuthInfo: "n"}
	kc.CurrentContext = "n"
	path := filepath.Join(t.TempDir(), name+".kubeconfig")
	if err := clientcmd.WriteToFile(*kc, path); err != nil {
		t.Fatal(err)
	}
	return cfg, path
}

func wantForbidden(t *testing.T, what string, err error, msg string) {
	t.Helper()
	if !apierrors.IsForbidden(err) || err.Error() != msg {
		t.Errorf("%s: got %v\n want 403 %q", what, err, msg)
	}
}

// TestNodeAuthorization: a node credential may do what the agent and its
// proxy do (grep of nodeagent/ and proxy/: register and update its Node
// and status, renew its Lease, read nodes/pods/services/endpointslices,
// update the status of and delete its own pods, record events) and
// nothing else, with kube-apiserver's 403 messages; `kubectl auth can-i`
// answers the same.
func TestNodeAuthorization(t *testing.T) {
	inst := apitest.Start(t)
	ctx := context.Background()
	admin := inst.Client
	cfg1, kubeconfig1 := joinNode(t, inst, "node-1")
	cfg2, _ := joinNode(t, inst, "node-2")
	n1 := mustClientset(t, cfg1)
	n2 := mustClientset(t, cfg2)
	const user = `User "system:node:node-1"`

	// Nodes: its own, created, updated and with status.
	node := func(name string) *corev1.Node { return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}} }
	if _, err := n1.CoreV1().Nodes().Create(ctx, node("node-1"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	_, err := n1.CoreV1().Nodes().Create(ctx, node("node-2"), metav1.CreateOptions{})
	wantForbidden(t, "create another node", err, `nodes "node-2" is forbidden: node "node-1" is not allowed to modify node "node-2"`)
	if _, err := n2.CoreV1().Nodes().Create(ctx, node("node-2"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	own, err := n1.CoreV1().Nodes().Get(ctx, "node-1", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	own.Labels = map[string]string{"x": "y"}
	if own, err = n1.CoreV1().Nodes().Update(ctx, own, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	own.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}}
	if _, err := n1.CoreV1().Nodes().UpdateStatus(ctx, own, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	other, err := n1.CoreV1().Nodes().Get(ctx, "node-2", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = n1.CoreV1().Nodes().UpdateStatus(ctx, other, metav1.UpdateOptions{})
	wantForbidden(t, "status of another node", err, `nodes "node-2" is forbidden: node "node-1" is not allowed to modify node "node-2"`)
	err = n1.CoreV1().Nodes().Delete(ctx, "node-2", metav1.DeleteOptions{})
	wantForbidden(t, "delete another node", err, `nodes "node-2" is forbidden: node "node-1" is not allowed to modify node "node-2"`)

	// Reads the agent's informers and the proxy make.
	if _, err := n1.CoreV1().Nodes().List(ctx, metav1.ListOptions{}); err != nil {
		t.Fatal(err)
	}
	w, err := n1.CoreV1().Pods("").Watch(ctx, metav1.ListOptions{FieldSelector: "spec.nodeName=node-1"})
	if err != nil {
		t.Fatal(err)
	}
	w.Stop()
	for what, f := range map[string]func() error{
		"pods":      func() error { _, err := n1.CoreV1().Pods("").List(ctx, metav1.ListOptions{}); return err },
		"services":  func() error { _, err := n1.CoreV1().Services("").List(ctx, metav1.ListOptions{}); return err },
		"endpoints": func() error { _, err := n1.CoreV1().Endpoints("").List(ctx, metav1.ListOptions{}); return err },
		"endpointslices": func() error {
			_, err := n1.DiscoveryV1().EndpointSlices("").List(ctx, metav1.ListOptions{})
			return err
		},
		"namespaces": func() error { _, err := n1.CoreV1().Namespaces().Get(ctx, "default", metav1.GetOptions{}); return err },
		"discovery":  func() error { _, err := n1.Discovery().ServerGroups(); return err },
		"version":    func() error { _, err := n1.Discovery().ServerVersion(); return err },
	} {
		if err := f(); err != nil {
			t.Errorf("node read %s: %v", what, err)
		}
	}

	// Pods: status and deletion of its own only.
	for _, p := range []*corev1.Pod{newPod("mine", "node-1"), newPod("theirs", "node-2")} {
		if p.Name == "mine" {
			p.Spec.Containers[0].EnvFrom = []corev1.EnvFromSource{{ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "used"}}}}
		}
		if _, err := admin.CoreV1().Pods("default").Create(ctx, p, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	mine, _ := n1.CoreV1().Pods("default").Get(ctx, "mine", metav1.GetOptions{})
	mine.Status.Phase = corev1.PodRunning
	if _, err := n1.CoreV1().Pods("default").UpdateStatus(ctx, mine, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	theirs, _ := n1.CoreV1().Pods("default").Get(ctx, "theirs", metav1.GetOptions{})
	theirs.Status.Phase = corev1.PodRunning
	_, err = n1.CoreV1().Pods("default").UpdateStatus(ctx, theirs, metav1.UpdateOptions{})
	wantForbidden(t, "status of another node's pod", err, `pods "theirs" is forbidden: node "node-1" can only update pod status for pods with spec.nodeName set to itself`)
	err = n1.CoreV1().Pods("default").Delete(ctx, "theirs", metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)})
	wantForbidden(t, "delete another node's pod", err, `pods "theirs" is forbidden: node "node-1" can only delete pods with spec.nodeName set to itself`)
	_, err = n1.CoreV1().Pods("default").Create(ctx, newPod("new", "node-1"), metav1.CreateOptions{})
	wantForbidden(t, "create a pod", err, `pods is forbidden: `+user+` cannot create resource "pods" in API group "" in the namespace "default"`)
	_, err = n1.CoreV1().Pods("default").Update(ctx, mine, metav1.UpdateOptions{})
	wantForbidden(t, "update a pod", err, `pods "mine" is forbidden: `+user+` cannot update resource "pods" in API group "" in the namespace "default"`)

	// ConfigMaps and Secrets: only those its pods use, one at a time.
	for _, name := range []string{"used", "unused"} {
		if _, err := admin.CoreV1().ConfigMaps("default").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := n1.CoreV1().ConfigMaps("default").Get(ctx, "used", metav1.GetOptions{}); err != nil {
		t.Fatalf("configmap of its pod: %v", err)
	}
	_, err = n2.CoreV1().ConfigMaps("default").Get(ctx, "used", metav1.GetOptions{})
	wantForbidden(t, "configmap of another node's pod", err, `configmaps "used" is forbidden: User "system:node:node-2" cannot get resource "configmaps" in API group "" in the namespace "default": no relationship found between node 'node-2' and this object`)
	_, err = n1.CoreV1().Secrets("default").List(ctx, metav1.ListOptions{})
	wantForbidden(t, "list secrets", err, `secrets is forbidden: `+user+` cannot list resource "secrets" in API group "" in the namespace "default": can only read individual resources of this type`)

	// Its Lease in kube-node-lease, nobody else's.
	leases := n1.CoordinationV1().Leases(corev1.NamespaceNodeLease)
	lease := func(name string) *coordinationv1.Lease {
		return &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: coordinationv1.LeaseSpec{HolderIdentity: ptr.To(name)}}
	}
	l, err := leases.Create(ctx, lease("node-1"), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	l.Spec.RenewTime = &metav1.MicroTime{Time: time.Now()}
	if _, err := leases.Update(ctx, l, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	_, err = leases.Create(ctx, lease("node-2"), metav1.CreateOptions{})
	wantForbidden(t, "another node's lease", err, `leases.coordination.k8s.io "node-2" is forbidden: can only access node lease with the same name as the requesting node`)
	_, err = n1.CoordinationV1().Leases("default").Get(ctx, "node-1", metav1.GetOptions{})
	wantForbidden(t, "lease elsewhere", err, `leases.coordination.k8s.io "node-1" is forbidden: `+user+` cannot get resource "leases" in API group "coordination.k8s.io" in the namespace "default"`)

	// Events: recorded.
	ev := &corev1.Event{ObjectMeta: metav1.ObjectMeta{Name: "mine.1"}, InvolvedObject: corev1.ObjectReference{Kind: "Pod", Namespace: "default", Name: "mine"},
		Reason: "Started", Message: "m", Type: corev1.EventTypeNormal, Source: corev1.EventSource{Component: "kubelet", Host: "node-1"}}
	if _, err := n1.CoreV1().Events("default").Create(ctx, ev, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	// Everything else: 403.
	_, err = n1.AppsV1().Deployments("default").List(ctx, metav1.ListOptions{})
	wantForbidden(t, "deployments", err, `deployments.apps is forbidden: `+user+` cannot list resource "deployments" in API group "apps" in the namespace "default"`)
	err = n1.CoreV1().Namespaces().Delete(ctx, "kube-public", metav1.DeleteOptions{})
	wantForbidden(t, "delete a namespace", err, `namespaces "kube-public" is forbidden: `+user+` cannot delete resource "namespaces" in API group "" at the cluster scope`)
	err = n1.CoreV1().RESTClient().Get().AbsPath("/api/v1/namespaces/default/pods/mine/log").Do(ctx).Error()
	wantForbidden(t, "pod log", err, `pods "mine" is forbidden: `+user+` cannot get resource "pods/log" in API group "" in the namespace "default"`)
	err = n1.CoreV1().RESTClient().Get().AbsPath("/metrics").Do(ctx).Error()
	wantForbidden(t, "metrics", err, `forbidden: `+user+` cannot get path "/metrics"`)
	// The join endpoint answers a node that presents its certificate too
	// (it checks the join token itself): a wrong token is a 401, not a 403.
	nhc, err := rest.HTTPClientFor(cfg1)
	if err != nil {
		t.Fatal(err)
	}
	if resp, rb := doReq(t, nhc, "POST", inst.URL()+"/kubelab/v1/join", "application/json", []byte(`{}`), "Authorization", "Bearer wrong"); resp.StatusCode != 401 {
		t.Errorf("join with a node certificate: %d %s", resp.StatusCode, rb)
	}
	// The node's own pod deletion works (graceful: marked).
	if err := n1.CoreV1().Pods("default").Delete(ctx, "mine", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}

	// kubectl auth can-i with the node's kubeconfig says the same.
	kubectl := apitest.KubectlPath(t, "")
	cacheDir := filepath.Join(t.TempDir(), "cache")
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"list", "pods", "-A"}, "yes"},
		{[]string{"watch", "endpointslices.discovery.k8s.io", "-A"}, "yes"},
		{[]string{"update", "nodes/node-1", "--subresource=status"}, "yes"},
		{[]string{"update", "nodes/node-2"}, "no"},
		{[]string{"update", "pods/theirs", "--subresource=status", "-n", "default"}, "no"},
		{[]string{"delete", "pods/theirs", "-n", "default"}, "no"},
		{[]string{"get", "configmaps/used", "-n", "default"}, "yes"},
		{[]string{"get", "configmaps/unused", "-n", "default"}, "no"},
		{[]string{"create", "deployments", "-n", "default"}, "no"},
		{[]string{"update", "leases/node-1", "-n", "kube-node-lease"}, "yes"},
		{[]string{"create", "events", "-n", "default"}, "yes"},
		{[]string{"get", "/metrics"}, "no"},
		{[]string{"get", "/version"}, "yes"},
	} {
		cmd := exec.Command(kubectl, append([]string{"--cache-dir", cacheDir, "auth", "can-i"}, c.args...)...)
		cmd.Env = append(os.Environ(), "KUBECONFIG="+kubeconfig1)
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		_ = cmd.Run() // "no" exits 1
		// kubectl prints the reason after a "no": "no - node ... can only ...".
		if got := strings.TrimSpace(out.String()); got != c.want && !strings.HasPrefix(got, c.want+" - ") {
			t.Errorf("kubectl auth can-i %s: %q (stderr %q), want %q", strings.Join(c.args, " "), got, errb.String(), c.want)
		}
	}
	// The admin is not limited.
	if out := inst.MustKubectl(t, "auth", "can-i", "create", "deployments"); strings.TrimSpace(out) != "yes" {
		t.Errorf("admin can-i: %q", out)
	}
}
