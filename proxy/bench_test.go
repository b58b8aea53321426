package proxy

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"
	"k8s.io/client-go/kubernetes/fake"
)

// Scale benchmarks: 10,000 Services x 10 endpoints (issue 7's numbers).
//
//	go test ./proxy -run '^$' -bench 'Sync|FirstPacket' -benchtime 1x
//
// They run the nftables mode (the one meant for scale). KUBELAB_BENCH_MODE=
// iptables runs the iptables mode instead; KUBELAB_BENCH_SERVICES overrides
// the Service count; KUBELAB_BENCH_BACKEND ("nft" or "legacy") forces the
// iptables flavour.
var benchServices = envInt("KUBELAB_BENCH_SERVICES", 10000)

func init() {
	// KUBELAB_BENCH_DEBUG=1 logs each sync's phases (listing, bulk load,
	// nft script) at debug level.
	if os.Getenv("KUBELAB_BENCH_DEBUG") != "" {
		slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})))
	}
}

func benchMode() string {
	if m := os.Getenv("KUBELAB_BENCH_MODE"); m != "" {
		return m
	}
	return ModeNftables
}

const benchEndpoints = 10

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

func benchIP(i int) string {
	v := 10<<24 | 96<<16 | (i + 1) // 10.96.0.1, 10.96.0.2, ...
	return net.IPv4(byte(v>>24), byte(v>>16), byte(v>>8), byte(v)).String()
}

// benchWorld: Service i has ClusterIP benchIP(i) and endpoints
// 10.244.{1,2}.(2..11), alternating nodes, all ready.
func benchWorld(nEndpoints int) ([]*corev1.Service, []*discovery.EndpointSlice) {
	svcs := make([]*corev1.Service, benchServices)
	slices := make([]*discovery.EndpointSlice, benchServices)
	for i := range svcs {
		name := fmt.Sprintf("svc-%05d", i)
		svcs[i] = mkService("bench", name, benchIP(i))
		var eps []sliceEP
		for e := range nEndpoints {
			eps = append(eps, sliceEP{ip: fmt.Sprintf("10.244.%d.%d", 1+e%2, 2+e), node: fmt.Sprintf("node-%d", 1+e%2)})
		}
		slices[i] = mkSlice("bench", name, name+"-1", "http", corev1.ProtocolTCP, 8080, eps...)
	}
	return svcs, slices
}

func BenchmarkRenderFull(b *testing.B) {
	svcs, slices := benchWorld(benchEndpoints)
	cfg := RenderConfig{NodeIP: "10.200.0.1", ClusterCIDR: "10.244.0.0/16"}
	b.ResetTimer()
	for range b.N {
		rs := renderWorld(svcs, slices, "node-1", cfg, true)
		_ = rs.Text()
	}
}

// benchProxier makes a Proxier for a fresh namespace (node-1 of a one-node
// lab) and loads the world into its state directly, as the informers would.
func benchProxier(b *testing.B, l *lab, svcs []*corev1.Service, slices []*discovery.EndpointSlice) *Proxier {
	n := l.nodes[0]
	p, err := New(fake.NewClientset(), Config{NodeName: n.name, NodeIP: net.ParseIP(n.ip), ClusterCIDR: "10.244.0.0/16",
		ServiceInternalTrafficPolicy: true, Executor: NetnsExecutor(n.ns, b.TempDir()),
		Backend: Backend(os.Getenv("KUBELAB_BENCH_BACKEND")), Mode: benchMode()})
	if err != nil {
		b.Fatal(err)
	}
	for i, s := range svcs {
		k := objKey(s.Namespace, s.Name)
		p.services[k] = s
		p.slices[k] = map[string]*discovery.EndpointSlice{slices[i].Name: slices[i]}
		p.dirty[k] = true
	}
	return p
}

func benchLab(b *testing.B) *lab {
	return newLab(b, 1)
}

// BenchmarkSync measures, in one run: a full sync (render + one
// iptables-restore of everything) and a partial sync after one endpoint
// changes; reports both and their ratio, plus the Go heap and process RSS.
func BenchmarkSync(b *testing.B) {
	l := benchLab(b)
	svcs, slices := benchWorld(benchEndpoints)
	p := benchProxier(b, l, svcs, slices)
	ctx := context.Background()
	if err := p.Sync(ctx); err != nil { // first sync: creates ~330k rules
		b.Fatal(err)
	}
	var full, partial time.Duration
	b.ResetTimer()
	for i := range b.N {
		p.mu.Lock()
		p.needFull = true
		p.mu.Unlock()
		t0 := time.Now()
		if err := p.Sync(ctx); err != nil {
			b.Fatal(err)
		}
		full += time.Since(t0)

		// One endpoint of one Service changes address.
		k := i % len(svcs)
		s := slices[k].DeepCopy()
		s.Endpoints[0].Addresses = []string{fmt.Sprintf("10.244.1.%d", 100+i%100)}
		key := objKey("bench", svcs[k].Name)
		p.mu.Lock()
		p.slices[key] = map[string]*discovery.EndpointSlice{s.Name: s}
		p.dirty[key] = true
		p.mu.Unlock()
		t0 = time.Now()
		if err := p.Sync(ctx); err != nil {
			b.Fatal(err)
		}
		partial += time.Since(t0)
	}
	b.StopTimer()
	fullMs := float64(full.Microseconds()) / 1000 / float64(b.N)
	partMs := float64(partial.Microseconds()) / 1000 / float64(b.N)
	b.ReportMetric(fullMs, "full-ms")
	b.ReportMetric(partMs, "partial-ms")
	b.ReportMetric(partMs/fullMs, "partial/full")
	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	b.ReportMetric(float64(ms.HeapAlloc)/(1<<20), "heap-MB")
	b.ReportMetric(rssMB(), "rss-MB")
	nat, filter := p.Ruleset().CountRules()
	b.Logf("rules: nat %d filter %d", nat, filter)
}

func rssMB() float64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(line, "VmRSS:") {
			f := strings.Fields(line)
			kb, _ := strconv.ParseFloat(f[1], 64)
			return kb / 1024
		}
	}
	return 0
}

// BenchmarkFirstPacket compares the TCP connect time (first packet walks
// the nat rules) to the Service dispatched first with the one dispatched
// last, 10,000 Services installed. Reports medians and last/first.
func BenchmarkFirstPacket(b *testing.B) {
	l := benchLab(b)
	n := l.nodes[0]
	svcs, slices := benchWorld(1)
	// One pod holding the endpoint address 10.244.1.2.
	pod := l.addPod(n, "p", "10.244.1.2")
	var ln net.Listener
	inNS(b, pod.ns, func() {
		var err error
		if ln, err = net.Listen("tcp4", ":8080"); err != nil {
			b.Fatal(err)
		}
	})
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	p := benchProxier(b, l, svcs, slices)
	if err := p.Sync(context.Background()); err != nil {
		b.Fatal(err)
	}
	// First and last Service in dispatch order.
	rs := p.Ruleset()
	var dispatch []string
	for _, c := range rs.Nat {
		if strings.HasPrefix(c.Name, bucketPrefix) {
			for _, r := range c.Rules {
				dispatch = append(dispatch, strings.Fields(r)[3]) // -A CHAIN -d IP/32
			}
		}
	}
	first := strings.TrimSuffix(dispatch[0], "/32") + ":80"
	last := strings.TrimSuffix(dispatch[len(dispatch)-1], "/32") + ":80"
	connect := func(a string) time.Duration {
		var d time.Duration
		inNS(b, n.ns, func() {
			t0 := time.Now()
			c, err := net.DialTimeout("tcp4", a, 2*time.Second)
			d = time.Since(t0)
			if err != nil {
				b.Fatalf("connect %s: %v", a, err)
			}
			c.Close()
		})
		return d
	}
	var tf, tl []time.Duration
	for range 50 { // warm up
		connect(first)
		connect(last)
	}
	b.ResetTimer()
	for range b.N {
		for range 200 {
			tf = append(tf, connect(first))
			tl = append(tl, connect(last))
		}
	}
	b.StopTimer()
	med := func(x []time.Duration) float64 {
		sort.Slice(x, func(i, j int) bool { return x[i] < x[j] })
		return float64(x[len(x)/2].Nanoseconds()) / 1000
	}
	mf, ml := med(tf), med(tl)
	b.ReportMetric(mf, "first-us")
	b.ReportMetric(ml, "last-us")
	b.ReportMetric(ml/mf, "last/first")
	b.Logf("first %s last %s (%d dispatch rules)", first, last, len(dispatch))
}
