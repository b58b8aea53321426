package apiserver_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"

	"github.com/kubelab/kubelab/apiserver"
	"github.com/kubelab/kubelab/apiserver/apitest"
)

func httpClient(t *testing.T, inst *apitest.Instance, withCert bool) *http.Client {
	t.Helper()
	pool := x509.NewCertPool()
	ca, err := os.ReadFile(filepath.Join(inst.DataDir, "pki", "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	pool.AppendCertsFromPEM(ca)
	cfg := &tls.Config{RootCAs: pool}
	if withCert {
		kp, err := tls.LoadX509KeyPair(filepath.Join(inst.DataDir, "pki", "admin.crt"), filepath.Join(inst.DataDir, "pki", "admin.key"))
		if err != nil {
			t.Fatal(err)
		}
		cfg.Certificates = []tls.Certificate{kp}
	}
	return &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}, Timeout: 10 * time.Second}
}

func doReq(t *testing.T, c *http.Client, method, url, ctype string, body []byte, hdr ...string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

func TestAnonymousIs401AndHealthIsPublic(t *testing.T) {
	inst := apitest.Start(t)
	anon := httpClient(t, inst, false)
	resp, body := doReq(t, anon, "GET", inst.Server.URL()+"/api/v1/pods", "", nil)
	if resp.StatusCode != 401 || !strings.Contains(string(body), `"reason":"Unauthorized"`) || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("anonymous: %d %s %s", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
	resp, body = doReq(t, anon, "GET", inst.Server.URL()+"/api/v1/pods", "", nil, "Authorization", "Bearer wrong")
	if resp.StatusCode != 401 {
		t.Fatalf("wrong token: %d %s", resp.StatusCode, body)
	}
	for _, p := range []string{"/readyz", "/livez", "/healthz"} {
		resp, body = doReq(t, anon, "GET", inst.Server.URL()+p, "", nil)
		if resp.StatusCode != 200 || string(body) != "ok" {
			t.Fatalf("%s: %d %s", p, resp.StatusCode, body)
		}
	}
	admin := httpClient(t, inst, true)
	resp, body = doReq(t, admin, "GET", inst.Server.URL()+"/version", "", nil)
	var v map[string]string
	if err := json.Unmarshal(body, &v); err != nil || v["minor"] != "37" || !strings.HasPrefix(v["gitVersion"], "v1.37.") {
		t.Fatalf("/version: %d %s", resp.StatusCode, body)
	}
	resp, body = doReq(t, admin, "GET", inst.Server.URL()+"/metrics", "", nil)
	if resp.StatusCode != 200 || !strings.Contains(string(body), `apiserver_request_total{code="200",group="",resource="",subresource="",verb="GET"}`) {
		t.Fatalf("/metrics: %d %.2000s", resp.StatusCode, body)
	}
	st, err := os.Stat(filepath.Join(inst.DataDir, "node-token"))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("node-token: %v %v", st, err)
	}
}

func TestRequestBodyErrors(t *testing.T) {
	inst := apitest.Start(t)
	c := httpClient(t, inst, true)
	u := inst.Server.URL() + "/api/v1/namespaces/default/configmaps"
	resp, body := doReq(t, c, "POST", u, "text/plain", []byte("x"))
	if resp.StatusCode != 415 {
		t.Errorf("text/plain: %d %s", resp.StatusCode, body)
	}
	resp, body = doReq(t, c, "POST", u, "application/json", []byte("{not json"))
	if resp.StatusCode != 400 || !strings.Contains(string(body), `"reason":"BadRequest"`) {
		t.Errorf("malformed: %d %s", resp.StatusCode, body)
	}
	resp, body = doReq(t, c, "POST", u, "application/json", []byte(`{"apiVersion":"v1","kind":"Secret","metadata":{"name":"a"}}`))
	if resp.StatusCode != 400 {
		t.Errorf("wrong kind: %d %s", resp.StatusCode, body)
	}
	resp, body = doReq(t, c, "POST", u, "application/json", []byte(`{"apiVersion":"apps/v1","kind":"ConfigMap","metadata":{"name":"a"}}`))
	if resp.StatusCode != 400 {
		t.Errorf("wrong apiVersion: %d %s", resp.StatusCode, body)
	}
	big := `{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"big"},"data":{"a":"` + strings.Repeat("x", 3<<20) + `"}}`
	resp, body = doReq(t, c, "POST", u, "application/json", []byte(big))
	if resp.StatusCode != 413 {
		t.Errorf("big body: %d %.300s", resp.StatusCode, body)
	}
	// No Content-Type is JSON; YAML works too.
	resp, body = doReq(t, c, "POST", u, "", []byte(`{"metadata":{"name":"nocontenttype"}}`))
	if resp.StatusCode != 201 || resp.Header.Get("Content-Type") != "application/json" {
		t.Errorf("no content type: %d %s", resp.StatusCode, body)
	}
	resp, body = doReq(t, c, "POST", u, "application/yaml", []byte("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: fromyaml\n"))
	if resp.StatusCode != 201 {
		t.Errorf("yaml: %d %s", resp.StatusCode, body)
	}
	resp, body = doReq(t, c, "GET", u+"/fromyaml", "", nil, "Accept", "application/yaml")
	if resp.StatusCode != 200 || !strings.Contains(string(body), "name: fromyaml") || !strings.Contains(string(body), "kind: ConfigMap") {
		t.Errorf("yaml get: %d %s", resp.StatusCode, body)
	}
	// Strict field validation.
	resp, body = doReq(t, c, "POST", u+"?fieldValidation=Strict", "application/json", []byte(`{"metadata":{"name":"s"},"dat":{}}`))
	if resp.StatusCode != 400 || !strings.Contains(string(body), `strict decoding error: unknown field \"dat\"`) {
		t.Errorf("strict: %d %s", resp.StatusCode, body)
	}
	resp, body = doReq(t, c, "POST", u+"?fieldValidation=Warn", "application/json", []byte(`{"metadata":{"name":"w"},"dat":{}}`))
	if resp.StatusCode != 201 || !strings.Contains(resp.Header.Get("Warning"), `unknown field \"dat\"`) {
		t.Errorf("warn: %d %v %s", resp.StatusCode, resp.Header, body)
	}
	resp, body = doReq(t, c, "GET", inst.Server.URL()+"/api/v1/nosuch", "", nil)
	if resp.StatusCode != 404 || !strings.Contains(string(body), `"reason":"NotFound"`) {
		t.Errorf("unknown resource: %d %s", resp.StatusCode, body)
	}
	resp, body = doReq(t, c, "GET", inst.Server.URL()+"/api/v1/pods?fieldSelector=spec.bogus%3Dx", "", nil)
	if resp.StatusCode != 400 || !strings.Contains(string(body), "field label not supported: spec.bogus") {
		t.Errorf("bad field selector: %d %s", resp.StatusCode, body)
	}
}

func TestProtobufCreateAndKubectlCreateNamespace(t *testing.T) {
	inst := apitest.Start(t)
	cfg := *inst.Config
	cfg.ContentType = "application/vnd.kubernetes.protobuf"
	cfg.AcceptContentTypes = "application/vnd.kubernetes.protobuf,application/json"
	cs := mustClientset(t, &cfg)
	ns, err := cs.CoreV1().Namespaces().Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "pb"}}, metav1.CreateOptions{})
	if err != nil || ns.Name != "pb" || ns.Status.Phase != corev1.NamespaceActive {
		t.Fatalf("protobuf create: %v %+v", err, ns)
	}
	cm, err := cs.CoreV1().ConfigMaps("pb").Create(context.Background(), &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "c"}, Data: map[string]string{"a": "1"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cm.Data["a"] = "2"
	if cm, err = cs.CoreV1().ConfigMaps("pb").Update(context.Background(), cm, metav1.UpdateOptions{}); err != nil || cm.Data["a"] != "2" {
		t.Fatalf("protobuf update: %v %v", err, cm)
	}
	if err := cs.CoreV1().ConfigMaps("pb").Delete(context.Background(), "c", metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)}); err != nil {
		t.Fatalf("protobuf delete: %v", err)
	}
	out := inst.MustKubectl(t, "create", "namespace", "lab")
	if !strings.Contains(out, "namespace/lab created") {
		t.Fatalf("kubectl create namespace: %s", out)
	}
	_, errOut, err := inst.Kubectl(t, "create", "namespace", "lab")
	if err == nil || !strings.Contains(errOut, `Error from server (AlreadyExists): namespaces "lab" already exists`) {
		t.Fatalf("second create: %v %s", err, errOut)
	}
	_, errOut, err = inst.Kubectl(t, "get", "pod", "nope")
	if err == nil || !strings.Contains(errOut, `Error from server (NotFound): pods "nope" not found`) {
		t.Fatalf("get missing: %v %s", err, errOut)
	}
}

func TestWatchSemantics(t *testing.T) {
	inst := apitest.Start(t)
	ctx := context.Background()
	cms := inst.Client.CoreV1().ConfigMaps("default")
	first, err := cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "a", Labels: map[string]string{"sel": "yes"}}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// rv=0: a synthetic ADDED for the current state, then changes.
	w, err := cms.Watch(ctx, metav1.ListOptions{ResourceVersion: "0", LabelSelector: "sel=yes"})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	expect := func(typ watch.EventType, name string) {
		t.Helper()
		select {
		case ev := <-w.ResultChan():
			m, _ := ev.Object.(metav1.Object)
			if ev.Type != typ || m == nil || m.GetName() != name {
				t.Fatalf("got %s %v, want %s %s", ev.Type, ev.Object, typ, name)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("no %s event for %s", typ, name)
		}
	}
	expect(watch.Added, "a")
	if _, err := cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "b"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	first.Labels = map[string]string{"sel": "no"}
	if _, err := cms.Update(ctx, first, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	expect(watch.Deleted, "a") // left the selector
	first, _ = cms.Get(ctx, "a", metav1.GetOptions{})
	first.Labels = map[string]string{"sel": "yes"}
	if _, err := cms.Update(ctx, first, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	expect(watch.Added, "a")
	if err := cms.Delete(ctx, "a", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	expect(watch.Deleted, "a")

	// From a specific resourceVersion: replay of later changes.
	w2, err := cms.Watch(ctx, metav1.ListOptions{ResourceVersion: first.ResourceVersion, FieldSelector: "metadata.name=a"})
	if err != nil {
		t.Fatal(err)
	}
	defer w2.Stop()
	var types []watch.EventType
	for len(types) < 2 {
		select {
		case ev := <-w2.ResultChan():
			types = append(types, ev.Type)
		case <-time.After(5 * time.Second):
			t.Fatalf("replay: got %v", types)
		}
	}
	if types[0] != watch.Modified || types[1] != watch.Deleted {
		t.Fatalf("replay events %v", types)
	}
}

func TestInformerSeesChanges(t *testing.T) {
	inst := apitest.Start(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	f := informers.NewSharedInformerFactory(inst.Client, 0)
	inf := f.Core().V1().Services().Informer()
	var mu sync.Mutex
	seen := map[string]string{}
	_, _ = inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(o any) { mu.Lock(); seen[o.(*corev1.Service).Name] = "add"; mu.Unlock() },
		UpdateFunc: func(_, o any) { mu.Lock(); seen[o.(*corev1.Service).Name] = "update"; mu.Unlock() },
		DeleteFunc: func(o any) {
			if svc, ok := o.(*corev1.Service); ok {
				mu.Lock()
				seen[svc.Name] = "delete"
				mu.Unlock()
			}
		},
	})
	f.Start(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
		t.Fatal("no sync")
	}
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "s1"}, Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 80}}}}
	if _, err := inst.Client.CoreV1().Services("default").Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { mu.Lock(); defer mu.Unlock(); return seen["s1"] == "add" })
	if err := inst.Client.CoreV1().Services("default").Delete(ctx, "s1", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { mu.Lock(); defer mu.Unlock(); return seen["s1"] == "delete" })
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in 10s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestPatchKinds(t *testing.T) {
	inst := apitest.Start(t)
	ctx := context.Background()
	cms := inst.Client.CoreV1().ConfigMaps("default")
	if _, err := cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "p"}, Data: map[string]string{"a": "1"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cms.Patch(ctx, "p", types.MergePatchType, []byte(`{"data":{"b":"2"}}`), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cms.Patch(ctx, "p", types.JSONPatchType, []byte(`[{"op":"add","path":"/data/c","value":"3"}]`), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	cm, err := cms.Patch(ctx, "p", types.StrategicMergePatchType, []byte(`{"data":{"a":null}}`), metav1.PatchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(cm.Data) != "map[b:2 c:3]" {
		t.Fatalf("data after patches: %v", cm.Data)
	}
	// Server-side apply creates when missing, then merges.
	apply := []byte(`{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"ssa"},"data":{"x":"1"}}`)
	cm, err = cms.Patch(ctx, "ssa", types.ApplyPatchType, apply, metav1.PatchOptions{FieldManager: "test"})
	if err != nil || cm.Data["x"] != "1" {
		t.Fatalf("apply create: %v %v", err, cm)
	}
	cm, err = cms.Patch(ctx, "ssa", types.ApplyPatchType, []byte(`{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"ssa"},"data":{"y":"2"}}`), metav1.PatchOptions{FieldManager: "test"})
	if err != nil || cm.Data["y"] != "2" {
		t.Fatalf("apply update: %v %v", err, cm)
	}
	// Strategic merge of a deployment's containers by name.
	d := newDeployment("sm")
	if _, err := inst.Client.AppsV1().Deployments("default").Create(ctx, d, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	dd, err := inst.Client.AppsV1().Deployments("default").Patch(ctx, "sm", types.StrategicMergePatchType,
		[]byte(`{"spec":{"template":{"spec":{"containers":[{"name":"c","image":"nginx:2"}]}}}}`), metav1.PatchOptions{})
	if err != nil || len(dd.Spec.Template.Spec.Containers) != 1 || dd.Spec.Template.Spec.Containers[0].Image != "nginx:2" || dd.Generation != 2 {
		t.Fatalf("smp: %v %+v", err, dd)
	}
	// dry run does not persist
	if _, err := cms.Patch(ctx, "p", types.MergePatchType, []byte(`{"data":{"dry":"1"}}`), metav1.PatchOptions{DryRun: []string{"All"}}); err != nil {
		t.Fatal(err)
	}
	cm, _ = cms.Get(ctx, "p", metav1.GetOptions{})
	if _, ok := cm.Data["dry"]; ok {
		t.Fatal("dry-run patch persisted")
	}
}

func newDeployment(name string) *appsv1.Deployment {
	return &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: appsv1.DeploymentSpec{
		Replicas: ptr.To[int32](1),
		Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": name}},
		Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": name}},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "nginx"}}}},
	}}
}

func newPod(name, node string) *corev1.Pod {
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: corev1.PodSpec{NodeName: node,
		Containers: []corev1.Container{{Name: "c", Image: "nginx"}}}}
}

func TestSubresources(t *testing.T) {
	inst := apitest.Start(t)
	ctx := context.Background()
	deps := inst.Client.AppsV1().Deployments("default")
	nd := newDeployment("web")
	nd.Status.Replicas = 7
	d, err := deps.Create(ctx, nd, metav1.CreateOptions{})
	if err != nil || d.Status.Replicas != 0 {
		t.Fatalf("create kept status: %v %+v", err, d.Status)
	}
	// status updates ignore spec; main updates ignore status
	d.Status.ObservedGeneration = 1
	d.Status.Replicas = 1
	d.Spec.Replicas = ptr.To[int32](9)
	d2, err := deps.UpdateStatus(ctx, d, metav1.UpdateOptions{})
	if err != nil || d2.Status.Replicas != 1 || *d2.Spec.Replicas != 1 || d2.Generation != 1 {
		t.Fatalf("status update: %v %+v", err, d2)
	}
	d2.Status.Replicas = 5
	d3, err := deps.Update(ctx, d2, metav1.UpdateOptions{})
	if err != nil || d3.Status.Replicas != 1 {
		t.Fatalf("main update changed status: %v %+v", err, d3.Status)
	}
	// scale
	sc, err := deps.GetScale(ctx, "web", metav1.GetOptions{})
	if err != nil || sc.Spec.Replicas != 1 || sc.Status.Selector != "app=web" {
		t.Fatalf("get scale: %v %+v", err, sc)
	}
	out := inst.MustKubectl(t, "scale", "deploy", "web", "--replicas=4")
	if !strings.Contains(out, "deployment.apps/web scaled") {
		t.Fatalf("kubectl scale: %s", out)
	}
	d4, _ := deps.Get(ctx, "web", metav1.GetOptions{})
	if *d4.Spec.Replicas != 4 || d4.Generation != 2 {
		t.Fatalf("after scale: replicas %d generation %d", *d4.Spec.Replicas, d4.Generation)
	}
	out = inst.MustKubectl(t, "scale", "deploy", "web", "--current-replicas=4", "--replicas=2")
	if !strings.Contains(out, "scaled") {
		t.Fatalf("kubectl scale --current-replicas: %s", out)
	}
	// binding
	pods := inst.Client.CoreV1().Pods("default")
	if _, err := pods.Create(ctx, newPod("p1", ""), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	b := &corev1.Binding{ObjectMeta: metav1.ObjectMeta{Name: "p1"}, Target: corev1.ObjectReference{Kind: "Node", Name: "node-1"}}
	if err := pods.Bind(ctx, b, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	p, _ := pods.Get(ctx, "p1", metav1.GetOptions{})
	if p.Spec.NodeName != "node-1" || len(p.Status.Conditions) != 1 || p.Status.Conditions[0].Type != corev1.PodScheduled {
		t.Fatalf("after binding: %+v", p)
	}
	if err := pods.Bind(ctx, b, metav1.CreateOptions{}); !apierrors.IsConflict(err) {
		t.Fatalf("second binding: %v", err)
	}
}

func TestDeletionSemantics(t *testing.T) {
	inst := apitest.Start(t)
	ctx := context.Background()
	pods := inst.Client.CoreV1().Pods("default")
	// unbound pod: deleted at once
	if _, err := pods.Create(ctx, newPod("unbound", ""), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := pods.Delete(ctx, "unbound", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := pods.Get(ctx, "unbound", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("unbound pod still there: %v", err)
	}
	// bound pod: graceful, then the agent's grace-0 delete removes it
	if _, err := pods.Create(ctx, newPod("bound", "node-1"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := pods.Delete(ctx, "bound", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	p, err := pods.Get(ctx, "bound", metav1.GetOptions{})
	if err != nil || p.DeletionTimestamp == nil || p.DeletionGracePeriodSeconds == nil || *p.DeletionGracePeriodSeconds != 30 {
		t.Fatalf("graceful: %v %+v", err, p)
	}
	if err := pods.Delete(ctx, "bound", metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)}); err != nil {
		t.Fatal(err)
	}
	if _, err := pods.Get(ctx, "bound", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("bound pod after grace 0: %v", err)
	}
	// finalizers hold an object until removed
	cms := inst.Client.CoreV1().ConfigMaps("default")
	if _, err := cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "f", Finalizers: []string{"example.com/x"}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := cms.Delete(ctx, "f", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	cm, err := cms.Get(ctx, "f", metav1.GetOptions{})
	if err != nil || cm.DeletionTimestamp == nil {
		t.Fatalf("finalized object: %v %+v", err, cm)
	}
	if _, err := cms.Patch(ctx, "f", types.MergePatchType, []byte(`{"metadata":{"finalizers":null}}`), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cms.Get(ctx, "f", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("object after finalizer removal: %v", err)
	}
	// preconditions
	c2, _ := cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "pre"}}, metav1.CreateOptions{})
	bad := types.UID("nope")
	if err := cms.Delete(ctx, "pre", metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &bad}}); !apierrors.IsConflict(err) {
		t.Fatalf("uid precondition: %v", err)
	}
	if err := cms.Delete(ctx, "pre", metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &c2.UID}}); err != nil {
		t.Fatal(err)
	}
	// namespace deletion: Terminating until the kubernetes finalizer goes
	nss := inst.Client.CoreV1().Namespaces()
	if _, err := nss.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "gone"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := nss.Delete(ctx, "gone", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	ns, err := nss.Get(ctx, "gone", metav1.GetOptions{})
	if err != nil || ns.Status.Phase != corev1.NamespaceTerminating || ns.DeletionTimestamp == nil {
		t.Fatalf("terminating ns: %v %+v", err, ns)
	}
	if _, err := inst.Client.CoreV1().ConfigMaps("gone").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "x"}}, metav1.CreateOptions{}); !apierrors.IsForbidden(err) {
		t.Fatalf("create in terminating ns: %v", err)
	}
	ns.Spec.Finalizers = nil
	if _, err := nss.Finalize(ctx, ns, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := nss.Get(ctx, "gone", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("namespace after finalize: %v", err)
	}
	if _, err := inst.Client.CoreV1().ConfigMaps("gone").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "x"}}, metav1.CreateOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("create in deleted ns: %v", err)
	}
	if _, err := nss.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "gone"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := inst.Client.CoreV1().ConfigMaps("gone").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "x"}}, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create in re-created ns: %v", err)
	}
	if err := nss.Delete(ctx, "default", metav1.DeleteOptions{}); !apierrors.IsForbidden(err) {
		t.Fatalf("delete default: %v", err)
	}
	// deletecollection
	for i := 0; i < 3; i++ {
		_, _ = cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprint("dc", i), Labels: map[string]string{"dc": "1"}}}, metav1.CreateOptions{})
	}
	if err := cms.DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{LabelSelector: "dc=1"}); err != nil {
		t.Fatal(err)
	}
	l, _ := cms.List(ctx, metav1.ListOptions{LabelSelector: "dc=1"})
	if len(l.Items) != 0 {
		t.Fatalf("deletecollection left %d", len(l.Items))
	}
}

func TestServiceAllocationPersists(t *testing.T) {
	inst := apitest.Start(t)
	ctx := context.Background()
	svcs := inst.Client.CoreV1().Services("default")
	mk := func(name string, typ corev1.ServiceType, ip string) (*corev1.Service, error) {
		return svcs.Create(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec: corev1.ServiceSpec{Type: typ, ClusterIP: ip, Ports: []corev1.ServicePort{{Port: 80, Protocol: corev1.ProtocolTCP}}}}, metav1.CreateOptions{})
	}
	a, err := mk("a", corev1.ServiceTypeNodePort, "")
	if err != nil {
		t.Fatal(err)
	}
	ip := net.ParseIP(a.Spec.ClusterIP)
	_, cidr, _ := net.ParseCIDR("10.96.0.0/12")
	if ip == nil || !cidr.Contains(ip) || a.Spec.ClusterIP == "10.96.0.1" || len(a.Spec.ClusterIPs) != 1 {
		t.Fatalf("cluster IP %q", a.Spec.ClusterIP)
	}
	if np := a.Spec.Ports[0].NodePort; np < 30000 || np > 32767 {
		t.Fatalf("node port %d", np)
	}
	if _, err := mk("b", corev1.ServiceTypeClusterIP, a.Spec.ClusterIP); !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), "provided IP is already allocated") {
		t.Fatalf("taken IP: %v", err)
	}
	if _, err := mk("kubernetes-imposter", corev1.ServiceTypeClusterIP, "10.96.0.1"); !apierrors.IsInvalid(err) {
		t.Fatalf("reserved IP: %v", err)
	}
	k, err := mk("kubernetes", corev1.ServiceTypeClusterIP, "")
	if err != nil || k.Spec.ClusterIP != "10.96.0.1" {
		t.Fatalf("kubernetes service: %v", err)
	}
	c, err := mk("c", corev1.ServiceTypeClusterIP, "10.96.7.7")
	if err != nil || c.Spec.ClusterIP != "10.96.7.7" {
		t.Fatalf("requested IP: %v", err)
	}
	inst.Restart(t)
	svcs = inst.Client.CoreV1().Services("default")
	if _, err := mk("d", corev1.ServiceTypeClusterIP, "10.96.7.7"); !apierrors.IsInvalid(err) {
		t.Fatalf("IP taken before restart is free after: %v", err)
	}
	if err := svcs.Delete(ctx, "c", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := mk("d", corev1.ServiceTypeClusterIP, "10.96.7.7"); err != nil {
		t.Fatalf("IP freed by delete: %v", err)
	}
	// update keeps the allocation when the client omits it
	a, _ = svcs.Get(ctx, "a", metav1.GetOptions{})
	keepIP, keepPort := a.Spec.ClusterIP, a.Spec.Ports[0].NodePort
	a.Spec.ClusterIP, a.Spec.ClusterIPs, a.Spec.Ports[0].NodePort = "", nil, 0
	a2, err := svcs.Update(ctx, a, metav1.UpdateOptions{})
	if err != nil || a2.Spec.ClusterIP != keepIP || a2.Spec.Ports[0].NodePort != keepPort {
		t.Fatalf("update lost allocation: %v %+v", err, a2)
	}
}

func TestJoinEndpoint(t *testing.T) {
	inst := apitest.Start(t)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	csrDER, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: "whatever"}, IPAddresses: []net.IP{net.ParseIP("10.200.0.1")}}, key)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := json.Marshal(apiserver.JoinRequest{NodeName: "node-1", CSR: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csrDER}))})
	anon := httpClient(t, inst, false)
	resp, rb := doReq(t, anon, "POST", inst.Server.URL()+"/kubelab/v1/join", "application/json", body, "Authorization", "Bearer wrong")
	if resp.StatusCode != 401 {
		t.Fatalf("wrong token: %d %s", resp.StatusCode, rb)
	}
	tok, _ := os.ReadFile(filepath.Join(inst.DataDir, "node-token"))
	resp, rb = doReq(t, anon, "POST", inst.Server.URL()+"/kubelab/v1/join", "application/json", body, "Authorization", "Bearer "+strings.TrimSpace(string(tok)))
	if resp.StatusCode != 200 {
		t.Fatalf("join: %d %s", resp.StatusCode, rb)
	}
	var jr apiserver.JoinResponse
	if err := json.Unmarshal(rb, &jr); err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode([]byte(jr.Certificate))
	crt, err := x509.ParseCertificate(blk.Bytes)
	if err != nil || crt.Subject.CommonName != "system:node:node-1" || crt.Subject.Organization[0] != "system:nodes" || !crt.IPAddresses[0].Equal(net.ParseIP("10.200.0.1")) {
		t.Fatalf("node cert: %v %+v", err, crt.Subject)
	}
	// the node certificate authenticates
	keyDER, _ := x509.MarshalECPrivateKey(key)
	kp, err := tls.X509KeyPair([]byte(jr.Certificate), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM([]byte(jr.CA))
	nc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{kp}}}}
	resp, rb = doReq(t, nc, "GET", inst.Server.URL()+"/api/v1/nodes", "", nil)
	if resp.StatusCode != 200 {
		t.Fatalf("node credential: %d %s", resp.StatusCode, rb)
	}
}
