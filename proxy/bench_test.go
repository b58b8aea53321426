package proxy

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
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
// BenchmarkSync reports cold-full-ms (the first sync: every choice
// computed), full-ms (a full resync: the kernel state rewritten from
// scratch), partial-ms (one endpoint of one Service changed, verified in the
// kernel afterwards) and partial/full, rss-MB (after the Go heap returned
// freed pages), peak-rss-MB, objects-rss-MB (the process with only the
// Services and EndpointSlices built: what an agent's informer caches hold)
// and heap-MB. BenchmarkFirstPacket reports connect times to the Service
// dispatched first and last, and last/first.
//
// They run the nftables mode (the one meant for scale). KUBELAB_BENCH_MODE=
// iptables runs the iptables mode instead; KUBELAB_BENCH_SERVICES overrides
// the Service count; KUBELAB_BENCH_BACKEND ("nft" or "legacy") forces the
// iptables flavour; KUBELAB_BENCH_DEBUG=1 logs each sync's phases;
// KUBELAB_BENCH_HEAPPROFILE=file writes a heap profile at the end of
// BenchmarkSync.
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
func benchProxier(b *testing.B, l *lab, svcs []*corev1.Service, slices [][]*discovery.EndpointSlice) *Proxier {
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
		p.slices[k] = slices[i]
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
	per := make([][]*discovery.EndpointSlice, len(slices))
	for i, s := range slices {
		per[i] = []*discovery.EndpointSlice{s}
	}
	runtime.GC()
	debug.FreeOSMemory()
	worldRSS := procStatusMB("VmRSS:") // the objects alone (an agent's informer caches)
	p := benchProxier(b, l, svcs, per)
	ctx := context.Background()
	t0 := time.Now()
	if err := p.Sync(ctx); err != nil { // first sync: every choice computed
		b.Fatal(err)
	}
	cold := time.Since(t0)
	var full, partial time.Duration
	var last string
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
		last = fmt.Sprintf("10.244.1.%d", 100+i%100)
		s.Endpoints[0].Addresses = []string{last}
		key := objKey("bench", svcs[k].Name)
		p.mu.Lock()
		p.slices[key] = []*discovery.EndpointSlice{s}
		p.dirty[key] = true
		p.mu.Unlock()
		t0 = time.Now()
		if err := p.Sync(ctx); err != nil {
			b.Fatal(err)
		}
		partial += time.Since(t0)
	}
	b.StopTimer()
	// The last change is in the kernel (not only in our state).
	k := (b.N - 1) % len(svcs)
	if p.nft {
		m := nftPhys(nftEndpointMap("tcp", false), p.nftGen)
		var keys []string
		for e := range benchEndpoints {
			keys = append(keys, fmt.Sprintf("%s . 80 . %d", benchIP(k), e))
		}
		out, err := run(ctx, p.cfg.Executor, nil, "nft", "get", "element", "ip", nftTable, m, "{ "+strings.Join(keys, ", ")+" }")
		if err != nil || !strings.Contains(string(out), last+" . 8080") {
			b.Fatalf("partial sync not in the kernel (want %s): %s %v", last, out, err)
		}
	} else if s := sh(b, "ip", "netns", "exec", l.nodes[0].ns, "iptables-save", "-t", "nat"); !strings.Contains(s, last+":8080") {
		b.Fatalf("partial sync not in the kernel")
	}
	b.ReportMetric(float64(cold.Microseconds())/1000, "cold-full-ms")
	fullMs := float64(full.Microseconds()) / 1000 / float64(b.N)
	partMs := float64(partial.Microseconds()) / 1000 / float64(b.N)
	b.ReportMetric(fullMs, "full-ms")
	b.ReportMetric(partMs, "partial-ms")
	b.ReportMetric(partMs/fullMs, "partial/full")
	var ms runtime.MemStats
	runtime.GC()
	debug.FreeOSMemory()
	runtime.ReadMemStats(&ms)
	b.ReportMetric(float64(ms.HeapAlloc)/(1<<20), "heap-MB")
	if f := os.Getenv("KUBELAB_BENCH_HEAPPROFILE"); f != "" {
		if w, err := os.Create(f); err == nil {
			_ = pprof.WriteHeapProfile(w)
			w.Close()
		}
	}
	b.ReportMetric(procStatusMB("VmRSS:"), "rss-MB")
	b.ReportMetric(procStatusMB("VmHWM:"), "peak-rss-MB")
	b.ReportMetric(worldRSS, "objects-rss-MB")
	runtime.KeepAlive(svcs)
	runtime.KeepAlive(slices)
	runtime.KeepAlive(p)
}

// procStatusMB reads a memory line of /proc/self/status (VmRSS: now, after
// the Go heap returned what it could; VmHWM: the peak) in MiB. The test
// process holds what an agent would: the Services and EndpointSlices (its
// informer caches) and the proxier's state.
func procStatusMB(field string) float64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(line, field) {
			f := strings.Fields(line)
			kb, _ := strconv.ParseFloat(f[1], 64)
			return kb / 1024
		}
	}
	return 0
}

// BenchmarkFirstPacket compares the TCP connect time (the first packet
// walks the nat rules) to the Service dispatched first with the one
// dispatched last, 10,000 Services x 10 endpoints installed (every endpoint
// is a port 8080..8089 of one pod, so all of them answer). In nftables mode
// dispatch is a hash lookup, so first/last are the first and last created.
// Reports medians and last/first.
func BenchmarkFirstPacket(b *testing.B) {
	l := benchLab(b)
	n := l.nodes[0]
	svcs, _ := benchWorld(0)
	// Ten endpoints per Service need ten ports: one slice per port number,
	// each mapping the Service port "http".
	slices := make([][]*discovery.EndpointSlice, len(svcs))
	for i, s := range svcs {
		for e := range benchEndpoints {
			slices[i] = append(slices[i], mkSlice("bench", s.Name, fmt.Sprintf("%s-%d", s.Name, e), "http", corev1.ProtocolTCP, int32(8080+e),
				sliceEP{ip: "10.244.1.2", node: n.name}))
		}
	}
	pod := l.addPod(n, "p", "10.244.1.2")
	for e := range benchEndpoints {
		var ln net.Listener
		inNS(b, pod.ns, func() {
			var err error
			if ln, err = net.Listen("tcp4", fmt.Sprintf(":%d", 8080+e)); err != nil {
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
	}
	p := benchProxier(b, l, svcs, slices)
	if err := p.Sync(context.Background()); err != nil {
		b.Fatal(err)
	}
	first, last := benchIP(0)+":80", benchIP(len(svcs)-1)+":80"
	if !p.nft {
		// First and last Service in dispatch order.
		var dispatch []string
		for _, c := range p.Ruleset().Nat {
			if strings.HasPrefix(c.Name, bucketPrefix) {
				for _, r := range c.Rules {
					dispatch = append(dispatch, strings.Fields(r)[3]) // -A CHAIN -d IP/32
				}
			}
		}
		first = strings.TrimSuffix(dispatch[0], "/32") + ":80"
		last = strings.TrimSuffix(dispatch[len(dispatch)-1], "/32") + ":80"
	}
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
	b.Logf("mode %s: first %s last %s", p.Mode(), first, last)
}
