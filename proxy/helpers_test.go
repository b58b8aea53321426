package proxy

import (
	corev1 "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func bp(b bool) *bool { return &b }

type sliceEP struct {
	ip, node                    string
	ready, serving, terminating *bool
}

func mkSlice(ns, svc, name, portName string, proto corev1.Protocol, port int32, eps ...sliceEP) *discovery.EndpointSlice {
	s := &discovery.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{discovery.LabelServiceName: svc}},
		AddressType: discovery.AddressTypeIPv4,
		Ports:       []discovery.EndpointPort{{Name: &portName, Protocol: &proto, Port: &port}},
	}
	for _, e := range eps {
		de := discovery.Endpoint{Addresses: []string{e.ip},
			Conditions: discovery.EndpointConditions{Ready: e.ready, Serving: e.serving, Terminating: e.terminating}}
		if e.node != "" {
			n := e.node
			de.NodeName = &n
		}
		s.Endpoints = append(s.Endpoints, de)
	}
	return s
}

func sliceList(s ...*discovery.EndpointSlice) []*discovery.EndpointSlice { return s }

type svcOpt func(*corev1.Service)

func mkService(ns, name, clusterIP string, opts ...svcOpt) *corev1.Service {
	s := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeClusterIP, ClusterIP: clusterIP,
			Ports: []corev1.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP}}},
	}
	for _, o := range opts {
		o(s)
	}
	return s
}

func withITP(p corev1.ServiceInternalTrafficPolicy) svcOpt {
	return func(s *corev1.Service) { s.Spec.InternalTrafficPolicy = &p }
}

func withETP(p corev1.ServiceExternalTrafficPolicy) svcOpt {
	return func(s *corev1.Service) { s.Spec.ExternalTrafficPolicy = p }
}

func withNodePort(np int32) svcOpt {
	return func(s *corev1.Service) {
		s.Spec.Type = corev1.ServiceTypeNodePort
		s.Spec.Ports[0].NodePort = np
	}
}

func withUDP() svcOpt {
	return func(s *corev1.Service) {
		s.Spec.Ports[0].Protocol = corev1.ProtocolUDP
		s.Spec.Ports[0].Name = "udp"
	}
}

func withAffinity(seconds int32) svcOpt {
	return func(s *corev1.Service) {
		s.Spec.SessionAffinity = corev1.ServiceAffinityClientIP
		s.Spec.SessionAffinityConfig = &corev1.SessionAffinityConfig{ClientIP: &corev1.ClientIPConfig{TimeoutSeconds: &seconds}}
	}
}

func withExternalIPs(ips ...string) svcOpt {
	return func(s *corev1.Service) { s.Spec.ExternalIPs = ips }
}
