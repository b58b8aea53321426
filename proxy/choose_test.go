package proxy

import (
	"reflect"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

func ep(ip, node string, ready, serving, terminating bool) Endpoint {
	return Endpoint{IP: ip, Port: 80, NodeName: node, Ready: ready, Serving: serving, Terminating: terminating}
}

func readyEP(ip, node string) Endpoint { return ep(ip, node, true, true, false) }
func termEP(ip, node string) Endpoint  { return ep(ip, node, false, true, true) }

func ips(eps []Endpoint) []string {
	out := []string{}
	for _, e := range eps {
		out = append(out, e.IP)
	}
	return out
}

// TestChoose covers every rule of itp.md, one row per rule.
func TestChoose(t *testing.T) {
	const me = "node-1"
	local, remote := corev1.ServiceInternalTrafficPolicyLocal, corev1.ServiceInternalTrafficPolicyCluster
	etpLocal := corev1.ServiceExternalTrafficPolicyLocal
	base := ServicePort{Namespace: "default", Name: "web", Protocol: corev1.ProtocolTCP, ClusterIP: "10.96.0.10", Port: 80}
	with := func(f func(*ServicePort)) ServicePort { sp := base; f(&sp); return sp }
	nodePort := func(sp *ServicePort) { sp.NodePort = 30080 }

	type want struct {
		intPolicy  Policy
		intVerdict Verdict
		intIPs     []string
		intReason  string // substring
		ext        bool
		extPolicy  Policy
		extVerdict Verdict
		extIPs     []string
	}
	tests := []struct {
		name string
		sp   ServicePort
		eps  []Endpoint
		gate bool
		want want
	}{
		{"cluster: all ready endpoints", base,
			[]Endpoint{readyEP("10.244.1.2", "node-1"), readyEP("10.244.2.2", "node-2"), termEP("10.244.2.3", "node-2")}, true,
			want{intPolicy: PolicyCluster, intVerdict: VerdictEndpoints, intIPs: []string{"10.244.1.2", "10.244.2.2"}, intReason: "2 ready"}},
		{"cluster: explicit Cluster policy", with(func(sp *ServicePort) { sp.InternalTrafficPolicy = remote }),
			[]Endpoint{readyEP("10.244.2.2", "node-2")}, true,
			want{intPolicy: PolicyCluster, intVerdict: VerdictEndpoints, intIPs: []string{"10.244.2.2"}}},
		{"cluster: missing nodeName still used", base,
			[]Endpoint{readyEP("10.244.9.9", "")}, true,
			want{intPolicy: PolicyCluster, intVerdict: VerdictEndpoints, intIPs: []string{"10.244.9.9"}}},
		{"cluster: terminating fallback when none ready", base,
			[]Endpoint{termEP("10.244.2.3", "node-2"), ep("10.244.2.4", "node-2", false, false, true), ep("10.244.2.5", "node-2", false, false, false)}, true,
			want{intPolicy: PolicyCluster, intVerdict: VerdictEndpoints, intIPs: []string{"10.244.2.3"}, intReason: "serving-terminating"}},
		{"cluster: not serving and not ready => no endpoints", base,
			[]Endpoint{ep("10.244.2.4", "node-2", false, false, true), ep("10.244.2.5", "node-2", false, true, false)}, true,
			want{intPolicy: PolicyCluster, intVerdict: VerdictNoEndpoints, intIPs: []string{}}},
		{"cluster: no endpoints at all", base, nil, true,
			want{intPolicy: PolicyCluster, intVerdict: VerdictNoEndpoints, intIPs: []string{}, intReason: "no ready or serving-terminating"}},
		{"local: only this node's ready endpoints", with(func(sp *ServicePort) { sp.InternalTrafficPolicy = local }),
			[]Endpoint{readyEP("10.244.1.2", "node-1"), readyEP("10.244.2.2", "node-2"), termEP("10.244.1.3", "node-1")}, true,
			want{intPolicy: PolicyLocal, intVerdict: VerdictEndpoints, intIPs: []string{"10.244.1.2"}, intReason: "on node node-1"}},
		{"local: local terminating fallback (ready remote ignored)", with(func(sp *ServicePort) { sp.InternalTrafficPolicy = local }),
			[]Endpoint{termEP("10.244.1.3", "node-1"), readyEP("10.244.2.2", "node-2")}, true,
			want{intPolicy: PolicyLocal, intVerdict: VerdictEndpoints, intIPs: []string{"10.244.1.3"}, intReason: "serving-terminating"}},
		{"local: none here, some elsewhere => no local endpoints", with(func(sp *ServicePort) { sp.InternalTrafficPolicy = local }),
			[]Endpoint{readyEP("10.244.2.2", "node-2")}, true,
			want{intPolicy: PolicyLocal, intVerdict: VerdictNoLocalEndpoints, intIPs: []string{}, intReason: "1 elsewhere"}},
		{"local: only terminating elsewhere => no local endpoints", with(func(sp *ServicePort) { sp.InternalTrafficPolicy = local }),
			[]Endpoint{termEP("10.244.2.2", "node-2")}, true,
			want{intPolicy: PolicyLocal, intVerdict: VerdictNoLocalEndpoints, intIPs: []string{}}},
		{"local: nothing anywhere => no endpoints", with(func(sp *ServicePort) { sp.InternalTrafficPolicy = local }),
			[]Endpoint{ep("10.244.1.9", "node-1", false, false, false)}, true,
			want{intPolicy: PolicyLocal, intVerdict: VerdictNoEndpoints, intIPs: []string{}}},
		{"local: endpoint without nodeName is never local", with(func(sp *ServicePort) { sp.InternalTrafficPolicy = local }),
			[]Endpoint{readyEP("10.244.9.9", "")}, true,
			want{intPolicy: PolicyLocal, intVerdict: VerdictNoLocalEndpoints, intIPs: []string{}}},
		{"gate off: Local treated as Cluster", with(func(sp *ServicePort) { sp.InternalTrafficPolicy = local }),
			[]Endpoint{readyEP("10.244.2.2", "node-2")}, false,
			want{intPolicy: PolicyCluster, intVerdict: VerdictEndpoints, intIPs: []string{"10.244.2.2"}, intReason: "feature gate"}},
		{"nodeport ETP Cluster: external uses every endpoint", with(nodePort),
			[]Endpoint{readyEP("10.244.1.2", "node-1"), readyEP("10.244.2.2", "node-2")}, true,
			want{intPolicy: PolicyCluster, intVerdict: VerdictEndpoints, intIPs: []string{"10.244.1.2", "10.244.2.2"},
				ext: true, extPolicy: PolicyCluster, extVerdict: VerdictEndpoints, extIPs: []string{"10.244.1.2", "10.244.2.2"}}},
		{"ITP Local + ETP Cluster: internal local only, external all", with(func(sp *ServicePort) { nodePort(sp); sp.InternalTrafficPolicy = local }),
			[]Endpoint{readyEP("10.244.2.2", "node-2")}, true,
			want{intPolicy: PolicyLocal, intVerdict: VerdictNoLocalEndpoints, intIPs: []string{},
				ext: true, extPolicy: PolicyCluster, extVerdict: VerdictEndpoints, extIPs: []string{"10.244.2.2"}}},
		{"ETP Local: external local only", with(func(sp *ServicePort) { nodePort(sp); sp.ExternalTrafficPolicy = etpLocal }),
			[]Endpoint{readyEP("10.244.1.2", "node-1"), readyEP("10.244.2.2", "node-2")}, true,
			want{intPolicy: PolicyCluster, intVerdict: VerdictEndpoints, intIPs: []string{"10.244.1.2", "10.244.2.2"},
				ext: true, extPolicy: PolicyLocal, extVerdict: VerdictEndpoints, extIPs: []string{"10.244.1.2"}}},
		{"ETP Local, none here: external no local endpoints", with(func(sp *ServicePort) { nodePort(sp); sp.ExternalTrafficPolicy = etpLocal }),
			[]Endpoint{readyEP("10.244.2.2", "node-2")}, true,
			want{intPolicy: PolicyCluster, intVerdict: VerdictEndpoints, intIPs: []string{"10.244.2.2"},
				ext: true, extPolicy: PolicyLocal, extVerdict: VerdictNoLocalEndpoints, extIPs: []string{}}},
		{"seed rule: ETP Local disables ITP Local", with(func(sp *ServicePort) {
			nodePort(sp)
			sp.ExternalTrafficPolicy = etpLocal
			sp.InternalTrafficPolicy = local
		}),
			[]Endpoint{readyEP("10.244.2.2", "node-2")}, true,
			want{intPolicy: PolicyCluster, intVerdict: VerdictEndpoints, intIPs: []string{"10.244.2.2"}, intReason: "seed rule",
				ext: true, extPolicy: PolicyLocal, extVerdict: VerdictNoLocalEndpoints, extIPs: []string{}}},
		{"ETP Local on a ClusterIP-only Service has no effect", with(func(sp *ServicePort) {
			sp.ExternalTrafficPolicy = etpLocal
			sp.InternalTrafficPolicy = local
		}),
			[]Endpoint{readyEP("10.244.2.2", "node-2")}, true,
			want{intPolicy: PolicyLocal, intVerdict: VerdictNoLocalEndpoints, intIPs: []string{}}},
		{"externalIPs count as external", with(func(sp *ServicePort) { sp.ExternalIPs = []string{"192.0.2.10"}; sp.ExternalTrafficPolicy = etpLocal }),
			[]Endpoint{termEP("10.244.1.3", "node-1"), readyEP("10.244.2.2", "node-2")}, true,
			want{intPolicy: PolicyCluster, intVerdict: VerdictEndpoints, intIPs: []string{"10.244.2.2"},
				ext: true, extPolicy: PolicyLocal, extVerdict: VerdictEndpoints, extIPs: []string{"10.244.1.3"}}},
		{"LB IP, no endpoints: external no endpoints", with(func(sp *ServicePort) { sp.LoadBalancerIPs = []string{"192.0.2.20"} }),
			nil, true,
			want{intPolicy: PolicyCluster, intVerdict: VerdictNoEndpoints, intIPs: []string{},
				ext: true, extPolicy: PolicyCluster, extVerdict: VerdictNoEndpoints, extIPs: []string{}}},
		{"duplicate endpoint across slices counted once", base,
			[]Endpoint{ep("10.244.2.2", "node-2", false, false, false), readyEP("10.244.2.2", "node-2")}, true,
			want{intPolicy: PolicyCluster, intVerdict: VerdictEndpoints, intIPs: []string{"10.244.2.2"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Choose(tt.sp, tt.eps, me, tt.gate)
			if c.Internal.Policy != tt.want.intPolicy || c.Internal.Verdict != tt.want.intVerdict {
				t.Errorf("internal = %s/%s, want %s/%s (%s)", c.Internal.Policy, c.Internal.Verdict, tt.want.intPolicy, tt.want.intVerdict, c.Internal.Reason)
			}
			if got := ips(c.Internal.Endpoints); !reflect.DeepEqual(got, tt.want.intIPs) {
				t.Errorf("internal endpoints = %v, want %v", got, tt.want.intIPs)
			}
			if tt.want.intReason != "" && !strings.Contains(c.Internal.Reason, tt.want.intReason) {
				t.Errorf("internal reason %q lacks %q", c.Internal.Reason, tt.want.intReason)
			}
			if (c.External != nil) != tt.want.ext {
				t.Fatalf("external present = %v, want %v", c.External != nil, tt.want.ext)
			}
			if c.External == nil {
				return
			}
			if c.External.Policy != tt.want.extPolicy || c.External.Verdict != tt.want.extVerdict {
				t.Errorf("external = %s/%s, want %s/%s (%s)", c.External.Policy, c.External.Verdict, tt.want.extPolicy, tt.want.extVerdict, c.External.Reason)
			}
			if got := ips(c.External.Endpoints); !reflect.DeepEqual(got, tt.want.extIPs) {
				t.Errorf("external endpoints = %v, want %v", got, tt.want.extIPs)
			}
		})
	}
}

func TestServicePortsAndEndpoints(t *testing.T) {
	itp := corev1.ServiceInternalTrafficPolicyLocal
	timeout := int32(60)
	svc := &corev1.Service{}
	svc.Namespace, svc.Name = "default", "web"
	svc.Spec = corev1.ServiceSpec{
		Type: corev1.ServiceTypeNodePort, ClusterIP: "10.96.0.10", InternalTrafficPolicy: &itp,
		SessionAffinity:       corev1.ServiceAffinityClientIP,
		SessionAffinityConfig: &corev1.SessionAffinityConfig{ClientIP: &corev1.ClientIPConfig{TimeoutSeconds: &timeout}},
		Ports: []corev1.ServicePort{
			{Name: "http", Port: 80, NodePort: 30080},
			{Name: "dns", Port: 53, Protocol: corev1.ProtocolUDP, NodePort: 30053},
		},
	}
	sps := servicePorts(svc)
	if len(sps) != 2 || sps[0].Protocol != corev1.ProtocolTCP || sps[0].NodePort != 30080 || sps[0].AffinityTimeout != 60 ||
		sps[1].Protocol != corev1.ProtocolUDP || sps[0].InternalTrafficPolicy != itp || sps[0].String() != "default/web:http" {
		t.Fatalf("servicePorts = %+v", sps)
	}
	headless := svc.DeepCopy()
	headless.Spec.ClusterIP = corev1.ClusterIPNone
	if got := servicePorts(headless); len(got) != 0 {
		t.Errorf("headless got ports %v", got)
	}

	s := mkSlice("default", "web", "web-abc", "http", corev1.ProtocolTCP, 8080,
		sliceEP{"10.244.1.2", "node-1", nil, nil, nil},
		sliceEP{"10.244.2.2", "node-2", bp(false), bp(true), bp(true)},
	)
	other := mkSlice("default", "web", "web-udp", "dns", corev1.ProtocolUDP, 5353, sliceEP{"10.244.1.5", "node-1", nil, nil, nil})
	eps := endpointsFor(sliceList(s, other), "http", corev1.ProtocolTCP)
	want := []Endpoint{
		{IP: "10.244.1.2", Port: 8080, NodeName: "node-1", Ready: true, Serving: true},
		{IP: "10.244.2.2", Port: 8080, NodeName: "node-2", Ready: false, Serving: true, Terminating: true},
	}
	if !reflect.DeepEqual(eps, want) {
		t.Errorf("endpointsFor = %+v, want %+v", eps, want)
	}
}
