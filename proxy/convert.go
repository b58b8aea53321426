package proxy

import (
	"net"

	corev1 "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"
)

// servicePorts turns a Service into the ports kubelab programs. Headless,
// ExternalName and non-IPv4 Services get none, as in kube-proxy's IPv4 mode.
func servicePorts(svc *corev1.Service) []ServicePort {
	if svc.Spec.Type == corev1.ServiceTypeExternalName {
		return nil
	}
	cip := svc.Spec.ClusterIP
	if cip == "" || cip == corev1.ClusterIPNone || !isIPv4(cip) {
		return nil
	}
	if _, ok := svc.Labels["service.kubernetes.io/service-proxy-name"]; ok {
		return nil // another proxy owns it
	}
	var timeout int32
	if svc.Spec.SessionAffinity == corev1.ServiceAffinityClientIP {
		timeout = 10800 // the API default
		if c := svc.Spec.SessionAffinityConfig; c != nil && c.ClientIP != nil && c.ClientIP.TimeoutSeconds != nil {
			timeout = *c.ClientIP.TimeoutSeconds
		}
	}
	var ext, lb []string
	for _, ip := range svc.Spec.ExternalIPs {
		if isIPv4(ip) {
			ext = append(ext, ip)
		}
	}
	if svc.Spec.Type == corev1.ServiceTypeLoadBalancer {
		for _, in := range svc.Status.LoadBalancer.Ingress {
			if isIPv4(in.IP) {
				lb = append(lb, in.IP)
			}
		}
	}
	var itp corev1.ServiceInternalTrafficPolicy
	if svc.Spec.InternalTrafficPolicy != nil {
		itp = *svc.Spec.InternalTrafficPolicy
	}
	out := make([]ServicePort, 0, len(svc.Spec.Ports))
	for _, p := range svc.Spec.Ports {
		proto := p.Protocol
		if proto == "" {
			proto = corev1.ProtocolTCP
		}
		sp := ServicePort{
			Namespace: svc.Namespace, Name: svc.Name, PortName: p.Name, Protocol: proto,
			ClusterIP: cip, Port: p.Port, ExternalIPs: ext, LoadBalancerIPs: lb,
			InternalTrafficPolicy: itp, ExternalTrafficPolicy: svc.Spec.ExternalTrafficPolicy,
			AffinityTimeout: timeout,
		}
		if svc.Spec.Type == corev1.ServiceTypeNodePort || svc.Spec.Type == corev1.ServiceTypeLoadBalancer {
			sp.NodePort = p.NodePort
		}
		out = append(out, sp)
	}
	return out
}

// endpointsFor collects, from a Service's EndpointSlices, the endpoints of the
// port named portName with protocol proto. Conditions follow the API: a
// missing ready counts as true, a missing serving defers to ready, a missing
// terminating counts as false.
func endpointsFor(slices []*discovery.EndpointSlice, portName string, proto corev1.Protocol) []Endpoint {
	var out []Endpoint
	for _, s := range slices {
		if s.AddressType != discovery.AddressTypeIPv4 {
			continue
		}
		var port int32
		found := false
		for _, p := range s.Ports {
			pn := ""
			if p.Name != nil {
				pn = *p.Name
			}
			pp := corev1.ProtocolTCP
			if p.Protocol != nil {
				pp = *p.Protocol
			}
			if pn == portName && pp == proto && p.Port != nil {
				port, found = *p.Port, true
				break
			}
		}
		if !found {
			continue
		}
		for _, e := range s.Endpoints {
			if len(e.Addresses) == 0 || !isIPv4(e.Addresses[0]) {
				continue
			}
			ep := Endpoint{IP: e.Addresses[0], Port: port, Ready: true}
			if e.NodeName != nil {
				ep.NodeName = *e.NodeName
			}
			if e.Zone != nil {
				ep.Zone = *e.Zone
			}
			if e.Conditions.Ready != nil {
				ep.Ready = *e.Conditions.Ready
			}
			ep.Serving = ep.Ready
			if e.Conditions.Serving != nil {
				ep.Serving = *e.Conditions.Serving
			}
			if e.Conditions.Terminating != nil {
				ep.Terminating = *e.Conditions.Terminating
			}
			out = append(out, ep)
		}
	}
	return out
}

func isIPv4(s string) bool {
	ip := net.ParseIP(s)
	return ip != nil && ip.To4() != nil
}

func ipLess(a, b string) bool {
	x, y := net.ParseIP(a).To4(), net.ParseIP(b).To4()
	if x == nil || y == nil {
		return a < b
	}
	for i := range 4 {
		if x[i] != y[i] {
			return x[i] < y[i]
		}
	}
	return false
}
