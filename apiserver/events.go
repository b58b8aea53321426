package apiserver

import (
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/kubelab/kubelab/apiserver/resources"
)

// Events are one resource served in two versions, as in kube-apiserver:
// events.k8s.io/v1 Events are stored as (and share their objects with)
// core/v1 Events, converted field by field on the way in and out.

func isEventsV1(r resources.Resource) bool {
	return r.GVR.Group == eventsv1.GroupName && r.GVR.Resource == "events"
}

// storageResource is the resource whose keys and encoding r's objects use.
func storageResource(r resources.Resource) resources.Resource {
	if isEventsV1(r) {
		if core, ok := resources.Lookup("", "v1", "events"); ok {
			return core
		}
	}
	return r
}

func coreToEventsV1(e *corev1.Event) *eventsv1.Event {
	out := &eventsv1.Event{
		ObjectMeta:               e.ObjectMeta,
		EventTime:                e.EventTime,
		ReportingController:      e.ReportingController,
		ReportingInstance:        e.ReportingInstance,
		Action:                   e.Action,
		Reason:                   e.Reason,
		Regarding:                e.InvolvedObject,
		Related:                  e.Related,
		Note:                     e.Message,
		Type:                     e.Type,
		DeprecatedSource:         e.Source,
		DeprecatedFirstTimestamp: e.FirstTimestamp,
		DeprecatedLastTimestamp:  e.LastTimestamp,
		DeprecatedCount:          e.Count,
	}
	if e.Series != nil {
		out.Series = &eventsv1.EventSeries{Count: e.Series.Count, LastObservedTime: e.Series.LastObservedTime}
	}
	out.SetGroupVersionKind(eventsv1.SchemeGroupVersion.WithKind("Event"))
	return out
}

func eventsV1ToCore(e *eventsv1.Event) *corev1.Event {
	out := &corev1.Event{
		ObjectMeta:          e.ObjectMeta,
		InvolvedObject:      e.Regarding,
		Reason:              e.Reason,
		Message:             e.Note,
		Source:              e.DeprecatedSource,
		FirstTimestamp:      e.DeprecatedFirstTimestamp,
		LastTimestamp:       e.DeprecatedLastTimestamp,
		Count:               e.DeprecatedCount,
		Type:                e.Type,
		EventTime:           e.EventTime,
		Action:              e.Action,
		Related:             e.Related,
		ReportingController: e.ReportingController,
		ReportingInstance:   e.ReportingInstance,
	}
	if e.Series != nil {
		out.Series = &corev1.EventSeries{Count: e.Series.Count, LastObservedTime: e.Series.LastObservedTime}
	}
	out.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Event"))
	return out
}

// encodeFor serialises obj, served as res, in its storage form.
func encodeFor(res resources.Resource, obj runtime.Object) ([]byte, error) {
	return encodeStore(storageForm(res, obj))
}

// encodeForInto is encodeFor into a reusable buffer (see encodeBuf).
func encodeForInto(b *encodeBuf, res resources.Resource, obj runtime.Object) ([]byte, error) {
	return b.protobuf(storageForm(res, obj))
}

// storageForm is obj, served as res, as the store keeps it.
func storageForm(res resources.Resource, obj runtime.Object) runtime.Object {
	if ev, ok := obj.(*eventsv1.Event); ok && isEventsV1(res) {
		return eventsV1ToCore(ev)
	}
	return obj
}

// decodeFor decodes a stored value into the form res serves.
func decodeFor(res resources.Resource, data []byte) (runtime.Object, error) {
	st := storageResource(res)
	obj, err := decodeStore(data, st.New())
	if err != nil {
		return nil, err
	}
	if ev, ok := obj.(*corev1.Event); ok && isEventsV1(res) {
		return coreToEventsV1(ev), nil
	}
	return obj, nil
}
