package controller

import (
	"context"
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/utils/ptr"
)

func TestNoExecuteVerdict(t *testing.T) {
	unreachable := corev1.Taint{Key: taintUnreachable, Effect: corev1.TaintEffectNoExecute}
	unreachableNoSchedule := corev1.Taint{Key: taintUnreachable, Effect: corev1.TaintEffectNoSchedule}
	maintenance := corev1.Taint{Key: "maintenance", Value: "true", Effect: corev1.TaintEffectNoExecute}
	tol := func(key string, effect corev1.TaintEffect, seconds *int64) corev1.Toleration {
		return corev1.Toleration{Key: key, Operator: corev1.TolerationOpExists, Effect: effect, TolerationSeconds: seconds}
	}
	for _, tc := range []struct {
		name   string
		taints []corev1.Taint
		tols   []corev1.Toleration
		want   verdict
	}{
		{"no taints", nil, nil, verdict{stay: true}},
		{"NoSchedule only: running pods stay", []corev1.Taint{unreachableNoSchedule}, nil, verdict{stay: true}},
		{"not tolerated: at once", []corev1.Taint{unreachable}, nil, verdict{}},
		{"default 300 s", []corev1.Taint{unreachable}, []corev1.Toleration{tol(taintUnreachable, corev1.TaintEffectNoExecute, ptr.To[int64](300))}, verdict{after: 300 * time.Second}},
		{"tolerated forever", []corev1.Taint{unreachable}, []corev1.Toleration{tol(taintUnreachable, corev1.TaintEffectNoExecute, nil)}, verdict{stay: true}},
		{"empty key and effect tolerate everything", []corev1.Taint{unreachable, maintenance}, []corev1.Toleration{{Operator: corev1.TolerationOpExists}}, verdict{stay: true}},
		{"one of two taints untolerated: at once", []corev1.Taint{unreachable, maintenance},
			[]corev1.Toleration{tol(taintUnreachable, corev1.TaintEffectNoExecute, ptr.To[int64](300))}, verdict{}},
		{"shortest limit of the tolerations used", []corev1.Taint{unreachable, maintenance},
			[]corev1.Toleration{tol(taintUnreachable, "", ptr.To[int64](300)), tol("maintenance", corev1.TaintEffectNoExecute, ptr.To[int64](20))}, verdict{after: 20 * time.Second}},
		{"first matching toleration is the one used", []corev1.Taint{unreachable},
			[]corev1.Toleration{tol(taintUnreachable, corev1.TaintEffectNoExecute, nil), tol(taintUnreachable, corev1.TaintEffectNoExecute, ptr.To[int64](5))}, verdict{stay: true}},
		{"negative seconds: at once", []corev1.Taint{unreachable}, []corev1.Toleration{tol(taintUnreachable, corev1.TaintEffectNoExecute, ptr.To[int64](-5))}, verdict{}},
		{"Equal compares the value", []corev1.Taint{maintenance},
			[]corev1.Toleration{{Key: "maintenance", Operator: corev1.TolerationOpEqual, Value: "false", Effect: corev1.TaintEffectNoExecute}}, verdict{}},
		{"a NoSchedule toleration does not cover NoExecute", []corev1.Taint{unreachable}, []corev1.Toleration{tol(taintUnreachable, corev1.TaintEffectNoSchedule, nil)}, verdict{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := noExecuteVerdict(tc.taints, tc.tols); got != tc.want {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

// TestTaintEvictionWithKubectlTaint: `kubectl taint node ... :NoExecute`
// evicts the pods that do not tolerate it at once, those that tolerate it
// for a while when that runs out, and leaves those that tolerate it for
// good and those on other nodes. The API server's default tolerations
// (not-ready/unreachable for 300 s) do not cover a user's taint.
func TestTaintEvictionWithKubectlTaint(t *testing.T) {
	inst := startControllersWith(t, func(o *Options) { o.NodeMonitorGracePeriod = -1 })
	client := inst.Client
	ctx := context.Background()
	for _, name := range []string{"node-1", "node-2"} {
		now := metav1.Now()
		node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}, Status: corev1.NodeStatus{
			Capacity:   corev1.ResourceList{corev1.ResourcePods: resource.MustParse("110")},
			Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue, LastHeartbeatTime: now, LastTransitionTime: now}},
		}}
		if _, err := client.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	maintenance := func(seconds *int64) []corev1.Toleration {
		return []corev1.Toleration{{Key: "maintenance", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute, TolerationSeconds: seconds}}
	}
	pods := []struct {
		name, node string
		tols       []corev1.Toleration
	}{
		{"plain", "node-1", nil},
		{"for-2s", "node-1", maintenance(ptr.To[int64](2))},
		{"for-good", "node-1", maintenance(nil)},
		{"elsewhere", "node-2", nil},
	}
	for _, p := range pods {
		pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: p.name, Namespace: "default"},
			Spec: corev1.PodSpec{NodeName: p.node, Tolerations: p.tols, Containers: []corev1.Container{{Name: "c", Image: "x"}}}}
		if _, err := client.CoreV1().Pods("default").Create(ctx, pod, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	inst.MustKubectl(t, "taint", "node", "node-1", "maintenance=true:NoExecute")

	// No agent finishes the deletions: evicted pods keep a deletionTimestamp
	// (now + their 30 s grace), which records when each was evicted.
	deletedAt := func(name string) (*metav1.Time, error) {
		p, err := client.CoreV1().Pods("default").Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return nil, err
		}
		return p.DeletionTimestamp, nil
	}
	waitFor(t, "plain and for-2s evicted", func() error {
		for _, name := range []string{"plain", "for-2s"} {
			if ts, err := deletedAt(name); err != nil || ts == nil {
				return fmt.Errorf("%s not evicted yet (%v)", name, err)
			}
		}
		return nil
	})
	plain, _ := deletedAt("plain")
	late, _ := deletedAt("for-2s")
	// Second-grained timestamps: 2 s of toleration show as at least 1 s.
	if d := late.Sub(plain.Time); d < time.Second {
		t.Errorf("for-2s evicted %v after plain, want its 2 s of toleration first", d)
	}
	p, err := client.CoreV1().Pods("default").Get(ctx, "plain", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	marked := false
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.DisruptionTarget && c.Status == corev1.ConditionTrue && c.Reason == "DeletionByTaintManager" {
			marked = true
		}
	}
	if !marked {
		t.Errorf("evicted pod has no DisruptionTarget condition: %+v", p.Status.Conditions)
	}
	waitFor(t, "an eviction event", func() error {
		evs, err := client.CoreV1().Events("default").List(ctx, metav1.ListOptions{FieldSelector: fields.OneTermEqualSelector("involvedObject.name", "plain").String()})
		if err != nil {
			return err
		}
		for _, e := range evs.Items {
			if e.Reason == "TaintManagerEviction" {
				return nil
			}
		}
		return fmt.Errorf("events %+v", evs.Items)
	})
	// Give the controller a chance to misbehave before checking who stays.
	time.Sleep(time.Second)
	for _, name := range []string{"for-good", "elsewhere"} {
		if ts, err := deletedAt(name); err != nil || ts != nil {
			t.Errorf("%s: deletion %v (%v), want it left alone", name, ts, err)
		}
	}
}
