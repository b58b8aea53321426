package apiserver_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/rest"

	"github.com/kubelab/kubelab/apiserver/apitest"
)

// TestProtobufWatch: a client that prefers protobuf (the agent, the
// kubelet, kube-controller-manager) gets a protobuf watch stream, with
// initial events, a burst of changes, selectors and deletions.
func TestProtobufWatch(t *testing.T) {
	inst := apitest.Start(t)
	ctx := context.Background()
	cfg := rest.CopyConfig(inst.Config)
	cfg.ContentConfig = rest.ContentConfig{ContentType: "application/vnd.kubernetes.protobuf",
		AcceptContentTypes: "application/vnd.kubernetes.protobuf,application/json"}
	pc := mustClientset(t, cfg).CoreV1().ConfigMaps("default")
	if _, err := inst.Client.CoreV1().ConfigMaps("default").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "before", Labels: map[string]string{"w": "1"}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	hc, err := rest.HTTPClientFor(inst.Config)
	if err != nil {
		t.Fatal(err)
	}
	resp, _ := doReq(t, hc, "GET", inst.URL()+"/api/v1/namespaces/default/configmaps?watch=true&timeoutSeconds=1", "", nil,
		"Accept", "application/vnd.kubernetes.protobuf,application/json")
	if ct := resp.Header.Get("Content-Type"); ct != "application/vnd.kubernetes.protobuf;stream=watch" {
		t.Fatalf("watch Content-Type %q", ct)
	}
	w, err := pc.Watch(ctx, metav1.ListOptions{LabelSelector: "w=1", ResourceVersion: "0"})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	const n = 50
	go func() {
		for i := 0; i < n; i++ {
			_, _ = inst.Client.CoreV1().ConfigMaps("default").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprint("cm", i), Labels: map[string]string{"w": fmt.Sprint(i % 2)}}, Data: map[string]string{"i": fmt.Sprint(i)}}, metav1.CreateOptions{})
		}
		_ = inst.Client.CoreV1().ConfigMaps("default").Delete(ctx, "before", metav1.DeleteOptions{})
	}()
	seen := map[string]int{}
	deadline := time.After(20 * time.Second)
	for seen["DELETED"] == 0 {
		select {
		case ev, ok := <-w.ResultChan():
			if !ok {
				t.Fatal("watch closed")
			}
			if ev.Type == watch.Error {
				t.Fatalf("error event: %+v", ev.Object)
			}
			cm, ok := ev.Object.(*corev1.ConfigMap)
			if !ok || cm.Labels["w"] != "1" || cm.ResourceVersion == "" {
				t.Fatalf("event %s: %#v", ev.Type, ev.Object)
			}
			seen[string(ev.Type)]++
		case <-deadline:
			t.Fatalf("events so far: %v", seen)
		}
	}
	if seen["ADDED"] != 1+n/2 || seen["DELETED"] != 1 {
		t.Fatalf("events: %v", seen)
	}
}
