package apiserver

import (
	"context"
	"testing"
)

type fakeFacts struct {
	pods map[string]string // ns/name -> node
	refs map[string]bool   // node/kind/ns/name
}

func (f fakeFacts) podNode(_ context.Context, ns, name string) (string, bool, error) {
	n, ok := f.pods[ns+"/"+name]
	return n, ok, nil
}

func (f fakeFacts) podReferences(_ context.Context, node, kind, ns, name string) (bool, error) {
	return f.refs[node+"/"+kind+"/"+ns+"/"+name], nil
}

func TestAuthorizeNodes(t *testing.T) {
	n1 := User{Name: "system:node:n1", Groups: []string{"system:nodes", "system:authenticated"}}
	admin := User{Name: "kubelab-admin", Groups: []string{"system:masters"}}
	bad := User{Name: "someone", Groups: []string{"system:nodes"}}
	facts := fakeFacts{pods: map[string]string{"d/mine": "n1", "d/theirs": "n2"}, refs: map[string]bool{"n1/secrets/d/s": true}}
	res := func(u User, verb, group, resource, sub, ns, name string) attributes {
		return attributes{user: u, verb: verb, resourceRequest: true, group: group, resource: resource, sub: sub, namespace: ns, name: name}
	}
	for _, c := range []struct {
		name string
		a    attributes
		want bool
	}{
		{"admin anything", res(admin, "deletecollection", "apps", "deployments", "", "d", ""), true},
		{"unidentifiable node", res(bad, "get", "", "nodes", "", "", "n1"), false},
		{"watch nodes", res(n1, "watch", "", "nodes", "", "", ""), true},
		{"create own node", res(n1, "create", "", "nodes", "", "", "n1"), true},
		{"patch other node status", res(n1, "patch", "", "nodes", "status", "", "n2"), false},
		{"delete own node", res(n1, "delete", "", "nodes", "", "", "n1"), true},
		{"list pods", res(n1, "list", "", "pods", "", "", ""), true},
		{"own pod status", res(n1, "patch", "", "pods", "status", "d", "mine"), true},
		{"other pod status", res(n1, "update", "", "pods", "status", "d", "theirs"), false},
		{"delete own pod", res(n1, "delete", "", "pods", "", "d", "mine"), true},
		{"delete gone pod", res(n1, "delete", "", "pods", "", "d", "gone"), true},
		{"deletecollection pods", res(n1, "deletecollection", "", "pods", "", "d", ""), false},
		{"pod exec", res(n1, "create", "", "pods", "exec", "d", "mine"), false},
		{"create pod", res(n1, "create", "", "pods", "", "d", ""), false},
		{"bind pod", res(n1, "create", "", "pods", "binding", "d", "mine"), false},
		{"used secret", res(n1, "get", "", "secrets", "", "d", "s"), true},
		{"unused secret", res(n1, "get", "", "secrets", "", "d", "t"), false},
		{"watch secrets", res(n1, "watch", "", "secrets", "", "d", ""), false},
		{"slices", res(n1, "list", "discovery.k8s.io", "endpointslices", "", "", ""), true},
		{"write slices", res(n1, "update", "discovery.k8s.io", "endpointslices", "", "d", "x"), false},
		{"own lease", res(n1, "update", "coordination.k8s.io", "leases", "", "kube-node-lease", "n1"), true},
		{"other lease", res(n1, "get", "coordination.k8s.io", "leases", "", "kube-node-lease", "n2"), false},
		{"lease elsewhere", res(n1, "create", "coordination.k8s.io", "leases", "", "default", "n1"), false},
		{"events", res(n1, "patch", "", "events", "", "d", "e"), true},
		{"new events", res(n1, "create", "events.k8s.io", "events", "", "d", ""), true},
		{"read events", res(n1, "list", "", "events", "", "d", ""), false},
		{"ssar", res(n1, "create", "authorization.k8s.io", "selfsubjectaccessreviews", "", "", ""), true},
		{"discovery path", attributes{user: n1, verb: "get", path: "/apis/apps/v1"}, true},
		{"openapi path", attributes{user: n1, verb: "get", path: "/openapi/v3"}, true},
		{"metrics path", attributes{user: n1, verb: "get", path: "/metrics"}, false},
	} {
		d := authorize(context.Background(), c.a, facts)
		if d.allowed != c.want || (!d.allowed && d.err == nil) {
			t.Errorf("%s: allowed=%v err=%v, want %v", c.name, d.allowed, d.err, c.want)
		}
	}
}
