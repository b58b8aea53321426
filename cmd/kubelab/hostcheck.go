package main

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
)

// bridgeFirewallWarning says, when it applies, why pods on different lab
// nodes could not reach each other on this host: with br_netfilter, bridged
// IPv4 traffic (node to node over the lab bridge) goes through the host's
// iptables FORWARD chain, and a DROP policy there (Docker sets one) discards
// it. kubelab never changes the host's rules (design §3), so it only says
// what would let the lab's traffic through. Empty when nothing is in the way.
func bridgeFirewallWarning(bridge string) string {
	sysctl, err := os.ReadFile("/proc/sys/net/bridge/bridge-nf-call-iptables")
	if err != nil {
		return "" // br_netfilter not loaded: bridged traffic skips iptables
	}
	var listings []string
	for _, tool := range []string{"iptables", "iptables-legacy"} {
		if out, err := exec.Command(tool, "-w", "-S", "FORWARD").Output(); err == nil {
			listings = append(listings, string(out))
		}
	}
	if !forwardDropsBridged(string(sysctl), listings...) {
		return ""
	}
	return fmt.Sprintf("warning: this host's firewall drops forwarded traffic (iptables FORWARD policy DROP, as Docker sets) "+
		"and br_netfilter sends bridged traffic through it, so pods on different lab nodes cannot reach each other. "+
		"kubelab leaves the host's rules alone; to let the lab's bridge through, run: iptables -I FORWARD -i %[1]s -o %[1]s -j ACCEPT", bridge)
}

// forwardDropsBridged decides from the bridge-nf-call-iptables sysctl and
// `iptables -S FORWARD` listings (nft and legacy backends) whether bridged
// traffic meets a FORWARD chain whose policy drops it.
func forwardDropsBridged(callIptables string, forwardListings ...string) bool {
	if strings.TrimSpace(callIptables) != "1" {
		return false
	}
	for _, l := range forwardListings {
		for _, line := range strings.Split(l, "\n") {
			if strings.TrimSpace(line) == "-P FORWARD DROP" {
				return true
			}
		}
	}
	return false
}
