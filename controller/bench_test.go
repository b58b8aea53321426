package controller

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/kubelab/kubelab/apiserver/apitest"
	"github.com/kubelab/kubelab/scheduler"
)

// BenchmarkDeploymentHundredPods is the control plane's share of issue 5's
// "100 pods to Running and Ready": a real API server, the controllers and
// the scheduler (each with the client `kubelab up` gives it), three Ready
// Nodes and no agents; the benchmark plays the agents, writing each bound
// pod's status Running and Ready as soon as it sees the binding. It reports
// when the last pod was created, bound, and when the Deployment counted
// 100 available replicas.
//
//	go test ./controller -run '^$' -bench DeploymentHundredPods -benchtime 3x
func BenchmarkDeploymentHundredPods(b *testing.B) {
	const replicas = 100
	inst := apitest.Start(b)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	client := kubernetes.NewForConfigOrDie(ClientConfig(inst.Config))
	schedClient := kubernetes.NewForConfigOrDie(scheduler.ClientConfig(inst.Config))
	done := make(chan error, 2)
	go func() {
		done <- Run(ctx, client, Options{APIServerIP: net.ParseIP("10.200.0.254"), NodeMonitorGracePeriod: -1})
	}()
	go func() { done <- scheduler.Run(ctx, schedClient, scheduler.Options{}) }()
	defer func() {
		cancel()
		for range 2 {
			if err := <-done; err != nil {
				b.Error(err)
			}
		}
	}()
	for i := 1; i <= 3; i++ {
		n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("node-%d", i)},
			Status: corev1.NodeStatus{
				Capacity:    corev1.ResourceList{corev1.ResourcePods: resource.MustParse("110"), corev1.ResourceCPU: resource.MustParse("2"), corev1.ResourceMemory: resource.MustParse("4Gi")},
				Allocatable: corev1.ResourceList{corev1.ResourcePods: resource.MustParse("110"), corev1.ResourceCPU: resource.MustParse("2"), corev1.ResourceMemory: resource.MustParse("4Gi")},
				Conditions:  []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue, LastHeartbeatTime: metav1.Now()}},
			}}
		if _, err := inst.Client.CoreV1().Nodes().Create(ctx, n, metav1.CreateOptions{}); err != nil {
			b.Fatal(err)
		}
	}
	agent := inst.Client.CoreV1().Pods("default")
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		name := fmt.Sprintf("hundred-%d", i)
		labels := map[string]string{"app": name}
		d := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec: appsv1.DeploymentSpec{Replicas: ptr.To[int32](replicas), Selector: &metav1.LabelSelector{MatchLabels: labels},
				Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels},
					Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: "registry.example/web:1.0"}}}}}}
		w, err := agent.Watch(ctx, metav1.ListOptions{LabelSelector: "app=" + name})
		if err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		if _, err := inst.Client.AppsV1().Deployments("default").Create(ctx, d, metav1.CreateOptions{}); err != nil {
			b.Fatal(err)
		}
		created, bound := map[string]bool{}, map[string]bool{}
		var tCreated, tBound time.Duration
		statusDone := make(chan error, replicas)
		for len(bound) < replicas {
			var ev watch.Event
			select {
			case ev = <-w.ResultChan():
			case <-time.After(60 * time.Second):
				b.Fatalf("%d pods created, %d bound after a minute", len(created), len(bound))
			}
			p, ok := ev.Object.(*corev1.Pod)
			if !ok {
				continue
			}
			created[p.Name] = true
			if len(created) == replicas && tCreated == 0 {
				tCreated = time.Since(start)
			}
			if p.Spec.NodeName == "" || bound[p.Name] {
				continue
			}
			bound[p.Name] = true
			go func() { statusDone <- setRunningReady(ctx, agent, p) }()
		}
		tBound = time.Since(start)
		w.Stop()
		for range replicas {
			if err := <-statusDone; err != nil {
				b.Fatal(err)
			}
		}
		for {
			got, err := inst.Client.AppsV1().Deployments("default").Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				b.Fatal(err)
			}
			if got.Status.AvailableReplicas == replicas {
				break
			}
			if time.Since(start) > time.Minute {
				b.Fatalf("deployment status after a minute: %+v", got.Status)
			}
			time.Sleep(5 * time.Millisecond)
		}
		b.ReportMetric(tCreated.Seconds(), "s-to-100-created")
		b.ReportMetric(tBound.Seconds(), "s-to-100-bound")
		b.ReportMetric(time.Since(start).Seconds(), "s-to-100-available")
		b.StopTimer()
		cleanUp(ctx, b, inst.Client, name)
		b.StartTimer()
	}
}

// cleanUp deletes the Deployment and, once its ReplicaSet is gone, does the
// agents' part of pod deletion (the final delete), so the nodes are empty
// for the next round.
func cleanUp(ctx context.Context, b *testing.B, c kubernetes.Interface, name string) {
	if err := c.AppsV1().Deployments("default").Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
		b.Fatal(err)
	}
	sel := metav1.ListOptions{LabelSelector: "app=" + name}
	deadline := time.Now().Add(time.Minute)
	for {
		rs, err := c.AppsV1().ReplicaSets("default").List(ctx, sel)
		if err != nil {
			b.Fatal(err)
		}
		pods, err := c.CoreV1().Pods("default").List(ctx, sel)
		if err != nil {
			b.Fatal(err)
		}
		if len(rs.Items) == 0 && len(pods.Items) == 0 {
			return
		}
		if len(rs.Items) == 0 {
			for _, p := range pods.Items {
				err := c.CoreV1().Pods("default").Delete(ctx, p.Name, metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)})
				if err != nil && !apierrors.IsNotFound(err) {
					b.Fatal(err)
				}
			}
		}
		if time.Now().After(deadline) {
			b.Fatalf("after a minute: %d ReplicaSets, %d pods left", len(rs.Items), len(pods.Items))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// setRunningReady writes what an agent writes once the pod's process runs.
func setRunningReady(ctx context.Context, pods interface {
	UpdateStatus(context.Context, *corev1.Pod, metav1.UpdateOptions) (*corev1.Pod, error)
}, p *corev1.Pod) error {
	p = p.DeepCopy()
	now := metav1.Now()
	p.Status.Phase = corev1.PodRunning
	p.Status.PodIP, p.Status.HostIP, p.Status.StartTime = "10.244.1.2", "10.200.0.1", &now
	for _, t := range []corev1.PodConditionType{corev1.PodInitialized, corev1.ContainersReady, corev1.PodReady} {
		p.Status.Conditions = append(p.Status.Conditions, corev1.PodCondition{Type: t, Status: corev1.ConditionTrue, LastTransitionTime: now})
	}
	p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "web", Ready: true, Started: ptr.To(true),
		State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: now}}}}
	_, err := pods.UpdateStatus(ctx, p, metav1.UpdateOptions{})
	return err
}
