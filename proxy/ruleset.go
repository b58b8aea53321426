package proxy

import (
	"crypto/sha256"
	"encoding/base32"
	"fmt"
	"net"
	"sort"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// Chain names kubelab owns. All start with "KUBELAB-" so kubelab and
// kube-proxy (KUBE-*) can share a node.
const (
	chainServices         = "KUBELAB-SERVICES"          // nat and filter
	chainExternalServices = "KUBELAB-EXTERNAL-SERVICES" // filter
	chainForward          = "KUBELAB-FORWARD"           // filter
	chainNodePorts        = "KUBELAB-NODEPORTS"         // nat
	chainPostrouting      = "KUBELAB-POSTROUTING"       // nat
	chainMarkMasq         = "KUBELAB-MARK-MASQ"         // nat
	chainPrefix           = "KUBELAB-"
	bucketPrefix          = "KUBELAB-DST-"

	// masqMark is the packet-mark bit asking KUBELAB-POSTROUTING to
	// masquerade. kube-proxy uses 0x4000; a different bit keeps both apart.
	masqMark = "0x2000"
)

// RenderConfig is what the ruleset needs from the node.
type RenderConfig struct {
	NodeIP      string // NodePorts answer on this address and on 127.0.0.1
	ClusterCIDR string // traffic to a ClusterIP from outside it is masqueraded
	// DropNoLocal drops instead of rejecting internal traffic of an ITP Local
	// Service without a local endpoint.
	DropNoLocal bool
}

// Chain is one iptables chain and its rules, each rule a complete
// iptables-restore line ("-A CHAIN ...").
type Chain struct {
	Name  string
	Rules []string
}

// PortRules is everything one Service port contributes to the ruleset.
// Rendering is per port so a sync can re-render only the ports that changed.
type PortRules struct {
	Key string
	// NatChains are the port's own nat chains (SVC, SVL, EXT, SEP).
	NatChains []Chain
	// Dispatch are nat rules for KUBELAB-DST-<bucket> chains, keyed by bucket.
	Dispatch []Dispatch
	// NodePorts are rules for nat KUBELAB-NODEPORTS.
	NodePorts []string
	// FilterServices / FilterExternal are REJECT/DROP rules for the filter
	// chains KUBELAB-SERVICES / KUBELAB-EXTERNAL-SERVICES.
	FilterServices []string
	FilterExternal []string
	// DNAT targets (ip) used by this port, for conntrack cleanup.
	Targets []string
}

// Dispatch is one rule in a destination bucket chain.
type Dispatch struct {
	Bucket uint8
	Rule   string
}

// Ruleset is a complete kubelab ruleset for both tables.
type Ruleset struct {
	Nat    []Chain
	Filter []Chain
}

// portHash is a stable, short name for a Service port (and endpoint).
func portHash(s string) string {
	sum := sha256.Sum256([]byte(s))
	return base32.StdEncoding.EncodeToString(sum[:])[:16]
}

func svcChain(key string) string { return "KUBELAB-SVC-" + portHash(key) }
func svlChain(key string) string { return "KUBELAB-SVL-" + portHash(key) }
func extChain(key string) string { return "KUBELAB-EXT-" + portHash(key) }
func sepChain(key string, e Endpoint) string {
	return "KUBELAB-SEP-" + portHash(key+"|"+e.Addr())
}

// bucketOf places a destination address in one of 256 dispatch buckets by its
// lowest byte, so the first packet to any Service walks at most 256 bucket
// rules plus the bucket's own rules instead of one rule per Service.
func bucketOf(ip string) uint8 {
	p := net.ParseIP(ip).To4()
	if p == nil {
		return 0
	}
	return p[3]
}

func bucketChain(b uint8) string { return fmt.Sprintf("%s%02X", bucketPrefix, b) }

func proto(sp ServicePort) string { return strings.ToLower(string(sp.Protocol)) }

func comment(s string) string {
	return `-m comment --comment "` + strings.ReplaceAll(s, `"`, "'") + `"`
}

// rejectTarget makes clients fail at once: a TCP reset (curl: exit 7,
// "Connection refused"; not subject to ICMP rate limits) or, for UDP/SCTP, an
// ICMP port unreachable.
func rejectTarget(sp ServicePort) string {
	if sp.Protocol == corev1.ProtocolTCP {
		return "-j REJECT --reject-with tcp-reset"
	}
	return "-j REJECT --reject-with icmp-port-unreachable"
}

// RenderPort renders one Service port's rules from its endpoint choice.
func RenderPort(sp ServicePort, c Choice, cfg RenderConfig) PortRules {
	key := sp.Key()
	name := sp.String()
	pr := PortRules{Key: key}
	p := proto(sp)
	dport := fmt.Sprintf("-p %s -m %s --dport %d", p, p, sp.Port)

	needSVC, needSVL := false, false
	internalTarget := ""
	switch c.Internal.Verdict {
	case VerdictEndpoints:
		if c.Internal.Policy == PolicyLocal {
			internalTarget, needSVL = svlChain(key), true
		} else {
			internalTarget, needSVC = svcChain(key), true
		}
		pr.Dispatch = append(pr.Dispatch, Dispatch{bucketOf(sp.ClusterIP), fmt.Sprintf("-A %s -d %s/32 %s %s -j %s",
			bucketChain(bucketOf(sp.ClusterIP)), sp.ClusterIP, dport, comment(name+" cluster IP"), internalTarget)})
	case VerdictNoEndpoints:
		pr.FilterServices = append(pr.FilterServices, fmt.Sprintf("-A %s -d %s/32 %s %s %s",
			chainServices, sp.ClusterIP, dport, comment(name+" has no endpoints"), rejectTarget(sp)))
	case VerdictNoLocalEndpoints:
		target := rejectTarget(sp)
		if cfg.DropNoLocal {
			target = "-j DROP"
		}
		pr.FilterServices = append(pr.FilterServices, fmt.Sprintf("-A %s -d %s/32 %s %s %s",
			chainServices, sp.ClusterIP, dport, comment(name+" has no local endpoints"), target))
	}

	if ext := c.External; ext != nil {
		// Entry points for external traffic: externalIPs, LB IPs, NodePort.
		type dst struct{ ip, what string }
		var dsts []dst
		for _, ip := range sp.ExternalIPs {
			dsts = append(dsts, dst{ip, "external IP"})
		}
		for _, ip := range sp.LoadBalancerIPs {
			dsts = append(dsts, dst{ip, "loadbalancer IP"})
		}
		// With ETP Local, pods and the node itself still reach the
		// cluster-wide endpoints, so the EXT chain is needed whenever any
		// endpoint exists.
		haveEXT := len(c.Cluster) > 0
		if haveEXT {
			ec := extChain(key)
			for _, d := range dsts {
				b := bucketOf(d.ip)
				pr.Dispatch = append(pr.Dispatch, Dispatch{b, fmt.Sprintf("-A %s -d %s/32 %s %s -j %s",
					bucketChain(b), d.ip, dport, comment(name+" "+d.what), ec)})
			}
			if sp.NodePort != 0 {
				pr.NodePorts = append(pr.NodePorts, fmt.Sprintf("-A %s -p %s -m %s --dport %d %s -j %s",
					chainNodePorts, p, p, sp.NodePort, comment(name+" node port"), ec))
			}
			var rules []string
			needSVC = true
			if ext.Policy == PolicyCluster {
				rules = append(rules,
					fmt.Sprintf("-A %s %s -j %s", ec, comment("masquerade traffic for "+name+" external destinations"), chainMarkMasq),
					fmt.Sprintf("-A %s %s -j %s", ec, comment(name+" external traffic"), svcChain(key)))
			} else {
				if cfg.ClusterCIDR != "" {
					rules = append(rules, fmt.Sprintf("-A %s -s %s %s -j %s", ec, cfg.ClusterCIDR,
						comment("pod traffic for "+name+" external destinations"), svcChain(key)))
				}
				rules = append(rules,
					fmt.Sprintf("-A %s -m addrtype --src-type LOCAL %s -j %s", ec,
						comment("masquerade LOCAL traffic for "+name+" external destinations"), chainMarkMasq),
					fmt.Sprintf("-A %s -m addrtype --src-type LOCAL %s -j %s", ec,
						comment("route LOCAL traffic for "+name+" external destinations"), svcChain(key)))
				if ext.Verdict == VerdictEndpoints {
					needSVL = true
					rules = append(rules, fmt.Sprintf("-A %s %s -j %s", ec, comment(name+" local endpoints"), svlChain(key)))
				}
			}
			pr.NatChains = append(pr.NatChains, Chain{Name: ec, Rules: rules})
		}
		// Refusals for external traffic, matched on the original destination:
		// locally originated traffic was already DNATed by the EXT chain.
		var target, why string
		switch {
		case len(c.Cluster) == 0:
			target, why = rejectTarget(sp), " has no endpoints"
		case ext.Verdict == VerdictNoLocalEndpoints:
			target, why = "-j DROP", " has no local endpoints"
		}
		if target != "" {
			for _, d := range dsts {
				pr.FilterExternal = append(pr.FilterExternal, fmt.Sprintf("-A %s -d %s/32 %s %s %s",
					chainExternalServices, d.ip, dport, comment(name+why), target))
			}
			if sp.NodePort != 0 {
				for _, ip := range nodePortIPs(cfg) {
					pr.FilterExternal = append(pr.FilterExternal, fmt.Sprintf("-A %s -d %s/32 -p %s -m %s --dport %d %s %s",
						chainExternalServices, ip, p, p, sp.NodePort, comment(name+why), target))
				}
			}
		}
	}

	seps := map[string]bool{}
	addSEPs := func(eps []Endpoint) {
		for _, e := range eps {
			sc := sepChain(key, e)
			if seps[sc] {
				continue
			}
			seps[sc] = true
			pr.Targets = append(pr.Targets, e.IP)
			dnat := fmt.Sprintf("-A %s %s %s", sc, comment(name), "-p "+p+" -m "+p)
			if sp.AffinityTimeout > 0 {
				dnat += " -m recent --name " + sc + " --set"
			}
			pr.NatChains = append(pr.NatChains, Chain{Name: sc, Rules: []string{
				fmt.Sprintf("-A %s -s %s/32 %s -j %s", sc, e.IP, comment(name+" hairpin"), chainMarkMasq),
				dnat + " -j DNAT --to-destination " + e.Addr(),
			}})
		}
	}
	if needSVC {
		pr.NatChains = append(pr.NatChains, endpointChain(svcChain(key), sp, c.Cluster, cfg, dport))
		addSEPs(c.Cluster)
	}
	if needSVL {
		pr.NatChains = append(pr.NatChains, endpointChain(svlChain(key), sp, c.Local, cfg, dport))
		addSEPs(c.Local)
	}
	return pr
}

// endpointChain spreads new connections over eps with equal weight: rule i
// (of n) matches with probability 1/(n-i), the last always. With ClientIP
// affinity, recently seen clients go back to their endpoint first.
func endpointChain(name string, sp ServicePort, eps []Endpoint, cfg RenderConfig, dport string) Chain {
	key, sname := sp.Key(), sp.String()
	ch := Chain{Name: name}
	if cfg.ClusterCIDR != "" {
		ch.Rules = append(ch.Rules, fmt.Sprintf("-A %s ! -s %s -d %s/32 %s %s -j %s", name, cfg.ClusterCIDR,
			sp.ClusterIP, dport, comment(sname+" cluster IP from outside the cluster CIDR"), chainMarkMasq))
	}
	if sp.AffinityTimeout > 0 {
		for _, e := range eps {
			sc := sepChain(key, e)
			ch.Rules = append(ch.Rules, fmt.Sprintf("-A %s %s -m recent --name %s --rcheck --seconds %d --reap -j %s",
				name, comment(sname+" -> "+e.Addr()+" affinity"), sc, sp.AffinityTimeout, sc))
		}
	}
	n := len(eps)
	for i, e := range eps {
		stat := ""
		if i < n-1 {
			stat = fmt.Sprintf(" -m statistic --mode random --probability %0.11f", 1/float64(n-i))
		}
		ch.Rules = append(ch.Rules, fmt.Sprintf("-A %s %s%s -j %s", name, comment(sname+" -> "+e.Addr()), stat, sepChain(key, e)))
	}
	return ch
}

func nodePortIPs(cfg RenderConfig) []string {
	var ips []string
	if cfg.NodeIP != "" {
		ips = append(ips, cfg.NodeIP)
	}
	return append(ips, "127.0.0.1")
}

// Assemble builds the shared chains from every port's rules (ports must be in
// a stable order, e.g. sorted by Key) and returns the full ruleset.
func Assemble(ports []*PortRules, cfg RenderConfig) *Ruleset {
	rs := &Ruleset{}
	rs.Nat, rs.Filter = topChains(ports, cfg)
	for _, p := range ports {
		rs.Nat = append(rs.Nat, p.NatChains...)
	}
	return rs
}

// topChains renders the chains shared by all ports (nat first, then filter).
func topChains(ports []*PortRules, cfg RenderConfig) (nat, filter []Chain) {
	var buckets [256][]string
	var nodePorts, fsvc, fext []string
	for _, p := range ports {
		for _, d := range p.Dispatch {
			buckets[d.Bucket] = append(buckets[d.Bucket], d.Rule)
		}
		nodePorts = append(nodePorts, p.NodePorts...)
		fsvc = append(fsvc, p.FilterServices...)
		fext = append(fext, p.FilterExternal...)
	}
	services := Chain{Name: chainServices}
	var bucketChains []Chain
	for b := range buckets {
		if len(buckets[b]) == 0 {
			continue
		}
		bc := bucketChain(uint8(b))
		services.Rules = append(services.Rules, fmt.Sprintf("-A %s -d 0.0.0.%d/0.0.0.255 %s -j %s",
			chainServices, b, comment("destinations ending in ."+strconv.Itoa(b)), bc))
		bucketChains = append(bucketChains, Chain{Name: bc, Rules: buckets[b]})
	}
	for _, ip := range nodePortIPs(cfg) {
		services.Rules = append(services.Rules, fmt.Sprintf("-A %s -d %s/32 %s -j %s",
			chainServices, ip, comment("kubelab service nodeports"), chainNodePorts))
	}
	nat = []Chain{
		services,
		{Name: chainNodePorts, Rules: nodePorts},
		{Name: chainPostrouting, Rules: []string{
			fmt.Sprintf("-A %s -m mark ! --mark %s/%s -j RETURN", chainPostrouting, masqMark, masqMark),
			fmt.Sprintf("-A %s -j MARK --xor-mark %s", chainPostrouting, masqMark),
			fmt.Sprintf("-A %s %s -j MASQUERADE --random-fully", chainPostrouting, comment("kubelab service traffic requiring SNAT")),
		}},
		{Name: chainMarkMasq, Rules: []string{fmt.Sprintf("-A %s -j MARK --or-mark %s", chainMarkMasq, masqMark)}},
	}
	nat = append(nat, bucketChains...)
	filter = []Chain{
		{Name: chainServices, Rules: fsvc},
		{Name: chainExternalServices, Rules: fext},
		{Name: chainForward, Rules: []string{
			fmt.Sprintf("-A %s -m mark --mark %s/%s %s -j ACCEPT", chainForward, masqMark, masqMark, comment("kubelab forwarding rules")),
			fmt.Sprintf("-A %s -m conntrack --ctstate RELATED,ESTABLISHED %s -j ACCEPT", chainForward, comment("kubelab forwarding conntrack rule")),
		}},
	}
	return nat, filter
}

// Text renders the whole ruleset as iptables-restore input (for --noflush:
// every chain is declared, which flushes it, then refilled).
func (r *Ruleset) Text() string {
	var b strings.Builder
	b.Grow(textSize(r.Filter) + textSize(r.Nat))
	writeTable(&b, "filter", r.Filter, nil)
	writeTable(&b, "nat", r.Nat, nil)
	return b.String()
}

// textSize estimates the restore text of chains, to size buffers once
// (the ruleset of a big cluster is tens of megabytes).
func textSize(chains []Chain) int {
	n := 64
	for _, c := range chains {
		n += 2*len(c.Name) + 16
		for _, r := range c.Rules {
			n += len(r) + 1
		}
	}
	return n
}

// writeTable writes one table section: declarations of chains, their rules,
// then deletions (declared first, so they are flushed before -X).
func writeTable(b *strings.Builder, table string, chains []Chain, del []string) {
	if len(chains) == 0 && len(del) == 0 {
		return
	}
	b.WriteString("*" + table + "\n")
	for _, c := range chains {
		b.WriteString(":" + c.Name + " - [0:0]\n")
	}
	for _, d := range del {
		b.WriteString(":" + d + " - [0:0]\n")
	}
	for _, c := range chains {
		for _, r := range c.Rules {
			b.WriteString(r)
			b.WriteByte('\n')
		}
	}
	for _, d := range del {
		b.WriteString("-X " + d + "\n")
	}
	b.WriteString("COMMIT\n")
}

// RenderAll is the pure function from Service ports and their choices to the
// full ruleset. ports and choices are parallel slices.
func RenderAll(ports []ServicePort, choices []Choice, cfg RenderConfig) *Ruleset {
	prs := make([]*PortRules, len(ports))
	for i := range ports {
		pr := RenderPort(ports[i], choices[i], cfg)
		prs[i] = &pr
	}
	sort.Slice(prs, func(i, j int) bool { return prs[i].Key < prs[j].Key })
	return Assemble(prs, cfg)
}

// CountRules returns the number of rules per table, for metrics.
func (r *Ruleset) CountRules() (nat, filter int) {
	for _, c := range r.Nat {
		nat += len(c.Rules)
	}
	for _, c := range r.Filter {
		filter += len(c.Rules)
	}
	return nat, filter
}
