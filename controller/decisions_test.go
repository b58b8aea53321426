package controller

import (
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

func TestPodsToDeleteOrder(t *testing.T) {
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	pod := func(name, node string, phase corev1.PodPhase, ready bool, age time.Duration) *corev1.Pod {
		st := corev1.ConditionFalse
		if ready {
			st = corev1.ConditionTrue
		}
		return &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: name, CreationTimestamp: metav1.NewTime(base.Add(-age))},
			Spec:       corev1.PodSpec{NodeName: node},
			Status: corev1.PodStatus{Phase: phase, Conditions: []corev1.PodCondition{
				{Type: corev1.PodReady, Status: st, LastTransitionTime: metav1.NewTime(base.Add(-age))}}},
		}
	}
	readyOld := pod("ready-old", "n1", corev1.PodRunning, true, time.Hour)
	readyNew := pod("ready-new", "n1", corev1.PodRunning, true, time.Minute)
	notReady := pod("not-ready", "n1", corev1.PodRunning, false, time.Hour)
	pending := pod("pending", "n1", corev1.PodPending, false, time.Hour)
	unscheduled := pod("unscheduled", "", corev1.PodPending, false, 2*time.Hour)
	all := []*corev1.Pod{readyOld, readyNew, notReady, pending, unscheduled}

	for _, tc := range []struct {
		n    int
		want []string
	}{
		{0, nil},
		{1, []string{"unscheduled"}},
		{3, []string{"unscheduled", "pending", "not-ready"}},
		{4, []string{"unscheduled", "pending", "not-ready", "ready-new"}},
		{9, []string{"unscheduled", "pending", "not-ready", "ready-new", "ready-old"}},
	} {
		got := podsToDelete(all, tc.n)
		if len(got) != len(tc.want) {
			t.Errorf("podsToDelete(n=%d) = %d pods, want %v", tc.n, len(got), tc.want)
			continue
		}
		for i := range got {
			if got[i].Name != tc.want[i] {
				t.Errorf("podsToDelete(n=%d)[%d] = %s, want %s", tc.n, i, got[i].Name, tc.want[i])
			}
		}
	}
	if all[0] != readyOld {
		t.Error("podsToDelete reordered its input")
	}
}

func TestResolveSurgeUnavailable(t *testing.T) {
	ios := func(s string) *intstr.IntOrString { v := intstr.Parse(s); return &v }
	for _, tc := range []struct {
		name                string
		replicas            int32
		surge, unavailable  *intstr.IntOrString
		wantSurge, wantUnav int32
	}{
		{"defaults 25% of 4", 4, nil, nil, 1, 1},
		{"25% of 10: surge rounds up, unavailable down", 10, nil, nil, 3, 2},
		{"both zero would deadlock: unavailable becomes 1", 3, ios("0"), ios("0"), 0, 1},
		{"absolute numbers", 5, ios("2"), ios("1"), 2, 1},
		{"100% surge", 2, ios("100%"), ios("0"), 2, 0},
	} {
		d := &appsv1.Deployment{Spec: appsv1.DeploymentSpec{Replicas: &tc.replicas,
			Strategy: appsv1.DeploymentStrategy{Type: appsv1.RollingUpdateDeploymentStrategyType,
				RollingUpdate: &appsv1.RollingUpdateDeployment{MaxSurge: tc.surge, MaxUnavailable: tc.unavailable}}}}
		s, u := resolveSurgeUnavailable(d)
		if s != tc.wantSurge || u != tc.wantUnav {
			t.Errorf("%s: surge %d unavailable %d, want %d and %d", tc.name, s, u, tc.wantSurge, tc.wantUnav)
		}
	}
}

func TestRollingNewReplicas(t *testing.T) {
	rs := func(name string, replicas int32) *appsv1.ReplicaSet {
		return &appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: appsv1.ReplicaSetSpec{Replicas: &replicas}}
	}
	for _, tc := range []struct {
		name            string
		desired, surge  int32
		newSize, oldSum int32
		want            int32
	}{
		{"start: grow by the surge", 4, 1, 0, 4, 1},
		{"room left under desired+surge", 4, 2, 1, 4, 2},
		{"at desired+surge: wait for old to shrink", 4, 1, 1, 4, 1},
		{"old gone: grow to desired", 4, 1, 1, 0, 4},
		{"already at desired", 4, 1, 4, 0, 4},
	} {
		newRS := rs("new", tc.newSize)
		all := []*appsv1.ReplicaSet{newRS, rs("old", tc.oldSum)}
		if got := rollingNewReplicas(tc.desired, tc.surge, newRS, all); got != tc.want {
			t.Errorf("%s: rollingNewReplicas = %d, want %d", tc.name, got, tc.want)
		}
	}
}
