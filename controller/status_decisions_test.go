package controller

import (
	"fmt"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

var t0 = time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC)

func taintKeys(ts []corev1.Taint) string {
	var parts []string
	for _, t := range ts {
		parts = append(parts, t.Key+":"+string(t.Effect))
	}
	return strings.Join(parts, ",")
}

func TestWantedTaints(t *testing.T) {
	now := metav1.NewTime(t0)
	user := corev1.Taint{Key: "dedicated", Value: "gpu", Effect: corev1.TaintEffectNoSchedule}
	unreach := []corev1.Taint{{Key: taintUnreachable, Effect: corev1.TaintEffectNoSchedule}, {Key: taintUnreachable, Effect: corev1.TaintEffectNoExecute, TimeAdded: &now}}
	for _, tc := range []struct {
		name    string
		taints  []corev1.Taint
		ready   corev1.ConditionStatus
		want    string
		changed bool
	}{
		{"ready node stays clean", nil, corev1.ConditionTrue, "", false},
		{"user taints are kept", []corev1.Taint{user}, corev1.ConditionTrue, "dedicated:NoSchedule", false},
		{"unknown gets both unreachable taints", []corev1.Taint{user}, corev1.ConditionUnknown,
			"dedicated:NoSchedule,node.kubernetes.io/unreachable:NoSchedule,node.kubernetes.io/unreachable:NoExecute", true},
		{"already tainted: nothing to do", unreach, corev1.ConditionUnknown,
			"node.kubernetes.io/unreachable:NoSchedule,node.kubernetes.io/unreachable:NoExecute", false},
		{"one effect missing is added", unreach[:1], corev1.ConditionUnknown,
			"node.kubernetes.io/unreachable:NoSchedule,node.kubernetes.io/unreachable:NoExecute", true},
		{"back to ready removes them", append([]corev1.Taint{user}, unreach...), corev1.ConditionTrue, "dedicated:NoSchedule", true},
		{"false swaps unreachable for not-ready", unreach, corev1.ConditionFalse,
			"node.kubernetes.io/not-ready:NoSchedule,node.kubernetes.io/not-ready:NoExecute", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, changed := wantedTaints(tc.taints, tc.ready, now)
			if taintKeys(got) != tc.want || changed != tc.changed {
				t.Errorf("got %q changed=%v, want %q changed=%v", taintKeys(got), changed, tc.want, tc.changed)
			}
			for _, taint := range got {
				if taint.Effect == corev1.TaintEffectNoExecute && taint.TimeAdded == nil {
					t.Errorf("NoExecute taint without timeAdded: %+v", taint)
				}
			}
		})
	}
}

func TestUnknownConditions(t *testing.T) {
	before := metav1.NewTime(t0.Add(-time.Hour))
	now := metav1.NewTime(t0)
	healthy := []corev1.NodeCondition{
		{Type: corev1.NodeMemoryPressure, Status: corev1.ConditionFalse, LastHeartbeatTime: before, LastTransitionTime: before},
		{Type: corev1.NodeReady, Status: corev1.ConditionTrue, LastHeartbeatTime: before, LastTransitionTime: before},
		{Type: "Custom", Status: corev1.ConditionTrue, LastTransitionTime: before},
	}
	got, changed := unknownConditions(healthy, now)
	if !changed || len(got) != 3 {
		t.Fatalf("changed=%v conditions %+v", changed, got)
	}
	for _, c := range got[:2] {
		if c.Status != corev1.ConditionUnknown || c.Reason != "NodeStatusUnknown" || !c.LastTransitionTime.Equal(&now) || !c.LastHeartbeatTime.Equal(&before) {
			t.Errorf("%s: %+v", c.Type, c)
		}
	}
	if got[2].Status != corev1.ConditionTrue {
		t.Errorf("a condition the agent does not own was changed: %+v", got[2])
	}
	if healthy[1].Status != corev1.ConditionTrue {
		t.Error("input modified")
	}
	if _, changed := unknownConditions(got, metav1.NewTime(t0.Add(time.Minute))); changed {
		t.Error("already Unknown, yet changed again")
	}
	never, changed := unknownConditions(nil, now)
	if !changed || len(never) != 1 || never[0].Type != corev1.NodeReady || never[0].Reason != "NodeStatusNeverUpdated" {
		t.Errorf("node that never posted status: %+v", never)
	}
}

func TestLastHeartbeat(t *testing.T) {
	node := func(hb time.Time) *corev1.Node {
		return &corev1.Node{Status: corev1.NodeStatus{Conditions: []corev1.NodeCondition{
			{Type: corev1.NodeReady, Status: corev1.ConditionTrue, LastHeartbeatTime: metav1.NewTime(hb)}}}}
	}
	lease := func(renew time.Time) *coordinationv1.Lease {
		return &coordinationv1.Lease{Spec: coordinationv1.LeaseSpec{RenewTime: &metav1.MicroTime{Time: renew}}}
	}
	for _, tc := range []struct {
		name  string
		node  *corev1.Node
		lease *coordinationv1.Lease
		want  time.Time
	}{
		{"lease newer", node(t0), lease(t0.Add(time.Minute)), t0.Add(time.Minute)},
		{"status newer", node(t0.Add(time.Minute)), lease(t0), t0.Add(time.Minute)},
		{"no lease", node(t0), nil, t0},
		{"nothing", &corev1.Node{}, nil, time.Time{}},
	} {
		if got := lastHeartbeat(tc.node, tc.lease); !got.Equal(tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestPodMarkedNotReady(t *testing.T) {
	now := metav1.NewTime(t0)
	pod := func(phase corev1.PodPhase, ready corev1.ConditionStatus) *corev1.Pod {
		return &corev1.Pod{Status: corev1.PodStatus{Phase: phase, Conditions: []corev1.PodCondition{
			{Type: corev1.PodScheduled, Status: corev1.ConditionTrue}, {Type: corev1.PodReady, Status: ready}}}}
	}
	for _, tc := range []struct {
		name    string
		pod     *corev1.Pod
		changed bool
	}{
		{"running and ready", pod(corev1.PodRunning, corev1.ConditionTrue), true},
		{"already not ready", pod(corev1.PodRunning, corev1.ConditionFalse), false},
		{"succeeded pods keep their status", pod(corev1.PodSucceeded, corev1.ConditionTrue), false},
		{"no ready condition yet", &corev1.Pod{Status: corev1.PodStatus{Phase: corev1.PodPending}}, false},
	} {
		got, changed := podMarkedNotReady(tc.pod, now)
		if changed != tc.changed {
			t.Errorf("%s: changed=%v", tc.name, changed)
			continue
		}
		if changed {
			c := podReadyCondition(got)
			if c.Status != corev1.ConditionFalse || c.Reason != "NodeNotReady" || got == tc.pod {
				t.Errorf("%s: %+v (input reused: %v)", tc.name, c, got == tc.pod)
			}
			if podReadyCondition(tc.pod).Status != corev1.ConditionTrue {
				t.Errorf("%s: input modified", tc.name)
			}
		}
	}
}

func TestRemainingConditions(t *testing.T) {
	now := metav1.NewTime(t0)
	got := remainingConditions([]contentCount{
		{resource: "pods", items: 2, finalizers: map[string]int{}},
		{resource: "configmaps", items: 1, finalizers: map[string]int{"example.com/hold": 1}},
	}, now)
	want := map[corev1.NamespaceConditionType]string{
		corev1.NamespaceContentRemaining:    "True SomeResourcesRemain Some resources are remaining: pods has 2 resource instances, configmaps has 1 resource instances",
		corev1.NamespaceFinalizersRemaining: "True SomeFinalizersRemain Some content in the namespace has finalizers remaining: example.com/hold in 1 resource instances",
	}
	if len(got) != len(want) {
		t.Fatalf("%+v", got)
	}
	for _, c := range got {
		if s := fmt.Sprintf("%s %s %s", c.Status, c.Reason, c.Message); s != want[c.Type] {
			t.Errorf("%s: %q, want %q", c.Type, s, want[c.Type])
		}
	}
	noFin := remainingConditions([]contentCount{{resource: "pods", items: 1, finalizers: map[string]int{}}}, now)
	if noFin[1].Status != corev1.ConditionFalse {
		t.Errorf("finalizers condition without finalizers: %+v", noFin[1])
	}
}

func rsWith(name string, revision int64, spec, replicas, ready, available int32) *appsv1.ReplicaSet {
	return &appsv1.ReplicaSet{
		ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: map[string]string{"deployment.kubernetes.io/revision": fmt.Sprint(revision)},
			CreationTimestamp: metav1.NewTime(t0.Add(time.Duration(revision) * time.Minute))},
		Spec:   appsv1.ReplicaSetSpec{Replicas: &spec},
		Status: appsv1.ReplicaSetStatus{Replicas: replicas, ReadyReplicas: ready, AvailableReplicas: available},
	}
}

func TestDeploymentStatus(t *testing.T) {
	deploy := func(replicas int32, strategy appsv1.DeploymentStrategyType, conds ...appsv1.DeploymentCondition) *appsv1.Deployment {
		d := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Generation: 3},
			Spec:   appsv1.DeploymentSpec{Replicas: &replicas, Strategy: appsv1.DeploymentStrategy{Type: strategy}},
			Status: appsv1.DeploymentStatus{Conditions: conds}}
		if strategy == appsv1.RollingUpdateDeploymentStrategyType {
			q := intstr.FromString("25%")
			d.Spec.Strategy.RollingUpdate = &appsv1.RollingUpdateDeployment{MaxSurge: &q, MaxUnavailable: &q}
		}
		return d
	}
	longAgo := metav1.NewTime(t0.Add(-20 * time.Minute))
	progressing := appsv1.DeploymentCondition{Type: appsv1.DeploymentProgressing, Status: corev1.ConditionTrue, Reason: reasonRSUpdated,
		LastUpdateTime: longAgo, LastTransitionTime: longAgo}
	newRS := rsWith("web-new", 2, 4, 4, 4, 4)
	halfRS := rsWith("web-new", 2, 2, 2, 2, 1)
	oldRS := rsWith("web-old", 1, 2, 2, 2, 2)

	for _, tc := range []struct {
		name                   string
		d                      *appsv1.Deployment
		newRS                  *appsv1.ReplicaSet
		all                    []*appsv1.ReplicaSet
		replicas, updated, av  int32
		unavailable            int32
		available, progressing string // "Status/Reason"
		recheck                bool
	}{
		{"complete rollout", deploy(4, appsv1.RollingUpdateDeploymentStrategyType), newRS, []*appsv1.ReplicaSet{newRS},
			4, 4, 4, 0, "True/MinimumReplicasAvailable", "True/NewReplicaSetAvailable", false},
		{"mid rollout within maxUnavailable", deploy(4, appsv1.RollingUpdateDeploymentStrategyType), halfRS, []*appsv1.ReplicaSet{halfRS, oldRS},
			4, 2, 3, 1, "True/MinimumReplicasAvailable", "True/ReplicaSetUpdated", true},
		{"below minimum availability", deploy(4, appsv1.RollingUpdateDeploymentStrategyType), halfRS, []*appsv1.ReplicaSet{halfRS},
			2, 2, 1, 3, "False/MinimumReplicasUnavailable", "True/ReplicaSetUpdated", true},
		{"recreate is available with none", deploy(4, appsv1.RecreateDeploymentStrategyType), halfRS, []*appsv1.ReplicaSet{halfRS},
			2, 2, 1, 3, "True/MinimumReplicasAvailable", "True/ReplicaSetUpdated", true},
		{"stalled past the deadline", func() *appsv1.Deployment {
			d := deploy(4, appsv1.RollingUpdateDeploymentStrategyType, progressing)
			d.Status.Replicas, d.Status.UpdatedReplicas, d.Status.ReadyReplicas, d.Status.AvailableReplicas = 2, 2, 2, 1
			return d
		}(), halfRS, []*appsv1.ReplicaSet{halfRS},
			2, 2, 1, 3, "False/MinimumReplicasUnavailable", "False/ProgressDeadlineExceeded", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, recheck := deploymentStatus(tc.d, tc.newRS, tc.all, t0)
			if st.ObservedGeneration != 3 || st.Replicas != tc.replicas || st.UpdatedReplicas != tc.updated ||
				st.AvailableReplicas != tc.av || st.UnavailableReplicas != tc.unavailable {
				t.Errorf("counts: observed %d replicas %d updated %d available %d unavailable %d",
					st.ObservedGeneration, st.Replicas, st.UpdatedReplicas, st.AvailableReplicas, st.UnavailableReplicas)
			}
			got := func(ct appsv1.DeploymentConditionType) string {
				if c := deployCondition(&st, ct); c != nil {
					return string(c.Status) + "/" + c.Reason
				}
				return "none"
			}
			if a, p := got(appsv1.DeploymentAvailable), got(appsv1.DeploymentProgressing); a != tc.available || p != tc.progressing {
				t.Errorf("conditions Available %s Progressing %s, want %s and %s", a, p, tc.available, tc.progressing)
			}
			if (recheck > 0) != tc.recheck {
				t.Errorf("recheck after %v, want one: %v", recheck, tc.recheck)
			}
			if len(st.Conditions) == 2 && st.Conditions[0].Type != appsv1.DeploymentAvailable {
				t.Errorf("conditions out of order: %+v", st.Conditions)
			}
		})
	}
}

func TestHistoryToDelete(t *testing.T) {
	limit := func(n int32) *appsv1.Deployment {
		return &appsv1.Deployment{Spec: appsv1.DeploymentSpec{RevisionHistoryLimit: &n}}
	}
	idle := func(name string, rev int64) *appsv1.ReplicaSet { return rsWith(name, rev, 0, 0, 0, 0) }
	draining := rsWith("draining", 1, 0, 2, 0, 0)
	scaled := rsWith("scaled", 2, 1, 1, 1, 1)
	deleting := idle("deleting", 3)
	deleting.DeletionTimestamp = &metav1.Time{Time: t0}
	old := []*appsv1.ReplicaSet{idle("r5", 5), idle("r2", 2), draining, scaled, deleting, idle("r4", 4)}
	for _, tc := range []struct {
		d    *appsv1.Deployment
		want string
	}{
		{limit(10), ""},
		{limit(2), "r2"},
		{limit(1), "r2,r4"},
		{limit(0), "r2,r4,r5"},
		{&appsv1.Deployment{}, ""}, // default limit 10
	} {
		var names []string
		for _, rs := range historyToDelete(tc.d, old) {
			names = append(names, rs.Name)
		}
		if got := strings.Join(names, ","); got != tc.want {
			lim := "default"
			if tc.d.Spec.RevisionHistoryLimit != nil {
				lim = fmt.Sprint(*tc.d.Spec.RevisionHistoryLimit)
			}
			t.Errorf("limit %s: deleted %q, want %q", lim, got, tc.want)
		}
	}
}
