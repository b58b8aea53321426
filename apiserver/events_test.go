package apiserver

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestEventConversionRoundTrip(t *testing.T) {
	now := metav1.NewTime(time.Unix(1700000000, 0))
	cases := []*corev1.Event{
		{ObjectMeta: metav1.ObjectMeta{Name: "a", Namespace: "default"}},
		{
			ObjectMeta:     metav1.ObjectMeta{Name: "b", Namespace: "ns", Labels: map[string]string{"x": "y"}},
			InvolvedObject: corev1.ObjectReference{Kind: "Pod", Name: "p", Namespace: "ns", UID: "u"},
			Reason:         "Scheduled", Message: "assigned", Type: "Normal", Count: 3,
			Source:         corev1.EventSource{Component: "default-scheduler", Host: "h"},
			FirstTimestamp: now, LastTimestamp: now,
			EventTime: metav1.NewMicroTime(now.Time),
			Series:    &corev1.EventSeries{Count: 2, LastObservedTime: metav1.NewMicroTime(now.Time)},
			Action:    "Binding", Related: &corev1.ObjectReference{Kind: "Node", Name: "n"},
			ReportingController: "sched", ReportingInstance: "sched-1",
		},
	}
	for _, in := range cases {
		v1 := coreToEventsV1(in)
		if v1.Note != in.Message || v1.Regarding != in.InvolvedObject || v1.DeprecatedCount != in.Count {
			t.Errorf("%s: core->events/v1 lost fields: %+v", in.Name, v1)
		}
		back := eventsV1ToCore(v1)
		back.TypeMeta = in.TypeMeta
		if !equality.Semantic.DeepEqual(in, back) {
			t.Errorf("%s: round trip differs:\n%+v\n%+v", in.Name, in, back)
		}
	}
}
