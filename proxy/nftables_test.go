package proxy

import (
	"context"
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
	return RenderAllNft(ports, choices, cfg)
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
			checkGolden(t, tt.name+".nft", renderWorldNft(svcs, slices, tt.node, tt.cfg, tt.gate).Script(nil, nil))
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
		script := renderWorldNft(svcs, slices, tt.node, tt.cfg, tt.gate).Script(nil, nil)
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
