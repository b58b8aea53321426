package proxy

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metric names follow kube-proxy's (subsystem "kubeproxy") so existing
// dashboards work; the per-Service refusal counter is kubelab's own.
type metrics struct {
	syncDuration    prometheus.Histogram
	fullDuration    prometheus.Histogram
	partialDuration prometheus.Histogram
	lastTimestamp   prometheus.Gauge
	rules           *prometheus.GaugeVec
	noLocal         *prometheus.GaugeVec
	restoreFailures prometheus.Counter
	refused         *refusalCollector
}

func newMetrics(p *Proxier) *metrics {
	buckets := prometheus.ExponentialBuckets(0.001, 2, 15)
	return &metrics{
		syncDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Subsystem: "kubeproxy", Name: "sync_proxy_rules_duration_seconds",
			Help: "SyncProxyRules latency in seconds", Buckets: buckets}),
		fullDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Subsystem: "kubeproxy", Name: "sync_full_proxy_rules_duration_seconds",
			Help: "SyncProxyRules latency in seconds for full resyncs", Buckets: buckets}),
		partialDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Subsystem: "kubeproxy", Name: "sync_partial_proxy_rules_duration_seconds",
			Help: "SyncProxyRules latency in seconds for partial resyncs", Buckets: buckets}),
		lastTimestamp: prometheus.NewGauge(prometheus.GaugeOpts{
			Subsystem: "kubeproxy", Name: "sync_proxy_rules_last_timestamp_seconds",
			Help: "The last time proxy rules were successfully synced"}),
		rules: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Subsystem: "kubeproxy", Name: "sync_proxy_rules_iptables_total",
			Help: "Total number of iptables rules owned by kubelab"}, []string{"table"}),
		noLocal: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Subsystem: "kubeproxy", Name: "sync_proxy_rules_no_local_endpoints_total",
			Help: "Number of service ports with a Local traffic policy and no endpoints on this node"}, []string{"traffic_policy"}),
		restoreFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Subsystem: "kubeproxy", Name: "sync_proxy_rules_iptables_restore_failures_total",
			Help: "Cumulative proxy iptables restore failures"}),
		refused: &refusalCollector{p: p, desc: prometheus.NewDesc("kubelab_proxy_service_refused_packets_total",
			"Packets refused (REJECT) or dropped (DROP) by kubelab for a Service port, from the rules' packet counters",
			[]string{"service", "verdict", "action"}, nil)},
	}
}

func (m *metrics) register(r prometheus.Registerer) error {
	for _, c := range []prometheus.Collector{m.syncDuration, m.fullDuration, m.partialDuration,
		m.lastTimestamp, m.rules, m.noLocal, m.restoreFailures, m.refused} {
		if err := r.Register(c); err != nil {
			return err
		}
	}
	return nil
}

type refusalKey struct{ service, verdict, action string }

// refusalCounter turns the packet counters of kubelab's REJECT/DROP rules
// into monotonic totals, surviving chain rewrites (which zero the counters).
type refusalCounter struct {
	mu     sync.Mutex
	last   map[string]uint64 // "chain|comment|action" -> counter last read
	totals map[refusalKey]uint64
}

// observeCountersLocked reads the filter table with counters and folds the
// increase since the last read into the totals. counters.mu must be held.
func (p *Proxier) observeCountersLocked(ctx context.Context) error {
	if p.nft {
		rs, err := p.nftRefusals(ctx)
		if err != nil {
			return err
		}
		for _, r := range rs {
			p.counters.observeOne(r)
		}
		return nil
	}
	save, err := p.ipt.save(ctx, "filter", true)
	if err != nil {
		return err
	}
	p.counters.observe(save)
	return nil
}

func (rc *refusalCounter) observe(save string) {
	for _, line := range strings.Split(save, "\n") {
		if r, ok := parseRefusal(line); ok {
			rc.observeOne(r)
		}
	}
}

func (rc *refusalCounter) observeOne(r refusal) {
	{
		id := r.chain + "|" + r.comment + "|" + r.action
		prev := rc.last[id]
		d := r.packets - prev
		if r.packets < prev { // the rule was rewritten meanwhile
			d = r.packets
		}
		rc.last[id] = r.packets
		if d > 0 {
			rc.totals[refusalKey{r.service, r.verdict, r.action}] += d
		}
	}
}

func (rc *refusalCounter) resetChainLocked(chain string) {
	for id := range rc.last {
		if strings.HasPrefix(id, chain+"|") {
			rc.last[id] = 0
		}
	}
}

type refusal struct {
	chain, comment, service, verdict, action string
	packets                                  uint64
}

// parseRefusal reads one `iptables-save -c` line such as
// `[3:180] -A KUBELAB-SERVICES -d ... -m comment --comment "ns/s:p has no endpoints" ... -j REJECT ...`.
func parseRefusal(line string) (refusal, bool) {
	var r refusal
	if !strings.HasPrefix(line, "[") {
		return r, false
	}
	end := strings.Index(line, "]")
	if end < 0 {
		return r, false
	}
	pk, _, _ := strings.Cut(line[1:end], ":")
	n, err := strconv.ParseUint(pk, 10, 64)
	if err != nil {
		return r, false
	}
	rest := strings.TrimSpace(line[end+1:])
	if !strings.HasPrefix(rest, "-A "+chainPrefix) {
		return r, false
	}
	f := strings.Fields(rest)
	r.chain = f[1]
	switch {
	case strings.Contains(rest, "-j REJECT"):
		r.action = "REJECT"
	case strings.Contains(rest, "-j DROP"):
		r.action = "DROP"
	default:
		return r, false
	}
	return r.withComment(rest, `--comment "`, n)
}

// withComment completes a refusal from the rule's comment, which both
// modes write as "<service port> has <verdict>", found after marker.
func (r refusal) withComment(rule, marker string, packets uint64) (refusal, bool) {
	_, after, ok := strings.Cut(rule, marker)
	if !ok {
		return r, false
	}
	r.comment, _, _ = strings.Cut(after, `"`)
	svc, verdict, ok := strings.Cut(r.comment, " has ")
	if !ok {
		return r, false
	}
	r.service, r.verdict, r.packets = svc, verdict, packets
	return r, true
}

type refusalCollector struct {
	p    *Proxier
	desc *prometheus.Desc
}

func (c *refusalCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *refusalCollector) Collect(ch chan<- prometheus.Metric) {
	rc := &c.p.counters
	rc.mu.Lock()
	defer rc.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.p.observeCountersLocked(ctx); err != nil {
		c.p.log.Debug("read refusal counters", "err", err)
	}
	for k, v := range rc.totals {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.CounterValue, float64(v), k.service, k.verdict, k.action)
	}
}

// RefusedPackets returns the refusal totals per Service port and verdict,
// reading the current counters first.
func (p *Proxier) RefusedPackets(ctx context.Context) (map[string]uint64, error) {
	rc := &p.counters
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if err := p.observeCountersLocked(ctx); err != nil {
		return nil, err
	}
	out := map[string]uint64{}
	for k, v := range rc.totals {
		out[k.service+" "+k.verdict+" "+k.action] = v
	}
	return out, nil
}
