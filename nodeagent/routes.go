package nodeagent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sort"
	"syscall"

	"github.com/vishvananda/netlink"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	corelisters "k8s.io/client-go/listers/core/v1"
)

// routeProtocol marks the routes the agent owns, so reconciliation never
// touches routes someone else made.
const routeProtocol = netlink.RouteProtocol(77)

// podRoute: traffic for CIDR goes via the node at Via.
type podRoute struct {
	CIDR string
	Via  string
}

// desiredRoutes is a route to every other node's pod CIDR via its InternalIP.
func desiredRoutes(self string, nodes []*corev1.Node) []podRoute {
	var out []podRoute
	for _, n := range nodes {
		if n.Name == self || n.Spec.PodCIDR == "" {
			continue
		}
		if _, _, err := net.ParseCIDR(n.Spec.PodCIDR); err != nil {
			continue
		}
		for _, a := range n.Status.Addresses {
			if a.Type == corev1.NodeInternalIP && net.ParseIP(a.Address) != nil {
				out = append(out, podRoute{CIDR: n.Spec.PodCIDR, Via: a.Address})
				break
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].CIDR < out[j].CIDR })
	return out
}

// routeDiff: what to add or replace, and which owned routes to delete.
func routeDiff(want []podRoute, have []podRoute) (add, del []podRoute) {
	w := map[string]string{}
	for _, r := range want {
		w[r.CIDR] = r.Via
	}
	h := map[string]string{}
	for _, r := range have {
		h[r.CIDR] = r.Via
		if via, ok := w[r.CIDR]; !ok || via != r.Via {
			del = append(del, r)
		}
	}
	for _, r := range want {
		if h[r.CIDR] != r.Via {
			add = append(add, r)
		}
	}
	return add, del
}

// routeSyncer applies desired routes with netlink in the agent's namespace.
type routeSyncer struct {
	self  string
	nodes corelisters.NodeLister
	nl    *netlink.Handle
}

func (s *routeSyncer) owned() ([]podRoute, error) {
	rs, err := s.nl.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Protocol: routeProtocol, Table: syscall.RT_TABLE_MAIN}, netlink.RT_FILTER_PROTOCOL|netlink.RT_FILTER_TABLE)
	if err != nil {
		return nil, err
	}
	var out []podRoute
	for _, r := range rs {
		if r.Dst != nil && r.Gw != nil {
			out = append(out, podRoute{CIDR: r.Dst.String(), Via: r.Gw.String()})
		}
	}
	return out, nil
}

func (s *routeSyncer) sync(context.Context) error {
	nodes, err := s.nodes.List(labels.Everything())
	if err != nil {
		return err
	}
	have, err := s.owned()
	if err != nil {
		return fmt.Errorf("list routes: %w", err)
	}
	add, del := routeDiff(desiredRoutes(s.self, nodes), have)
	var errs []error
	for _, r := range del {
		_, dst, _ := net.ParseCIDR(r.CIDR)
		if err := s.nl.RouteDel(&netlink.Route{Dst: dst, Gw: net.ParseIP(r.Via), Protocol: routeProtocol}); err != nil && !errors.Is(err, syscall.ESRCH) {
			errs = append(errs, fmt.Errorf("delete route %s: %w", r.CIDR, err))
		} else {
			slog.Info("removed pod route", "cidr", r.CIDR, "via", r.Via)
		}
	}
	for _, r := range add {
		_, dst, _ := net.ParseCIDR(r.CIDR)
		if err := s.nl.RouteReplace(&netlink.Route{Dst: dst, Gw: net.ParseIP(r.Via), Protocol: routeProtocol}); err != nil {
			errs = append(errs, fmt.Errorf("route %s via %s: %w", r.CIDR, r.Via, err))
		} else {
			slog.Info("pod route", "cidr", r.CIDR, "via", r.Via)
		}
	}
	return errors.Join(errs...)
}

// deleteOwnedRoutes removes every route the agent made (Cleanup).
func deleteOwnedRoutes(nl *netlink.Handle) error {
	s := &routeSyncer{nl: nl}
	have, err := s.owned()
	if err != nil {
		return err
	}
	var errs []error
	for _, r := range have {
		_, dst, _ := net.ParseCIDR(r.CIDR)
		if err := nl.RouteDel(&netlink.Route{Dst: dst, Gw: net.ParseIP(r.Via), Protocol: routeProtocol}); err != nil && !errors.Is(err, syscall.ESRCH) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
