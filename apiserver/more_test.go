package apiserver_test

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/metadata"
	"k8s.io/utils/ptr"

	"github.com/kubelab/kubelab/apiserver"
	"github.com/kubelab/kubelab/apiserver/apitest"
)

func TestDiscoveryShapes(t *testing.T) {
	inst := apitest.Start(t)
	c := httpClient(t, inst, true)
	for _, v := range []string{"v2", "v2beta1"} {
		accept := "application/json;g=apidiscovery.k8s.io;v=" + v + ";as=APIGroupDiscoveryList,application/json"
		resp, body := doReq(t, c, "GET", inst.Server.URL()+"/apis", "", nil, "Accept", accept)
		if ct := resp.Header.Get("Content-Type"); ct != "application/json;g=apidiscovery.k8s.io;v="+v+";as=APIGroupDiscoveryList" {
			t.Fatalf("aggregated %s content type %q", v, ct)
		}
		if !strings.Contains(string(body), `"resource":"deployments"`) || !strings.Contains(string(body), `"shortNames":["deploy"]`) || !strings.Contains(string(body), `"subresource":"scale"`) {
			t.Fatalf("aggregated /apis: %.1500s", body)
		}
	}
	resp, body := doReq(t, c, "GET", inst.Server.URL()+"/api", "", nil, "Accept", "application/json")
	if resp.Header.Get("Content-Type") != "application/json" || !strings.Contains(string(body), `"versions":["v1"]`) {
		t.Fatalf("legacy /api: %s", body)
	}
	resp, body = doReq(t, c, "GET", inst.Server.URL()+"/api/v1", "", nil)
	var rl metav1.APIResourceList
	if err := json.Unmarshal(body, &rl); err != nil {
		t.Fatal(err)
	}
	byName := map[string]metav1.APIResource{}
	for _, r := range rl.APIResources {
		byName[r.Name] = r
	}
	if p := byName["pods"]; p.Kind != "Pod" || !p.Namespaced || fmt.Sprint(p.ShortNames) != "[po]" || fmt.Sprint(p.Categories) != "[all]" || len(p.Verbs) != 8 {
		t.Errorf("pods: %+v", p)
	}
	if n := byName["nodes"]; n.Namespaced {
		t.Errorf("nodes namespaced")
	}
	if _, ok := byName["pods/log"]; !ok {
		t.Errorf("no pods/log")
	}
	resp, body = doReq(t, c, "GET", inst.Server.URL()+"/apis/apps/v1", "", nil)
	if !strings.Contains(string(body), `"name":"deployments/scale"`) || !strings.Contains(string(body), `"group":"autoscaling"`) {
		t.Errorf("apps/v1: %s", body)
	}
	resp, body = doReq(t, c, "GET", inst.Server.URL()+"/apis/apps", "", nil)
	if resp.StatusCode != 200 || !strings.Contains(string(body), `"preferredVersion":{"groupVersion":"apps/v1"`) {
		t.Errorf("/apis/apps: %d %s", resp.StatusCode, body)
	}
}

func TestListPagingGenerateNameDryRun(t *testing.T) {
	inst := apitest.Start(t)
	ctx := context.Background()
	cms := inst.Client.CoreV1().ConfigMaps("default")
	for i := 0; i < 5; i++ {
		cm, err := cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{GenerateName: "gen-"}}, metav1.CreateOptions{})
		if err != nil || !strings.HasPrefix(cm.Name, "gen-") || len(cm.Name) != len("gen-")+5 {
			t.Fatalf("generateName: %v %v", err, cm)
		}
	}
	var names []string
	opts := metav1.ListOptions{Limit: 2}
	pages := 0
	for {
		l, err := cms.List(ctx, opts)
		if err != nil {
			t.Fatal(err)
		}
		pages++
		for _, it := range l.Items {
			names = append(names, it.Name)
		}
		if l.Continue == "" {
			break
		}
		opts.Continue = l.Continue
	}
	if len(names) != 5 || pages != 3 {
		t.Fatalf("paging: %d items in %d pages", len(names), pages)
	}
	if _, err := cms.List(ctx, metav1.ListOptions{Continue: "garbage"}); !apierrors.IsBadRequest(err) {
		t.Fatalf("bad continue: %v", err)
	}
	cm, err := cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "dry"}}, metav1.CreateOptions{DryRun: []string{"All"}})
	if err != nil || cm.Name != "dry" {
		t.Fatalf("dry run create: %v", err)
	}
	if _, err := cms.Get(ctx, "dry", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("dry run persisted: %v", err)
	}
	// Dry-run Service creation does not keep its IP.
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "s"}, Spec: corev1.ServiceSpec{ClusterIP: "10.96.3.3", Ports: []corev1.ServicePort{{Port: 80}}}}
	if _, err := inst.Client.CoreV1().Services("default").Create(ctx, svc, metav1.CreateOptions{DryRun: []string{"All"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := inst.Client.CoreV1().Services("default").Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		t.Fatalf("IP held by a dry run: %v", err)
	}
}

func TestEventFieldSelectors(t *testing.T) {
	inst := apitest.Start(t)
	ctx := context.Background()
	evs := inst.Client.CoreV1().Events("default")
	for i, uid := range []string{"u1", "u2"} {
		_, err := evs.Create(ctx, &corev1.Event{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprint("e", i)},
			InvolvedObject: corev1.ObjectReference{Kind: "Pod", Namespace: "default", Name: "web-1", UID: "u"}, Reason: "R", Type: "Normal"}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		_ = uid
	}
	l, err := evs.List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=web-1,involvedObject.namespace=default,involvedObject.uid=u,type=Normal"})
	if err != nil || len(l.Items) != 2 {
		t.Fatalf("events by involvedObject: %v %d", err, len(l.Items))
	}
	l, err = evs.List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=other"})
	if err != nil || len(l.Items) != 0 {
		t.Fatalf("events other: %v %d", err, len(l.Items))
	}
	pods := inst.Client.CoreV1().Pods("")
	p, err := inst.Client.CoreV1().Pods("default").Create(ctx, newPod("done", "node-1"), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if p.Status.Phase != corev1.PodPending {
		t.Fatalf("new pod phase %q", p.Status.Phase)
	}
	p.Status.Phase = corev1.PodSucceeded
	if _, err := inst.Client.CoreV1().Pods("default").UpdateStatus(ctx, p, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := inst.Client.CoreV1().Pods("default").Create(ctx, newPod("run", "node-1"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	pl, err := pods.List(ctx, metav1.ListOptions{FieldSelector: "spec.nodeName=node-1,status.phase!=Succeeded,status.phase!=Failed"})
	if err != nil || len(pl.Items) != 1 || pl.Items[0].Name != "run" {
		t.Fatalf("describe-node selector: %v %+v", err, pl)
	}
	// A terminal pod is deleted at once even when bound.
	if err := inst.Client.CoreV1().Pods("default").Delete(ctx, "done", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := inst.Client.CoreV1().Pods("default").Get(ctx, "done", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("terminal pod: %v", err)
	}
}

func TestFeatureGateAndWarnings(t *testing.T) {
	inst := apitest.Start(t, apitest.WithFeatureGates(map[string]bool{"ServiceInternalTrafficPolicy": false}))
	ctx := context.Background()
	local := corev1.ServiceInternalTrafficPolicyLocal
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "s"}, Spec: corev1.ServiceSpec{InternalTrafficPolicy: &local, Ports: []corev1.ServicePort{{Port: 80}}}}
	got, err := inst.Client.CoreV1().Services("default").Create(ctx, svc, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got.Spec.InternalTrafficPolicy != nil {
		t.Fatalf("gate off kept internalTrafficPolicy %v", *got.Spec.InternalTrafficPolicy)
	}

	on := apitest.Start(t)
	f := writeFile(t, t.TempDir(), "s.yaml", `apiVersion: v1
kind: Service
metadata: {name: both}
spec:
  type: NodePort
  externalTrafficPolicy: Local
  internalTrafficPolicy: Local
  selector: {app: x}
  ports: [{port: 80}]
`)
	out, errOut, err := on.Kubectl(t, "apply", "-f", f)
	if err != nil || !strings.Contains(out, "service/both created") || !strings.Contains(errOut, "Warning:") || !strings.Contains(errOut, "internalTrafficPolicy") {
		t.Fatalf("warning: %v\n%s\n%s", err, out, errOut)
	}
	_ = ptr.To(1)
}

func TestKubectlAuthCanI(t *testing.T) {
	inst := apitest.Start(t)
	out := inst.MustKubectl(t, "auth", "can-i", "create", "pods")
	if strings.TrimSpace(out) != "yes" {
		t.Fatalf("auth can-i: %q", out)
	}
}

func TestListenAddressesAreSANs(t *testing.T) {
	inst := apitest.Start(t, apitest.WithConfig(func(c *apiserver.Config) { c.Listen = []string{"127.0.0.2:0"} }))
	b, err := os.ReadFile(filepath.Join(inst.DataDir, "pki", "server.crt"))
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.VerifyHostname("127.0.0.2"); err != nil {
		t.Fatal(err)
	}
	if _, err := inst.Client.CoreV1().Namespaces().Get(context.Background(), "default", metav1.GetOptions{}); err != nil {
		t.Fatal(err)
	}
}

func TestShutdownEndsWatches(t *testing.T) {
	inst := apitest.Start(t)
	w, err := inst.Client.CoreV1().Pods("").Watch(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	start := time.Now()
	inst.Stop(t)
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("stop took %s with an open watch", d)
	}
	select {
	case _, ok := <-w.ResultChan():
		for ok {
			_, ok = <-w.ResultChan()
		}
	case <-time.After(5 * time.Second):
		t.Fatal("watch still open after shutdown")
	}
}

func TestMetadataClient(t *testing.T) {
	inst := apitest.Start(t)
	ctx := context.Background()
	mc, err := metadata.NewForConfig(inst.Config)
	if err != nil {
		t.Fatal(err)
	}
	gvr := corev1.SchemeGroupVersion.WithResource("configmaps")
	if _, err := inst.Client.CoreV1().ConfigMaps("default").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "m", Labels: map[string]string{"a": "b"}}, Data: map[string]string{"secret": "x"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	l, err := mc.Resource(gvr).Namespace("default").List(ctx, metav1.ListOptions{})
	if err != nil || len(l.Items) != 1 || l.Items[0].Labels["a"] != "b" {
		t.Fatalf("metadata list: %v %+v", err, l)
	}
	p, err := mc.Resource(gvr).Namespace("default").Get(ctx, "m", metav1.GetOptions{})
	if err != nil || p.Name != "m" {
		t.Fatalf("metadata get: %v %+v", err, p)
	}
	w, err := mc.Resource(gvr).Namespace("default").Watch(ctx, metav1.ListOptions{ResourceVersion: "0"})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	select {
	case ev := <-w.ResultChan():
		if pm, ok := ev.Object.(*metav1.PartialObjectMetadata); !ok || pm.Name != "m" {
			t.Fatalf("metadata watch event %T %+v", ev.Object, ev.Object)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no metadata watch event")
	}
}

func TestOrphanEvictionHeadless(t *testing.T) {
	inst := apitest.Start(t)
	ctx := context.Background()
	d, err := inst.Client.AppsV1().Deployments("default").Create(ctx, newDeployment("own"), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p := newPod("dep", "")
	p.OwnerReferences = []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "Deployment", Name: "own", UID: d.UID, Controller: ptr.To(true)}}
	if _, err := inst.Client.CoreV1().Pods("default").Create(ctx, p, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	orphan := metav1.DeletePropagationOrphan
	if err := inst.Client.AppsV1().Deployments("default").Delete(ctx, "own", metav1.DeleteOptions{PropagationPolicy: &orphan}); err != nil {
		t.Fatal(err)
	}
	// The API server only marks the owner; the garbage collector strips the
	// references and lifts the finalizer (the controller's tests cover it).
	dep, err := inst.Client.AppsV1().Deployments("default").Get(ctx, "own", metav1.GetOptions{})
	if err != nil || dep.DeletionTimestamp == nil || !slices.Equal(dep.Finalizers, []string{metav1.FinalizerOrphanDependents}) {
		t.Fatalf("orphaning owner: %v %+v", err, dep)
	}
	got, err := inst.Client.CoreV1().Pods("default").Get(ctx, "dep", metav1.GetOptions{})
	if err != nil || len(got.OwnerReferences) != 1 {
		t.Fatalf("dependent of an orphaning owner: %v %+v", err, got.OwnerReferences)
	}
	if err := inst.Client.CoreV1().Pods("default").EvictV1(ctx, &policyv1.Eviction{ObjectMeta: metav1.ObjectMeta{Name: "dep"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := inst.Client.CoreV1().Pods("default").Get(ctx, "dep", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("evicted pod: %v", err)
	}
	for _, svc := range []*corev1.Service{
		{ObjectMeta: metav1.ObjectMeta{Name: "headless"}, Spec: corev1.ServiceSpec{ClusterIP: "None", Ports: []corev1.ServicePort{{Port: 80}}}},
		{ObjectMeta: metav1.ObjectMeta{Name: "ext"}, Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeExternalName, ExternalName: "example.com"}},
	} {
		got, err := inst.Client.CoreV1().Services("default").Create(ctx, svc, metav1.CreateOptions{})
		if err != nil {
			t.Fatalf("%s: %v", svc.Name, err)
		}
		if ip := got.Spec.ClusterIP; ip != "" && ip != "None" {
			t.Fatalf("%s got cluster IP %s", svc.Name, ip)
		}
	}
}

func TestEventsShareStorageAcrossVersions(t *testing.T) {
	inst := apitest.Start(t)
	ctx := context.Background()
	core := &corev1.Event{ObjectMeta: metav1.ObjectMeta{Name: "c1"}, InvolvedObject: corev1.ObjectReference{Kind: "Pod", Name: "web", Namespace: "default"},
		Reason: "Started", Message: "hello", Type: "Normal"}
	if _, err := inst.Client.CoreV1().Events("default").Create(ctx, core, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	ev, err := inst.Client.EventsV1().Events("default").Get(ctx, "c1", metav1.GetOptions{})
	if err != nil || ev.Note != "hello" || ev.Regarding.Name != "web" {
		t.Fatalf("core event read as events/v1: %v %+v", err, ev)
	}
	v1 := &eventsv1.Event{ObjectMeta: metav1.ObjectMeta{Name: "e1"}, EventTime: metav1.NewMicroTime(time.Now()),
		ReportingController: "test", ReportingInstance: "test-1", Action: "Do", Reason: "Did", Note: "world", Type: "Normal",
		Regarding: corev1.ObjectReference{Kind: "Pod", Name: "web", Namespace: "default"}}
	if _, err := inst.Client.EventsV1().Events("default").Create(ctx, v1, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	l, err := inst.Client.CoreV1().Events("default").List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=web"})
	if err != nil || len(l.Items) != 2 {
		t.Fatalf("core list: %v %d", err, len(l.Items))
	}
	vl, err := inst.Client.EventsV1().Events("default").List(ctx, metav1.ListOptions{FieldSelector: "regarding.name=web,reason=Did"})
	if err != nil || len(vl.Items) != 1 || vl.Items[0].Note != "world" {
		t.Fatalf("events/v1 list: %v %+v", err, vl)
	}
	if err := inst.Client.EventsV1().Events("default").Delete(ctx, "c1", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := inst.Client.CoreV1().Events("default").Get(ctx, "c1", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("deleted through events/v1, still in core: %v", err)
	}
}
