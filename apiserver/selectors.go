package apiserver

import (
	"fmt"
	"strconv"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
)

// objectFields returns the field-selector labels an object supports and
// their values, per kind, as kube-apiserver's field label conversions do.
// Every kind supports metadata.name and metadata.namespace.
func objectFields(obj runtime.Object) fields.Set {
	set := fields.Set{}
	if m, err := meta.Accessor(obj); err == nil {
		set["metadata.name"] = m.GetName()
		set["metadata.namespace"] = m.GetNamespace()
	}
	switch o := obj.(type) {
	case *corev1.Pod:
		set["spec.nodeName"] = o.Spec.NodeName
		set["spec.restartPolicy"] = string(o.Spec.RestartPolicy)
		set["spec.schedulerName"] = o.Spec.SchedulerName
		set["spec.serviceAccountName"] = o.Spec.ServiceAccountName
		set["spec.hostNetwork"] = strconv.FormatBool(o.Spec.HostNetwork)
		set["status.phase"] = string(o.Status.Phase)
		set["status.podIP"] = o.Status.PodIP
		set["status.nominatedNodeName"] = o.Status.NominatedNodeName
	case *corev1.Event:
		set["involvedObject.kind"] = o.InvolvedObject.Kind
		set["involvedObject.namespace"] = o.InvolvedObject.Namespace
		set["involvedObject.name"] = o.InvolvedObject.Name
		set["involvedObject.uid"] = string(o.InvolvedObject.UID)
		set["involvedObject.apiVersion"] = o.InvolvedObject.APIVersion
		set["involvedObject.resourceVersion"] = o.InvolvedObject.ResourceVersion
		set["involvedObject.fieldPath"] = o.InvolvedObject.FieldPath
		set["reason"] = o.Reason
		set["reportingComponent"] = o.ReportingController
		set["source"] = o.Source.Component
		set["type"] = o.Type
	case *eventsv1.Event:
		set["regarding.kind"] = o.Regarding.Kind
		set["regarding.namespace"] = o.Regarding.Namespace
		set["regarding.name"] = o.Regarding.Name
		set["regarding.uid"] = string(o.Regarding.UID)
		set["regarding.apiVersion"] = o.Regarding.APIVersion
		set["regarding.resourceVersion"] = o.Regarding.ResourceVersion
		set["regarding.fieldPath"] = o.Regarding.FieldPath
		set["reason"] = o.Reason
		set["reportingController"] = o.ReportingController
		set["type"] = o.Type
	case *corev1.Node:
		set["spec.unschedulable"] = strconv.FormatBool(o.Spec.Unschedulable)
	case *corev1.Namespace:
		set["status.phase"] = string(o.Status.Phase)
	case *corev1.Secret:
		set["type"] = string(o.Type)
	case *corev1.Service:
		set["spec.clusterIP"] = o.Spec.ClusterIP
		set["spec.type"] = string(o.Spec.Type)
	case *appsv1.ReplicaSet:
		set["status.replicas"] = strconv.Itoa(int(o.Status.Replicas))
	}
	return set
}

// selector is a parsed label and field selector pair.
type selector struct {
	label labels.Selector
	field fields.Selector
}

func (s selector) empty() bool { return s.label.Empty() && s.field.Empty() }

func (s selector) matches(obj runtime.Object) bool {
	if !s.label.Empty() {
		m, err := meta.Accessor(obj)
		if err != nil || !s.label.Matches(labels.Set(m.GetLabels())) {
			return false
		}
	}
	if !s.field.Empty() && !s.field.Matches(objectFields(obj)) {
		return false
	}
	return true
}

// parseSelector reads labelSelector and fieldSelector; a field the kind
// does not support is a 400, as in kube-apiserver (better than silently
// matching everything, which would end kubectl's delete --wait early).
func parseSelector(labelSel, fieldSel string, sample runtime.Object) (selector, error) {
	var sel selector
	var err error
	if sel.label, err = labels.Parse(labelSel); err != nil {
		return sel, apierrors.NewBadRequest(fmt.Sprintf("unable to parse requirement: %v", err))
	}
	if sel.field, err = fields.ParseSelector(fieldSel); err != nil {
		return sel, apierrors.NewBadRequest(fmt.Sprintf("invalid field selector: %v", err))
	}
	supported := objectFields(sample)
	for _, req := range sel.field.Requirements() {
		if _, ok := supported[req.Field]; !ok {
			return sel, apierrors.NewBadRequest(fmt.Sprintf("field label not supported: %s", req.Field))
		}
	}
	return sel, nil
}
