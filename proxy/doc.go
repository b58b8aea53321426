// Package proxy turns Services and EndpointSlices into netfilter rules on one
// node, choosing endpoints per Service traffic policy as ../shared/itp.md
// says (the seed's semantics: externalTrafficPolicy Local disables
// internalTrafficPolicy; no local endpoint for internal traffic is refused).
//
// Layers, each testable alone:
//   - Choose: pure endpoint choice per Service port and node (choose.go).
//   - Rendering, pure, one per data path (Config.Mode):
//     iptables (ruleset.go, the default): nat KUBELAB-SERVICES dispatches on
//     the destination's last byte to 256 KUBELAB-DST-xx chains (two-level,
//     so the first packet to the last Service walks ~256+n/256 rules, not
//     n), then KUBELAB-SVC-/SVL-/EXT-/SEP- chains per port; filter
//     KUBELAB-SERVICES/EXTERNAL-SERVICES hold the REJECT/DROP rules, each
//     commented "ns/svc:port has no (local) endpoints".
//     nftables (nftables.go, for scale): table ip kubelab dispatches with a
//     verdict map on destination . protocol . port; a plain ClusterIP port
//     owns no chain, only map elements (its endpoints in a shared map keyed
//     by ClusterIP . port . random index, balanced by shared
//     KUBELAB-LB-<proto>-<C|L>-<n> chains); ports with NodePorts, external
//     or LB IPs or ClientIP affinity get chains as in iptables. Refusals are
//     counted, commented rules in table ip kubelab-filter.
//   - Proxier: informers -> coalesced syncs -> one transaction per sync
//     (iptables-restore --noflush; or nft -f, after bulk-loading a new
//     generation of the big maps over netlink, see nftnl.go); partial syncs
//     rewrite only changed Services (in nftables mode an endpoint change is
//     one netlink batch of map elements).
//
// Scale (10,000 Services x 10 endpoints, 2 cores): see bench_test.go.
package proxy
