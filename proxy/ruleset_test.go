package proxy

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden")

// goldenWorld is a small cluster seen from node-1 that exercises every kind
// of rule: ClusterIP balancing, ITP Local with and without a local endpoint,
// no endpoints (TCP and UDP), NodePort with ETP Cluster and Local (with and
// without a local endpoint, and the seed rule), externalIPs, LB IPs, affinity,
// terminating fallback.
func goldenWorld() ([]*corev1.Service, []*discovery.EndpointSlice) {
	local := corev1.ServiceInternalTrafficPolicyLocal
	etpLocal := corev1.ServiceExternalTrafficPolicyLocal
	lb := func(s *corev1.Service) {
		s.Spec.Type = corev1.ServiceTypeLoadBalancer
		s.Spec.Ports[0].NodePort = 30090
		s.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: "192.0.2.50"}}
	}
	svcs := []*corev1.Service{
		mkService("default", "web", "10.96.0.10"),
		mkService("default", "local-here", "10.96.0.11", withITP(local)),
		mkService("default", "local-away", "10.96.0.12", withITP(local)),
		mkService("default", "empty", "10.96.0.13"),
		mkService("default", "empty-udp", "10.96.0.14", withUDP()),
		mkService("default", "np", "10.96.1.10", withNodePort(30080)),
		mkService("default", "np-etp-local", "10.96.1.11", withNodePort(30081), withETP(etpLocal)),
		mkService("default", "np-etp-away", "10.96.1.12", withNodePort(30082), withETP(etpLocal), withITP(local)),
		mkService("default", "ext", "10.96.2.10", withExternalIPs("192.0.2.10")),
		mkService("default", "sticky", "10.96.2.11", withAffinity(30)),
		mkService("default", "draining", "10.96.2.12"),
		mkService("default", "dns", "10.96.0.20", withUDP()),
		mkService("default", "lb", "10.96.3.10", lb),
		mkService("default", "empty-np", "10.96.3.11", withNodePort(30083)),
	}
	eps := func(svc string, e ...sliceEP) *discovery.EndpointSlice {
		return mkSlice("default", svc, svc+"-1", "http", corev1.ProtocolTCP, 8080, e...)
	}
	n1 := func(ip string) sliceEP { return sliceEP{ip: ip, node: "node-1"} }
	n2 := func(ip string) sliceEP { return sliceEP{ip: ip, node: "node-2"} }
	slices := []*discovery.EndpointSlice{
		eps("web", n1("10.244.1.2"), n2("10.244.2.2"), n2("10.244.2.3")),
		eps("local-here", n1("10.244.1.4"), n2("10.244.2.4")),
		eps("local-away", n2("10.244.2.5")),
		eps("np", n1("10.244.1.6"), n2("10.244.2.6")),
		eps("np-etp-local", n1("10.244.1.7"), n2("10.244.2.7")),
		eps("np-etp-away", n2("10.244.2.8")),
		eps("ext", n2("10.244.2.9")),
		eps("sticky", n1("10.244.1.10"), n2("10.244.2.10")),
		eps("draining", sliceEP{ip: "10.244.2.11", node: "node-2", ready: bp(false), serving: bp(true), terminating: bp(true)}),
		mkSlice("default", "dns", "dns-1", "udp", corev1.ProtocolUDP, 5353, n2("10.244.2.12")),
		eps("lb", n1("10.244.1.13")),
	}
	return svcs, slices
}

func renderWorld(svcs []*corev1.Service, slices []*discovery.EndpointSlice, node string, cfg RenderConfig, gate bool) *Ruleset {
	var ports []ServicePort
	var choices []Choice
	bySvc := map[string][]*discovery.EndpointSlice{}
	for _, sl := range slices {
		k := objKey(sl.Namespace, sl.Labels[discovery.LabelServiceName])
		bySvc[k] = append(bySvc[k], sl)
	}
	for _, s := range svcs {
		mine := bySvc[objKey(s.Namespace, s.Name)]
		for _, sp := range servicePorts(s) {
			ports = append(ports, sp)
			choices = append(choices, Choose(sp, endpointsFor(mine, sp.PortName, sp.Protocol), node, gate))
		}
	}
	return RenderAll(ports, choices, cfg)
}

func checkGolden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read golden (run with -update to create): %v", err)
	}
	if string(want) != got {
		t.Errorf("%s differs from golden (run go test ./proxy -run Golden -update after checking):\n%s", path, lineDiff(string(want), got))
	}
}

func lineDiff(a, b string) string {
	al, bl := strings.Split(a, "\n"), strings.Split(b, "\n")
	var out []string
	for i := 0; i < len(al) || i < len(bl); i++ {
		var x, y string
		if i < len(al) {
			x = al[i]
		}
		if i < len(bl) {
			y = bl[i]
		}
		if x != y {
			out = append(out, "- "+x, "+ "+y)
		}
		if len(out) > 40 {
			break
		}
	}
	return strings.Join(out, "\n")
}

func TestRulesetGolden(t *testing.T) {
	svcs, slices := goldenWorld()
	cfg := RenderConfig{NodeIP: "10.200.0.1", ClusterCIDR: "10.244.0.0/16"}
	tests := []struct {
		name string
		node string
		cfg  RenderConfig
		gate bool
	}{
		{"node-1-reject", "node-1", cfg, true},
		{"node-1-drop", "node-1", RenderConfig{NodeIP: cfg.NodeIP, ClusterCIDR: cfg.ClusterCIDR, DropNoLocal: true}, true},
		{"node-1-gate-off", "node-1", cfg, false},
		{"node-3-no-cidr", "node-3", RenderConfig{NodeIP: "10.200.0.3"}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkGolden(t, tt.name, renderWorld(svcs, slices, tt.node, tt.cfg, tt.gate).Text())
		})
	}
}

// TestRulesetProperties checks what the golden files encode, so a careless
// -update cannot silently accept a wrong ruleset.
func TestRulesetProperties(t *testing.T) {
	svcs, slices := goldenWorld()
	text := renderWorld(svcs, slices, "node-1", RenderConfig{NodeIP: "10.200.0.1", ClusterCIDR: "10.244.0.0/16"}, true).Text()
	lines := strings.Split(text, "\n")
	has := func(subs ...string) bool {
		for _, l := range lines {
			ok := true
			for _, s := range subs {
				if !strings.Contains(l, s) {
					ok = false
					break
				}
			}
			if ok {
				return true
			}
		}
		return false
	}
	checks := []struct {
		what string
		subs []string
		want bool
	}{
		{"no-endpoints TCP rejected with reset", []string{"-A KUBELAB-SERVICES -d 10.96.0.13/32", "default/empty:http has no endpoints", "tcp-reset"}, true},
		{"no-endpoints UDP port unreachable", []string{"-A KUBELAB-SERVICES -d 10.96.0.14/32", "has no endpoints", "icmp-port-unreachable"}, true},
		{"ITP Local without local endpoint rejected", []string{"-d 10.96.0.12/32", "default/local-away:http has no local endpoints", "REJECT"}, true},
		{"ITP Local with local endpoint DNATs only to it", []string{"--to-destination 10.244.2.4:8080"}, false},
		{"ITP Local local endpoint", []string{"--to-destination 10.244.1.4:8080"}, true},
		{"ETP Local without local endpoint dropped on node IP", []string{"-A KUBELAB-EXTERNAL-SERVICES -d 10.200.0.1/32", "--dport 30082", "has no local endpoints", "-j DROP"}, true},
		{"ETP Local without local endpoint dropped on loopback", []string{"-A KUBELAB-EXTERNAL-SERVICES -d 127.0.0.1/32", "--dport 30082", "-j DROP"}, true},
		{"seed rule: np-etp-away internal reaches remote endpoint", []string{"default/np-etp-away:http cluster IP", "KUBELAB-SVC-"}, true},
		{"empty NodePort rejected", []string{"-A KUBELAB-EXTERNAL-SERVICES", "--dport 30083", "has no endpoints", "tcp-reset"}, true},
		{"terminating fallback used", []string{"--to-destination 10.244.2.11:8080"}, true},
		{"affinity set", []string{"-m recent --name KUBELAB-SEP-", "--set"}, true},
		{"affinity check with timeout", []string{"--rcheck --seconds 30 --reap"}, true},
		{"hairpin masquerade", []string{"-s 10.244.1.2/32", "KUBELAB-MARK-MASQ"}, true},
		{"outside cluster CIDR masquerade", []string{"! -s 10.244.0.0/16 -d 10.96.0.10/32"}, true},
		{"balanced 1/3", []string{"default/web:http", "--probability 0.33333333333"}, true},
		{"balanced 1/2", []string{"default/web:http", "--probability 0.50000000000"}, true},
		{"two-level dispatch", []string{"-A KUBELAB-SERVICES -d 0.0.0.10/0.0.0.255", "-j KUBELAB-DST-0A"}, true},
		{"external IP", []string{"-d 192.0.2.10/32", "external IP", "KUBELAB-EXT-"}, true},
		{"LB IP", []string{"-d 192.0.2.50/32", "loadbalancer IP", "KUBELAB-EXT-"}, true},
		{"nodeports on node IP", []string{"-A KUBELAB-SERVICES -d 10.200.0.1/32", "KUBELAB-NODEPORTS"}, true},
		{"nodeports on loopback", []string{"-A KUBELAB-SERVICES -d 127.0.0.1/32", "KUBELAB-NODEPORTS"}, true},
	}
	for _, c := range checks {
		if got := has(c.subs...); got != c.want {
			t.Errorf("%s: line with %q present = %v, want %v", c.what, c.subs, got, c.want)
		}
	}
	// Every rule carries a comment; every chain name fits iptables' limit.
	for _, l := range lines {
		if strings.HasPrefix(l, "-A ") && !strings.Contains(l, "--comment") &&
			!strings.HasPrefix(l, "-A KUBELAB-POSTROUTING") && !strings.HasPrefix(l, "-A KUBELAB-MARK-MASQ") {
			t.Errorf("rule without comment: %s", l)
		}
		if strings.HasPrefix(l, ":") {
			if name := strings.Fields(l[1:])[0]; len(name) > 28 {
				t.Errorf("chain name %q longer than 28", name)
			}
		}
	}
}

func TestRulesetDropAndGate(t *testing.T) {
	svcs, slices := goldenWorld()
	drop := renderWorld(svcs, slices, "node-1", RenderConfig{NodeIP: "10.200.0.1", DropNoLocal: true}, true).Text()
	if !strings.Contains(drop, `"default/local-away:http has no local endpoints" -j DROP`) {
		t.Error("drop mode: ITP Local without local endpoint not dropped")
	}
	off := renderWorld(svcs, slices, "node-1", RenderConfig{NodeIP: "10.200.0.1"}, false).Text()
	if strings.Contains(off, "has no local endpoints\" -j REJECT") || !strings.Contains(off, "--to-destination 10.244.2.5:8080") {
		t.Error("gate off: ITP Local still honoured")
	}
}

func TestChainNamesStable(t *testing.T) {
	sp := ServicePort{Namespace: "default", Name: "web", PortName: "http", Protocol: corev1.ProtocolTCP}
	a, b := svcChain(sp.Key()), svcChain(sp.Key())
	sp2 := sp
	sp2.Protocol = corev1.ProtocolUDP
	if a != b || a == svcChain(sp2.Key()) || len(a) != 28 || !strings.HasPrefix(a, "KUBELAB-SVC-") {
		t.Errorf("chain names: %s %s %s", a, b, svcChain(sp2.Key()))
	}
}
