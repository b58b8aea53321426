package proxy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http/httptest"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
)

const refuseWait = 3 * time.Second // long enough that only a refusal ends a dial early

// reachAll dials addr from ns until every name in want has answered.
func reachAll(t *testing.T, ns, addr string, want ...string) {
	t.Helper()
	seen := map[string]bool{}
	for i := 0; i < 200 && len(seen) < len(want); i++ {
		name, err := get(t, ns, addr, refuseWait)
		if err != nil {
			t.Fatalf("from %s to %s: %v", ns, addr, err)
		}
		seen[name] = true
	}
	var got []string
	for n := range seen {
		got = append(got, n)
	}
	sort.Strings(got)
	sort.Strings(want)
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("from %s to %s reached %v, want %v", ns, addr, got, want)
	}
}

func expectRefused(t *testing.T, ns, addr string) {
	t.Helper()
	_, err := get(t, ns, addr, refuseWait)
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("from %s to %s: got %v, want connection refused", ns, addr, err)
	}
}

func expectTimeout(t *testing.T, ns, addr string) {
	t.Helper()
	_, err := get(t, ns, addr, 400*time.Millisecond)
	if err == nil || !isTimeout(err) {
		t.Fatalf("from %s to %s: got %v, want a timeout (dropped)", ns, addr, err)
	}
}

func addr(ip string, port int) string { return fmt.Sprintf("%s:%d", ip, port) }

// dataPathWorld: pods a (node-1), b and c (node-2) serving TCP 8080 and UDP
// 5353; Services of every kind the tests need.
type dataPathWorld struct {
	l       *lab
	a, b, c *labPod
	client  *fake.Clientset
}

func newDataPathWorld(t *testing.T) *dataPathWorld {
	l := newLab(t, 2)
	w := &dataPathWorld{l: l}
	w.a = l.addPod(l.nodes[0], "a", "10.244.1.2")
	w.b = l.addPod(l.nodes[1], "b", "10.244.2.2")
	w.c = l.addPod(l.nodes[1], "c", "10.244.2.3")
	for _, p := range []*labPod{w.a, w.b, w.c} {
		l.serveTCP(p, 8080)
		l.serveUDP(p, 5353)
	}
	local := corev1.ServiceInternalTrafficPolicyLocal
	etpLocal := corev1.ServiceExternalTrafficPolicyLocal
	on := func(p *labPod) sliceEP { return sliceEP{ip: p.ip, node: p.node.name} }
	eps := func(svc string, e ...sliceEP) *discovery.EndpointSlice {
		return mkSlice("default", svc, svc+"-1", "http", corev1.ProtocolTCP, 8080, e...)
	}
	objs := []runtime.Object{
		mkService("default", "web", "10.96.0.10"),
		eps("web", on(w.a), on(w.b), on(w.c)),
		mkService("default", "local", "10.96.0.11", withITP(local)),
		eps("local", on(w.b)),
		mkService("default", "empty", "10.96.0.12"),
		mkService("default", "draining", "10.96.0.13"),
		eps("draining", sliceEP{ip: w.b.ip, node: "node-2", ready: bp(false), serving: bp(true), terminating: bp(true)},
			sliceEP{ip: w.c.ip, node: "node-2", ready: bp(false), serving: bp(false), terminating: bp(true)}),
		mkService("default", "seed", "10.96.0.14", withNodePort(30081), withETP(etpLocal), withITP(local)),
		eps("seed", on(w.b)),
		mkService("default", "np", "10.96.0.15", withNodePort(30082)),
		eps("np", on(w.b)),
		mkService("default", "dns", "10.96.0.16", withUDP()),
		mkSlice("default", "dns", "dns-1", "udp", corev1.ProtocolUDP, 5353, on(w.c)),
		mkService("default", "udp-empty", "10.96.0.17", withUDP()),
		mkService("default", "sticky", "10.96.0.18", withAffinity(60)),
		eps("sticky", on(w.a), on(w.b), on(w.c)),
		mkService("default", "ext", "10.96.0.19", withExternalIPs("10.200.0.1", "10.200.0.2")),
		eps("ext", on(w.c)),
	}
	w.client = fake.NewClientset(objs...)
	return w
}

// TestDataPath runs two nodes' proxiers against real iptables in their own
// namespaces and checks every itp.md verdict with real TCP/UDP traffic.
func TestDataPath(t *testing.T) { forModes(t, testDataPath) }

func testDataPath(t *testing.T, mode string) {
	w := newDataPathWorld(t)
	w.l.mode = mode
	l := w.l
	n1, n2 := l.nodes[0], l.nodes[1]
	p1, _ := l.runProxier(n1, w.client, nil)
	p2, _ := l.runProxier(n2, w.client, nil)
	waitVerdict(t, p1, "default/ext:http", VerdictEndpoints)
	waitVerdict(t, p2, "default/ext:http", VerdictEndpoints)

	t.Run("cluster reaches every endpoint from every node", func(t *testing.T) {
		reachAll(t, n1.ns, "10.96.0.10:80", "a", "b", "c")
		reachAll(t, n2.ns, "10.96.0.10:80", "a", "b", "c")
	})
	t.Run("pod to ClusterIP", func(t *testing.T) {
		reachAll(t, w.a.ns, "10.96.0.15:80", "b")
	})
	t.Run("local: own endpoint only, refused at once elsewhere", func(t *testing.T) {
		reachAll(t, n2.ns, "10.96.0.11:80", "b")
		expectRefused(t, n1.ns, "10.96.0.11:80")
	})
	t.Run("no endpoints refused", func(t *testing.T) {
		expectRefused(t, n1.ns, "10.96.0.12:80")
		expectRefused(t, n2.ns, "10.96.0.12:80")
	})
	t.Run("terminating fallback", func(t *testing.T) {
		reachAll(t, n1.ns, "10.96.0.13:80", "b")
	})
	t.Run("seed rule: ETP Local NodePort", func(t *testing.T) {
		// Internal traffic ignores ITP Local because ETP is Local: node-1 reaches b.
		reachAll(t, n1.ns, "10.96.0.14:80", "b")
		// External client on node-2 (has b): served, source kept.
		g, c, err := dialTCP(t, l.ext, "10.200.0.2:30081", refuseWait)
		if err != nil {
			t.Fatalf("external to node-2 NodePort: %v", err)
		}
		c.Close()
		if g != "b 10.200.0.100" {
			t.Errorf("external via node-2: greeting %q, want b seeing the client's own address", g)
		}
		// External client on node-1 (no local endpoint): dropped.
		expectTimeout(t, l.ext, "10.200.0.1:30081")
		// The node itself still reaches the NodePort (cluster-wide endpoints).
		reachAll(t, n1.ns, "10.200.0.1:30081", "b")
		reachAll(t, n1.ns, "127.0.0.1:30081", "b")
	})
	t.Run("ETP Cluster NodePort from outside, masqueraded", func(t *testing.T) {
		g, c, err := dialTCP(t, l.ext, "10.200.0.1:30082", refuseWait)
		if err != nil {
			t.Fatalf("external to node-1 NodePort: %v", err)
		}
		c.Close()
		if g != "b 10.200.0.1" {
			t.Errorf("greeting %q, want b seeing node-1's address", g)
		}
	})
	t.Run("externalIPs", func(t *testing.T) {
		reachAll(t, l.ext, "10.200.0.1:80", "c")
	})
	t.Run("UDP", func(t *testing.T) {
		got, err := udpAsk(t, n1.ns, "10.96.0.16:80")
		if err != nil || !strings.HasPrefix(got, "c ") {
			t.Fatalf("udp via ClusterIP: %q %v", got, err)
		}
		// From a pod (forwarded): ICMP port unreachable, i.e. connection refused.
		_, err = udpAsk(t, w.a.ns, "10.96.0.17:80")
		if !errors.Is(err, syscall.ECONNREFUSED) {
			t.Fatalf("udp from a pod to Service without endpoints: %v, want connection refused", err)
		}
		// From the node itself the REJECT in OUTPUT fails the send at once
		// (EPERM) and queues the port unreachable (ECONNREFUSED): never a timeout.
		_, err = udpAsk(t, n1.ns, "10.96.0.17:80")
		if !errors.Is(err, syscall.ECONNREFUSED) && !errors.Is(err, syscall.EPERM) {
			t.Fatalf("udp from the node to Service without endpoints: %v, want refused/not permitted", err)
		}
	})
	t.Run("sessionAffinity ClientIP", func(t *testing.T) {
		first, err := get(t, n1.ns, "10.96.0.18:80", refuseWait)
		if err != nil {
			t.Fatal(err)
		}
		for range 15 {
			if got, err := get(t, n1.ns, "10.96.0.18:80", refuseWait); err != nil || got != first {
				t.Fatalf("affinity broken: first %s, then %s (%v)", first, got, err)
			}
		}
	})
	t.Run("explain handler", func(t *testing.T) {
		rr := httptest.NewRecorder()
		p1.Handler().ServeHTTP(rr, httptest.NewRequest("GET", "/kubelab/services", nil))
		var e Explanation
		if err := json.Unmarshal(rr.Body.Bytes(), &e); err != nil {
			t.Fatalf("decode: %v: %s", err, rr.Body.String())
		}
		found := false
		for _, s := range e.Services {
			if s.Service == "default/local:http" {
				found = true
				if s.Internal.Verdict != VerdictNoLocalEndpoints || !strings.Contains(s.Internal.Reason, "1 elsewhere") {
					t.Errorf("explain local on node-1: %+v", s.Internal)
				}
			}
		}
		if !found {
			t.Error("default/local:http missing from /kubelab/services")
		}
		rr = httptest.NewRecorder()
		p1.Handler().ServeHTTP(rr, httptest.NewRequest("GET", "/kubelab/ruleset", nil))
		want := `"default/local:http has no local endpoints" -j REJECT`
		if mode == ModeNftables {
			want = `reject with tcp reset comment "default/local:http has no local endpoints"`
		}
		if !strings.Contains(rr.Body.String(), want) {
			t.Errorf("ruleset lacks the refusal rule:\n%s", rr.Body.String())
		}
	})
	t.Run("refusal counters", func(t *testing.T) {
		got, err := p1.RefusedPackets(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if got["default/local:http no local endpoints REJECT"] == 0 || got["default/empty:http no endpoints REJECT"] == 0 {
			t.Errorf("refusal counters on node-1: %v", got)
		}
	})

	ctx := context.Background()
	t.Run("endpoint moves: partial sync", func(t *testing.T) {
		s, err := w.client.DiscoveryV1().EndpointSlices("default").Get(ctx, "local-1", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		s.Endpoints[0].Addresses = []string{w.a.ip}
		n := "node-1"
		s.Endpoints[0].NodeName = &n
		if _, err := w.client.DiscoveryV1().EndpointSlices("default").Update(ctx, s, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		waitVerdict(t, p1, "default/local:http", VerdictEndpoints)
		waitVerdict(t, p2, "default/local:http", VerdictNoLocalEndpoints)
		reachAll(t, n1.ns, "10.96.0.11:80", "a")
		expectRefused(t, n2.ns, "10.96.0.11:80")
	})
	t.Run("patched to Cluster: both nodes", func(t *testing.T) {
		svc, err := w.client.CoreV1().Services("default").Get(ctx, "local", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		c := corev1.ServiceInternalTrafficPolicyCluster
		svc.Spec.InternalTrafficPolicy = &c
		if _, err := w.client.CoreV1().Services("default").Update(ctx, svc, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		waitVerdict(t, p2, "default/local:http", VerdictEndpoints)
		reachAll(t, n1.ns, "10.96.0.11:80", "a")
		reachAll(t, n2.ns, "10.96.0.11:80", "a")
	})
	t.Run("deleted Service: chains removed, traffic no longer DNATed", func(t *testing.T) {
		chain := portMarker(mode, ServicePort{Namespace: "default", Name: "web", PortName: "http", Protocol: corev1.ProtocolTCP})
		if !strings.Contains(rulesDump(t, n1.ns), chain) {
			t.Fatalf("%s not installed before delete", chain)
		}
		if err := w.client.CoreV1().Services("default").Delete(ctx, "web", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		waitGone(t, p1, "default/web:http")
		if strings.Contains(rulesDump(t, n1.ns), chain) {
			t.Errorf("%s still installed after delete", chain)
		}
		if _, err := get(t, n1.ns, "10.96.0.10:80", 300*time.Millisecond); err == nil {
			t.Error("deleted Service still answers")
		}
	})
	t.Run("cleanup removes everything", func(t *testing.T) {
		if err := p2.Cleanup(ctx); err != nil {
			t.Fatal(err)
		}
		if s := rulesDump(t, n2.ns); strings.Contains(strings.ToUpper(s), "KUBELAB") {
			t.Errorf("node-2 still has kubelab rules:\n%s", s)
		}
	})
}

// TestDataPathOptions: --no-local-endpoints=drop and the feature gate off,
// one after the other on node-1 (each start is also a proxier restart).
func TestDataPathOptions(t *testing.T) { forModes(t, testDataPathOptions) }

func testDataPathOptions(t *testing.T, mode string) {
	w := newDataPathWorld(t)
	w.l.mode = mode
	l := w.l
	n1, n2 := l.nodes[0], l.nodes[1]
	p2, _ := l.runProxier(n2, w.client, nil)
	waitVerdict(t, p2, "default/local:http", VerdictEndpoints)

	p1, stop := l.runProxier(n1, w.client, func(c *Config) { c.NoLocalEndpoints = "drop" })
	waitVerdict(t, p1, "default/local:http", VerdictNoLocalEndpoints)
	t.Run("drop: no local endpoint times out", func(t *testing.T) {
		expectTimeout(t, n1.ns, "10.96.0.11:80")
		expectRefused(t, n1.ns, "10.96.0.12:80") // no endpoints at all is still refused
		reachAll(t, n2.ns, "10.96.0.11:80", "b")
	})
	t.Run("drop counted", func(t *testing.T) {
		got, err := p1.RefusedPackets(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if got["default/local:http no local endpoints DROP"] == 0 {
			t.Errorf("drop not counted: %v", got)
		}
	})
	stop()

	p1, _ = l.runProxier(n1, w.client, func(c *Config) { c.ServiceInternalTrafficPolicy = false })
	waitVerdict(t, p1, "default/local:http", VerdictEndpoints)
	t.Run("gate off: Local treated as Cluster", func(t *testing.T) {
		reachAll(t, n1.ns, "10.96.0.11:80", "b")
		s := rulesDump(t, n1.ns)
		if strings.Contains(s, "default/local:http has no local endpoints") {
			t.Errorf("gate off still has a no-local-endpoints rule:\n%s", s)
		}
	})
}

// TestRestartKeepsConnections: rules survive the proxier stopping, a new
// proxier takes them over without breaking established connections, removes
// chains of Services deleted meanwhile, and does not duplicate jumps.
func TestRestartKeepsConnections(t *testing.T) { forModes(t, testRestartKeepsConnections) }

func testRestartKeepsConnections(t *testing.T, mode string) {
	w := newDataPathWorld(t)
	w.l.mode = mode
	l := w.l
	n1 := l.nodes[0]
	ctx := context.Background()
	p1, stop := l.runProxier(n1, w.client, nil)
	waitVerdict(t, p1, "default/ext:http", VerdictEndpoints)

	_, conn, err := dialTCP(t, n1.ns, "10.96.0.15:80", refuseWait) // np -> b on node-2
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	echo := func(msg string) {
		t.Helper()
		_ = conn.SetDeadline(time.Now().Add(3 * time.Second))
		if _, err := fmt.Fprintf(conn, "%s\n", msg); err != nil {
			t.Fatalf("write on established connection: %v", err)
		}
		buf := make([]byte, len(msg)+1)
		if _, err := io.ReadFull(conn, buf); err != nil || string(buf) != msg+"\n" {
			t.Fatalf("echo on established connection: %q %v", buf, err)
		}
	}
	echo("before")
	stop()
	echo("while stopped")
	reachAll(t, n1.ns, "10.96.0.15:80", "b") // rules left in place

	// Delete a Service while no proxier runs.
	emptyChainSvc := portMarker(mode, ServicePort{Namespace: "default", Name: "draining", PortName: "http", Protocol: corev1.ProtocolTCP})
	if !strings.Contains(rulesDump(t, n1.ns), emptyChainSvc) {
		t.Fatal("draining chain missing before restart")
	}
	if err := w.client.CoreV1().Services("default").Delete(ctx, "draining", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}

	p1, _ = l.runProxier(n1, w.client, nil)
	waitVerdict(t, p1, "default/ext:http", VerdictEndpoints)
	echo("after restart")
	reachAll(t, n1.ns, "10.96.0.15:80", "b")
	s := rulesDump(t, n1.ns)
	if strings.Contains(s, emptyChainSvc) {
		t.Error("stale chain of a Service deleted while stopped survived the restart")
	}
	if n := strings.Count(s, "-A PREROUTING -m comment --comment \"kubelab service portals\" -j KUBELAB-SERVICES"); mode == ModeIptables && n != 1 {
		t.Errorf("PREROUTING jump present %d times, want 1", n)
	}
}

// TestUDPConntrackFlush: when a UDP endpoint goes away, a client that keeps
// sending on the same 5-tuple is moved to the new endpoint instead of being
// stuck on a conntrack entry to the old one.
func TestUDPConntrackFlush(t *testing.T) { forModes(t, testUDPConntrackFlush) }

func testUDPConntrackFlush(t *testing.T, mode string) {
	w := newDataPathWorld(t)
	w.l.mode = mode
	l := w.l
	n1 := l.nodes[0]
	ctx := context.Background()
	p1, _ := l.runProxier(n1, w.client, nil)
	waitVerdict(t, p1, "default/dns:udp", VerdictEndpoints)

	var c net.Conn
	var err error
	inNS(t, n1.ns, func() { c, err = net.Dial("udp4", "10.96.0.16:80") })
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ask := func() string {
		t.Helper()
		buf := make([]byte, 100)
		for range 5 {
			_, _ = c.Write([]byte("hi"))
			_ = c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
			if n, err := c.Read(buf); err == nil {
				return strings.Fields(string(buf[:n]))[0]
			}
		}
		t.Fatal("no UDP answer")
		return ""
	}
	if got := ask(); got != "c" {
		t.Fatalf("before: %s, want c", got)
	}
	s, err := w.client.DiscoveryV1().EndpointSlices("default").Get(ctx, "dns-1", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	s.Endpoints[0].Addresses = []string{w.b.ip}
	if _, err := w.client.DiscoveryV1().EndpointSlices("default").Update(ctx, s, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		var ok bool
		for _, sv := range p1.Explain().Services {
			if sv.Service == "default/dns:udp" && len(sv.Internal.Endpoints) == 1 && sv.Internal.Endpoints[0].IP == w.b.ip {
				ok = true
			}
		}
		if ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("endpoint change not programmed")
		}
		time.Sleep(10 * time.Millisecond)
	}
	// Explain shows the new endpoint as soon as the rules are written; the
	// conntrack flush follows in the same sync. Each ask refreshes a stale
	// entry, so an entry the flush missed keeps answering c to the end.
	got := ask()
	for flushBy := time.Now().Add(3 * time.Second); got != "b" && time.Now().Before(flushBy); got = ask() {
		time.Sleep(20 * time.Millisecond)
	}
	if got != "b" {
		t.Fatalf("after the endpoint moved, same socket answered by %s, want b (stale conntrack entry)", got)
	}
}
