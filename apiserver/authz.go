package apiserver

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"

	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/kubelab/kubelab/apiserver/resources"
	"github.com/kubelab/kubelab/store"
)

// Authorisation. Node credentials (user system:node:NAME in group
// system:nodes) get what kube-apiserver's Node authorizer, the system:node
// role and the NodeRestriction admission plugin together give a kubelet
// (and what kube-proxy needs); every other authenticated identity may do
// everything (kubelab has no RBAC).

// attributes describe one request for authorisation, as kube-apiserver's
// authorizer.Attributes.
type attributes struct {
	user User
	verb string
	// resource requests
	resourceRequest      bool
	group, resource, sub string
	namespace, name      string
	// non-resource requests
	path string
}

// authzFacts answers the questions about stored objects that node rules
// depend on.
type authzFacts interface {
	// podNode is the spec.nodeName of a pod (found false if it is gone).
	podNode(ctx context.Context, ns, name string) (node string, found bool, err error)
	// podReferences reports whether a pod bound to node uses the ConfigMap
	// or Secret (kind "configmaps" or "secrets") ns/name.
	podReferences(ctx context.Context, node, kind, ns, name string) (bool, error)
}

// decision is the outcome: allowed, or the error to send (a Forbidden in
// kube-apiserver's shape).
type decision struct {
	allowed bool
	reason  string // for SubjectAccessReview status
	err     error
}

func allow() decision { return decision{allowed: true} }

// nodeName is the node a credential belongs to; ok is false for any other
// identity. A member of system:nodes with a malformed name is a node
// nobody can identify, and gets nothing.
func nodeName(u User) (name string, isNode bool) {
	if !slices.Contains(u.Groups, "system:nodes") {
		return "", false
	}
	n, _ := strings.CutPrefix(u.Name, "system:node:")
	if n == u.Name {
		n = ""
	}
	return n, true
}

// forbiddenMessage is kube-apiserver's text for a request the authorizer
// refused.
func forbiddenMessage(a attributes) string {
	if !a.resourceRequest {
		return fmt.Sprintf("User %q cannot %s path %q", a.user.Name, a.verb, a.path)
	}
	res := a.resource
	if a.sub != "" {
		res += "/" + a.sub
	}
	if a.namespace != "" {
		return fmt.Sprintf("User %q cannot %s resource %q in API group %q in the namespace %q", a.user.Name, a.verb, res, a.group, a.namespace)
	}
	return fmt.Sprintf("User %q cannot %s resource %q in API group %q at the cluster scope", a.user.Name, a.verb, res, a.group)
}

// deny is an authorizer refusal: `pods "x" is forbidden: User "..." cannot
// ...[: reason]`.
func deny(a attributes, reason string) decision {
	msg := forbiddenMessage(a)
	if reason != "" {
		msg += ": " + reason
	}
	gr := schema.GroupResource{Group: a.group, Resource: a.resource}
	return decision{reason: reason, err: apierrors.NewForbidden(gr, a.name, errors.New(msg))}
}

// restrict is a NodeRestriction-style refusal: `pods "x" is forbidden:
// node "node-1" can only ...`.
func restrict(a attributes, msg string) decision {
	gr := schema.GroupResource{Group: a.group, Resource: a.resource}
	return decision{reason: msg, err: apierrors.NewForbidden(gr, a.name, errors.New(msg))}
}

// nodeReadable are the resources a node may get, list and watch.
var nodeReadable = map[string]bool{
	"/nodes": true, "/nodes/status": true, "/pods": true, "/pods/status": true, "/services": true,
	"/services/status": true, "/endpoints": true, "discovery.k8s.io/endpointslices": true, "/namespaces": true,
	"/namespaces/status": true,
}

func isRead(verb string) bool { return verb == "get" || verb == "list" || verb == "watch" }

// authorize decides a request. Non-node identities may do everything.
func authorize(ctx context.Context, a attributes, facts authzFacts) decision {
	node, isNode := nodeName(a.user)
	if !isNode {
		return allow()
	}
	if node == "" {
		return deny(a, "unknown node")
	}
	if !a.resourceRequest {
		return authorizeNodePath(a)
	}
	key := a.group + "/" + a.resource
	if a.sub != "" {
		key += "/" + a.sub
	}
	switch {
	case a.group == "authorization.k8s.io" && a.resource == "selfsubjectaccessreviews" && a.verb == "create":
		return allow()
	case isRead(a.verb) && nodeReadable[key]:
		return allow()
	case key == "/events" || key == "events.k8s.io/events":
		if a.verb == "create" || a.verb == "patch" || a.verb == "update" {
			return allow()
		}
	case key == "/nodes" || key == "/nodes/status":
		switch a.verb {
		case "create", "update", "patch", "delete":
			if a.name != "" && a.name != node {
				return restrict(a, fmt.Sprintf("node %q is not allowed to modify node %q", node, a.name))
			}
			return allow()
		}
	case key == "coordination.k8s.io/leases":
		switch a.verb {
		case "get", "create", "update", "patch", "delete":
			if a.namespace != corev1.NamespaceNodeLease {
				return deny(a, "")
			}
			if a.name != "" && a.name != node {
				return restrict(a, "can only access node lease with the same name as the requesting node")
			}
			return allow()
		}
	case key == "/pods/status" && (a.verb == "update" || a.verb == "patch"), key == "/pods" && a.verb == "delete":
		if a.name == "" {
			return allow() // an authorizer question with no object: the rule exists
		}
		bound, found, err := facts.podNode(ctx, a.namespace, a.name)
		if err != nil {
			return decision{err: err}
		}
		if !found {
			return allow() // the handler answers 404
		}
		if bound != node {
			if a.verb == "delete" {
				return restrict(a, fmt.Sprintf("node %q can only delete pods with spec.nodeName set to itself", node))
			}
			return restrict(a, fmt.Sprintf("node %q can only update pod status for pods with spec.nodeName set to itself", node))
		}
		return allow()
	case key == "/configmaps" || key == "/secrets":
		if a.verb != "get" {
			if isRead(a.verb) {
				return deny(a, "can only read individual resources of this type")
			}
			break
		}
		if a.name == "" {
			return deny(a, "can only read individual resources of this type")
		}
		ok, err := facts.podReferences(ctx, node, a.resource, a.namespace, a.name)
		if err != nil {
			return decision{err: err}
		}
		if ok {
			return allow()
		}
		return deny(a, fmt.Sprintf("no relationship found between node '%s' and this object", node))
	}
	return deny(a, "")
}

// authorizeNodePath: discovery, OpenAPI, version and health, as
// kube-apiserver's system:discovery and system:public-info-viewer roles.
func authorizeNodePath(a attributes) decision {
	if a.verb == "get" {
		for _, p := range []string{"/api", "/apis", "/openapi", "/version", "/healthz", "/livez", "/readyz"} {
			if a.path == p || strings.HasPrefix(a.path, p+"/") {
				return allow()
			}
		}
	}
	return deny(a, "")
}

// requestVerb maps an HTTP request on a parsed resource path to the
// authorizer's verb.
func requestVerb(r *http.Request, q request) string {
	query := r.URL.Query()
	watch := query.Get("watch") == "true" || query.Get("watch") == "1"
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		switch {
		case watch:
			return "watch"
		case q.name == "":
			return "list"
		}
		return "get"
	case http.MethodPost:
		return "create"
	case http.MethodPut:
		return "update"
	case http.MethodPatch:
		return "patch"
	case http.MethodDelete:
		if q.name == "" {
			return "deletecollection"
		}
		return "delete"
	}
	return strings.ToLower(r.Method)
}

// nonResourceVerb is the authorizer's verb for a path outside the API.
func nonResourceVerb(method string) string {
	switch method {
	case http.MethodGet, http.MethodHead:
		return "get"
	case http.MethodPost:
		return "post"
	case http.MethodPut:
		return "put"
	case http.MethodPatch:
		return "patch"
	case http.MethodDelete:
		return "delete"
	}
	return strings.ToLower(method)
}

// serverFacts reads the store for authorisation.
type serverFacts struct{ s *Server }

func (f serverFacts) podNode(ctx context.Context, ns, name string) (string, bool, error) {
	podRes, _ := resources.Lookup("", "v1", "pods")
	obj, _, err := f.s.getObject(ctx, request{res: podRes, ns: ns, name: name})
	if apierrors.IsNotFound(err) {
		return "", false, nil
	}
	if err != nil {
		return "", false, err
	}
	return obj.(*corev1.Pod).Spec.NodeName, true, nil
}

func (f serverFacts) podReferences(ctx context.Context, node, kind, ns, name string) (bool, error) {
	podRes, _ := resources.Lookup("", "v1", "pods")
	list, err := f.s.list(ctx, podRes, store.ListOptions{Prefix: collectionPrefix(podRes, ns)}, selector{label: labels.Everything(), field: fields.Everything()})
	if err != nil {
		return false, err
	}
	items, err := meta.ExtractList(list)
	if err != nil {
		return false, err
	}
	for _, it := range items {
		pod := it.(*corev1.Pod)
		if pod.Spec.NodeName == node && podUses(pod, kind, name) {
			return true, nil
		}
	}
	return false, nil
}

// podUses reports whether the pod refers to the ConfigMap or Secret name
// (volumes, projected sources, env, envFrom, image pull secrets).
func podUses(pod *corev1.Pod, kind, name string) bool {
	cm, sec := kind == "configmaps", kind == "secrets"
	for _, v := range pod.Spec.Volumes {
		if cm && v.ConfigMap != nil && v.ConfigMap.Name == name || sec && v.Secret != nil && v.Secret.SecretName == name {
			return true
		}
		if v.Projected != nil {
			for _, src := range v.Projected.Sources {
				if cm && src.ConfigMap != nil && src.ConfigMap.Name == name || sec && src.Secret != nil && src.Secret.Name == name {
					return true
				}
			}
		}
	}
	if sec {
		for _, ps := range pod.Spec.ImagePullSecrets {
			if ps.Name == name {
				return true
			}
		}
	}
	var containers []corev1.Container
	containers = append(append(containers, pod.Spec.InitContainers...), pod.Spec.Containers...)
	for _, c := range containers {
		for _, e := range c.EnvFrom {
			if cm && e.ConfigMapRef != nil && e.ConfigMapRef.Name == name || sec && e.SecretRef != nil && e.SecretRef.Name == name {
				return true
			}
		}
		for _, e := range c.Env {
			if e.ValueFrom == nil {
				continue
			}
			if cm && e.ValueFrom.ConfigMapKeyRef != nil && e.ValueFrom.ConfigMapKeyRef.Name == name || sec && e.ValueFrom.SecretKeyRef != nil && e.ValueFrom.SecretKeyRef.Name == name {
				return true
			}
		}
	}
	return false
}

// authorizeRequest checks a resource request; false means the answer was
// sent.
func (s *Server) authorizeRequest(w http.ResponseWriter, r *http.Request, q request) bool {
	u, _ := UserFrom(r.Context())
	if _, isNode := nodeName(u); !isNode {
		return true
	}
	a := attributes{user: u, verb: requestVerb(r, q), resourceRequest: true, group: q.res.GVR.Group,
		resource: q.res.GVR.Resource, sub: q.sub, namespace: q.ns, name: q.name}
	d := authorize(r.Context(), a, serverFacts{s})
	if d.err != nil {
		writeError(w, d.err)
		return false
	}
	return d.allowed
}

// authorizeCreateName checks the name of an object a node creates (not in
// the URL, so not known before the body is read): its own Node and Lease.
func authorizeCreateName(ctx context.Context, res resources.Resource, ns, name string) error {
	u, _ := UserFrom(ctx)
	if _, isNode := nodeName(u); !isNode {
		return nil
	}
	switch res.GVR.Group + "/" + res.GVR.Resource {
	case "/nodes", "coordination.k8s.io/leases":
		a := attributes{user: u, verb: "create", resourceRequest: true, group: res.GVR.Group,
			resource: res.GVR.Resource, namespace: ns, name: name}
		if d := authorize(ctx, a, nil); d.err != nil {
			return d.err
		}
	}
	return nil
}

var ssarGVK = authorizationv1.SchemeGroupVersion.WithKind("SelfSubjectAccessReview")

// serveSelfSubjectAccessReview answers `kubectl auth can-i` with the same
// decision a request would get. A question naming an object is answered
// for that object (pod bound to the node, own Node or Lease); without a
// name, as kube-apiserver's authorizer: whether the rule exists.
func (s *Server) serveSelfSubjectAccessReview(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		writeError(w, errMethodNotAllowed(r))
		return
	}
	body, err := readBody(r)
	if err != nil {
		writeError(w, err)
		return
	}
	dr, err := decodeBody(r, body, ssarGVK, &authorizationv1.SelfSubjectAccessReview{})
	if err != nil {
		writeError(w, err)
		return
	}
	rev := dr.obj.(*authorizationv1.SelfSubjectAccessReview)
	rev.SetGroupVersionKind(ssarGVK)
	u, _ := UserFrom(r.Context())
	a := attributes{user: u}
	switch {
	case rev.Spec.ResourceAttributes != nil:
		ra := rev.Spec.ResourceAttributes
		a.resourceRequest = true
		a.verb, a.group, a.resource, a.sub, a.namespace, a.name = ra.Verb, ra.Group, ra.Resource, ra.Subresource, ra.Namespace, ra.Name
	case rev.Spec.NonResourceAttributes != nil:
		a.verb, a.path = rev.Spec.NonResourceAttributes.Verb, rev.Spec.NonResourceAttributes.Path
	default:
		writeError(w, apierrors.NewBadRequest("spec: exactly one of nonResourceAttributes or resourceAttributes must be set"))
		return
	}
	d := authorize(r.Context(), a, serverFacts{s})
	var se apierrors.APIStatus
	if d.err != nil && !errors.As(d.err, &se) {
		writeError(w, d.err)
		return
	}
	rev.Status = authorizationv1.SubjectAccessReviewStatus{Allowed: d.allowed, Reason: d.reason}
	if d.allowed {
		if _, isNode := nodeName(u); !isNode {
			rev.Status.Reason = "kubelab allows every authenticated user that is not a node"
		}
	}
	writeObject(w, r, http.StatusCreated, rev)
}
