package controller

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

func webDeployment(ns string, replicas int32) *appsv1.Deployment {
	labels := map[string]string{"app": "web"}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: ns},
		Spec: appsv1.DeploymentSpec{
			Replicas: int32p(replicas),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: "nginx"}}}},
		},
	}
}

func countPods(ctx context.Context, client kubernetes.Interface, ns string) (int, error) {
	pods, err := client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return 0, err
	}
	return len(pods.Items), nil
}

func TestNamespaceGetsDefaultServiceAccountAndDeletionEmptiesIt(t *testing.T) {
	inst := startControllersWith(t, func(*Options) {})
	client := inst.Client
	ctx := context.Background()
	inst.MustKubectl(t, "create", "namespace", "doomed")
	waitFor(t, "the default ServiceAccount", func() error {
		_, err := client.CoreV1().ServiceAccounts("doomed").Get(ctx, "default", metav1.GetOptions{})
		return err
	})
	// Built-in namespaces get one too.
	if _, err := client.CoreV1().ServiceAccounts("kube-system").Get(ctx, "default", metav1.GetOptions{}); err != nil {
		t.Errorf("kube-system: %v", err)
	}

	if _, err := client.AppsV1().Deployments("doomed").Create(ctx, webDeployment("doomed", 3), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "settings", Namespace: "doomed"}, Data: map[string]string{"a": "b"}}
	if _, err := client.CoreV1().ConfigMaps("doomed").Create(ctx, cm, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// A finalizer nobody lifts holds the namespace in Terminating, and the
	// namespace says why.
	held := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "held", Namespace: "doomed", Finalizers: []string{"example.com/hold"}}}
	if _, err := client.CoreV1().ConfigMaps("doomed").Create(ctx, held, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "3 pods", func() error {
		if n, err := countPods(ctx, client, "doomed"); err != nil || n != 3 {
			return fmt.Errorf("%d pods (%v)", n, err)
		}
		return nil
	})

	inst.MustKubectl(t, "delete", "namespace", "doomed", "--wait=false")
	waitFor(t, "content deleted, namespace held by the finalizer", func() error {
		n, err := countPods(ctx, client, "doomed")
		if err != nil || n != 0 {
			return fmt.Errorf("%d pods (%v)", n, err)
		}
		for _, get := range []func() error{
			func() error {
				_, err := client.AppsV1().Deployments("doomed").Get(ctx, "web", metav1.GetOptions{})
				return err
			},
			func() error {
				_, err := client.CoreV1().ConfigMaps("doomed").Get(ctx, "settings", metav1.GetOptions{})
				return err
			},
			func() error {
				_, err := client.CoreV1().ServiceAccounts("doomed").Get(ctx, "default", metav1.GetOptions{})
				return err
			},
		} {
			if err := get(); !apierrors.IsNotFound(err) {
				return fmt.Errorf("content still there: %v", err)
			}
		}
		ns, err := client.CoreV1().Namespaces().Get(ctx, "doomed", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if ns.Status.Phase != corev1.NamespaceTerminating {
			return fmt.Errorf("phase %s", ns.Status.Phase)
		}
		for _, c := range ns.Status.Conditions {
			if c.Type == corev1.NamespaceFinalizersRemaining && c.Status == corev1.ConditionTrue &&
				strings.Contains(c.Message, "example.com/hold in 1 resource instances") {
				return nil
			}
		}
		return fmt.Errorf("no FinalizersRemaining condition naming the finalizer: %+v", ns.Status.Conditions)
	})
	// Nothing new may be created meanwhile (the server refuses), and the
	// default ServiceAccount is not re-created.
	if _, err := client.CoreV1().ConfigMaps("doomed").Create(ctx, cm, metav1.CreateOptions{}); err == nil {
		t.Error("created a ConfigMap in a terminating namespace")
	}

	// Lift the finalizer: the namespace goes.
	if _, err := client.CoreV1().ConfigMaps("doomed").Patch(ctx, "held", "application/merge-patch+json",
		[]byte(`{"metadata":{"finalizers":null}}`), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "namespace gone", func() error {
		_, err := client.CoreV1().Namespaces().Get(ctx, "doomed", metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("still there (%v)", err)
	})
	// The name is free again, and the new namespace starts empty but for
	// its ServiceAccount.
	inst.MustKubectl(t, "create", "namespace", "doomed")
	waitFor(t, "a fresh default ServiceAccount", func() error {
		_, err := client.CoreV1().ServiceAccounts("doomed").Get(ctx, "default", metav1.GetOptions{})
		return err
	})
}

func TestNodeLifecycleMarksSilentNodeAndItsPods(t *testing.T) {
	inst := startControllersWith(t, func(o *Options) { o.NodeMonitorGracePeriod = 2 * time.Second })
	client := inst.Client
	ctx := context.Background()
	now := metav1.Now()
	for _, name := range []string{"node-1", "node-2"} {
		node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}, Status: corev1.NodeStatus{
			Capacity:   corev1.ResourceList{corev1.ResourcePods: resource.MustParse("110")},
			Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue, LastHeartbeatTime: now, LastTransitionTime: now, Reason: "KubeletReady"}},
		}}
		if _, err := client.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	// node-1 keeps renewing its Lease; node-2 falls silent after its first.
	renew := func(name string) error {
		leases := client.CoordinationV1().Leases(nodeLeaseNamespace)
		l, err := leases.Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			_, err = leases.Create(ctx, &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: name},
				Spec: coordinationv1.LeaseSpec{HolderIdentity: &name, RenewTime: &metav1.MicroTime{Time: time.Now()}}}, metav1.CreateOptions{})
			return err
		}
		if err != nil {
			return err
		}
		l.Spec.RenewTime = &metav1.MicroTime{Time: time.Now()}
		_, err = leases.Update(ctx, l, metav1.UpdateOptions{})
		return err
	}
	if err := renew("node-2"); err != nil {
		t.Fatal(err)
	}
	var aliveMu sync.Mutex
	alive := []string{"node-1"}
	stop := make(chan struct{})
	renewed := make(chan struct{})
	go func() {
		defer close(renewed)
		for {
			aliveMu.Lock()
			names := append([]string(nil), alive...)
			aliveMu.Unlock()
			for _, name := range names {
				if err := renew(name); err != nil {
					t.Errorf("renew %s: %v", name, err)
				}
			}
			select {
			case <-stop:
				return
			case <-time.After(300 * time.Millisecond):
			}
		}
	}()
	t.Cleanup(func() { close(stop); <-renewed })

	if _, err := client.AppsV1().Deployments("default").Create(ctx, webDeployment("default", 4), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default"},
		Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "web"}, Ports: []corev1.ServicePort{{Port: 80}}}}
	if _, err := client.CoreV1().Services("default").Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "4 pods", func() error {
		if n, err := countPods(ctx, client, "default"); err != nil || n != 4 {
			return fmt.Errorf("%d pods (%v)", n, err)
		}
		return nil
	})
	markPods(t, client, func(int) bool { return true }) // two on each node, all ready

	waitFor(t, "node-2 Unknown and tainted, node-1 untouched", func() error {
		n2, err := client.CoreV1().Nodes().Get(ctx, "node-2", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if readyStatus(n2) != corev1.ConditionUnknown {
			return fmt.Errorf("node-2 Ready=%s", readyStatus(n2))
		}
		effects := map[corev1.TaintEffect]bool{}
		for _, taint := range n2.Spec.Taints {
			if taint.Key == taintUnreachable {
				effects[taint.Effect] = true
			}
		}
		if !effects[corev1.TaintEffectNoSchedule] || !effects[corev1.TaintEffectNoExecute] {
			return fmt.Errorf("node-2 taints %+v", n2.Spec.Taints)
		}
		n1, err := client.CoreV1().Nodes().Get(ctx, "node-1", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if readyStatus(n1) != corev1.ConditionTrue || len(n1.Spec.Taints) != 0 {
			return fmt.Errorf("node-1 Ready=%s taints %+v", readyStatus(n1), n1.Spec.Taints)
		}
		return nil
	})
	waitFor(t, "node-2's endpoints not ready, node-1's ready", func() error {
		slices, err := client.DiscoveryV1().EndpointSlices("default").List(ctx, metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=web"})
		if err != nil {
			return err
		}
		ready := map[string]int{}
		total := 0
		for _, s := range slices.Items {
			for _, e := range s.Endpoints {
				total++
				if e.Conditions.Ready != nil && *e.Conditions.Ready {
					ready[*e.NodeName]++
				}
			}
		}
		if total != 4 || ready["node-1"] != 2 || ready["node-2"] != 0 {
			return fmt.Errorf("%d endpoints, ready per node %v", total, ready)
		}
		return nil
	})

	// node-2 comes back: its agent renews and posts Ready=True; the taints go.
	aliveMu.Lock()
	alive = append(alive, "node-2")
	aliveMu.Unlock()
	n2, err := client.CoreV1().Nodes().Get(ctx, "node-2", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for i, c := range n2.Status.Conditions {
		if c.Type == corev1.NodeReady {
			n2.Status.Conditions[i] = corev1.NodeCondition{Type: corev1.NodeReady, Status: corev1.ConditionTrue,
				LastHeartbeatTime: metav1.Now(), LastTransitionTime: metav1.Now(), Reason: "KubeletReady"}
		}
	}
	if _, err := client.CoreV1().Nodes().UpdateStatus(ctx, n2, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "node-2 untainted", func() error {
		n2, err := client.CoreV1().Nodes().Get(ctx, "node-2", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if len(n2.Spec.Taints) != 0 {
			return fmt.Errorf("taints %+v", n2.Spec.Taints)
		}
		return nil
	})
}
