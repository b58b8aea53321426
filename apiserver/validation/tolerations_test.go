package validation

import (
	"reflect"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/ptr"
)

func TestDefaultNoExecuteTolerations(t *testing.T) {
	notReady := corev1.Toleration{Key: corev1.TaintNodeNotReady, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute, TolerationSeconds: ptr.To[int64](300)}
	unreachable := corev1.Toleration{Key: corev1.TaintNodeUnreachable, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute, TolerationSeconds: ptr.To[int64](300)}
	gpu := corev1.Toleration{Key: "gpu", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule}
	ownUnreachable := corev1.Toleration{Key: corev1.TaintNodeUnreachable, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute, TolerationSeconds: ptr.To[int64](5)}
	forever := corev1.Toleration{Key: corev1.TaintNodeNotReady, Operator: corev1.TolerationOpExists}
	everything := corev1.Toleration{Operator: corev1.TolerationOpExists}
	noScheduleOnly := corev1.Toleration{Key: corev1.TaintNodeUnreachable, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule}
	for _, tc := range []struct {
		name string
		have []corev1.Toleration
		want []corev1.Toleration
	}{
		{"none: both added", nil, []corev1.Toleration{notReady, unreachable}},
		{"other tolerations kept, both added after them", []corev1.Toleration{gpu}, []corev1.Toleration{gpu, notReady, unreachable}},
		{"own unreachable toleration kept as it is", []corev1.Toleration{ownUnreachable}, []corev1.Toleration{ownUnreachable, notReady}},
		{"empty effect covers NoExecute", []corev1.Toleration{forever}, []corev1.Toleration{forever, unreachable}},
		{"empty key tolerates every taint", []corev1.Toleration{everything}, []corev1.Toleration{everything}},
		{"a NoSchedule toleration does not count", []corev1.Toleration{noScheduleOnly}, []corev1.Toleration{noScheduleOnly, notReady, unreachable}},
		{"idempotent", []corev1.Toleration{notReady, unreachable}, []corev1.Toleration{notReady, unreachable}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := withDefaultNoExecuteTolerations(append([]corev1.Toleration(nil), tc.have...))
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

// Pods get the tolerations; the pod templates of workloads do not (kube
// adds them when the pods are created).
func TestDefaultTolerationsOnPodsOnly(t *testing.T) {
	p := pod(nil)
	Default(p, nil, DefaultOptions())
	if len(p.Spec.Tolerations) != 2 {
		t.Errorf("pod tolerations %+v, want the two defaults", p.Spec.Tolerations)
	}
	d := &appsv1.Deployment{Spec: appsv1.DeploymentSpec{Template: corev1.PodTemplateSpec{Spec: pod(nil).Spec}}}
	Default(d, nil, DefaultOptions())
	if len(d.Spec.Template.Spec.Tolerations) != 0 {
		t.Errorf("deployment template tolerations %+v, want none", d.Spec.Template.Spec.Tolerations)
	}
}
