package proxy

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// The nftables backend programs one table, "ip kubelab", through `nft -f`.
//
// Why it looks the way it does (measured on nft 1.0.6, kernel 6.x):
//   - nft's cost grows with every object it parses, and the kernel allocates
//     each anonymous or named set with a walk over all sets of the table, so
//     a set (or `vmap {...}`) per Service is quadratic: 10,000 took 17 s.
//   - Chains and rules cost ~50 us each in nft's parser; set elements ~15 us.
//
// So the common Service port (ClusterIP only, no session affinity) owns no
// chain and no set: one element of the verdict map service-ips sends its
// ClusterIP:port to a shared balancing chain KUBELAB-LB-<PROTO>-<C|L>-<n>
// (one per protocol, endpoint kind and endpoint count n), whose single rule
// DNATs through a shared map keyed on destination . port . (random mod n)
// (`numgen random mod n`: equal weight per connection). A Service port then
// costs n+1 map elements. Ports with external entry points (NodePort,
// externalIPs, LB IPs) or sessionAffinity get their own chains as in the
// iptables backend (KUBELAB-SVC/SVL/EXT/SEP), with affinity kept in
// per-endpoint dynamic sets with a timeout (nft has no `recent`).
//
// Refusals (REJECT/DROP) are counted rules with a comment naming the Service
// port, in KUBELAB-FILTER-SERVICES / KUBELAB-FILTER-EXTERNAL, as in iptables.
const (
	nftFamily = "ip"
	nftTable  = "kubelab"
	// The refusal chains live in their own small table: listing a chain
	// (for the packet counters) makes nft load its whole table, and the
	// kubelab table's maps hold ~100k elements at scale (3 s to list).
	nftFilterTable = "kubelab-filter"
	nftServiceIPs  = "service-ips"       // daddr . proto . port : verdict
	nftNodePorts   = "service-nodeports" // proto . port : verdict
	nftHairpin     = "hairpin"           // endpoint . endpoint: masquerade a pod reaching itself
	nftFilterSvc   = "KUBELAB-FILTER-SERVICES"
	nftFilterExt   = "KUBELAB-FILTER-EXTERNAL"
	nftLBPrefix    = "KUBELAB-LB-"
	nftAffPrefix   = "KUBELAB-AFF-"
	// nft stores at most 128 bytes of comment.
	nftCommentMax = 128
)

var nftProtos = []string{"tcp", "udp", "sctp"}

// nftEndpointMap is the shared map of one protocol's cluster-wide ("cluster")
// or node-local ("local") endpoint lists.
func nftEndpointMap(proto string, local bool) string {
	if local {
		return "endpoints-" + proto + "-local"
	}
	return "endpoints-" + proto + "-cluster"
}

// generational reports whether a shared map is bulk-loaded per generation
// (its physical name carries the generation: service-ips-g3).
func generational(m string) bool { return m == nftServiceIPs || strings.HasPrefix(m, "endpoints-") }

// nftPhys is the kernel name of shared map m in generation gen.
func nftPhys(m string, gen int) string {
	if generational(m) {
		return fmt.Sprintf("%s-g%d", m, gen)
	}
	return m
}

// parseGen reads the generation from a physical map name (0 if none).
func parseGen(name string) int {
	i := strings.LastIndex(name, "-g")
	if i < 0 || !generational(name[:i]) {
		return 0
	}
	n, _ := strconv.Atoi(name[i+2:])
	return n
}

func nftLBChain(proto string, local bool, n int) string {
	k := "C"
	if local {
		k = "L"
	}
	return fmt.Sprintf("%s%s-%s-%d", nftLBPrefix, strings.ToUpper(proto), k, n)
}

// parseLBChain reverses nftLBChain.
func parseLBChain(name string) (proto string, local bool, n int, ok bool) {
	f := strings.Split(strings.TrimPrefix(name, nftLBPrefix), "-")
	if !strings.HasPrefix(name, nftLBPrefix) || len(f) != 3 {
		return "", false, 0, false
	}
	n, err := strconv.Atoi(f[2])
	if err != nil || n < 1 {
		return "", false, 0, false
	}
	return strings.ToLower(f[0]), f[1] == "L", n, true
}

func affSet(key string, e Endpoint, timeout int32) string {
	return nftAffPrefix + portHash(fmt.Sprintf("%s|%s|%d", key, e.Addr(), timeout))
}

func nftComment(s string) string {
	s = strings.ReplaceAll(s, `"`, "'")
	if len(s) > nftCommentMax {
		s = s[:nftCommentMax]
	}
	return `comment "` + s + `"`
}

// NftElem is one element of a shared map or set.
type NftElem struct {
	Map     string
	Key     string
	Value   string // "" for a set
	Comment string // shown by `nft list`; costs parse time, so only on service-ips
}

func (e NftElem) id() string { return e.Map + "|" + e.Key }

// LBElems are a port's elements in a shared endpoint map: ClusterIP . port
// . i -> endpoint i.
type LBElems struct {
	Map       string
	ClusterIP string
	Port      int32
	Eps       []Endpoint
}

// AllElems returns every element the port puts in shared maps.
func (np *NftPort) AllElems() []NftElem {
	if np.LBEps == nil {
		return np.Elems
	}
	l := np.LBEps
	out := make([]NftElem, 0, len(l.Eps)+len(np.Elems))
	for i, e := range l.Eps {
		out = append(out, NftElem{Map: l.Map, Key: l.ClusterIP + " . " + strconv.Itoa(int(l.Port)) + " . " + strconv.Itoa(i),
			Value: e.IP + " . " + strconv.Itoa(int(e.Port))})
	}
	return append(out, np.Elems...)
}

func (np *NftPort) numElems() int {
	n := len(np.Elems)
	if np.LBEps != nil {
		n += len(np.LBEps.Eps)
	}
	return n
}

// NftSet is a per-port dynamic set (ClientIP affinity for one endpoint).
type NftSet struct {
	Name    string
	Timeout int32
}

// NftPort is everything one Service port contributes to the nft ruleset.
type NftPort struct {
	Key string
	// Elems are the port's elements of service-ips and service-nodeports;
	// LB, when set, generates its endpoint-map elements on use (10 per port
	// at scale: not stored, to keep the agent small).
	Elems          []NftElem
	LBEps          *LBElems
	Chains         []Chain // own chains, rules in nft syntax
	Sets           []NftSet
	LB             []string // shared balancing chains it jumps to
	FilterServices []string
	FilterExternal []string
	Targets        []string // DNAT target IPs (conntrack cleanup, hairpin)
}

func nftReject(sp ServicePort) string {
	if proto(sp) == "tcp" {
		return "reject with tcp reset"
	}
	return "reject with icmp type port-unreachable"
}

// RenderPortNft renders one Service port for the nftables backend.
func RenderPortNft(sp ServicePort, c Choice, cfg RenderConfig) NftPort {
	key, name, p := sp.Key(), sp.String(), proto(sp)
	np := NftPort{Key: key}
	match := func(ip string, port int32) string {
		return fmt.Sprintf("ip daddr %s meta l4proto %s th dport %d", ip, p, port)
	}
	// Ports with their own chains: affinity or external entry points.
	own := sp.AffinityTimeout > 0 || c.External != nil
	needSVC, needSVL := false, false

	switch c.Internal.Verdict {
	case VerdictEndpoints:
		local := c.Internal.Policy == PolicyLocal
		eps := c.Cluster
		if local {
			eps = c.Local
		}
		var target string
		switch {
		case !own:
			target = nftLBChain(p, local, len(eps))
			np.LB = append(np.LB, target)
			np.LBEps = &LBElems{Map: nftEndpointMap(p, local), ClusterIP: sp.ClusterIP, Port: sp.Port, Eps: eps}
			np.Targets = append(np.Targets, endpointIPs(eps)...)
		case local:
			target, needSVL = svlChain(key), true
		default:
			target, needSVC = svcChain(key), true
		}
		np.Elems = append(np.Elems, NftElem{nftServiceIPs, fmt.Sprintf("%s . %s . %d", sp.ClusterIP, p, sp.Port), "goto " + target, name + " cluster IP"})
	case VerdictNoEndpoints:
		np.FilterServices = append(np.FilterServices, fmt.Sprintf("%s counter %s %s", match(sp.ClusterIP, sp.Port), nftReject(sp), nftComment(name+" has no endpoints")))
	case VerdictNoLocalEndpoints:
		target := nftReject(sp)
		if cfg.DropNoLocal {
			target = "drop"
		}
		np.FilterServices = append(np.FilterServices, fmt.Sprintf("%s counter %s %s", match(sp.ClusterIP, sp.Port), target, nftComment(name+" has no local endpoints")))
	}

	if ext := c.External; ext != nil {
		type dst struct{ ip, what string }
		var dsts []dst
		for _, ip := range sp.ExternalIPs {
			dsts = append(dsts, dst{ip, "external IP"})
		}
		for _, ip := range sp.LoadBalancerIPs {
			dsts = append(dsts, dst{ip, "loadbalancer IP"})
		}
		if len(c.Cluster) > 0 {
			ec := extChain(key)
			for _, d := range dsts {
				np.Elems = append(np.Elems, NftElem{nftServiceIPs, fmt.Sprintf("%s . %s . %d", d.ip, p, sp.Port), "goto " + ec, name + " " + d.what})
			}
			if sp.NodePort != 0 {
				np.Elems = append(np.Elems, NftElem{nftNodePorts, fmt.Sprintf("%s . %d", p, sp.NodePort), "goto " + ec, name + " node port"})
			}
			needSVC = true
			var rules []string
			if ext.Policy == PolicyCluster {
				rules = append(rules,
					fmt.Sprintf("jump %s %s", chainMarkMasq, nftComment("masquerade traffic for "+name+" external destinations")),
					fmt.Sprintf("goto %s %s", svcChain(key), nftComment(name+" external traffic")))
			} else {
				if cfg.ClusterCIDR != "" {
					rules = append(rules, fmt.Sprintf("ip saddr %s goto %s %s", cfg.ClusterCIDR, svcChain(key),
						nftComment("pod traffic for "+name+" external destinations")))
				}
				rules = append(rules,
					fmt.Sprintf("fib saddr type local jump %s %s", chainMarkMasq, nftComment("masquerade LOCAL traffic for "+name+" external destinations")),
					fmt.Sprintf("fib saddr type local goto %s %s", svcChain(key), nftComment("route LOCAL traffic for "+name+" external destinations")))
				if ext.Verdict == VerdictEndpoints {
					needSVL = true
					rules = append(rules, fmt.Sprintf("goto %s %s", svlChain(key), nftComment(name+" local endpoints")))
				}
			}
			np.Chains = append(np.Chains, Chain{Name: ec, Rules: rules})
		}
		var target, why string
		switch {
		case len(c.Cluster) == 0:
			target, why = nftReject(sp), " has no endpoints"
		case ext.Verdict == VerdictNoLocalEndpoints:
			target, why = "drop", " has no local endpoints"
		}
		if target != "" {
			for _, d := range dsts {
				np.FilterExternal = append(np.FilterExternal, fmt.Sprintf("%s counter %s %s", match(d.ip, sp.Port), target, nftComment(name+why)))
			}
			if sp.NodePort != 0 {
				for _, ip := range nodePortIPs(cfg) {
					np.FilterExternal = append(np.FilterExternal, fmt.Sprintf("%s counter %s %s", match(ip, sp.NodePort), target, nftComment(name+why)))
				}
			}
		}
	}

	seen := map[string]bool{}
	addSEPs := func(eps []Endpoint) {
		for _, e := range eps {
			if !seen[e.Addr()] {
				seen[e.Addr()] = true
				np.Targets = append(np.Targets, e.IP)
			}
			if sp.AffinityTimeout <= 0 {
				continue
			}
			sc, set := sepChain(key, e), affSet(key, e, sp.AffinityTimeout)
			if seen[sc] {
				continue
			}
			seen[sc] = true
			np.Sets = append(np.Sets, NftSet{Name: set, Timeout: sp.AffinityTimeout})
			np.Chains = append(np.Chains, Chain{Name: sc, Rules: []string{
				fmt.Sprintf("update @%s { ip saddr } %s", set, nftComment(name+" -> "+e.Addr()+" affinity")),
				fmt.Sprintf("meta l4proto %s dnat to %s %s", p, e.Addr(), nftComment(name+" -> "+e.Addr())),
			}})
		}
	}
	if needSVC {
		np.Chains = append(np.Chains, nftEndpointChain(svcChain(key), sp, c.Cluster, cfg))
		addSEPs(c.Cluster)
	}
	if needSVL {
		np.Chains = append(np.Chains, nftEndpointChain(svlChain(key), sp, c.Local, cfg))
		addSEPs(c.Local)
	}
	return np
}

func endpointIPs(eps []Endpoint) []string {
	out := make([]string, 0, len(eps))
	seen := map[string]bool{}
	for _, e := range eps {
		if !seen[e.IP] {
			seen[e.IP] = true
			out = append(out, e.IP)
		}
	}
	return out
}

// nftEndpointChain spreads new connections over eps with equal weight:
// rule i (of n) matches when a fresh random number mod n-i is 0, i.e. with
// probability 1/(n-i); the last always. With ClientIP affinity, clients seen
// within the timeout go back to their endpoint first.
func nftEndpointChain(name string, sp ServicePort, eps []Endpoint, cfg RenderConfig) Chain {
	key, sname, p := sp.Key(), sp.String(), proto(sp)
	ch := Chain{Name: name}
	if cfg.ClusterCIDR != "" {
		ch.Rules = append(ch.Rules, fmt.Sprintf("ip daddr %s meta l4proto %s th dport %d ip saddr != %s jump %s %s", sp.ClusterIP, p, sp.Port,
			cfg.ClusterCIDR, chainMarkMasq, nftComment(sname+" cluster IP from outside the cluster CIDR")))
	}
	if sp.AffinityTimeout > 0 {
		for _, e := range eps {
			ch.Rules = append(ch.Rules, fmt.Sprintf("ip saddr @%s goto %s %s", affSet(key, e, sp.AffinityTimeout), sepChain(key, e),
				nftComment(sname+" -> "+e.Addr()+" affinity")))
		}
	}
	n := len(eps)
	for i, e := range eps {
		cond := ""
		if i < n-1 {
			cond = fmt.Sprintf("numgen random mod %d 0 ", n-i)
		}
		action := fmt.Sprintf("meta l4proto %s dnat to %s", p, e.Addr())
		if sp.AffinityTimeout > 0 {
			action = "goto " + sepChain(key, e)
		}
		ch.Rules = append(ch.Rules, fmt.Sprintf("%s%s %s", cond, action, nftComment(sname+" -> "+e.Addr())))
	}
	return ch
}

// nftLBRules renders a shared balancing chain from its name.
func nftLBRules(name string, cfg RenderConfig, gen int) []string {
	p, local, n, ok := parseLBChain(name)
	if !ok {
		return nil
	}
	var rules []string
	if cfg.ClusterCIDR != "" {
		rules = append(rules, fmt.Sprintf("ip saddr != %s jump %s %s", cfg.ClusterCIDR, chainMarkMasq,
			nftComment("cluster IP from outside the cluster CIDR")))
	}
	return append(rules, fmt.Sprintf("dnat ip to ip daddr . %s dport . numgen random mod %d map @%s %s", p, n, nftPhys(nftEndpointMap(p, local), gen),
		nftComment(fmt.Sprintf("balance over %d endpoints", n))))
}

// nftSmallMaps declares the shared maps and sets rewritten by text in
// every full sync (affinity sets are per port and keep their clients).
func nftSmallMaps() []string {
	return []string{
		fmt.Sprintf("map %s {\n\t\ttype inet_proto . inet_service : verdict\n\t}", nftNodePorts),
		fmt.Sprintf("set %s {\n\t\ttype ipv4_addr . ipv4_addr\n\t}", nftHairpin),
	}
}

// nftGenMaps declares generation gen of the big shared maps: service-ips
// and the endpoint maps.
func nftGenMaps(gen int) []string {
	decl := []string{fmt.Sprintf("map %s {\n\t\ttype ipv4_addr . inet_proto . inet_service : verdict\n\t}", nftPhys(nftServiceIPs, gen))}
	for _, p := range nftProtos {
		for _, local := range []bool{false, true} {
			decl = append(decl, fmt.Sprintf("map %s {\n\t\ttypeof ip daddr . %s dport . numgen random mod 1 : ip daddr . %s dport\n\t}",
				nftPhys(nftEndpointMap(p, local), gen), p, p))
		}
	}
	return decl
}

// nftGenNames are the logical names of the generational maps.
func nftGenNames() []string {
	names := []string{nftServiceIPs}
	for _, p := range nftProtos {
		names = append(names, nftEndpointMap(p, false), nftEndpointMap(p, true))
	}
	return names
}

// nftFilterChains are the filter table's chains: base chains hooking
// netfilter and the two refusal chains.
func nftFilterChains(filterSvc, filterExt []string) []Chain {
	return []Chain{
		{Name: "filter-input", Rules: []string{"type filter hook input priority filter; policy accept;",
			"ct state new jump " + nftFilterExt + " " + nftComment("kubelab external services")}},
		{Name: "filter-forward", Rules: []string{"type filter hook forward priority filter; policy accept;",
			"ct state new jump " + nftFilterSvc + " " + nftComment("kubelab service portals"),
			"ct state new jump " + nftFilterExt + " " + nftComment("kubelab external services")}},
		{Name: "filter-output", Rules: []string{"type filter hook output priority filter; policy accept;",
			"ct state new jump " + nftFilterSvc + " " + nftComment("kubelab service portals"),
			"ct state new jump " + nftFilterExt + " " + nftComment("kubelab external services")}},
		{Name: nftFilterSvc, Rules: filterSvc},
		{Name: nftFilterExt, Rules: filterExt},
	}
}

// nftFixedChains are the nat chains every ruleset has: base chains hooking
// netfilter, dispatch and masquerade.
func nftFixedChains(cfg RenderConfig, gen int) []Chain {
	services := Chain{Name: chainServices, Rules: []string{
		fmt.Sprintf("ip daddr . meta l4proto . th dport vmap @%s %s", nftPhys(nftServiceIPs, gen), nftComment("kubelab service portals")),
	}}
	for _, ip := range nodePortIPs(cfg) {
		services.Rules = append(services.Rules, fmt.Sprintf("ip daddr %s meta l4proto . th dport vmap @%s %s", ip, nftNodePorts,
			nftComment("kubelab service nodeports")))
	}
	return []Chain{
		{Name: "nat-prerouting", Rules: []string{"type nat hook prerouting priority dstnat; policy accept;", "jump " + chainServices}},
		{Name: "nat-output", Rules: []string{"type nat hook output priority -100; policy accept;", "jump " + chainServices}},
		{Name: "nat-postrouting", Rules: []string{"type nat hook postrouting priority srcnat; policy accept;", "jump " + chainPostrouting}},
		services,
		{Name: chainMarkMasq, Rules: []string{"meta mark set meta mark | " + masqMark}},
		{Name: chainPostrouting, Rules: []string{
			fmt.Sprintf("ct status dnat ip saddr . ip daddr @%s masquerade fully-random %s", nftHairpin, nftComment("kubelab hairpin traffic")),
			fmt.Sprintf("meta mark & %s != %s return", masqMark, masqMark),
			fmt.Sprintf("meta mark set meta mark ^ %s", masqMark),
			"masquerade fully-random " + nftComment("kubelab service traffic requiring SNAT"),
		}},
	}
}

func nftSetDecl(s NftSet) string {
	return fmt.Sprintf("set %s {\n\t\ttype ipv4_addr\n\t\tflags dynamic,timeout\n\t\ttimeout %ds\n\t}", s.Name, s.Timeout)
}

// writeNftBlock writes `table ip kubelab { ... }` declaring sets and chains
// (rules appended to chains that exist; callers flush them first).
func writeNftBlock(b *strings.Builder, table string, decls []string, chains []Chain) {
	if len(decls) == 0 && len(chains) == 0 {
		return
	}
	b.WriteString("table " + nftFamily + " " + table + " {\n")
	for _, d := range decls {
		b.WriteString("\t" + d + "\n")
	}
	for _, c := range chains {
		b.WriteString("\tchain " + c.Name + " {\n")
		for _, r := range c.Rules {
			b.WriteString("\t\t" + r + "\n")
		}
		b.WriteString("\t}\n")
	}
	b.WriteString("}\n")
}

// writeNftElems writes one `add element` (or delete) command per map.
func writeNftElems(b *strings.Builder, verb string, elems []NftElem, gen int) {
	byMap := map[string][]NftElem{}
	var maps []string
	for _, e := range elems {
		if _, ok := byMap[e.Map]; !ok {
			maps = append(maps, e.Map)
		}
		byMap[e.Map] = append(byMap[e.Map], e)
	}
	sort.Strings(maps)
	for _, m := range maps {
		b.WriteString(verb + " element " + nftFamily + " " + nftTable + " " + nftPhys(m, gen) + " {\n")
		for i, e := range byMap[m] {
			b.WriteString("\t")
			b.WriteString(e.Key)
			if verb == "add" {
				if e.Comment != "" {
					b.WriteString(" " + nftComment(e.Comment))
				}
				if e.Value != "" {
					b.WriteString(" : " + e.Value)
				}
			}
			if i < len(byMap[m])-1 {
				b.WriteString(",\n")
			} else {
				b.WriteString("\n")
			}
		}
		b.WriteString("}\n")
	}
}

// NftRuleset is a complete nft ruleset: shared chains, per-port objects.
type NftRuleset struct {
	Cfg   RenderConfig
	Ports []*NftPort // sorted by Key
	Gen   int        // generation of the big maps
}

// filterRules collects the refusal rules of all ports (in Ports' order).
func (r *NftRuleset) filterRules() (svc, ext []string) {
	for _, p := range r.Ports {
		svc = append(svc, p.FilterServices...)
		ext = append(ext, p.FilterExternal...)
	}
	return svc, ext
}

// Script renders the full-sync transaction: flush the tables' rules and the
// small shared maps, declare everything, fill the maps (the generational
// ones only unless bulk: then they were loaded over netlink before), then
// delete the stale sets and chains named (found in the kernel, not in the
// ruleset; "set NAME" or "map NAME" for sets).
func (r *NftRuleset) Script(staleChains, staleSets []string, bulk bool) string {
	var b strings.Builder
	b.Grow(r.sizeHint())
	fmt.Fprintf(&b, "add table %s %s\nflush table %s %s\n", nftFamily, nftTable, nftFamily, nftTable)
	// Declare the maps before flushing them: the flush needs them to exist.
	writeNftBlock(&b, nftTable, append(nftSmallMaps(), nftGenMaps(r.Gen)...), nil)
	fmt.Fprintf(&b, "flush map %s %s %s\n", nftFamily, nftTable, nftNodePorts)
	fmt.Fprintf(&b, "flush set %s %s %s\n", nftFamily, nftTable, nftHairpin)
	if !bulk {
		for _, m := range nftGenNames() {
			fmt.Fprintf(&b, "flush map %s %s %s\n", nftFamily, nftTable, nftPhys(m, r.Gen))
		}
	}
	chains := nftFixedChains(r.Cfg, r.Gen)
	lbs := map[string]bool{}
	var decls []string
	var elems []NftElem
	hair := map[string]bool{}
	var own []Chain
	for _, p := range r.Ports {
		for _, l := range p.LB {
			lbs[l] = true
		}
		for _, s := range p.Sets {
			decls = append(decls, nftSetDecl(s))
		}
		own = append(own, p.Chains...)
		all := p.Elems
		if !bulk {
			all = p.AllElems() // with the endpoint-map elements
		}
		for _, e := range all {
			if !bulk || !generational(e.Map) {
				elems = append(elems, e)
			}
		}
		for _, ip := range p.Targets {
			hair[ip] = true
		}
	}
	for _, l := range sortedKeys(lbs) {
		chains = append(chains, Chain{Name: l, Rules: nftLBRules(l, r.Cfg, r.Gen)})
	}
	chains = append(chains, own...)
	writeNftBlock(&b, nftTable, decls, chains)
	fmt.Fprintf(&b, "add table %s %s\nflush table %s %s\n", nftFamily, nftFilterTable, nftFamily, nftFilterTable)
	writeNftBlock(&b, nftFilterTable, nil, nftFilterChains(r.filterRules()))
	for _, ip := range sortedKeys(hair) {
		elems = append(elems, NftElem{Map: nftHairpin, Key: ip + " . " + ip})
	}
	writeNftElems(&b, "add", elems, r.Gen)
	// Sets first: an old generation's service-ips still references chains.
	for _, s := range staleSets {
		kind, name, _ := strings.Cut(s, " ")
		fmt.Fprintf(&b, "delete %s %s %s %s\n", kind, nftFamily, nftTable, name)
	}
	for _, c := range staleChains {
		fmt.Fprintf(&b, "delete chain %s %s %s\n", nftFamily, nftTable, c)
	}
	return b.String()
}

// bulkElems returns the generational maps' elements in kernel encoding,
// keyed by physical map name.
func (r *NftRuleset) bulkElems() (map[string]*nlSet, error) {
	// Size every endpoint map's buffer once: they reach megabytes.
	count := map[string]int{}
	for _, p := range r.Ports {
		if l := p.LBEps; l != nil {
			count[nftPhys(l.Map, r.Gen)] += len(l.Eps)
		}
	}
	out := map[string]*nlSet{}
	for m, n := range count {
		out[m] = newNlSet(n)
	}
	set := func(m string) *nlSet {
		s := out[m]
		if s == nil {
			s = &nlSet{}
			out[m] = s
		}
		return s
	}
	for _, p := range r.Ports {
		if l := p.LBEps; l != nil {
			if err := l.appendEncoded(set(nftPhys(l.Map, r.Gen))); err != nil {
				return nil, fmt.Errorf("%s: %w", p.Key, err)
			}
		}
		for _, e := range p.Elems {
			if !generational(e.Map) {
				continue
			}
			ne, err := encodeElem(e)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", p.Key, err)
			}
			set(nftPhys(e.Map, r.Gen)).add(ne, false)
		}
	}
	return out, nil
}

func (r *NftRuleset) sizeHint() int {
	n := 4096
	for _, p := range r.Ports {
		n += 48 * p.numElems()
		n += textSize(p.Chains) + 64*len(p.Sets)
	}
	return n
}

// Names returns every chain and set name the ruleset declares in the
// kubelab table.
func (r *NftRuleset) Names() (chains, sets map[string]bool) {
	chains, sets = map[string]bool{}, map[string]bool{}
	for _, c := range nftFixedChains(r.Cfg, r.Gen) {
		chains[c.Name] = true
	}
	sets[nftNodePorts], sets[nftHairpin] = true, true
	for _, m := range nftGenNames() {
		sets[nftPhys(m, r.Gen)] = true
	}
	for _, p := range r.Ports {
		for _, l := range p.LB {
			chains[l] = true
		}
		for _, c := range p.Chains {
			chains[c.Name] = true
		}
		for _, s := range p.Sets {
			sets[s.Name] = true
		}
	}
	return chains, sets
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// RenderAllNft is the pure function from Service ports and their choices to
// the full nft ruleset (ports and choices are parallel slices).
func RenderAllNft(ports []ServicePort, choices []Choice, cfg RenderConfig) *NftRuleset {
	r := &NftRuleset{Cfg: cfg}
	for i := range ports {
		np := RenderPortNft(ports[i], choices[i], cfg)
		r.Ports = append(r.Ports, &np)
	}
	sort.Slice(r.Ports, func(i, j int) bool { return r.Ports[i].Key < r.Ports[j].Key })
	return r
}

// parseNftNames reads the chain names and the sets ("set NAME", "map NAME")
// of the kubelab table from `nft list chains|sets|maps ip` output (which
// shows every table).
func parseNftNames(out string) (chains, sets []string) {
	ours := false
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) < 3 || f[len(f)-1] != "{" {
			continue
		}
		if f[0] == "table" {
			ours = len(f) == 4 && f[1] == nftFamily && f[2] == nftTable
			continue
		}
		if !ours {
			continue
		}
		switch f[0] {
		case "chain":
			chains = append(chains, f[1])
		case "set", "map":
			sets = append(sets, f[0]+" "+f[1])
		}
	}
	return chains, sets
}

// parseNftRefusal reads one rule line of `nft list chain` for a refusal
// chain, e.g. `ip daddr 10.96.0.12 tcp dport 80 counter packets 3 bytes 180
// reject with tcp reset comment "default/empty:http has no endpoints"`.
func parseNftRefusal(chain, line string) (refusal, bool) {
	r := refusal{chain: chain}
	_, after, ok := strings.Cut(line, "counter packets ")
	if !ok {
		return r, false
	}
	pk, rest, _ := strings.Cut(after, " ")
	n, err := strconv.ParseUint(pk, 10, 64)
	if err != nil {
		return r, false
	}
	switch {
	case strings.Contains(rest, " reject"):
		r.action = "REJECT"
	case strings.Contains(rest, " drop"):
		r.action = "DROP"
	default:
		return r, false
	}
	return r.withComment(rest, `comment "`, n)
}
