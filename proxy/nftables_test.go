package proxy

import (
	"context"
	"log/slog"
	"sort"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"
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
