package apiserver

import (
	"errors"
	"fmt"
	"net"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/kubelab/kubelab/apiserver/ipalloc"
)

// allocation records what one Service write took, so a failed write can give
// it back and a successful one can free what the old version held.
type allocation struct {
	owner    string
	newIPs   []net.IP
	newPorts []int
}

func svcOwner(svc *corev1.Service) string { return svc.Namespace + "/" + svc.Name }

func needsClusterIP(svc *corev1.Service) bool {
	return svc.Spec.Type != corev1.ServiceTypeExternalName && svc.Spec.ClusterIP != corev1.ClusterIPNone
}

func needsNodePorts(svc *corev1.Service) bool {
	return svc.Spec.Type == corev1.ServiceTypeNodePort || svc.Spec.Type == corev1.ServiceTypeLoadBalancer
}

// allocateService fills spec.clusterIP(s), node ports and the health check
// node port of svc (old is nil on create), keeping what old already had when
// the client left it out, and honouring requested values or refusing them as
// taken. Errors are field errors for a 422.
func (s *Server) allocateService(svc, old *corev1.Service) (*allocation, field.ErrorList) {
	a := &allocation{owner: svcOwner(svc)}
	var errs field.ErrorList
	spec := &svc.Spec
	if old != nil {
		if spec.ClusterIP == "" && len(spec.ClusterIPs) == 0 && needsClusterIP(old) && needsClusterIP(svc) {
			spec.ClusterIP, spec.ClusterIPs = old.Spec.ClusterIP, old.Spec.ClusterIPs
		}
	}
	if spec.ClusterIP == "" && len(spec.ClusterIPs) > 0 {
		spec.ClusterIP = spec.ClusterIPs[0]
	}
	if needsClusterIP(svc) && spec.ClusterIP == "" && a.owner == "default/kubernetes" {
		// The first address of the range is the `kubernetes` Service's.
		spec.ClusterIP = s.ips.First().String()
	}
	if needsClusterIP(svc) {
		path := field.NewPath("spec", "clusterIPs")
		if spec.ClusterIP == "" {
			ip, err := s.ips.Allocate(a.owner)
			if err != nil {
				errs = append(errs, field.InternalError(path, fmt.Errorf("failed to allocate a serviceIP: %w", err)))
			} else {
				a.newIPs = append(a.newIPs, ip)
				spec.ClusterIP = ip.String()
			}
		} else if ip := net.ParseIP(spec.ClusterIP); ip != nil {
			held := s.ips.Owner(ip) == a.owner
			switch err := s.ips.AllocateIP(ip, a.owner); {
			case err == nil:
				if !held {
					a.newIPs = append(a.newIPs, ip)
				}
			case errors.Is(err, ipalloc.ErrNotInRange):
				errs = append(errs, field.Invalid(path, []string{spec.ClusterIP}, fmt.Sprintf("failed to allocate IP %s: the provided IP (%s) is not in the valid range. The range of valid IPs is %s", spec.ClusterIP, spec.ClusterIP, s.ips.CIDR())))
			default:
				errs = append(errs, field.Invalid(path, []string{spec.ClusterIP}, fmt.Sprintf("failed to allocate IP %s: %v", spec.ClusterIP, err)))
			}
		} // an unparsable IP is left for validation to report
		if spec.ClusterIP != "" {
			spec.ClusterIPs = []string{spec.ClusterIP}
		}
	}
	if needsNodePorts(svc) {
		for i := range spec.Ports {
			p := &spec.Ports[i]
			path := field.NewPath("spec", "ports").Index(i).Child("nodePort")
			if p.NodePort == 0 && old != nil {
				for _, op := range old.Spec.Ports {
					if op.Port == p.Port && op.Protocol == p.Protocol && op.NodePort != 0 {
						p.NodePort = op.NodePort
					}
				}
			}
			errs = append(errs, s.takePort(a, &p.NodePort, path)...)
		}
		if spec.Type == corev1.ServiceTypeLoadBalancer && spec.ExternalTrafficPolicy == corev1.ServiceExternalTrafficPolicyLocal {
			if spec.HealthCheckNodePort == 0 && old != nil {
				spec.HealthCheckNodePort = old.Spec.HealthCheckNodePort
			}
			errs = append(errs, s.takePort(a, &spec.HealthCheckNodePort, field.NewPath("spec", "healthCheckNodePort"))...)
		}
	}
	if len(errs) > 0 {
		s.rollback(a)
		return nil, errs
	}
	return a, nil
}

func (s *Server) takePort(a *allocation, port *int32, path *field.Path) field.ErrorList {
	if *port == 0 {
		p, err := s.ports.Allocate(a.owner)
		if err != nil {
			return field.ErrorList{field.InternalError(path, fmt.Errorf("failed to allocate a nodePort: %w", err))}
		}
		a.newPorts = append(a.newPorts, p)
		*port = int32(p)
		return nil
	}
	held := false
	for _, p := range a.newPorts {
		held = held || p == int(*port)
	}
	err := s.ports.AllocatePort(int(*port), a.owner)
	switch {
	case err == nil:
		if !held {
			a.newPorts = append(a.newPorts, int(*port))
		}
		return nil
	case errors.Is(err, ipalloc.ErrNotInRange):
		return field.ErrorList{field.Invalid(path, *port, fmt.Sprintf("provided port is not in the valid range. The range of valid ports is %s", s.ports))}
	default:
		return field.ErrorList{field.Invalid(path, *port, "provided port is already allocated")}
	}
}

// rollback gives back what a failed write took.
func (s *Server) rollback(a *allocation) {
	if a == nil {
		return
	}
	for _, ip := range a.newIPs {
		s.ips.Release(ip, a.owner)
	}
	for _, p := range a.newPorts {
		s.ports.Release(p, a.owner)
	}
}

// serviceHeld lists the IPs and ports a stored Service holds.
func serviceHeld(svc *corev1.Service) ([]net.IP, []int) {
	var ips []net.IP
	var ports []int
	if svc == nil {
		return nil, nil
	}
	if needsClusterIP(svc) {
		for _, s := range svc.Spec.ClusterIPs {
			if ip := net.ParseIP(s); ip != nil {
				ips = append(ips, ip)
			}
		}
		if len(svc.Spec.ClusterIPs) == 0 {
			if ip := net.ParseIP(svc.Spec.ClusterIP); ip != nil {
				ips = append(ips, ip)
			}
		}
	}
	if needsNodePorts(svc) {
		for _, p := range svc.Spec.Ports {
			if p.NodePort != 0 {
				ports = append(ports, int(p.NodePort))
			}
		}
		if svc.Spec.HealthCheckNodePort != 0 {
			ports = append(ports, int(svc.Spec.HealthCheckNodePort))
		}
	}
	return ips, ports
}

// releaseUnused frees what old held and cur no longer does (cur nil: all).
func (s *Server) releaseUnused(old, cur *corev1.Service) {
	if old == nil {
		return
	}
	owner := svcOwner(old)
	oips, oports := serviceHeld(old)
	cips, cports := serviceHeld(cur)
	for _, ip := range oips {
		keep := false
		for _, c := range cips {
			keep = keep || c.Equal(ip)
		}
		if !keep {
			s.ips.Release(ip, owner)
		}
	}
	for _, p := range oports {
		keep := false
		for _, c := range cports {
			keep = keep || c == p
		}
		if !keep {
			s.ports.Release(p, owner)
		}
	}
}

// restoreService re-marks a stored Service's allocations at start.
func (s *Server) restoreService(svc *corev1.Service) {
	owner := svcOwner(svc)
	ips, ports := serviceHeld(svc)
	for _, ip := range ips {
		if err := s.ips.AllocateIP(ip, owner); err != nil && !errors.Is(err, ipalloc.ErrNotInRange) {
			// The reserved first address is legitimately held by default/kubernetes only.
			logWarn("stored Service holds a conflicting cluster IP", "service", owner, "ip", ip, "err", err)
		}
	}
	for _, p := range ports {
		if err := s.ports.AllocatePort(p, owner); err != nil {
			logWarn("stored Service holds a conflicting node port", "service", owner, "port", p, "err", err)
		}
	}
}
