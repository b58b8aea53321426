package controller

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

func readyPod(ready bool, deleting bool) *corev1.Pod {
	st := corev1.ConditionFalse
	if ready {
		st = corev1.ConditionTrue
	}
	p := &corev1.Pod{Status: corev1.PodStatus{Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: st}}}}
	if deleting {
		now := metav1.Now()
		p.DeletionTimestamp = &now
	}
	return p
}

func TestEndpointConditions(t *testing.T) {
	for _, tc := range []struct {
		name                        string
		ready, deleting             bool
		wantReady, wantServ, wantTm bool
	}{
		{"ready", true, false, true, true, false},
		{"not ready", false, false, false, false, false},
		{"terminating and still serving", true, true, false, true, true},
		{"terminating and not serving", false, true, false, false, true},
	} {
		c := endpointConditions(readyPod(tc.ready, tc.deleting))
		if *c.Ready != tc.wantReady || *c.Serving != tc.wantServ || *c.Terminating != tc.wantTm {
			t.Errorf("%s: ready=%v serving=%v terminating=%v", tc.name, *c.Ready, *c.Serving, *c.Terminating)
		}
	}
}

func TestResolvePort(t *testing.T) {
	pod := &corev1.Pod{Spec: corev1.PodSpec{Containers: []corev1.Container{{Ports: []corev1.ContainerPort{
		{Name: "http", ContainerPort: 8080, Protocol: corev1.ProtocolTCP},
		{Name: "dns", ContainerPort: 5353, Protocol: corev1.ProtocolUDP},
	}}}}}
	for _, tc := range []struct {
		name string
		sp   corev1.ServicePort
		want int32
		ok   bool
	}{
		{"by number", corev1.ServicePort{Port: 80, TargetPort: intstr.FromInt32(9376), Protocol: corev1.ProtocolTCP}, 9376, true},
		{"unset targetPort means port", corev1.ServicePort{Port: 80, Protocol: corev1.ProtocolTCP}, 80, true},
		{"by name", corev1.ServicePort{Port: 80, TargetPort: intstr.FromString("http"), Protocol: corev1.ProtocolTCP}, 8080, true},
		{"name with other protocol", corev1.ServicePort{Port: 53, TargetPort: intstr.FromString("dns"), Protocol: corev1.ProtocolTCP}, 0, false},
		{"unknown name", corev1.ServicePort{Port: 80, TargetPort: intstr.FromString("nope"), Protocol: corev1.ProtocolTCP}, 0, false},
	} {
		got, ok := resolvePort(tc.sp, pod)
		if got != tc.want || ok != tc.ok {
			t.Errorf("%s: resolvePort = %d, %v; want %d, %v", tc.name, got, ok, tc.want, tc.ok)
		}
	}
}
