package main

import "testing"

func TestParseFeatureGates(t *testing.T) {
	for _, tc := range []struct {
		in      string
		itp     bool
		wantErr bool
	}{
		{"", true, false},
		{"ServiceInternalTrafficPolicy=false", false, false},
		{" ServiceInternalTrafficPolicy = true ", true, false},
		{"ServiceInternalTrafficPolicy=maybe", false, true},
		{"NoSuchGate=true", false, true},
		{"ServiceInternalTrafficPolicy", false, true},
	} {
		g, err := parseFeatureGates(tc.in)
		if (err != nil) != tc.wantErr {
			t.Errorf("parseFeatureGates(%q) error = %v, wantErr %v", tc.in, err, tc.wantErr)
			continue
		}
		if err == nil && g["ServiceInternalTrafficPolicy"] != tc.itp {
			t.Errorf("parseFeatureGates(%q) ITP = %v, want %v", tc.in, g["ServiceInternalTrafficPolicy"], tc.itp)
		}
	}
	g, _ := parseFeatureGates("ServiceInternalTrafficPolicy=false")
	if got := formatFeatureGates(g); got != "ServiceInternalTrafficPolicy=false" {
		t.Errorf("formatFeatureGates = %q", got)
	}
}

func TestCheckProxyMode(t *testing.T) {
	for mode, ok := range map[string]bool{"iptables": true, "nftables": true, "auto": true, "": false, "ipvs": false} {
		if err := checkProxyMode(mode); (err == nil) != ok {
			t.Errorf("checkProxyMode(%q) = %v", mode, err)
		}
	}
}

func TestForwardDropsBridged(t *testing.T) {
	docker := "-P FORWARD DROP\n-N DOCKER-USER\n-A FORWARD -j DOCKER-USER\n"
	open := "-P FORWARD ACCEPT\n"
	for _, tc := range []struct {
		name     string
		sysctl   string
		listings []string
		want     bool
	}{
		{"Docker host with br_netfilter", "1\n", []string{docker}, true},
		{"drop in the legacy backend only", "1\n", []string{open, docker}, true},
		{"bridged traffic skips iptables", "0\n", []string{docker}, false},
		{"accepting policy", "1\n", []string{open}, false},
		{"a DROP rule is not the policy", "1\n", []string{"-P FORWARD ACCEPT\n-A FORWARD -i docker0 -j DROP\n"}, false},
		{"no iptables at all", "1\n", nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := forwardDropsBridged(tc.sysctl, tc.listings...); got != tc.want {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}
