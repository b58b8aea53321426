package proxy

import (
	"encoding/json"
	"net/http"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// PortExplanation is one entry of /kubelab/services: what this node does with
// traffic for one Service port, and why.
type PortExplanation struct {
	Service               string    `json:"service"` // ns/name:port
	Protocol              string    `json:"protocol"`
	ClusterIP             string    `json:"clusterIP"`
	Port                  int32     `json:"port"`
	NodePort              int32     `json:"nodePort,omitempty"`
	ExternalIPs           []string  `json:"externalIPs,omitempty"`
	LoadBalancerIPs       []string  `json:"loadBalancerIPs,omitempty"`
	InternalTrafficPolicy string    `json:"internalTrafficPolicy"`
	ExternalTrafficPolicy string    `json:"externalTrafficPolicy,omitempty"`
	SessionAffinity       string    `json:"sessionAffinity"`
	Internal              Decision  `json:"internal"`
	External              *Decision `json:"external,omitempty"`
	SVCChain              string    `json:"chain"`
}

// Explanation is the body of /kubelab/services.
type Explanation struct {
	Node                         string            `json:"node"`
	Mode                         string            `json:"mode"`
	Backend                      Backend           `json:"backend,omitempty"`
	NoLocalEndpoints             string            `json:"noLocalEndpoints"`
	ServiceInternalTrafficPolicy bool              `json:"serviceInternalTrafficPolicyGate"`
	Syncs                        int               `json:"syncs"`
	LastError                    string            `json:"lastError,omitempty"`
	Services                     []PortExplanation `json:"services"`
}

// Explain returns the current endpoint choice for every Service port.
func (p *Proxier) Explain() Explanation {
	p.stateMu.RLock()
	defer p.stateMu.RUnlock()
	e := Explanation{Node: p.cfg.NodeName, Mode: p.cfg.Mode, Backend: p.cfg.Backend, NoLocalEndpoints: p.cfg.NoLocalEndpoints,
		ServiceInternalTrafficPolicy: p.cfg.ServiceInternalTrafficPolicy, Syncs: p.syncs, Services: []PortExplanation{}}
	if p.lastErr != nil {
		e.LastError = p.lastErr.Error()
	}
	for _, ps := range p.ports {
		sp := ps.sp
		itp := string(sp.InternalTrafficPolicy)
		if itp == "" {
			itp = string(corev1.ServiceInternalTrafficPolicyCluster)
		}
		aff := "None"
		if sp.AffinityTimeout > 0 {
			aff = "ClientIP"
		}
		pe := PortExplanation{Service: sp.String(), Protocol: string(sp.Protocol), ClusterIP: sp.ClusterIP, Port: sp.Port,
			NodePort: sp.NodePort, ExternalIPs: sp.ExternalIPs, LoadBalancerIPs: sp.LoadBalancerIPs,
			InternalTrafficPolicy: itp, SessionAffinity: aff, Internal: ps.choice.Internal, External: ps.choice.External,
			SVCChain: svcChain(sp.Key())}
		if p.nft && ps.nft != nil {
			pe.SVCChain = ""
			for _, el := range ps.nft.Elems {
				if el.Map == nftServiceIPs && strings.HasPrefix(el.Key, sp.ClusterIP+" ") {
					pe.SVCChain = strings.TrimPrefix(el.Value, "goto ")
				}
			}
		}
		if sp.HasExternal() {
			pe.ExternalTrafficPolicy = string(sp.ExternalTrafficPolicy)
			if pe.ExternalTrafficPolicy == "" {
				pe.ExternalTrafficPolicy = string(corev1.ServiceExternalTrafficPolicyCluster)
			}
		}
		if pe.Internal.Endpoints == nil {
			pe.Internal.Endpoints = []Endpoint{}
		}
		e.Services = append(e.Services, pe)
	}
	sort.Slice(e.Services, func(i, j int) bool {
		if e.Services[i].Service != e.Services[j].Service {
			return e.Services[i].Service < e.Services[j].Service
		}
		return e.Services[i].Protocol < e.Services[j].Protocol
	})
	return e
}

// Handler serves GET /kubelab/services (JSON Explanation) and
// GET /kubelab/ruleset (the current ruleset as iptables-restore or nft input).
func (p *Proxier) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /kubelab/services", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(p.Explain())
	})
	mux.HandleFunc("GET /kubelab/ruleset", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte(p.RulesetText()))
	})
	return mux
}
