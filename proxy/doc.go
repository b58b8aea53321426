// Package proxy turns Services and EndpointSlices into iptables rules on one
// node, choosing endpoints per Service traffic policy as ../shared/itp.md
// says (the seed's semantics: externalTrafficPolicy Local disables
// internalTrafficPolicy; no local endpoint for internal traffic is refused).
//
// Layers, each testable alone:
//   - Choose: pure endpoint choice per Service port and node (choose.go).
//   - RenderPort/Assemble: pure ruleset rendering (ruleset.go). nat:
//     KUBELAB-SERVICES dispatches on the destination's last byte to 256
//     KUBELAB-DST-xx chains (two-level, so the first packet to the last
//     Service walks ~256+n/256 rules, not n), then KUBELAB-SVC-/SVL-/EXT-/SEP-
//     chains per port; filter KUBELAB-SERVICES/EXTERNAL-SERVICES hold the
//     REJECT/DROP rules, each commented "ns/svc:port has no (local) endpoints".
//   - Proxier: informers -> coalesced syncs -> one iptables-restore --noflush
//     per sync; partial syncs rewrite only changed Services' chains.
package proxy
