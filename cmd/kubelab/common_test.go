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
