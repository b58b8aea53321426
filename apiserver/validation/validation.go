// Package validation defaults and validates objects the way kube-apiserver
// does for the fields users touch. It is pure: no storage, no allocation
// (ClusterIPs and NodePorts are allocated by the API server before Validate).
//
// Field paths and messages are built with apimachinery's field package and
// follow kube-apiserver's, so kubectl prints the texts users know, e.g.
// `spec.internalTrafficPolicy: Unsupported value: "Foo": supported values: "Cluster", "Local"`.
package validation

import (
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	eventsv1 "k8s.io/api/events/v1"
	apimachineryvalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// Options carries the feature gates that change defaulting and validation.
type Options struct {
	// ServiceInternalTrafficPolicy is the feature gate (default true).
	ServiceInternalTrafficPolicy bool
}

// DefaultOptions are the options with every gate at its default.
func DefaultOptions() Options { return Options{ServiceInternalTrafficPolicy: true} }

// Default fills defaults in place, idempotently. old is nil on create.
//
// Besides the API's declared defaults it does what kube-apiserver's
// create/update strategies do to fields users see: keep allocated Service
// values (clusterIPs, nodePorts) across updates that omit them, fold a
// Secret's stringData into data, start Pods Pending and Namespaces Active.
// Call it again after allocating ClusterIPs: it keeps clusterIP and
// clusterIPs in step.
func Default(obj, old runtime.Object, opts Options) {
	switch o := obj.(type) {
	case *corev1.Service:
		oldSvc, _ := old.(*corev1.Service)
		defaultService(o, oldSvc, opts)
	case *corev1.Pod:
		oldPod, _ := old.(*corev1.Pod)
		defaultPod(o, oldPod)
	case *appsv1.Deployment:
		defaultDeployment(o)
	case *appsv1.ReplicaSet:
		defaultReplicaSet(o)
	case *corev1.Namespace:
		defaultNamespace(o, old == nil)
	case *corev1.Node:
		defaultNode(o)
	case *corev1.Secret:
		defaultSecret(o)
	case *corev1.Endpoints:
		defaultEndpoints(o)
	case *discoveryv1.EndpointSlice:
		defaultEndpointSlice(o)
	case *eventsv1.Event, *corev1.Event, *corev1.ConfigMap, *corev1.ServiceAccount, *coordinationv1.Lease:
		// No declared defaults.
	}
}

// DropDisabledFields clears fields whose feature gate is off, unless old
// (nil on create) already carried them.
func DropDisabledFields(obj, old runtime.Object, opts Options) {
	if svc, ok := obj.(*corev1.Service); ok && !opts.ServiceInternalTrafficPolicy {
		oldSvc, _ := old.(*corev1.Service)
		if oldSvc == nil || oldSvc.Spec.InternalTrafficPolicy == nil {
			svc.Spec.InternalTrafficPolicy = nil
		}
	}
}

// Validate checks obj (old is nil on create) and returns warnings for the
// client (sent as Warning headers) and field errors (422 Invalid).
// Update-only rules (immutability) apply when old is non-nil; old must then
// be of the same type as obj.
func Validate(obj, old runtime.Object, opts Options) (warnings []string, errs field.ErrorList) {
	if old != nil && fmt.Sprintf("%T", old) != fmt.Sprintf("%T", obj) {
		return nil, field.ErrorList{field.InternalError(nil, fmt.Errorf("old object is %T, new is %T", old, obj))}
	}
	switch o := obj.(type) {
	case *corev1.Service:
		oldSvc, _ := old.(*corev1.Service)
		return validateService(o, oldSvc, opts)
	case *corev1.Pod:
		oldPod, _ := old.(*corev1.Pod)
		return nil, validatePod(o, oldPod)
	case *appsv1.Deployment:
		oldD, _ := old.(*appsv1.Deployment)
		return nil, validateDeployment(o, oldD)
	case *appsv1.ReplicaSet:
		oldRS, _ := old.(*appsv1.ReplicaSet)
		return nil, validateReplicaSet(o, oldRS)
	case *discoveryv1.EndpointSlice:
		oldES, _ := old.(*discoveryv1.EndpointSlice)
		return nil, validateEndpointSlice(o, oldES)
	case *corev1.Endpoints:
		oldEP, _ := old.(*corev1.Endpoints)
		return nil, validateEndpoints(o, oldEP)
	case *corev1.Namespace:
		oldNS, _ := old.(*corev1.Namespace)
		return nil, validateNamespace(o, oldNS)
	case *corev1.Node:
		oldNode, _ := old.(*corev1.Node)
		return nil, validateNode(o, oldNode)
	case *corev1.ConfigMap:
		oldCM, _ := old.(*corev1.ConfigMap)
		return nil, validateConfigMap(o, oldCM)
	case *corev1.Secret:
		oldS, _ := old.(*corev1.Secret)
		return nil, validateSecret(o, oldS)
	case *corev1.ServiceAccount:
		oldSA, _ := old.(*corev1.ServiceAccount)
		var oldMeta *metav1.ObjectMeta
		if oldSA != nil {
			oldMeta = &oldSA.ObjectMeta
		}
		return nil, validateMeta(&o.ObjectMeta, oldMeta, true, apimachineryvalidation.ValidateServiceAccountName)
	case *corev1.Event:
		oldE, _ := old.(*corev1.Event)
		return nil, validateCoreEvent(o, oldE)
	case *eventsv1.Event:
		oldE, _ := old.(*eventsv1.Event)
		return nil, validateEventsV1(o, oldE)
	case *coordinationv1.Lease:
		oldL, _ := old.(*coordinationv1.Lease)
		return nil, validateLease(o, oldL)
	}
	// Kinds without rules here still get the metadata checks every kind has.
	if acc, ok := obj.(metav1.ObjectMetaAccessor); ok {
		var oldMeta *metav1.ObjectMeta
		if oacc, ok := old.(metav1.ObjectMetaAccessor); ok && old != nil {
			if m, ok := oacc.GetObjectMeta().(*metav1.ObjectMeta); ok {
				oldMeta = m
			}
		}
		if m, ok := acc.GetObjectMeta().(*metav1.ObjectMeta); ok {
			return nil, validateMeta(m, oldMeta, m.Namespace != "", apimachineryvalidation.NameIsDNSSubdomain)
		}
	}
	return nil, nil
}

// validateMeta runs the metadata rules: on create name/generateName,
// labels, annotations, namespace presence; on update also immutability.
func validateMeta(m, old *metav1.ObjectMeta, namespaced bool, nameFn apimachineryvalidation.ValidateNameFunc) field.ErrorList {
	path := field.NewPath("metadata")
	if old == nil {
		return apimachineryvalidation.ValidateObjectMeta(m, namespaced, nameFn, path)
	}
	errs := metaUpdate(m, old)
	// The name cannot change on update, so its format was checked at
	// creation; kube-apiserver skips it here too.
	return append(errs, apimachineryvalidation.ValidateObjectMeta(m, namespaced, func(string, bool) []string { return nil }, path)...)
}

// metaUpdate runs the metadata update rules (immutable name, namespace, uid,
// creationTimestamp...).
func metaUpdate(m, old *metav1.ObjectMeta) field.ErrorList {
	if m.ResourceVersion == "" {
		// An unconditional update (no resourceVersion sent): kube-apiserver
		// stamps the stored version on it before validating, so the
		// "must be specified for an update" error never reaches clients.
		cp := *m
		cp.ResourceVersion = old.ResourceVersion
		m = &cp
	}
	return apimachineryvalidation.ValidateObjectMetaUpdate(m, old, field.NewPath("metadata"))
}
