package proxy

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
)

func renderWorldNft(svcs []*corev1.Service, slices []*discovery.EndpointSlice, node string, cfg RenderConfig, gate bool) *NftRuleset {
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
	rs := RenderAllNft(ports, choices, cfg)
	rs.Gen = 1
	return rs
}

var nftGoldenCases = []struct {
	name string
	node string
	cfg  RenderConfig
	gate bool
}{
	{"node-1-reject", "node-1", RenderConfig{NodeIP: "10.200.0.1", ClusterCIDR: "10.244.0.0/16"}, true},
	{"node-1-drop", "node-1", RenderConfig{NodeIP: "10.200.0.1", ClusterCIDR: "10.244.0.0/16", DropNoLocal: true}, true},
	{"node-1-gate-off", "node-1", RenderConfig{NodeIP: "10.200.0.1", ClusterCIDR: "10.244.0.0/16"}, false},
	{"node-3-no-cidr", "node-3", RenderConfig{NodeIP: "10.200.0.3"}, true},
}

func TestNftRulesetGolden(t *testing.T) {
	svcs, slices := goldenWorld()
	for _, tt := range nftGoldenCases {
		t.Run(tt.name, func(t *testing.T) {
			checkGolden(t, tt.name+".nft", renderWorldNft(svcs, slices, tt.node, tt.cfg, tt.gate).Script(nil, nil, false))
		})
	}
}

// TestNftScriptLoads feeds every golden script to the real nft in a fresh
// network namespace, twice (a full sync over an existing table must work),
// and checks that the kernel holds what the script declares.
func TestNftScriptLoads(t *testing.T) {
	l := newLab(t, 1)
	ex := NetnsExecutor(l.nodes[0].ns, t.TempDir())
	if _, err := ex.ToolPath("nft"); err != nil {
		t.Fatalf("nft not installed (make deps): %v", err)
	}
	ctx := context.Background()
	svcs, slices := goldenWorld()
	for _, tt := range nftGoldenCases {
		script := renderWorldNft(svcs, slices, tt.node, tt.cfg, tt.gate).Script(nil, nil, false)
		for i := range 2 {
			if _, err := run(ctx, ex, []byte(script), "nft", "-f", "-"); err != nil {
				t.Fatalf("%s: load %d: %v", tt.name, i, err)
			}
		}
		out, err := run(ctx, ex, nil, "nft", "list", "table", "ip", "kubelab")
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{"default/web:http cluster IP", "goto KUBELAB-LB-TCP-", "10.96.0.10 . 80 . 2"} {
			if !strings.Contains(string(out), want) {
				t.Errorf("%s: kernel ruleset lacks %q", tt.name, want)
			}
		}
	}
	if err := nftCleanup(ctx, ex); err != nil {
		t.Fatal(err)
	}
	if out, _ := run(ctx, ex, nil, "nft", "list", "ruleset"); strings.Contains(string(out), "kubelab") {
		t.Errorf("cleanup left:\n%s", out)
	}
}

// TestNftBulkLoadMatchesText loads the golden world twice into fresh
// namespaces: all by nft text, and with the big maps over netlink (the
// full-sync path). The kernel must hold exactly the same ruleset.
func TestNftBulkLoadMatchesText(t *testing.T) {
	l := newLab(t, 2)
	ctx := context.Background()
	svcs, eps := goldenWorld()
	rs := renderWorldNft(svcs, eps, "node-1", RenderConfig{NodeIP: "10.200.0.1", ClusterCIDR: "10.244.0.0/16"}, true)
	list := func(ex Executor) []string {
		out, err := run(ctx, ex, nil, "nft", "list", "ruleset")
		if err != nil {
			t.Fatal(err)
		}
		var lines []string
		for _, s := range strings.Split(string(out), "\n") {
			lines = append(lines, strings.TrimSuffix(strings.TrimSpace(s), ","))
		}
		sort.Strings(lines)
		return lines
	}
	text := NetnsExecutor(l.nodes[0].ns, t.TempDir())
	if _, err := run(ctx, text, []byte(rs.Script(nil, nil, false)), "nft", "-f", "-"); err != nil {
		t.Fatal(err)
	}
	bulk := NetnsExecutor(l.nodes[1].ns, t.TempDir())
	p := &Proxier{cfg: Config{Executor: bulk}, log: slog.Default()}
	if !p.nftBulkLoad(ctx, rs) {
		t.Fatal("bulk load failed (see log)")
	}
	if _, err := run(ctx, bulk, []byte(rs.Script(nil, nil, true)), "nft", "-f", "-"); err != nil {
		t.Fatal(err)
	}
	a, b := list(text), list(bulk)
	if strings.Join(a, "\n") != strings.Join(b, "\n") {
		t.Errorf("bulk-loaded ruleset differs from the text-loaded one:\n%s", lineDiff(strings.Join(a, "\n"), strings.Join(b, "\n")))
	}
	all := strings.Join(b, "\n")
	if !strings.Contains(all, `10.96.0.10 . 80 . 2 : 10.244.2.3 . 8080`) || !strings.Contains(all, `10.96.0.10 . tcp . 80 comment "default/web:http cluster IP" : goto KUBELAB-LB-TCP-C-3`) {
		t.Errorf("bulk-loaded maps lack expected elements:\n%s", strings.Join(b, "\n"))
	}
}

// TestNftPartialEqualsFull drives one nftables proxier through a series of
// changes (each applied by a partial sync) and checks after each that the
// kernel holds exactly what a fresh proxier's full sync of the same world
// writes (in another namespace, same node identity).
func TestNftPartialEqualsFull(t *testing.T) {
	l := newLab(t, 2)
	l.mode = ModeNftables
	ctx := context.Background()
	svcs, eps := goldenWorld()
	var objs []runtime.Object
	for _, s := range svcs {
		objs = append(objs, s)
	}
	for _, s := range eps {
		objs = append(objs, s)
	}
	client := fake.NewClientset(objs...)
	n1 := l.nodes[0]
	p1, _ := l.runProxier(n1, client, nil)
	waitVerdict(t, p1, "default/web:http", VerdictEndpoints)

	norm := regexp.MustCompile(`-g[0-9]+|counter packets [0-9]+ bytes [0-9]+`)
	dump := func(ns string) string {
		out := sh(t, "ip", "netns", "exec", ns, "nft", "list", "ruleset")
		var lines []string
		for _, s := range strings.Split(norm.ReplaceAllString(out, ""), "\n") {
			s = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(s), "elements = {"))
			lines = append(lines, strings.TrimSuffix(strings.TrimSuffix(s, "}"), ","))
		}
		sort.Strings(lines)
		return strings.Join(lines, "\n")
	}
	check := func(step string) {
		t.Helper()
		// A fresh proxier with node-1's identity in node-2's namespace.
		p2, stop := l.runProxier(l.nodes[1], client, func(c *Config) { c.NodeName, c.NodeIP = n1.name, net.ParseIP(n1.ip) })
		deadline := time.Now().Add(10 * time.Second)
		for p2.Explain().Syncs == 0 && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		stop()
		if a, b := dump(n1.ns), dump(l.nodes[1].ns); a != b {
			t.Errorf("%s: partial-synced kernel state differs from a full sync:\n%s", step, setDiff(b, a))
		}
	}
	waitSyncs := func(p *Proxier, after int) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for p.Explain().Syncs <= after && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		time.Sleep(50 * time.Millisecond) // let a burst settle into one more sync
	}
	check("start")

	steps := []struct {
		name string
		do   func() error
	}{
		{"endpoint moves (elements only)", func() error {
			s, err := client.DiscoveryV1().EndpointSlices("default").Get(ctx, "web-1", metav1.GetOptions{})
			if err != nil {
				return err
			}
			s.Endpoints[1].Addresses = []string{"10.244.2.99"}
			_, err = client.DiscoveryV1().EndpointSlices("default").Update(ctx, s, metav1.UpdateOptions{})
			return err
		}},
		{"endpoint count changes (new balancing chain)", func() error {
			s, err := client.DiscoveryV1().EndpointSlices("default").Get(ctx, "web-1", metav1.GetOptions{})
			if err != nil {
				return err
			}
			s.Endpoints = append(s.Endpoints, s.Endpoints[0])
			s.Endpoints[len(s.Endpoints)-1].Addresses = []string{"10.244.1.77"}
			_, err = client.DiscoveryV1().EndpointSlices("default").Update(ctx, s, metav1.UpdateOptions{})
			return err
		}},
		{"affinity endpoint changes (own chains and sets)", func() error {
			s, err := client.DiscoveryV1().EndpointSlices("default").Get(ctx, "sticky-1", metav1.GetOptions{})
			if err != nil {
				return err
			}
			s.Endpoints[0].Addresses = []string{"10.244.1.88"}
			_, err = client.DiscoveryV1().EndpointSlices("default").Update(ctx, s, metav1.UpdateOptions{})
			return err
		}},
		{"service gains endpoints (refusal removed)", func() error {
			_, err := client.DiscoveryV1().EndpointSlices("default").Create(ctx,
				mkSlice("default", "empty", "empty-1", "http", corev1.ProtocolTCP, 8080, sliceEP{ip: "10.244.1.50", node: "node-1"}), metav1.CreateOptions{})
			return err
		}},
		{"NodePort service deleted", func() error {
			return client.CoreV1().Services("default").Delete(ctx, "np", metav1.DeleteOptions{})
		}},
		{"ClusterIP service becomes NodePort", func() error {
			s, err := client.CoreV1().Services("default").Get(ctx, "web", metav1.GetOptions{})
			if err != nil {
				return err
			}
			s.Spec.Type = corev1.ServiceTypeNodePort
			s.Spec.Ports[0].NodePort = 30099
			_, err = client.CoreV1().Services("default").Update(ctx, s, metav1.UpdateOptions{})
			return err
		}},
	}
	for _, st := range steps {
		before := p1.Explain().Syncs
		if err := st.do(); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		waitSyncs(p1, before)
		check(st.name)
	}
}

// setDiff lists the lines only in want (-) and only in got (+), counted.
func setDiff(want, got string) string {
	count := map[string]int{}
	for _, l := range strings.Split(want, "\n") {
		count[l]--
	}
	for _, l := range strings.Split(got, "\n") {
		count[l]++
	}
	var out []string
	for l, n := range count {
		switch {
		case n < 0:
			out = append(out, fmt.Sprintf("- %s (x%d)", l, -n))
		case n > 0:
			out = append(out, fmt.Sprintf("+ %s (x%d)", l, n))
		}
	}
	sort.Strings(out)
	return strings.Join(out, "\n")
}

func TestModeConfig(t *testing.T) {
	l := newLab(t, 1)
	ex := NetnsExecutor(l.nodes[0].ns, t.TempDir())
	for _, tt := range []struct{ in, want string }{
		{"", ModeIptables}, {"iptables", ModeIptables}, {"nftables", ModeNftables}, {"auto", ModeNftables},
	} {
		p, err := New(fake.NewClientset(), Config{NodeName: "node-1", Executor: ex, Mode: tt.in})
		if err != nil {
			t.Fatalf("mode %q: %v", tt.in, err)
		}
		if p.Mode() != tt.want || p.Explain().Mode != tt.want {
			t.Errorf("mode %q: got %s, want %s (nft is installed)", tt.in, p.Mode(), tt.want)
		}
	}
	if _, err := New(fake.NewClientset(), Config{NodeName: "node-1", Executor: ex, Mode: "ipvs"}); err == nil || !strings.Contains(err.Error(), "Mode must be") {
		t.Errorf("mode ipvs: %v, want a Mode error", err)
	}
}
