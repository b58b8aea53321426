// Package resources is the one table of what kubelab's API serves: every
// group/version/resource, its kind, scope, short names, categories and
// subresources. Routing, discovery and OpenAPI all read it, so they can never
// disagree about what exists.
package resources

import (
	appsv1 "k8s.io/api/apps/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// Resource describes one served resource.
type Resource struct {
	GVR        schema.GroupVersionResource
	Kind       string
	ListKind   string
	Singular   string
	Namespaced bool
	ShortNames []string
	Categories []string
	// Subresources served besides the main resource (e.g. "status", "scale").
	Subresources []string
	New          func() runtime.Object
	NewList      func() runtime.Object
}

// GVK is the resource's group/version/kind.
func (r Resource) GVK() schema.GroupVersionKind { return r.GVR.GroupVersion().WithKind(r.Kind) }

// Verbs served on the main resource (discovery lists them).
var Verbs = []string{"create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"}

var (
	coreV1  = schema.GroupVersion{Version: "v1"}
	appsV1  = appsv1.SchemeGroupVersion
	discV1  = discoveryv1.SchemeGroupVersion
	coordV1 = coordinationv1.SchemeGroupVersion
	evV1    = eventsv1.SchemeGroupVersion
)

// All lists every served resource, in a stable order.
var All = []Resource{
	{GVR: coreV1.WithResource("namespaces"), Kind: "Namespace", Singular: "namespace", ShortNames: []string{"ns"}, Subresources: []string{"status", "finalize"},
		New: func() runtime.Object { return &corev1.Namespace{} }, NewList: func() runtime.Object { return &corev1.NamespaceList{} }},
	{GVR: coreV1.WithResource("nodes"), Kind: "Node", Singular: "node", ShortNames: []string{"no"}, Subresources: []string{"status", "proxy"},
		New: func() runtime.Object { return &corev1.Node{} }, NewList: func() runtime.Object { return &corev1.NodeList{} }},
	{GVR: coreV1.WithResource("pods"), Kind: "Pod", Singular: "pod", Namespaced: true, ShortNames: []string{"po"}, Categories: []string{"all"},
		Subresources: []string{"status", "binding", "log", "exec", "portforward", "attach", "eviction"},
		New:          func() runtime.Object { return &corev1.Pod{} }, NewList: func() runtime.Object { return &corev1.PodList{} }},
	{GVR: coreV1.WithResource("services"), Kind: "Service", Singular: "service", Namespaced: true, ShortNames: []string{"svc"}, Categories: []string{"all"}, Subresources: []string{"status", "proxy"},
		New: func() runtime.Object { return &corev1.Service{} }, NewList: func() runtime.Object { return &corev1.ServiceList{} }},
	{GVR: coreV1.WithResource("endpoints"), Kind: "Endpoints", Singular: "endpoints", Namespaced: true, ShortNames: []string{"ep"},
		New: func() runtime.Object { return &corev1.Endpoints{} }, NewList: func() runtime.Object { return &corev1.EndpointsList{} }},
	{GVR: coreV1.WithResource("configmaps"), Kind: "ConfigMap", Singular: "configmap", Namespaced: true, ShortNames: []string{"cm"},
		New: func() runtime.Object { return &corev1.ConfigMap{} }, NewList: func() runtime.Object { return &corev1.ConfigMapList{} }},
	{GVR: coreV1.WithResource("secrets"), Kind: "Secret", Singular: "secret", Namespaced: true,
		New: func() runtime.Object { return &corev1.Secret{} }, NewList: func() runtime.Object { return &corev1.SecretList{} }},
	{GVR: coreV1.WithResource("serviceaccounts"), Kind: "ServiceAccount", Singular: "serviceaccount", Namespaced: true, ShortNames: []string{"sa"},
		New: func() runtime.Object { return &corev1.ServiceAccount{} }, NewList: func() runtime.Object { return &corev1.ServiceAccountList{} }},
	{GVR: coreV1.WithResource("events"), Kind: "Event", Singular: "event", Namespaced: true, ShortNames: []string{"ev"},
		New: func() runtime.Object { return &corev1.Event{} }, NewList: func() runtime.Object { return &corev1.EventList{} }},
	{GVR: appsV1.WithResource("deployments"), Kind: "Deployment", Singular: "deployment", Namespaced: true, ShortNames: []string{"deploy"}, Categories: []string{"all"}, Subresources: []string{"status", "scale"},
		New: func() runtime.Object { return &appsv1.Deployment{} }, NewList: func() runtime.Object { return &appsv1.DeploymentList{} }},
	{GVR: appsV1.WithResource("replicasets"), Kind: "ReplicaSet", Singular: "replicaset", Namespaced: true, ShortNames: []string{"rs"}, Categories: []string{"all"}, Subresources: []string{"status", "scale"},
		New: func() runtime.Object { return &appsv1.ReplicaSet{} }, NewList: func() runtime.Object { return &appsv1.ReplicaSetList{} }},
	{GVR: discV1.WithResource("endpointslices"), Kind: "EndpointSlice", Singular: "endpointslice", Namespaced: true,
		New: func() runtime.Object { return &discoveryv1.EndpointSlice{} }, NewList: func() runtime.Object { return &discoveryv1.EndpointSliceList{} }},
	{GVR: coordV1.WithResource("leases"), Kind: "Lease", Singular: "lease", Namespaced: true,
		New: func() runtime.Object { return &coordinationv1.Lease{} }, NewList: func() runtime.Object { return &coordinationv1.LeaseList{} }},
	// No short name here: "ev" is core/v1 Events', and a second owner makes
	// kubectl warn on every `kubectl get ev`.
	{GVR: evV1.WithResource("events"), Kind: "Event", Singular: "event", Namespaced: true,
		New: func() runtime.Object { return &eventsv1.Event{} }, NewList: func() runtime.Object { return &eventsv1.EventList{} }},
}

func init() {
	for i := range All {
		All[i].ListKind = All[i].Kind + "List"
	}
}

// GroupVersions served, in discovery order (core first).
func GroupVersions() []schema.GroupVersion {
	return []schema.GroupVersion{coreV1, appsV1, discV1, coordV1, evV1}
}

// Lookup finds a resource by group, version and plural name.
func Lookup(group, version, resource string) (Resource, bool) {
	for _, r := range All {
		if r.GVR.Group == group && r.GVR.Version == version && r.GVR.Resource == resource {
			return r, true
		}
	}
	return Resource{}, false
}
