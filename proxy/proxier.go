package proxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

// Config configures a Proxier. Zero values get the defaults noted.
type Config struct {
	// NodeName is this node's name, compared with EndpointSlice nodeName.
	NodeName string
	// NodeIP is the node's InternalIP; NodePorts answer on it and on 127.0.0.1.
	NodeIP net.IP
	// ClusterCIDR (pod network, e.g. "10.244.0.0/16"): ClusterIP traffic from
	// outside it is masqueraded; pod traffic to an ETP Local external
	// destination is sent to cluster-wide endpoints. Empty disables both.
	ClusterCIDR string
	// ServiceCIDR (e.g. "10.96.0.0/12"), informational (shown in logs).
	ServiceCIDR string
	// NoLocalEndpoints: "reject" (default) or "drop", for internal traffic of
	// an internalTrafficPolicy Local Service with no endpoint on this node.
	NoLocalEndpoints string
	// ServiceInternalTrafficPolicy is the feature gate (pass true unless the
	// gate is turned off). false: every Service is Cluster for internal traffic.
	ServiceInternalTrafficPolicy bool
	// MinSyncInterval coalesces bursts of changes (default 100ms).
	MinSyncInterval time.Duration
	// FullSyncInterval forces a full resync (default 1m).
	FullSyncInterval time.Duration
	// Registerer receives the metrics; nil registers nothing.
	Registerer prometheus.Registerer
	// Executor runs iptables, conntrack and sysctl (default HostExecutor()).
	Executor Executor
	// Backend forces the iptables flavour, "nft" or "legacy"; empty detects
	// it. Only for Mode iptables.
	Backend Backend
	// Mode is the data path: "iptables" (the default: iptables-restore, chains
	// per Service like kube-proxy's iptables mode), "nftables" (one `nft -f`
	// transaction per sync, map-based dispatch that scales to 10,000s of
	// Services; see nftables.go) or "auto" (nftables when the nft tool exists).
	Mode string
	// Logger defaults to slog.Default().
	Logger *slog.Logger
}

// Proxier programs one node's iptables from Services and EndpointSlices.
type Proxier struct {
	cfg    Config
	rcfg   RenderConfig
	client kubernetes.Interface
	ipt    *ipt
	log    *slog.Logger
	m      *metrics

	// Informer-fed state.
	mu       sync.Mutex
	services map[string]*corev1.Service
	slices   map[string][]*discovery.EndpointSlice // service key -> its slices
	dirty    map[string]bool
	needFull bool
	signal   chan struct{}

	// Programmed state, owned by the sync goroutine; stateMu guards readers.
	syncMu   sync.Mutex // one sync at a time
	stateMu  sync.RWMutex
	ports    map[string]*portState // port key
	svcPorts map[string][]string   // service key -> port keys
	written  map[string]string     // "table/chain" of shared chains -> rules last written
	booted   bool
	syncs    int
	lastErr  error

	nlInternal, nlExternal int // ports without local endpoints, for metrics

	// nftables mode (nft is true): what the kernel holds besides per-port
	// objects, so a partial sync writes only differences.
	nft       bool
	nftLB     map[string]int          // shared balancing chain -> ports using it
	nftHair   map[string]int          // endpoint IP -> ports using it (hairpin set)
	nftFilter map[string]string       // refusal chain -> rules last written
	nftGen    int                     // generation of the big maps in the kernel
	from      map[string]renderedFrom // service key -> input of its port states
	nlPending *nlOps                  // element-only partial sync, for netlink

	counters refusalCounter
}

// renderedFrom is the input a Service's port states were computed from.
type renderedFrom struct {
	svc    *corev1.Service
	slices []*discovery.EndpointSlice
}

func (a renderedFrom) same(b renderedFrom) bool {
	if a.svc != b.svc || len(a.slices) != len(b.slices) {
		return false
	}
	for _, s := range b.slices {
		if !slices.Contains(a.slices, s) {
			return false
		}
	}
	return true
}

type portState struct {
	sp     ServicePort
	choice Choice
	rules  *PortRules // iptables mode
	nft    *NftPort   // nftables mode
}

// targets are the DNAT target IPs of whichever mode rendered the port.
func (ps *portState) targets() []string {
	if ps.rules != nil {
		return ps.rules.Targets
	}
	if ps.nft != nil {
		return ps.nft.Targets
	}
	return nil
}

// New validates cfg, detects the iptables backend and returns a Proxier.
// Nothing is changed on the node until Run.
func New(client kubernetes.Interface, cfg Config) (*Proxier, error) {
	if cfg.NodeName == "" {
		return nil, errors.New("proxy: NodeName is required")
	}
	switch cfg.NoLocalEndpoints {
	case "":
		cfg.NoLocalEndpoints = "reject"
	case "reject", "drop":
	default:
		return nil, fmt.Errorf("proxy: NoLocalEndpoints must be reject or drop, not %q", cfg.NoLocalEndpoints)
	}
	if cfg.NodeIP != nil && cfg.NodeIP.To4() == nil {
		return nil, fmt.Errorf("proxy: NodeIP %s is not IPv4", cfg.NodeIP)
	}
	if cfg.ClusterCIDR != "" {
		if _, n, err := net.ParseCIDR(cfg.ClusterCIDR); err != nil {
			return nil, fmt.Errorf("proxy: ClusterCIDR: %w", err)
		} else {
			cfg.ClusterCIDR = n.String()
		}
	}
	if cfg.MinSyncInterval <= 0 {
		cfg.MinSyncInterval = 100 * time.Millisecond
	}
	if cfg.FullSyncInterval <= 0 {
		cfg.FullSyncInterval = time.Minute
	}
	if cfg.Executor == nil {
		cfg.Executor = HostExecutor()
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	ctx := context.Background()
	switch cfg.Mode {
	case "", ModeIptables:
		cfg.Mode = ModeIptables
	case ModeNftables:
		if _, err := cfg.Executor.ToolPath("nft"); err != nil {
			return nil, fmt.Errorf("proxy: mode nftables: %w", err)
		}
	case ModeAuto:
		cfg.Mode = ModeIptables
		if _, err := cfg.Executor.ToolPath("nft"); err == nil {
			cfg.Mode = ModeNftables
		}
	default:
		return nil, fmt.Errorf("proxy: Mode must be iptables, nftables or auto, not %q", cfg.Mode)
	}
	// The iptables tools are needed in iptables mode, and in nftables mode
	// only to remove rules an iptables-mode run left behind.
	var t *ipt
	b, err := cfg.Backend, error(nil)
	if b == "" {
		b, err = DetectBackend(ctx, cfg.Executor)
	}
	if err == nil {
		t, err = newIPT(ctx, cfg.Executor, b)
	}
	if err != nil {
		if cfg.Mode == ModeIptables {
			return nil, fmt.Errorf("proxy: %w", err)
		}
		b = ""
	}
	cfg.Backend = b
	p := &Proxier{
		nft:   cfg.Mode == ModeNftables,
		nftLB: map[string]int{}, nftHair: map[string]int{}, nftFilter: map[string]string{},
		cfg: cfg, client: client, ipt: t, log: cfg.Logger.With("component", "proxy"),
		services: map[string]*corev1.Service{},
		slices:   map[string][]*discovery.EndpointSlice{},
		dirty:    map[string]bool{}, needFull: true,
		signal: make(chan struct{}, 1),
		ports:  map[string]*portState{}, svcPorts: map[string][]string{}, written: map[string]string{},
		from: map[string]renderedFrom{},
	}
	p.rcfg = RenderConfig{ClusterCIDR: cfg.ClusterCIDR, DropNoLocal: cfg.NoLocalEndpoints == "drop"}
	if cfg.NodeIP != nil {
		p.rcfg.NodeIP = cfg.NodeIP.To4().String()
	}
	p.counters.last = map[string]uint64{}
	p.counters.totals = map[refusalKey]uint64{}
	p.m = newMetrics(p)
	if cfg.Registerer != nil {
		if err := p.m.register(cfg.Registerer); err != nil {
			return nil, fmt.Errorf("proxy: register metrics: %w", err)
		}
	}
	return p, nil
}

// The data path modes (Config.Mode).
const (
	ModeIptables = "iptables"
	ModeNftables = "nftables"
	ModeAuto     = "auto"
)

// Mode reports the data path in use, "iptables" or "nftables".
func (p *Proxier) Mode() string { return p.cfg.Mode }

// Backend reports the iptables backend in use.
func (p *Proxier) Backend() Backend { return p.cfg.Backend }

// Run watches Services and EndpointSlices and keeps the rules in step until
// ctx ends. Rules stay in place when it returns (connections keep working
// across an agent restart); Cleanup removes them.
func (p *Proxier) Run(ctx context.Context) error {
	p.log.Info("starting service proxy", "node", p.cfg.NodeName, "mode", p.cfg.Mode, "backend", p.cfg.Backend,
		"clusterCIDR", p.cfg.ClusterCIDR, "serviceCIDR", p.cfg.ServiceCIDR, "noLocalEndpoints", p.cfg.NoLocalEndpoints,
		"itpGate", p.cfg.ServiceInternalTrafficPolicy)
	f := informers.NewSharedInformerFactory(p.client, 0)
	svcInf := f.Core().V1().Services().Informer()
	epsInf := f.Discovery().V1().EndpointSlices().Informer()
	if _, err := svcInf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(o any) { p.onService(o, false) },
		UpdateFunc: func(_, o any) { p.onService(o, false) },
		DeleteFunc: func(o any) { p.onService(o, true) },
	}); err != nil {
		return err
	}
	if _, err := epsInf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(o any) { p.onSlice(o, false) },
		UpdateFunc: func(_, o any) { p.onSlice(o, false) },
		DeleteFunc: func(o any) { p.onSlice(o, true) },
	}); err != nil {
		return err
	}
	f.Start(ctx.Done())
	defer f.Shutdown()
	if !cache.WaitForCacheSync(ctx.Done(), svcInf.HasSynced, epsInf.HasSynced) {
		return ctx.Err()
	}
	p.kick()
	full := time.NewTicker(p.cfg.FullSyncInterval)
	defer full.Stop()
	var last time.Time
	var retry <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-p.signal:
		case <-retry:
		case <-full.C:
			p.mu.Lock()
			p.needFull = true
			p.mu.Unlock()
		}
		if d := time.Until(last.Add(p.cfg.MinSyncInterval)); d > 0 {
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(d):
			}
		}
		last = time.Now()
		retry = nil
		if err := p.Sync(ctx); err != nil {
			p.log.Error("sync proxy rules", "err", err)
			retry = time.After(time.Second)
		}
	}
}

func (p *Proxier) kick() {
	select {
	case p.signal <- struct{}{}:
	default:
	}
}

func objKey(ns, name string) string { return ns + "/" + name }

func (p *Proxier) onService(o any, deleted bool) {
	if d, ok := o.(cache.DeletedFinalStateUnknown); ok {
		o, deleted = d.Obj, true
	}
	svc, ok := o.(*corev1.Service)
	if !ok {
		return
	}
	k := objKey(svc.Namespace, svc.Name)
	p.mu.Lock()
	if deleted {
		delete(p.services, k)
	} else {
		p.services[k] = svc
	}
	p.dirty[k] = true
	p.mu.Unlock()
	p.kick()
}

func (p *Proxier) onSlice(o any, deleted bool) {
	if d, ok := o.(cache.DeletedFinalStateUnknown); ok {
		o, deleted = d.Obj, true
	}
	s, ok := o.(*discovery.EndpointSlice)
	if !ok {
		return
	}
	svcName := s.Labels[discovery.LabelServiceName]
	if svcName == "" {
		return
	}
	k := objKey(s.Namespace, svcName)
	p.mu.Lock()
	// A Service has a few slices: a short list beats a map per Service.
	// Lists are never changed in place (a sync reads them unlocked).
	old := p.slices[k]
	list := make([]*discovery.EndpointSlice, 0, len(old)+1)
	for _, o := range old {
		if o.Name != s.Name {
			list = append(list, o)
		}
	}
	if !deleted {
		list = append(list, s)
	}
	if len(list) == 0 {
		delete(p.slices, k)
	} else {
		p.slices[k] = list
	}
	p.dirty[k] = true
	p.mu.Unlock()
	p.kick()
}

// Sync applies pending changes now: a partial sync rewriting only changed
// Services' chains, or a full one when due or after an error.
func (p *Proxier) Sync(ctx context.Context) error {
	p.syncMu.Lock()
	defer p.syncMu.Unlock()
	start := time.Now()

	p.mu.Lock()
	full := p.needFull || !p.booted
	var keys []string
	if full {
		for k := range p.services {
			keys = append(keys, k)
		}
		for k := range p.svcPorts {
			if _, ok := p.services[k]; !ok {
				keys = append(keys, k)
			}
		}
	} else {
		for k := range p.dirty {
			keys = append(keys, k)
		}
	}
	type input struct {
		svc    *corev1.Service
		slices []*discovery.EndpointSlice
	}
	inputs := make(map[string]input, len(keys))
	for _, k := range keys {
		in := input{svc: p.services[k]}
		in.slices = p.slices[k]
		inputs[k] = in
	}
	p.dirty = map[string]bool{}
	p.needFull = false
	p.mu.Unlock()

	fail := func(err error) error {
		p.mu.Lock()
		p.needFull = true
		p.mu.Unlock()
		p.stateMu.Lock()
		p.lastErr = err
		p.stateMu.Unlock()
		p.m.restoreFailures.Inc()
		return err
	}

	// Compute new per-port state for the affected Services.
	newPorts := map[string]*portState{}
	newSvcPorts := map[string][]string{}
	changed := make(map[string]bool, len(inputs))
	from := make(map[string]renderedFrom, len(inputs))
	for k, in := range inputs {
		changed[k] = true
		rf := renderedFrom{svc: in.svc, slices: in.slices}
		from[k] = rf
		// Informers replace objects on every change, so identical pointers
		// mean identical input: the pure choice and rendering are reused
		// (the kernel state is still rewritten in full).
		if old, ok := p.from[k]; ok && in.svc != nil && old.same(rf) {
			p.stateMu.RLock()
			for _, pk := range p.svcPorts[k] {
				newPorts[pk] = p.ports[pk]
			}
			newSvcPorts[k] = p.svcPorts[k]
			p.stateMu.RUnlock()
			continue
		}
		var pk []string
		if in.svc != nil {
			for _, sp := range servicePorts(in.svc) {
				eps := endpointsFor(in.slices, sp.PortName, sp.Protocol)
				c := Choose(sp, eps, p.cfg.NodeName, p.cfg.ServiceInternalTrafficPolicy)
				ps := &portState{sp: sp, choice: c}
				if p.nft {
					np := RenderPortNft(sp, c, p.rcfg)
					ps.nft = &np
				} else {
					pr := RenderPort(sp, c, p.rcfg)
					ps.rules = &pr
				}
				newPorts[sp.Key()] = ps
				pk = append(pk, sp.Key())
			}
		}
		newSvcPorts[k] = pk
	}

	var res applyResult
	var err error
	if p.nft {
		res, err = p.applyNft(ctx, full, changed, newPorts)
	} else {
		res, err = p.applyIptables(ctx, full, changed, newPorts)
	}
	if err != nil {
		return fail(err)
	}
	if full && !p.booted {
		p.cleanupOtherMode(ctx)
		if p.rcfg.NodeIP != "" {
			if err := setRouteLocalnet(ctx, p.cfg.Executor); err != nil {
				p.log.Warn("cannot enable route_localnet; NodePorts on 127.0.0.1 will not work", "err", err)
			}
		}
	}

	// Commit the new state.
	p.stateMu.Lock()
	countNoLocal := func(ps *portState, d int) {
		if ps.choice.Internal.Verdict == VerdictNoLocalEndpoints {
			p.nlInternal += d
		}
		if ps.choice.External != nil && ps.choice.External.Verdict == VerdictNoLocalEndpoints {
			p.nlExternal += d
		}
	}
	for k := range inputs {
		for _, old := range p.svcPorts[k] {
			countNoLocal(p.ports[old], -1)
			delete(p.ports, old)
		}
		delete(p.svcPorts, k)
		if len(newSvcPorts[k]) > 0 {
			p.svcPorts[k] = newSvcPorts[k]
		}
	}
	for k, ps := range newPorts {
		p.ports[k] = ps
		countNoLocal(ps, 1)
	}
	if res.written != nil {
		p.written = res.written
	}
	if full {
		p.from = from // deleted Services drop out of the cache here
	} else {
		for k, rf := range from {
			if rf.svc == nil {
				delete(p.from, k)
			} else {
				p.from[k] = rf
			}
		}
	}
	p.booted = true
	p.syncs++
	p.lastErr = nil
	nlInternal, nlExternal := p.nlInternal, p.nlExternal
	p.stateMu.Unlock()

	p.flushConntrack(ctx, res.udpOld, newPorts)

	d := time.Since(start).Seconds()
	p.m.syncDuration.Observe(d)
	if full {
		p.m.fullDuration.Observe(d)
	} else {
		p.m.partialDuration.Observe(d)
	}
	p.m.lastTimestamp.SetToCurrentTime()
	if res.nat >= 0 {
		p.m.rules.WithLabelValues("nat").Set(float64(res.nat))
		p.m.rules.WithLabelValues("filter").Set(float64(res.filter))
	}
	p.m.noLocal.WithLabelValues("internal").Set(float64(nlInternal))
	p.m.noLocal.WithLabelValues("external").Set(float64(nlExternal))
	p.log.Debug("synced proxy rules", "kind", syncKind(full), "services", len(inputs), "bytes", res.bytes, "took", time.Since(start))
	return nil
}

// applyResult is what a backend's apply reports back to Sync.
type applyResult struct {
	udpOld      []*portState      // UDP ports rewritten or removed (conntrack)
	written     map[string]string // iptables: shared chains as written
	nat, filter int               // rule counts (-1: unchanged)
	bytes       int
}

// oldUDPPorts lists the programmed UDP ports of the changed Services, whose
// DNAT targets may have gone. stateMu must be held.
func (p *Proxier) oldUDPPortsLocked(changed map[string]bool) (udpOld []*portState) {
	for k := range changed {
		for _, old := range p.svcPorts[k] {
			ops := p.ports[old]
			if ops.sp.Protocol == corev1.ProtocolUDP {
				udpOld = append(udpOld, ops)
			}
		}
	}
	return udpOld
}

// applyIptables writes the iptables ruleset (full) or the changed Services'
// chains and the shared chains that changed (partial) in one
// iptables-restore --noflush transaction.
func (p *Proxier) applyIptables(ctx context.Context, full bool, inputs map[string]bool, newPorts map[string]*portState) (applyResult, error) {
	res := applyResult{}
	p.stateMu.RLock()
	var natW []Chain
	var natDel []string
	res.udpOld = p.oldUDPPortsLocked(inputs)
	for k := range inputs {
		for _, old := range p.svcPorts[k] {
			ops := p.ports[old]
			nps := newPorts[old]
			keep := map[string]bool{}
			if nps != nil {
				for _, c := range nps.rules.NatChains {
					keep[c.Name] = true
				}
			}
			for _, c := range ops.rules.NatChains {
				if !keep[c.Name] {
					natDel = append(natDel, c.Name)
				}
			}
		}
	}
	// The full port set after this sync, in key order, for the shared chains.
	all := make([]*PortRules, 0, len(p.ports)+len(newPorts))
	allKeys := make([]string, 0, len(p.ports)+len(newPorts))
	for k := range p.ports {
		if _, gone := inputs[svcOfPort(p.ports[k].sp)]; !gone {
			allKeys = append(allKeys, k)
		}
	}
	for k := range newPorts {
		allKeys = append(allKeys, k)
	}
	sort.Strings(allKeys)
	for _, k := range allKeys {
		if ps, ok := newPorts[k]; ok {
			all = append(all, ps.rules)
		} else {
			all = append(all, p.ports[k].rules)
		}
	}
	p.stateMu.RUnlock()

	if full {
		for _, ps := range all {
			natW = append(natW, ps.NatChains...)
		}
	} else {
		for _, ps := range newPorts {
			natW = append(natW, ps.rules.NatChains...)
		}
	}
	topNat, topFilter := topChains(all, p.rcfg)
	written := map[string]string{}
	var natTopW, filterW []Chain
	for _, c := range topNat {
		t := strings.Join(c.Rules, "\n")
		written["nat/"+c.Name] = t
		if old, ok := p.written["nat/"+c.Name]; full || !ok || old != t {
			natTopW = append(natTopW, c)
		}
	}
	for _, c := range topFilter {
		t := strings.Join(c.Rules, "\n")
		written["filter/"+c.Name] = t
		if old, ok := p.written["filter/"+c.Name]; full || !ok || old != t {
			filterW = append(filterW, c)
		}
	}
	var filterDel []string
	if full {
		// Stale chains: whatever KUBELAB- chain exists that we do not write.
		want := map[string]bool{}
		for _, c := range topNat {
			want[c.Name] = true
		}
		for _, c := range natW {
			want[c.Name] = true
		}
		natDel = natDel[:0]
		save, err := p.ipt.save(ctx, "nat", false)
		if err != nil {
			return res, fmt.Errorf("list nat chains: %w", err)
		}
		for _, c := range existingChains(save) {
			if !want[c] {
				natDel = append(natDel, c)
			}
		}
		fwant := map[string]bool{}
		for _, c := range topFilter {
			fwant[c.Name] = true
		}
		save, err = p.ipt.save(ctx, "filter", false)
		if err != nil {
			return res, fmt.Errorf("list filter chains: %w", err)
		}
		for _, c := range existingChains(save) {
			if !fwant[c] {
				filterDel = append(filterDel, c)
			}
		}
	} else {
		for k := range p.written {
			if _, ok := written[k]; !ok && strings.HasPrefix(k, "nat/") {
				natDel = append(natDel, strings.TrimPrefix(k, "nat/"))
			}
		}
	}

	var b strings.Builder
	natAll := append(natTopW, natW...)
	b.Grow(textSize(filterW) + textSize(natAll) + 64*(len(filterDel)+len(natDel)))
	writeTable(&b, "filter", filterW, filterDel)
	writeTable(&b, "nat", natAll, natDel)
	text := b.String()
	res.bytes = len(text)

	if text != "" {
		p.counters.mu.Lock()
		if len(filterW) > 0 {
			// Fold in the packet counts of refusal rules about to be replaced.
			if err := p.observeCountersLocked(ctx); err != nil {
				p.log.Debug("read refusal counters", "err", err)
			}
		}
		err := p.ipt.restore(ctx, text)
		if err == nil {
			for _, c := range filterW {
				p.counters.resetChainLocked(c.Name)
			}
		}
		p.counters.mu.Unlock()
		if err != nil {
			return res, fmt.Errorf("iptables-restore (%s sync): %w", syncKind(full), err)
		}
	}
	if full {
		if err := p.ipt.ensureJumps(); err != nil {
			return res, err
		}
	}
	res.written = written
	for _, ps := range all {
		for _, c := range ps.NatChains {
			res.nat += len(c.Rules)
		}
	}
	for _, c := range topNat {
		res.nat += len(c.Rules)
	}
	for _, c := range topFilter {
		res.filter += len(c.Rules)
	}
	return res, nil
}

func syncKind(full bool) string {
	if full {
		return "full"
	}
	return "partial"
}

func svcOfPort(sp ServicePort) string { return objKey(sp.Namespace, sp.Name) }

// flushConntrack removes UDP conntrack entries that would keep sending
// datagrams to endpoints that went away (UDP has no connection to reset),
// and entries made while a port had no endpoints.
func (p *Proxier) flushConntrack(ctx context.Context, old []*portState, newPorts map[string]*portState) {
	for _, ops := range old {
		nps := newPorts[ops.sp.Key()]
		var now []string
		if nps != nil {
			now = nps.targets()
		}
		dsts := []string{ops.sp.ClusterIP}
		dsts = append(dsts, ops.sp.ExternalIPs...)
		dsts = append(dsts, ops.sp.LoadBalancerIPs...)
		for _, ip := range ops.targets() {
			if slices.Contains(now, ip) {
				continue
			}
			for _, d := range dsts {
				if err := conntrackDelete(ctx, p.cfg.Executor, "-p", "udp", "--orig-dst", d, "--dst-nat", ip); err != nil {
					p.log.Warn("flush conntrack", "service", ops.sp.String(), "endpoint", ip, "err", err)
				}
			}
			if ops.sp.NodePort != 0 {
				if err := conntrackDelete(ctx, p.cfg.Executor, "-p", "udp", "--orig-port-dst", fmt.Sprint(ops.sp.NodePort), "--dst-nat", ip); err != nil {
					p.log.Warn("flush conntrack", "service", ops.sp.String(), "endpoint", ip, "err", err)
				}
			}
		}
	}
	for _, nps := range newPorts {
		if nps.sp.Protocol != corev1.ProtocolUDP || len(nps.targets()) == 0 {
			continue
		}
		var had bool
		for _, ops := range old {
			if ops.sp.Key() == nps.sp.Key() && len(ops.targets()) > 0 {
				had = true
			}
		}
		if !had {
			if err := conntrackDelete(ctx, p.cfg.Executor, "-p", "udp", "--orig-dst", nps.sp.ClusterIP); err != nil {
				p.log.Warn("flush conntrack", "service", nps.sp.String(), "err", err)
			}
		}
	}
}

// Cleanup removes every rule and chain kubelab installed on this node (the
// agent's --cleanup).
func (p *Proxier) Cleanup(ctx context.Context) error {
	p.syncMu.Lock()
	defer p.syncMu.Unlock()
	var errs []error
	if p.ipt != nil {
		errs = append(errs, p.ipt.cleanup())
	}
	errs = append(errs, nftCleanup(ctx, p.cfg.Executor))
	if err := errors.Join(errs...); err != nil {
		return err
	}
	p.stateMu.Lock()
	p.ports, p.svcPorts, p.written, p.booted = map[string]*portState{}, map[string][]string{}, map[string]string{}, false
	p.nftLB, p.nftHair, p.nftFilter, p.nftGen = map[string]int{}, map[string]int{}, map[string]string{}, 0
	p.from = map[string]renderedFrom{}
	p.nlInternal, p.nlExternal = 0, 0
	p.stateMu.Unlock()
	return nil
}

// cleanupOtherMode removes what a run in the other mode left, so the two
// data paths never both answer (as kube-proxy does when switching modes).
func (p *Proxier) cleanupOtherMode(ctx context.Context) {
	var err error
	if p.nft {
		if p.ipt != nil {
			err = cleanupIptables(ctx, p.cfg.Executor)
		}
	} else {
		err = nftCleanup(ctx, p.cfg.Executor)
	}
	if err != nil {
		p.log.Warn("remove rules of the other proxy mode", "err", err)
	}
}

// Cleanup removes everything kubelab installed, in both modes and from both
// iptables backends, without needing an API client (`kubelab agent --cleanup`).
func Cleanup(ctx context.Context, ex Executor) error {
	if ex == nil {
		ex = HostExecutor()
	}
	return errors.Join(cleanupIptables(ctx, ex), nftCleanup(ctx, ex))
}

func cleanupIptables(ctx context.Context, ex Executor) error {
	var errs []error
	for _, b := range []Backend{"nft", "legacy"} {
		if _, err := ex.ToolPath("iptables-" + string(b)); err != nil {
			continue
		}
		// One save tells whether there is anything to remove; the cleanup
		// proper runs a dozen iptables commands.
		if out, err := run(ctx, ex, nil, "iptables-"+string(b)+"-save"); err == nil && !strings.Contains(string(out), chainPrefix) {
			continue
		}
		t, err := newIPT(ctx, ex, b)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if err := t.cleanup(); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", b, err))
		}
	}
	return errors.Join(errs...)
}

// RulesetText returns the current ruleset as the tool's input: the
// iptables-restore text, or in nftables mode the `nft -f` script of a full
// sync.
func (p *Proxier) RulesetText() string {
	if !p.nft {
		return p.Ruleset().Text()
	}
	p.stateMu.RLock()
	ports := p.allNftPortsLocked(nil, nil)
	p.stateMu.RUnlock()
	return (&NftRuleset{Cfg: p.rcfg, Ports: ports, Gen: p.nftGen}).Script(nil, nil, false)
}

// Ruleset returns the full iptables ruleset as currently programmed
// (iptables mode; empty in nftables mode).
func (p *Proxier) Ruleset() *Ruleset {
	p.stateMu.RLock()
	defer p.stateMu.RUnlock()
	keys := make([]string, 0, len(p.ports))
	for k := range p.ports {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	prs := make([]*PortRules, 0, len(keys))
	for _, k := range keys {
		if r := p.ports[k].rules; r != nil { // nil in nftables mode
			prs = append(prs, r)
		}
	}
	return Assemble(prs, p.rcfg)
}
