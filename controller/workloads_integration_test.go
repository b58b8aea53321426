package controller

import (
	"context"
	"fmt"
	"net"
	"sort"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"

	"github.com/kubelab/kubelab/apiserver/apitest"
)

// Against a real API server with hand-made Nodes and no agents or scheduler:
// the test plays the kubelet's part by writing pod status.

func startControllers(t *testing.T) kubernetes.Interface {
	return startControllersWith(t, func(*Options) {}).Client
}

// startControllersWith starts a real API server and the controllers with
// options adjusted by tune; the instance also drives the real kubectl.
func startControllersWith(t *testing.T, tune func(*Options)) *apitest.Instance {
	t.Helper()
	inst := apitest.Start(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	// The address is only data here: what the `kubernetes` Endpoints say.
	opts := Options{APIServerIP: net.ParseIP("10.200.0.254"), APIServerPort: 6443}
	tune(&opts)
	go func() { done <- Run(ctx, inst.Client, opts) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("controller.Run: %v", err)
		}
	})
	return inst
}

func waitFor(t *testing.T, what string, check func() error) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestNodesGetPodCIDRsAndKubernetesServiceExists(t *testing.T) {
	client := startControllers(t)
	ctx := context.Background()
	for _, n := range []string{"node-1", "node-2"} {
		node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: n},
			Status: corev1.NodeStatus{Capacity: corev1.ResourceList{corev1.ResourcePods: resource.MustParse("110")}}}
		if _, err := client.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "pod CIDRs assigned", func() error {
		got := map[string]string{}
		nodes, err := client.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
		if err != nil {
			return err
		}
		for _, n := range nodes.Items {
			got[n.Name] = n.Spec.PodCIDR
		}
		if got["node-1"] == "" || got["node-2"] == "" || got["node-1"] == got["node-2"] {
			return fmt.Errorf("pod CIDRs %v", got)
		}
		for _, c := range got {
			if _, n, err := net.ParseCIDR(c); err != nil || n.String() != c || c[:7] != "10.244." {
				return fmt.Errorf("pod CIDR %q not a /24 of 10.244.0.0/16", c)
			}
		}
		return nil
	})
	waitFor(t, "the kubernetes Service with its endpoints", func() error {
		svc, err := client.CoreV1().Services("default").Get(ctx, "kubernetes", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if svc.Spec.ClusterIP != "10.96.0.1" {
			return fmt.Errorf("clusterIP %s", svc.Spec.ClusterIP)
		}
		ep, err := client.CoreV1().Endpoints("default").Get(ctx, "kubernetes", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if len(ep.Subsets) != 1 || ep.Subsets[0].Addresses[0].IP != "10.200.0.254" || ep.Subsets[0].Ports[0].Port != 6443 {
			return fmt.Errorf("endpoints %+v", ep.Subsets)
		}
		return nil
	})
}

func int32p(i int32) *int32 { return &i }

// markPods plays the kubelet: every pod of the Deployment gets an IP, a node
// and the given readiness.
func markPods(t *testing.T, client kubernetes.Interface, ready func(i int) bool) []corev1.Pod {
	t.Helper()
	ctx := context.Background()
	pods, err := client.CoreV1().Pods("default").List(ctx, metav1.ListOptions{LabelSelector: "app=web"})
	if err != nil {
		t.Fatal(err)
	}
	sort.Slice(pods.Items, func(i, j int) bool { return pods.Items[i].Name < pods.Items[j].Name })
	for i := range pods.Items {
		p := &pods.Items[i]
		node := fmt.Sprintf("node-%d", i%2+1)
		if p.Spec.NodeName == "" {
			binding := &corev1.Binding{ObjectMeta: metav1.ObjectMeta{Name: p.Name}, Target: corev1.ObjectReference{Kind: "Node", Name: node}}
			if err := client.CoreV1().Pods("default").Bind(ctx, binding, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
		}
		cur, err := client.CoreV1().Pods("default").Get(ctx, p.Name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		status := corev1.ConditionFalse
		if ready(i) {
			status = corev1.ConditionTrue
		}
		cur.Status.Phase = corev1.PodRunning
		cur.Status.PodIP = fmt.Sprintf("10.244.%d.%d", i%2+1, 10+i)
		cur.Status.PodIPs = []corev1.PodIP{{IP: cur.Status.PodIP}}
		cur.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: status}}
		if _, err := client.CoreV1().Pods("default").UpdateStatus(ctx, cur, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		pods.Items[i] = *cur
	}
	return pods.Items
}

func TestDeploymentPodsAndSlicesFollowReadiness(t *testing.T) {
	client := startControllers(t)
	ctx := context.Background()
	labels := map[string]string{"app": "web"}
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default"},
		Spec: appsv1.DeploymentSpec{
			Replicas: int32p(6),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: "nginx",
					Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}}}}},
			},
		},
	}
	if _, err := client.AppsV1().Deployments("default").Create(ctx, d, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default"},
		Spec: corev1.ServiceSpec{Selector: labels, Ports: []corev1.ServicePort{{Port: 80, TargetPort: intstrName("http")}}}}
	if _, err := client.CoreV1().Services("default").Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	waitFor(t, "one ReplicaSet with 6 pods", func() error {
		rss, err := client.AppsV1().ReplicaSets("default").List(ctx, metav1.ListOptions{LabelSelector: "app=web"})
		if err != nil {
			return err
		}
		if len(rss.Items) != 1 || rss.Items[0].Labels[appsv1.DefaultDeploymentUniqueLabelKey] == "" {
			return fmt.Errorf("%d ReplicaSets", len(rss.Items))
		}
		if rss.Items[0].Annotations["deployment.kubernetes.io/revision"] != "1" {
			return fmt.Errorf("revision annotation %q", rss.Items[0].Annotations["deployment.kubernetes.io/revision"])
		}
		pods, err := client.CoreV1().Pods("default").List(ctx, metav1.ListOptions{LabelSelector: "app=web"})
		if err != nil {
			return err
		}
		if len(pods.Items) != 6 {
			return fmt.Errorf("%d pods", len(pods.Items))
		}
		return nil
	})

	// Four ready, two not: the slice says so, the named target port resolves,
	// and Endpoints splits addresses from notReadyAddresses.
	pods := markPods(t, client, func(i int) bool { return i < 4 })
	waitFor(t, "slices follow pod readiness", func() error {
		slices, err := client.DiscoveryV1().EndpointSlices("default").List(ctx, metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=web"})
		if err != nil {
			return err
		}
		ready, notReady := 0, 0
		for _, s := range slices.Items {
			if s.Labels[discoveryv1.LabelManagedBy] != managedBy {
				return fmt.Errorf("slice %s managed by %q", s.Name, s.Labels[discoveryv1.LabelManagedBy])
			}
			for _, p := range s.Ports {
				if *p.Port != 8080 {
					return fmt.Errorf("slice port %d, want the pod's named port 8080", *p.Port)
				}
			}
			for _, e := range s.Endpoints {
				if e.NodeName == nil || e.TargetRef == nil {
					return fmt.Errorf("endpoint without nodeName or targetRef: %+v", e)
				}
				if *e.Conditions.Ready {
					ready++
				} else {
					notReady++
				}
			}
		}
		if ready != 4 || notReady != 2 {
			return fmt.Errorf("ready %d, not ready %d; want 4 and 2", ready, notReady)
		}
		ep, err := client.CoreV1().Endpoints("default").Get(ctx, "web", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if len(ep.Subsets) != 1 || len(ep.Subsets[0].Addresses) != 4 || len(ep.Subsets[0].NotReadyAddresses) != 2 {
			return fmt.Errorf("endpoints subsets %+v", ep.Subsets)
		}
		return nil
	})
	if len(pods) != 6 {
		t.Fatalf("marked %d pods", len(pods))
	}

	// Scale down to 2 through the scale subresource: surplus pods go, not-ready first.
	scale, err := client.AppsV1().Deployments("default").GetScale(ctx, "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	scale.Spec.Replicas = 2
	if _, err := client.AppsV1().Deployments("default").UpdateScale(ctx, "web", scale, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "2 pods left, both ready ones", func() error {
		pods, err := client.CoreV1().Pods("default").List(ctx, metav1.ListOptions{LabelSelector: "app=web"})
		if err != nil {
			return err
		}
		live := 0
		for _, p := range pods.Items {
			if p.DeletionTimestamp != nil {
				continue
			}
			live++
			if len(p.Status.Conditions) == 0 || p.Status.Conditions[0].Status != corev1.ConditionTrue {
				return fmt.Errorf("a not-ready pod %s survived the scale-down", p.Name)
			}
		}
		if live != 2 {
			return fmt.Errorf("%d live pods", live)
		}
		return nil
	})

	// A new template rolls out a second ReplicaSet with revision 2.
	patch := []byte(`{"spec":{"template":{"metadata":{"annotations":{"kubectl.kubernetes.io/restartedAt":"now"}}}}}`)
	if _, err := client.AppsV1().Deployments("default").Patch(ctx, "web", types.StrategicMergePatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a second ReplicaSet at revision 2", func() error {
		rss, err := client.AppsV1().ReplicaSets("default").List(ctx, metav1.ListOptions{LabelSelector: "app=web"})
		if err != nil {
			return err
		}
		for _, rs := range rss.Items {
			if rs.Annotations["deployment.kubernetes.io/revision"] == "2" && *rs.Spec.Replicas > 0 {
				return nil
			}
		}
		return fmt.Errorf("%d ReplicaSets, none at revision 2 with replicas", len(rss.Items))
	})
}

func intstrName(name string) intstr.IntOrString { return intstr.FromString(name) }

func TestDeletingOwnersCascades(t *testing.T) {
	client := startControllers(t)
	ctx := context.Background()
	labels := map[string]string{"app": "web"}
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default"},
		Spec: appsv1.DeploymentSpec{
			Replicas: int32p(3),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: "nginx"}}}},
		},
	}
	if _, err := client.AppsV1().Deployments("default").Create(ctx, d, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default"},
		Spec: corev1.ServiceSpec{Selector: labels, Ports: []corev1.ServicePort{{Port: 80}}}}
	if _, err := client.CoreV1().Services("default").Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	count := func() (rs, pods, slices int, err error) {
		r, err := client.AppsV1().ReplicaSets("default").List(ctx, metav1.ListOptions{LabelSelector: "app=web"})
		if err != nil {
			return
		}
		p, err := client.CoreV1().Pods("default").List(ctx, metav1.ListOptions{LabelSelector: "app=web"})
		if err != nil {
			return
		}
		s, err := client.DiscoveryV1().EndpointSlices("default").List(ctx, metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=web"})
		return len(r.Items), len(p.Items), len(s.Items), err
	}
	waitFor(t, "a ReplicaSet, 3 pods and a slice", func() error {
		rs, pods, slices, err := count()
		if err != nil || rs != 1 || pods != 3 || slices != 1 {
			return fmt.Errorf("rs %d pods %d slices %d (%v)", rs, pods, slices, err)
		}
		return nil
	})
	if err := client.AppsV1().Deployments("default").Delete(ctx, "web", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := client.CoreV1().Services("default").Delete(ctx, "web", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "ReplicaSet, pods and slices gone with their owners", func() error {
		rs, pods, slices, err := count()
		if err != nil || rs != 0 || pods != 0 || slices != 0 {
			return fmt.Errorf("rs %d pods %d slices %d (%v)", rs, pods, slices, err)
		}
		return nil
	})
}
