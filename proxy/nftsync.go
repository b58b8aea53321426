package proxy

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"
)

// nft runs `nft` with args and the given script on stdin (nil: none).
func (p *Proxier) runNft(ctx context.Context, script []byte, args ...string) ([]byte, error) {
	return run(ctx, p.cfg.Executor, script, "nft", args...)
}

func isNoTable(err error) bool {
	return err != nil && strings.Contains(err.Error(), "No such file or directory")
}

// nftExisting lists the chains and sets of the kubelab table in the kernel
// (without their contents: the maps hold ~100k elements at scale).
func (p *Proxier) nftExisting(ctx context.Context) (chains, sets []string, err error) {
	out, err := p.runNft(ctx, []byte("list chains ip\nlist sets ip\nlist maps ip\n"), "-t", "-f", "-")
	if err != nil {
		return nil, nil, err
	}
	chains, sets = parseNftNames(string(out))
	return chains, sets, nil
}

// allNftPortsLocked returns every port's nft objects after this sync, in
// key order. stateMu must be held (read).
func (p *Proxier) allNftPortsLocked(changed map[string]bool, newPorts map[string]*portState) []*NftPort {
	keys := make([]string, 0, len(p.ports)+len(newPorts))
	for k, ps := range p.ports {
		if !changed[svcOfPort(ps.sp)] {
			keys = append(keys, k)
		}
	}
	for k := range newPorts {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := make([]*NftPort, len(keys))
	for i, k := range keys {
		if ps, ok := newPorts[k]; ok {
			out[i] = ps.nft
		} else {
			out[i] = p.ports[k].nft
		}
	}
	return out
}

// applyNft programs the nftables backend in one `nft -f` transaction: a
// full sync rewrites the whole table (flushing rules and shared maps, keeping
// affinity sets, deleting stale objects); a partial sync deletes and adds
// only the changed Services' map elements and chains.
func (p *Proxier) applyNft(ctx context.Context, full bool, changed map[string]bool, newPorts map[string]*portState) (applyResult, error) {
	res := applyResult{nat: -1}
	p.stateMu.RLock()
	res.udpOld = p.oldUDPPortsLocked(changed)
	var olds []*NftPort
	for k := range changed {
		for _, old := range p.svcPorts[k] {
			olds = append(olds, p.ports[old].nft)
		}
	}
	var news []*NftPort
	for _, ps := range newPorts {
		news = append(news, ps.nft)
	}
	sort.Slice(news, func(i, j int) bool { return news[i].Key < news[j].Key })
	refusals := full
	for _, np := range append(olds, news...) {
		refusals = refusals || len(np.FilterServices)+len(np.FilterExternal) > 0
	}
	var all []*NftPort
	if full || refusals {
		all = p.allNftPortsLocked(changed, newPorts)
	}
	p.stateMu.RUnlock()

	var script string
	var filter map[string]string
	gen := p.nftGen
	t0 := time.Now()
	if full {
		chains, sets, err := p.nftExisting(ctx)
		if err != nil {
			return res, fmt.Errorf("list nft objects: %w", err)
		}
		for _, s := range sets {
			_, name, _ := strings.Cut(s, " ")
			gen = max(gen, parseGen(name))
		}
		gen++
		tl := time.Now()
		rs := &NftRuleset{Cfg: p.rcfg, Ports: all, Gen: gen}
		bulk := p.nftBulkLoad(ctx, rs)
		p.log.Debug("nft bulk load", "took", time.Since(tl), "listing", tl.Sub(t0))
		wantC, wantS := rs.Names()
		var staleC, staleS []string
		for _, c := range chains {
			if !wantC[c] {
				staleC = append(staleC, c)
			}
		}
		for _, s := range sets {
			if _, name, _ := strings.Cut(s, " "); !wantS[name] {
				staleS = append(staleS, s)
			}
		}
		script = rs.Script(staleC, staleS, bulk)
		fs, fe := rs.filterRules()
		filter = map[string]string{nftFilterSvc: strings.Join(fs, "\n"), nftFilterExt: strings.Join(fe, "\n")}
		res.nat, res.filter = 0, len(fs)+len(fe)
		for _, np := range all {
			res.nat += np.numElems()
			for _, c := range np.Chains {
				res.nat += len(c.Rules)
			}
		}
	} else {
		var b strings.Builder
		var err error
		filter, err = p.nftPartial(&b, olds, news, all, refusals, gen)
		if err != nil {
			return res, err
		}
		script = b.String()
		if ops := p.nlPending; ops != nil {
			p.nlPending = nil
			err := nlElements(p.cfg.Executor, nftTable, ops.dels.sets, ops.adds.sets)
			if err == nil {
				p.nftCommitShared(full, all, olds, news, gen, filter)
				return res, nil
			}
			p.log.Warn("netlink element update failed; using nft", "err", err)
			script = ops.text.String()
		}
	}
	res.bytes = len(script)
	if script == "" {
		return res, nil
	}

	rewritesFilter := false
	for c, t := range filter {
		if old, ok := p.nftFilter[c]; full || !ok || old != t {
			rewritesFilter = true
		}
	}
	p.counters.mu.Lock()
	if rewritesFilter {
		// Fold in the packet counts of refusal rules about to be replaced.
		if err := p.observeCountersLocked(ctx); err != nil {
			p.log.Debug("read refusal counters", "err", err)
		}
	}
	t1 := time.Now()
	_, err := p.runNft(ctx, []byte(script), "-f", "-")
	p.log.Debug("nft script", "took", time.Since(t1), "bytes", len(script), "render", t1.Sub(t0))
	if err == nil && rewritesFilter {
		for c := range filter {
			p.counters.resetChainLocked(c)
		}
	}
	p.counters.mu.Unlock()
	if err != nil {
		return res, fmt.Errorf("nft (%s sync): %w", syncKind(full), err)
	}

	p.nftCommitShared(full, all, olds, news, gen, filter)
	return res, nil
}

// nftCommitShared records what the kernel now holds besides per-port
// objects, after a successful transaction.
func (p *Proxier) nftCommitShared(full bool, all, olds, news []*NftPort, gen int, filter map[string]string) {
	p.nftGen = gen
	if full {
		p.nftLB, p.nftHair = map[string]int{}, map[string]int{}
		for _, np := range all {
			for _, l := range np.LB {
				p.nftLB[l]++
			}
			for _, ip := range np.Targets {
				p.nftHair[ip]++
			}
		}
	} else {
		for _, np := range olds {
			for _, ip := range np.Targets {
				if p.nftHair[ip]--; p.nftHair[ip] <= 0 {
					delete(p.nftHair, ip)
				}
			}
			for _, l := range np.LB {
				if p.nftLB[l]--; p.nftLB[l] <= 0 {
					delete(p.nftLB, l) // the partial sync deleted the chain
				}
			}
		}
		for _, np := range news {
			for _, l := range np.LB {
				p.nftLB[l]++
			}
			for _, ip := range np.Targets {
				p.nftHair[ip]++
			}
		}
	}
	for c, t := range filter {
		p.nftFilter[c] = t
	}
}

// nftBulkLoad creates generation rs.Gen of the big maps and fills them over
// netlink. They are referenced by no rule until the full-sync script runs,
// so traffic never sees them half filled. false: load them by text instead
// (the script then carries the elements).
func (p *Proxier) nftBulkLoad(ctx context.Context, rs *NftRuleset) bool {
	var b strings.Builder
	fmt.Fprintf(&b, "add table %s %s\n", nftFamily, nftTable)
	writeNftBlock(&b, nftTable, nftGenMaps(rs.Gen), nil)
	for _, m := range nftGenNames() {
		fmt.Fprintf(&b, "flush map %s %s %s\n", nftFamily, nftTable, nftPhys(m, rs.Gen))
	}
	// Verdicts name their chains, which must exist (empty is fine: nothing
	// jumps to them before the full-sync script fills them).
	targets := map[string]bool{}
	for _, np := range rs.Ports {
		for _, e := range np.Elems {
			if c, ok := strings.CutPrefix(e.Value, "goto "); ok && generational(e.Map) {
				targets[c] = true
			}
		}
	}
	for _, c := range sortedKeys(targets) {
		fmt.Fprintf(&b, "add chain %s %s %s\n", nftFamily, nftTable, c)
	}
	t0 := time.Now()
	elems, err := rs.bulkElems()
	t1 := time.Now()
	if err == nil {
		_, err = p.runNft(ctx, []byte(b.String()), "-f", "-")
	}
	t2 := time.Now()
	if err == nil {
		err = nlAddElements(p.cfg.Executor, nftTable, elems)
	}
	p.log.Debug("bulk", "encode", t1.Sub(t0), "create", t2.Sub(t1), "netlink", time.Since(t2))
	if err != nil {
		p.log.Warn("bulk load of nft maps failed; loading them by text", "err", err)
		return false
	}
	return true
}

// nftPartial writes the partial-sync transaction for the changed ports.
// Order matters inside the transaction: elements and rules that reference a
// chain or set go before the chain or set is deleted.
func (p *Proxier) nftPartial(b *strings.Builder, olds, news, all []*NftPort, refusals bool, gen int) (map[string]string, error) {
	oldE, newE := map[string]NftElem{}, map[string]NftElem{}
	for _, np := range olds {
		for _, e := range np.AllElems() {
			oldE[e.id()] = e
		}
	}
	for _, np := range news {
		for _, e := range np.AllElems() {
			newE[e.id()] = e
		}
	}
	var del, add []NftElem
	for id, e := range oldE {
		if n, ok := newE[id]; !ok || n.Value != e.Value || n.Comment != e.Comment {
			del = append(del, e)
		}
	}
	for id, e := range newE {
		if o, ok := oldE[id]; !ok || o.Value != e.Value || o.Comment != e.Comment {
			add = append(add, e)
		}
	}
	// Hairpin set: endpoint IPs whose use count goes to or from zero.
	delta := map[string]int{}
	for _, np := range olds {
		for _, ip := range np.Targets {
			delta[ip]--
		}
	}
	for _, np := range news {
		for _, ip := range np.Targets {
			delta[ip]++
		}
	}
	for ip, d := range delta {
		before := p.nftHair[ip]
		after := before + d
		switch {
		case before > 0 && after <= 0:
			del = append(del, NftElem{Map: nftHairpin, Key: ip + " . " + ip})
		case before <= 0 && after > 0:
			add = append(add, NftElem{Map: nftHairpin, Key: ip + " . " + ip})
		}
	}
	sortElems(del)
	sortElems(add)

	// Chains and sets per port: a port whose chains changed at all gets all
	// of them flushed and rewritten (they reference each other).
	oldC, newC := map[string]string{}, map[string]string{}
	oldS, newS := map[string]bool{}, map[string]bool{}
	for _, np := range olds {
		for _, c := range np.Chains {
			oldC[c.Name] = strings.Join(c.Rules, "\n")
		}
		for _, s := range np.Sets {
			oldS[s.Name] = true
		}
	}
	var write []Chain
	var decls []string
	for _, np := range news {
		for _, c := range np.Chains {
			newC[c.Name] = strings.Join(c.Rules, "\n")
		}
		for _, s := range np.Sets {
			newS[s.Name] = true
			if !oldS[s.Name] {
				decls = append(decls, nftSetDecl(s))
			}
		}
	}
	same := len(oldC) == len(newC)
	for n, t := range newC {
		same = same && oldC[n] == t
	}
	var flush, delC, delS []string
	if !same {
		flush = sortedKeys(toSet(oldC))
		for _, np := range news {
			write = append(write, np.Chains...)
		}
		for n := range oldC {
			if _, ok := newC[n]; !ok {
				delC = append(delC, n)
			}
		}
		sort.Strings(delC)
	}
	for s := range oldS {
		if !newS[s] {
			delS = append(delS, s)
		}
	}
	sort.Strings(delS)
	// Shared balancing chains: create those first used now, delete those
	// no port uses any more (their map elements go first in the script).
	lbUse := map[string]int{}
	for _, np := range olds {
		for _, l := range np.LB {
			lbUse[l]--
		}
	}
	for _, np := range news {
		for _, l := range np.LB {
			lbUse[l]++
		}
	}
	var lbs []Chain
	for _, l := range sortedKeys(toSet(lbUse)) {
		before := p.nftLB[l]
		switch after := before + lbUse[l]; {
		case before <= 0 && after > 0:
			lbs = append(lbs, Chain{Name: l, Rules: nftLBRules(l, p.rcfg, gen)})
		case before > 0 && after <= 0:
			flush = append(flush, l)
			delC = append(delC, l)
		}
	}
	filter := map[string]string{}
	var fw []Chain
	if refusals {
		rs := &NftRuleset{Cfg: p.rcfg, Ports: all}
		fs, fe := rs.filterRules()
		for _, c := range []Chain{{Name: nftFilterSvc, Rules: fs}, {Name: nftFilterExt, Rules: fe}} {
			t := strings.Join(c.Rules, "\n")
			if old, ok := p.nftFilter[c.Name]; !ok || old != t {
				filter[c.Name] = t
				fw = append(fw, c)
			}
		}
	}

	if len(flush)+len(fw)+len(delC)+len(delS)+len(decls)+len(lbs)+len(write) == 0 {
		// Only elements change (the common case: endpoints of a Service):
		// one netlink batch, no nft process.
		dn, an := encodeAll(del, gen, true), encodeAll(add, gen, false)
		if dn.err == nil && an.err == nil && len(del)+len(add) > 0 {
			p.nlPending = &nlOps{dels: dn, adds: an}
			writeNftElems(&p.nlPending.text, "delete", del, gen)
			writeNftElems(&p.nlPending.text, "add", add, gen)
			return filter, nil
		}
	}
	writeNftElems(b, "delete", del, gen)
	for _, c := range flush {
		fmt.Fprintf(b, "flush chain %s %s %s\n", nftFamily, nftTable, c)
	}
	for _, c := range fw {
		fmt.Fprintf(b, "flush chain %s %s %s\n", nftFamily, nftFilterTable, c.Name)
	}
	for _, c := range delC {
		fmt.Fprintf(b, "delete chain %s %s %s\n", nftFamily, nftTable, c)
	}
	for _, s := range delS {
		fmt.Fprintf(b, "delete set %s %s %s\n", nftFamily, nftTable, s)
	}
	writeNftBlock(b, nftTable, decls, append(lbs, write...))
	writeNftBlock(b, nftFilterTable, nil, fw)
	writeNftElems(b, "add", add, gen)
	return filter, nil
}

// nlOps are element changes a partial sync applies over netlink; text is
// the same change for nft, used if netlink fails.
type nlOps struct {
	dels, adds encoded
	text       strings.Builder
}

type encoded struct {
	sets map[string]*nlSet
	err  error
}

func encodeAll(elems []NftElem, gen int, keyOnly bool) encoded {
	out := encoded{sets: map[string]*nlSet{}}
	for _, e := range elems {
		ne, err := encodeElem(e)
		if err != nil {
			out.err = err
			return out
		}
		m := nftPhys(e.Map, gen)
		if out.sets[m] == nil {
			out.sets[m] = &nlSet{}
		}
		out.sets[m].add(ne, keyOnly)
	}
	return out
}

func toSet[V any](m map[string]V) map[string]bool {
	out := make(map[string]bool, len(m))
	for k := range m {
		out[k] = true
	}
	return out
}

func sortElems(es []NftElem) {
	sort.Slice(es, func(i, j int) bool { return es[i].id() < es[j].id() })
}

// nftCleanup deletes the kubelab table (everything the nftables mode made).
func nftCleanup(ctx context.Context, ex Executor) error {
	if _, err := ex.ToolPath("nft"); err != nil {
		return nil
	}
	var errs []error
	for _, t := range []string{nftTable, nftFilterTable} {
		if _, err := run(ctx, ex, nil, "nft", "delete", "table", nftFamily, t); err != nil && !isNoTable(err) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// nftRefusals reads the refusal chains with their counters.
func (p *Proxier) nftRefusals(ctx context.Context) ([]refusal, error) {
	var out []refusal
	for _, c := range []string{nftFilterSvc, nftFilterExt} {
		text, err := p.runNft(ctx, nil, "list", "chain", nftFamily, nftFilterTable, c)
		if isNoTable(err) {
			continue
		}
		if err != nil {
			return nil, err
		}
		for _, line := range strings.Split(string(text), "\n") {
			if r, ok := parseNftRefusal(c, strings.TrimSpace(line)); ok {
				out = append(out, r)
			}
		}
	}
	return out, nil
}
