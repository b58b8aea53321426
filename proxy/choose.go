package proxy

import (
	"fmt"
	"sort"
	"strconv"

	corev1 "k8s.io/api/core/v1"
)

// ServicePort is one port of one Service, reduced to what the endpoint choice
// and the ruleset need. It is built from a corev1.Service by servicePorts.
type ServicePort struct {
	Namespace string
	Name      string
	PortName  string
	Protocol  corev1.Protocol
	ClusterIP string
	Port      int32
	NodePort  int32
	// ExternalIPs are spec.externalIPs; LoadBalancerIPs come from status.loadBalancer.
	ExternalIPs     []string
	LoadBalancerIPs []string
	// InternalTrafficPolicy and ExternalTrafficPolicy as written in the spec
	// ("" means Cluster).
	InternalTrafficPolicy corev1.ServiceInternalTrafficPolicy
	ExternalTrafficPolicy corev1.ServiceExternalTrafficPolicy
	// AffinityTimeout > 0 means sessionAffinity ClientIP with that many seconds.
	AffinityTimeout int32
}

// String names the Service port as "ns/name:port" (the port's name, or its
// number when it has none); rule comments and the explain endpoint use it.
func (sp ServicePort) String() string {
	p := sp.PortName
	if p == "" {
		p = strconv.Itoa(int(sp.Port))
	}
	return sp.Namespace + "/" + sp.Name + ":" + p
}

// Key identifies the Service port uniquely, protocol included; chain names are
// hashes of it.
func (sp ServicePort) Key() string {
	return sp.Namespace + "/" + sp.Name + ":" + sp.PortName + "/" + string(sp.Protocol)
}

// HasExternal reports whether the port can receive external traffic.
func (sp ServicePort) HasExternal() bool {
	return sp.NodePort != 0 || len(sp.ExternalIPs) > 0 || len(sp.LoadBalancerIPs) > 0
}

// Endpoint is one backend of a Service port as the EndpointSlices describe it.
type Endpoint struct {
	IP       string `json:"ip"`
	Port     int32  `json:"port"`
	NodeName string `json:"nodeName,omitempty"`
	Zone     string `json:"zone,omitempty"`
	// Ready is conditions.ready with a missing value already read as true.
	Ready       bool `json:"ready"`
	Serving     bool `json:"serving"`
	Terminating bool `json:"terminating"`
}

// Addr is "ip:port".
func (e Endpoint) Addr() string { return e.IP + ":" + strconv.Itoa(int(e.Port)) }

// Verdict says what a node does with traffic for one Service port.
type Verdict string

// The verdicts of itp.md.
const (
	VerdictEndpoints        Verdict = "endpoints"
	VerdictNoEndpoints      Verdict = "no endpoints"
	VerdictNoLocalEndpoints Verdict = "no local endpoints"
)

// Policy is an effective traffic policy.
type Policy string

// Effective traffic policies.
const (
	PolicyCluster Policy = "Cluster"
	PolicyLocal   Policy = "Local"
)

// Decision is the choice for one kind of traffic (internal or external).
type Decision struct {
	Policy    Policy     `json:"policy"`
	Verdict   Verdict    `json:"verdict"`
	Reason    string     `json:"reason"`
	Endpoints []Endpoint `json:"endpoints"`
}

// Choice is the outcome of Choose for one Service port on one node.
type Choice struct {
	// Cluster is the usable endpoint set cluster-wide (ready, else
	// serving-and-terminating); Local is the same restricted to this node.
	Cluster []Endpoint `json:"-"`
	Local   []Endpoint `json:"-"`
	// Internal is for connections to the ClusterIP.
	Internal Decision `json:"internal"`
	// External is for NodePort, externalIPs and load-balancer IPs; nil when the
	// port has none of them.
	External *Decision `json:"external,omitempty"`
}

// Choose decides, for one Service port seen from node nodeName, which endpoints
// internal and external traffic may use, following itp.md exactly: the seed's
// rule (externalTrafficPolicy Local disables internalTrafficPolicy), the
// terminating fallback, and the feature gate (off: internal is always Cluster).
func Choose(sp ServicePort, eps []Endpoint, nodeName string, itpGate bool) Choice {
	eps = dedupe(eps)
	var c Choice
	var clusterFallback, localFallback bool
	c.Cluster, clusterFallback = usable(eps, func(Endpoint) bool { return true })
	c.Local, localFallback = usable(eps, func(e Endpoint) bool { return e.NodeName != "" && e.NodeName == nodeName })

	etpLocal := sp.HasExternal() && sp.ExternalTrafficPolicy == corev1.ServiceExternalTrafficPolicyLocal

	// Internal traffic.
	ipol, note := PolicyCluster, ""
	switch {
	case sp.InternalTrafficPolicy != corev1.ServiceInternalTrafficPolicyLocal:
	case !itpGate:
		note = "internalTrafficPolicy Local ignored: feature gate ServiceInternalTrafficPolicy is off; "
	case etpLocal:
		note = "internalTrafficPolicy Local ignored: externalTrafficPolicy is Local (seed rule); "
	default:
		ipol = PolicyLocal
	}
	c.Internal = decide(ipol, c.Cluster, c.Local, clusterFallback, localFallback, nodeName, note)

	if sp.HasExternal() {
		epol := PolicyCluster
		if etpLocal {
			epol = PolicyLocal
		}
		d := decide(epol, c.Cluster, c.Local, clusterFallback, localFallback, nodeName, "")
		c.External = &d
	}
	return c
}

func decide(pol Policy, cluster, local []Endpoint, cfb, lfb bool, node, note string) Decision {
	d := Decision{Policy: pol}
	set, fb, where := cluster, cfb, "in the cluster"
	if pol == PolicyLocal {
		set, fb, where = local, lfb, "on node "+node
	}
	switch {
	case len(set) > 0:
		d.Verdict, d.Endpoints = VerdictEndpoints, set
		kind := "ready"
		if fb {
			kind = "serving-terminating (no ready endpoint)"
		}
		d.Reason = fmt.Sprintf("%spolicy %s: %d %s endpoint(s) %s", note, pol, len(set), kind, where)
	case len(cluster) > 0:
		d.Verdict = VerdictNoLocalEndpoints
		d.Reason = fmt.Sprintf("%spolicy %s: no usable endpoint on node %s (%d elsewhere)", note, pol, node, len(cluster))
	default:
		d.Verdict = VerdictNoEndpoints
		d.Reason = fmt.Sprintf("%spolicy %s: no ready or serving-terminating endpoint in the cluster", note, pol)
	}
	return d
}

// usable returns the ready endpoints that pass keep, or, when there are none,
// the serving-and-terminating ones (fallback=true).
func usable(eps []Endpoint, keep func(Endpoint) bool) (out []Endpoint, fallback bool) {
	n := 0
	for _, e := range eps {
		if keep(e) && e.Ready {
			n++
		}
	}
	if n == len(eps) && n > 0 {
		// All of them (the common case): share eps, which dedupe made.
		return eps[:n:n], false
	}
	if n > 0 {
		out = make([]Endpoint, 0, n)
		for _, e := range eps {
			if keep(e) && e.Ready {
				out = append(out, e)
			}
		}
		return out, false
	}
	for _, e := range eps {
		if keep(e) && e.Serving && e.Terminating {
			out = append(out, e)
		}
	}
	return out, len(out) > 0
}

// dedupe drops repeated ip:port (an endpoint may briefly sit in two slices),
// keeping the readiest copy, and sorts so the output is deterministic.
func dedupe(eps []Endpoint) []Endpoint {
	seen := make(map[string]int, len(eps))
	out := make([]Endpoint, 0, len(eps))
	for _, e := range eps {
		if i, ok := seen[e.Addr()]; ok {
			if e.Ready && !out[i].Ready {
				out[i] = e
			}
			continue
		}
		seen[e.Addr()] = len(out)
		out = append(out, e)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].IP != out[j].IP {
			return ipLess(out[i].IP, out[j].IP)
		}
		return out[i].Port < out[j].Port
	})
	return out
}
