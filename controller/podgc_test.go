package controller

import (
	"context"
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestPodGCDeletesPodsOfNodesThatAreGone: after `kubectl delete node`, the
// node's pods (which no agent will ever finish) are force-deleted once the
// quarantine has passed, as is a pod bound to a node that never existed;
// pods of a node deleted and re-created within the quarantine, and of
// nodes that exist, stay.
func TestPodGCDeletesPodsOfNodesThatAreGone(t *testing.T) {
	const quarantine = 700 * time.Millisecond
	inst := startControllersWith(t, func(o *Options) { o.NodeMonitorGracePeriod = -1; o.OrphanPodQuarantine = quarantine })
	client := inst.Client
	ctx := context.Background()
	mkNode := func(name string) {
		now := metav1.Now()
		node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}, Status: corev1.NodeStatus{
			Capacity:   corev1.ResourceList{corev1.ResourcePods: resource.MustParse("110")},
			Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue, LastHeartbeatTime: now, LastTransitionTime: now}},
		}}
		if _, err := client.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range []string{"node-1", "node-2", "node-3"} {
		mkNode(n)
	}
	for pod, node := range map[string]string{"on-1": "node-1", "on-2": "node-2", "on-3": "node-3", "ghost": "node-ghost"} {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: pod, Namespace: "default"},
			Spec: corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{Name: "c", Image: "x"}}}}
		if _, err := client.CoreV1().Pods("default").Create(ctx, p, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	inst.MustKubectl(t, "delete", "node", "node-2", "node-3")
	mkNode("node-3") // back within the quarantine

	waitFor(t, "on-2 and ghost deleted", func() error {
		for _, name := range []string{"on-2", "ghost"} {
			if _, err := client.CoreV1().Pods("default").Get(ctx, name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
				return fmt.Errorf("%s still there (%v)", name, err)
			}
		}
		return nil
	})
	time.Sleep(2 * quarantine)
	for _, name := range []string{"on-1", "on-3"} {
		p, err := client.CoreV1().Pods("default").Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Errorf("%s: %v, want it kept", name, err)
		} else if p.DeletionTimestamp != nil {
			t.Errorf("%s: being deleted, want it kept", name)
		}
	}
}
