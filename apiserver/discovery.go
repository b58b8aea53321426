package apiserver

import (
	"mime"
	"net"
	"net/http"
	"sort"
	"strings"

	apidiscoveryv2 "k8s.io/api/apidiscovery/v2"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/kubelab/kubelab/apiserver/resources"
)

// subresourceInfo gives each subresource's kind and verbs, as kube-apiserver
// advertises them.
func subresourceInfo(r resources.Resource, sub string) (schema.GroupVersionKind, []string) {
	gv := r.GVR.GroupVersion()
	core := schema.GroupVersion{Version: "v1"}
	switch sub {
	case "status":
		return r.GVK(), []string{"get", "patch", "update"}
	case "scale":
		return schema.GroupVersionKind{Group: "autoscaling", Version: "v1", Kind: "Scale"}, []string{"get", "patch", "update"}
	case "binding":
		return core.WithKind("Binding"), []string{"create"}
	case "log":
		return core.WithKind("Pod"), []string{"get"}
	case "exec":
		return core.WithKind("PodExecOptions"), []string{"create", "get"}
	case "attach":
		return core.WithKind("PodAttachOptions"), []string{"create", "get"}
	case "portforward":
		return core.WithKind("PodPortForwardOptions"), []string{"create", "get"}
	case "eviction":
		return schema.GroupVersionKind{Group: "policy", Version: "v1", Kind: "Eviction"}, []string{"create"}
	case "proxy":
		return core.WithKind(r.Kind + "ProxyOptions"), []string{"create", "delete", "get", "patch", "update"}
	case "finalize":
		return core.WithKind("Namespace"), []string{"update"}
	}
	return gv.WithKind(r.Kind), []string{"get"}
}

func resourcesIn(gv schema.GroupVersion) []resources.Resource {
	var out []resources.Resource
	for _, r := range resources.All {
		if r.GVR.GroupVersion() == gv {
			out = append(out, r)
		}
	}
	return out
}

func groups() []string {
	var names []string
	seen := map[string]bool{}
	for _, gv := range resources.GroupVersions() {
		if gv.Group != "" && !seen[gv.Group] {
			seen[gv.Group] = true
			names = append(names, gv.Group)
		}
	}
	return names
}

func versionsOf(group string) []metav1.GroupVersionForDiscovery {
	var out []metav1.GroupVersionForDiscovery
	for _, gv := range resources.GroupVersions() {
		if gv.Group == group {
			out = append(out, metav1.GroupVersionForDiscovery{GroupVersion: gv.String(), Version: gv.Version})
		}
	}
	return out
}

// wantsAggregated returns the aggregated discovery version the client
// accepts first (v2 or v2beta1), or "".
func wantsAggregated(r *http.Request) string {
	for _, part := range strings.Split(r.Header.Get("Accept"), ",") {
		mt, params, err := mime.ParseMediaType(strings.TrimSpace(part))
		if err != nil {
			continue
		}
		if mt == mediaJSON && params["g"] == "apidiscovery.k8s.io" && params["as"] == "APIGroupDiscoveryList" {
			if v := params["v"]; v == "v2" || v == "v2beta1" {
				return v
			}
		}
		if mt == mediaJSON && params["as"] == "" {
			return ""
		}
	}
	return ""
}

func (s *Server) serveAggregated(w http.ResponseWriter, version string, core bool) {
	list := apidiscoveryv2.APIGroupDiscoveryList{TypeMeta: metav1.TypeMeta{Kind: "APIGroupDiscoveryList", APIVersion: "apidiscovery.k8s.io/" + version}}
	var names []string
	if core {
		names = []string{""}
	} else {
		names = groups()
	}
	for _, g := range names {
		item := apidiscoveryv2.APIGroupDiscovery{ObjectMeta: metav1.ObjectMeta{Name: g}}
		for _, gv := range resources.GroupVersions() {
			if gv.Group != g {
				continue
			}
			v := apidiscoveryv2.APIVersionDiscovery{Version: gv.Version, Freshness: apidiscoveryv2.DiscoveryFreshnessCurrent}
			for _, r := range resourcesIn(gv) {
				scope := apidiscoveryv2.ScopeCluster
				if r.Namespaced {
					scope = apidiscoveryv2.ScopeNamespace
				}
				gvk := r.GVK()
				rd := apidiscoveryv2.APIResourceDiscovery{
					Resource: r.GVR.Resource, Scope: scope, SingularResource: r.Singular,
					ResponseKind: &metav1.GroupVersionKind{Group: gvk.Group, Version: gvk.Version, Kind: gvk.Kind},
					Verbs:        resources.Verbs, ShortNames: r.ShortNames, Categories: r.Categories,
				}
				for _, sub := range r.Subresources {
					k, verbs := subresourceInfo(r, sub)
					rd.Subresources = append(rd.Subresources, apidiscoveryv2.APISubresourceDiscovery{
						Subresource: sub, Verbs: verbs,
						ResponseKind: &metav1.GroupVersionKind{Group: k.Group, Version: k.Version, Kind: k.Kind},
					})
				}
				v.Resources = append(v.Resources, rd)
			}
			item.Versions = append(item.Versions, v)
		}
		list.Items = append(list.Items, item)
	}
	writeJSONValue(w, http.StatusOK, "application/json;g=apidiscovery.k8s.io;v="+version+";as=APIGroupDiscoveryList", list)
}

func (s *Server) serveAPIVersions(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/api" && r.URL.Path != "/api/" {
		writeError(w, errNotFoundPath())
		return
	}
	if v := wantsAggregated(r); v != "" {
		s.serveAggregated(w, v, true)
		return
	}
	addr := s.kubeURL[len("https://"):]
	if la, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
		addr = la.String()
	}
	writeJSONValue(w, http.StatusOK, mediaJSON, metav1.APIVersions{
		TypeMeta:                   metav1.TypeMeta{Kind: "APIVersions"},
		Versions:                   []string{"v1"},
		ServerAddressByClientCIDRs: []metav1.ServerAddressByClientCIDR{{ClientCIDR: "0.0.0.0/0", ServerAddress: addr}},
	})
}

func apiGroup(name string) metav1.APIGroup {
	vs := versionsOf(name)
	return metav1.APIGroup{Name: name, Versions: vs, PreferredVersion: vs[0]}
}

func (s *Server) serveAPIGroupList(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/apis" && r.URL.Path != "/apis/" {
		writeError(w, errNotFoundPath())
		return
	}
	if v := wantsAggregated(r); v != "" {
		s.serveAggregated(w, v, false)
		return
	}
	list := metav1.APIGroupList{TypeMeta: metav1.TypeMeta{Kind: "APIGroupList", APIVersion: "v1"}}
	for _, g := range groups() {
		list.Groups = append(list.Groups, apiGroup(g))
	}
	writeJSONValue(w, http.StatusOK, mediaJSON, list)
}

func (s *Server) serveAPIGroup(w http.ResponseWriter, r *http.Request) {
	name := strings.TrimPrefix(r.URL.Path, "/apis/")
	if len(versionsOf(name)) == 0 {
		writeError(w, errNotFoundPath())
		return
	}
	g := apiGroup(name)
	g.TypeMeta = metav1.TypeMeta{Kind: "APIGroup", APIVersion: "v1"}
	writeJSONValue(w, http.StatusOK, mediaJSON, g)
}

// serveResourceList is the legacy per-group-version discovery document.
func serveResourceList(w http.ResponseWriter, gv schema.GroupVersion) {
	list := metav1.APIResourceList{TypeMeta: metav1.TypeMeta{Kind: "APIResourceList", APIVersion: "v1"}, GroupVersion: gv.String()}
	for _, r := range resourcesIn(gv) {
		list.APIResources = append(list.APIResources, metav1.APIResource{
			Name: r.GVR.Resource, SingularName: r.Singular, Namespaced: r.Namespaced, Kind: r.Kind,
			Verbs: resources.Verbs, ShortNames: r.ShortNames, Categories: r.Categories,
		})
		subs := append([]string(nil), r.Subresources...)
		sort.Strings(subs)
		for _, sub := range subs {
			k, verbs := subresourceInfo(r, sub)
			ar := metav1.APIResource{Name: r.GVR.Resource + "/" + sub, Namespaced: r.Namespaced, Kind: k.Kind, Verbs: verbs}
			if k.GroupVersion() != gv {
				ar.Group, ar.Version = k.Group, k.Version
			}
			list.APIResources = append(list.APIResources, ar)
		}
	}
	writeJSONValue(w, http.StatusOK, mediaJSON, list)
}
