// Package proxy turns Services and EndpointSlices into iptables rules on one
// node, choosing endpoints per Service traffic policy as kube-proxy does.
package proxy
