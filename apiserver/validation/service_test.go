package validation

import (
	"reflect"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/utils/ptr"
)

// apiError renders errs as kube-apiserver's 422 message for kind/name.
func apiError(kind, name string, errs field.ErrorList) string {
	if len(errs) == 0 {
		return ""
	}
	gk := schema.GroupKind{Kind: kind}
	if kind == "Deployment" || kind == "ReplicaSet" {
		gk.Group = "apps"
	}
	if kind == "EndpointSlice" {
		gk.Group = "discovery.k8s.io"
	}
	return errors.NewInvalid(gk, name, errs).Error()
}

// prepare runs what the API server runs before storing: drop, default,
// validate.
func prepare(obj, old runtime.Object, opts Options) ([]string, field.ErrorList) {
	DropDisabledFields(obj, old, opts)
	Default(obj, old, opts)
	return Validate(obj, old, opts)
}

func service(mod func(s *corev1.Service)) *corev1.Service {
	s := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default"},
		Spec: corev1.ServiceSpec{
			Selector: map[string]string{"app": "web"},
			Ports:    []corev1.ServicePort{{Port: 80}},
		},
	}
	if mod != nil {
		mod(s)
	}
	return s
}

// allocated imitates the server's allocator: a ClusterIP and node ports.
func allocated(s *corev1.Service) *corev1.Service {
	if s.Spec.Type != corev1.ServiceTypeExternalName && s.Spec.ClusterIP == "" {
		s.Spec.ClusterIP = "10.96.0.10"
	}
	for i := range s.Spec.Ports {
		if needsNodePort(s) && s.Spec.Ports[i].NodePort == 0 {
			s.Spec.Ports[i].NodePort = int32(30080 + i)
		}
	}
	if needsHealthCheck(s) && s.Spec.HealthCheckNodePort == 0 {
		s.Spec.HealthCheckNodePort = 32000
	}
	return s
}

// create runs the create path: drop, default, allocate, default again, validate.
func create(s *corev1.Service, opts Options) ([]string, string) {
	DropDisabledFields(s, nil, opts)
	Default(s, nil, opts)
	allocated(s)
	Default(s, nil, opts)
	w, errs := Validate(s, nil, opts)
	// As stored: updates must name the resourceVersion they replace.
	s.ResourceVersion = "1"
	return w, apiError("Service", s.Name, errs)
}

func TestServiceDefaults(t *testing.T) {
	s := service(nil)
	if _, msg := create(s, DefaultOptions()); msg != "" {
		t.Fatalf("valid service refused: %s", msg)
	}
	want := corev1.ServiceSpec{
		Selector:              map[string]string{"app": "web"},
		Ports:                 []corev1.ServicePort{{Port: 80, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromInt32(80)}},
		Type:                  corev1.ServiceTypeClusterIP,
		ClusterIP:             "10.96.0.10",
		ClusterIPs:            []string{"10.96.0.10"},
		SessionAffinity:       corev1.ServiceAffinityNone,
		IPFamilies:            []corev1.IPFamily{corev1.IPv4Protocol},
		IPFamilyPolicy:        ptr.To(corev1.IPFamilyPolicySingleStack),
		InternalTrafficPolicy: ptr.To(corev1.ServiceInternalTrafficPolicyCluster),
	}
	if !reflect.DeepEqual(s.Spec, want) {
		t.Errorf("defaulted spec\n got %+v\nwant %+v", s.Spec, want)
	}

	np := service(func(s *corev1.Service) {
		s.Spec.Type = corev1.ServiceTypeLoadBalancer
		s.Spec.Ports[0].TargetPort = intstr.FromString("http")
		s.Spec.SessionAffinity = corev1.ServiceAffinityClientIP
	})
	if _, msg := create(np, DefaultOptions()); msg != "" {
		t.Fatalf("valid LB refused: %s", msg)
	}
	if np.Spec.ExternalTrafficPolicy != corev1.ServiceExternalTrafficPolicyCluster || np.Spec.Ports[0].TargetPort != intstr.FromString("http") ||
		!ptr.Deref(np.Spec.AllocateLoadBalancerNodePorts, false) || *np.Spec.SessionAffinityConfig.ClientIP.TimeoutSeconds != 10800 {
		t.Errorf("LB defaults %+v", np.Spec)
	}

	// Defaulting twice changes nothing.
	again := s.DeepCopy()
	Default(again, nil, DefaultOptions())
	if !reflect.DeepEqual(again, s) {
		t.Errorf("Default is not idempotent")
	}
}

func TestServiceValidationMessages(t *testing.T) {
	gateOn := DefaultOptions()
	cases := []struct {
		name string
		svc  *corev1.Service
		want string
	}{
		{"itp unsupported", service(func(s *corev1.Service) {
			s.Spec.InternalTrafficPolicy = ptr.To(corev1.ServiceInternalTrafficPolicy("Foo"))
		}), `Service "web" is invalid: spec.internalTrafficPolicy: Unsupported value: "Foo": supported values: "Cluster", "Local"`},
		{"etp on cluster ip", service(func(s *corev1.Service) {
			s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
		}), `Service "web" is invalid: spec.externalTrafficPolicy: Invalid value: "Local": may only be set for externally-accessible services`},
		{"etp unsupported", service(func(s *corev1.Service) {
			s.Spec.Type = corev1.ServiceTypeNodePort
			s.Spec.ExternalTrafficPolicy = "Nearby"
		}), `Service "web" is invalid: spec.externalTrafficPolicy: Unsupported value: "Nearby": supported values: "Cluster", "Local"`},
		{"port zero and itp", service(func(s *corev1.Service) {
			s.Spec.Ports[0].Port = 0
			s.Spec.InternalTrafficPolicy = ptr.To(corev1.ServiceInternalTrafficPolicy("Foo"))
		}), `Service "web" is invalid: [spec.ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive, spec.ports[0].targetPort: Invalid value: 0: must be between 1 and 65535, inclusive, spec.internalTrafficPolicy: Unsupported value: "Foo": supported values: "Cluster", "Local"]`},
		{"two ports need names", service(func(s *corev1.Service) {
			s.Spec.Ports = append(s.Spec.Ports, corev1.ServicePort{Name: "https", Port: 443})
		}), `Service "web" is invalid: spec.ports[0].name: Required value`},
		{"duplicate port names", service(func(s *corev1.Service) {
			s.Spec.Ports = []corev1.ServicePort{{Name: "http", Port: 80}, {Name: "http", Port: 8080}}
		}), `Service "web" is invalid: spec.ports[1].name: Duplicate value: "http"`},
		{"bad port name", service(func(s *corev1.Service) {
			s.Spec.Ports[0].Name = "HTTP"
		}), `Service "web" is invalid: spec.ports[0].name: Invalid value: "HTTP": a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')`},
		{"bad protocol", service(func(s *corev1.Service) {
			s.Spec.Ports[0].Protocol = "ICMP"
		}), `Service "web" is invalid: spec.ports[0].protocol: Unsupported value: "ICMP": supported values: "SCTP", "TCP", "UDP"`},
		{"no ports", service(func(s *corev1.Service) { s.Spec.Ports = nil }),
			`Service "web" is invalid: spec.ports: Required value`},
		{"bad type", service(func(s *corev1.Service) { s.Spec.Type = "Magic" }),
			`Service "web" is invalid: spec.type: Unsupported value: "Magic": supported values: "ClusterIP", "ExternalName", "LoadBalancer", "NodePort"`},
		{"node port on cluster ip", service(func(s *corev1.Service) { s.Spec.Ports[0].NodePort = 30001 }),
			"Service \"web\" is invalid: spec.ports[0].nodePort: Forbidden: may not be used when `type` is 'ClusterIP'"},
		{"headless node port", service(func(s *corev1.Service) {
			s.Spec.Type = corev1.ServiceTypeNodePort
			s.Spec.ClusterIP = "None"
		}), `Service "web" is invalid: spec.clusterIPs[0]: Invalid value: "None": may not be set to 'None' for NodePort services`},
		{"external name without name", service(func(s *corev1.Service) {
			s.Spec.Type = corev1.ServiceTypeExternalName
		}), `Service "web" is invalid: spec.externalName: Required value`},
		{"external name with cluster ip", service(func(s *corev1.Service) {
			s.Spec.Type = corev1.ServiceTypeExternalName
			s.Spec.ExternalName = "db.example.com."
			s.Spec.ClusterIP = "10.96.0.5"
		}), `Service "web" is invalid: spec.clusterIPs: Forbidden: may not be set for ExternalName services`},
		{"name must be a DNS-1035 label", service(func(s *corev1.Service) { s.Name = "1web" }),
			`Service "1web" is invalid: metadata.name: Invalid value: "1web": a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')`},
		{"namespace required", service(func(s *corev1.Service) { s.Namespace = "" }),
			`Service "web" is invalid: metadata.namespace: Required value`},
		{"bad cluster ip", service(func(s *corev1.Service) { s.Spec.ClusterIP = "10.96.0.300" }),
			`Service "web" is invalid: spec.clusterIPs[0]: Invalid value: "10.96.0.300": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)`},
		{"dual stack required", service(func(s *corev1.Service) {
			s.Spec.IPFamilyPolicy = ptr.To(corev1.IPFamilyPolicyRequireDualStack)
		}), `Service "web" is invalid: spec.ipFamilyPolicy: Invalid value: "RequireDualStack": this cluster is not configured for dual-stack services`},
		{"bad selector label", service(func(s *corev1.Service) { s.Spec.Selector = map[string]string{"app": "-x"} }),
			`Service "web" is invalid: spec.selector: Invalid value: "-x": a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')`},
		{"client ip timeout", service(func(s *corev1.Service) {
			s.Spec.SessionAffinity = corev1.ServiceAffinityClientIP
			s.Spec.SessionAffinityConfig = &corev1.SessionAffinityConfig{ClientIP: &corev1.ClientIPConfig{TimeoutSeconds: ptr.To[int32](0)}}
		}), `Service "web" is invalid: spec.sessionAffinityConfig.clientIP.timeoutSeconds: Invalid value: 0: must be greater than 0 and less than 86400`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, got := create(c.svc, gateOn)
			if got != c.want {
				t.Errorf("\n got %s\nwant %s", got, c.want)
			}
		})
	}
}

func TestServiceValid(t *testing.T) {
	cases := map[string]*corev1.Service{
		"headless without ports": service(func(s *corev1.Service) { s.Spec.ClusterIP = "None"; s.Spec.Ports = nil }),
		"headless selectorless": service(func(s *corev1.Service) {
			s.Spec.ClusterIP = "None"
			s.Spec.Selector = nil
		}),
		"external name": service(func(s *corev1.Service) {
			s.Spec.Type = corev1.ServiceTypeExternalName
			s.Spec.ExternalName = "db.example.com."
			s.Spec.Ports = nil
		}),
		"etp on cluster ip with external ips": service(func(s *corev1.Service) {
			s.Spec.ExternalIPs = []string{"192.0.2.10"}
			s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
		}),
		"itp local": service(func(s *corev1.Service) {
			s.Spec.InternalTrafficPolicy = ptr.To(corev1.ServiceInternalTrafficPolicyLocal)
		}),
		"named target port and udp": service(func(s *corev1.Service) {
			s.Spec.Ports = []corev1.ServicePort{{Name: "dns", Port: 53, Protocol: corev1.ProtocolUDP}, {Name: "dns-tcp", Port: 53, TargetPort: intstr.FromString("dns-tcp")}}
		}),
	}
	for name, s := range cases {
		t.Run(name, func(t *testing.T) {
			if w, msg := create(s, DefaultOptions()); msg != "" || len(w) != 0 {
				t.Errorf("refused: %s %v", msg, w)
			}
		})
	}
	headless := cases["headless selectorless"]
	if *headless.Spec.IPFamilyPolicy != corev1.IPFamilyPolicyRequireDualStack || len(headless.Spec.IPFamilies) != 2 {
		t.Errorf("selectorless headless families %v %v", *headless.Spec.IPFamilyPolicy, headless.Spec.IPFamilies)
	}
	en := cases["external name"]
	if en.Spec.InternalTrafficPolicy != nil || en.Spec.IPFamilyPolicy != nil || len(en.Spec.IPFamilies) != 0 || en.Spec.ClusterIP != "" {
		t.Errorf("external name got cluster fields %+v", en.Spec)
	}
}

func TestServiceTrafficPolicyWarning(t *testing.T) {
	s := service(func(s *corev1.Service) {
		s.Spec.Type = corev1.ServiceTypeNodePort
		s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
		s.Spec.InternalTrafficPolicy = ptr.To(corev1.ServiceInternalTrafficPolicyLocal)
	})
	w, msg := create(s, DefaultOptions())
	if msg != "" {
		t.Fatalf("refused: %s", msg)
	}
	want := []string{"spec.internalTrafficPolicy: Local has no effect on this Service while spec.externalTrafficPolicy is Local; internal traffic uses Cluster"}
	if !reflect.DeepEqual(w, want) {
		t.Errorf("warnings %q", w)
	}
	// Only one of them Local: no warning.
	s2 := service(func(s *corev1.Service) {
		s.Spec.Type = corev1.ServiceTypeNodePort
		s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
	})
	if w, _ := create(s2, DefaultOptions()); len(w) != 0 {
		t.Errorf("unexpected warnings %q", w)
	}
}

func TestServiceInternalTrafficPolicyGate(t *testing.T) {
	off := Options{ServiceInternalTrafficPolicy: false}

	// Create with the gate off: the field is dropped, not defaulted, not required.
	s := service(func(s *corev1.Service) {
		s.Spec.InternalTrafficPolicy = ptr.To(corev1.ServiceInternalTrafficPolicyLocal)
	})
	if _, msg := create(s, off); msg != "" {
		t.Fatalf("refused with gate off: %s", msg)
	}
	if s.Spec.InternalTrafficPolicy != nil {
		t.Errorf("gate off: field kept on create: %v", *s.Spec.InternalTrafficPolicy)
	}
	plain := service(nil)
	if _, msg := create(plain, off); msg != "" || plain.Spec.InternalTrafficPolicy != nil {
		t.Errorf("gate off: defaulted (%v) or refused (%s)", plain.Spec.InternalTrafficPolicy, msg)
	}

	// Update with the gate off: kept when the stored object already had it.
	old := service(func(s *corev1.Service) {
		s.Spec.InternalTrafficPolicy = ptr.To(corev1.ServiceInternalTrafficPolicyLocal)
	})
	create(old, DefaultOptions())
	upd := old.DeepCopy()
	upd.Spec.InternalTrafficPolicy = ptr.To(corev1.ServiceInternalTrafficPolicyCluster)
	if _, errs := prepare(upd, old, off); len(errs) != 0 {
		t.Fatalf("update refused: %v", errs)
	}
	if upd.Spec.InternalTrafficPolicy == nil || *upd.Spec.InternalTrafficPolicy != corev1.ServiceInternalTrafficPolicyCluster {
		t.Errorf("gate off: field dropped although old carried it")
	}
	// ... and its value is still checked.
	bad := old.DeepCopy()
	bad.Spec.InternalTrafficPolicy = ptr.To(corev1.ServiceInternalTrafficPolicy("Foo"))
	if _, errs := prepare(bad, old, off); apiError("Service", "web", errs) !=
		`Service "web" is invalid: spec.internalTrafficPolicy: Unsupported value: "Foo": supported values: "Cluster", "Local"` {
		t.Errorf("gate off: bad value on update: %v", errs)
	}

	// Update with the gate off when old did not carry it: dropped.
	oldNone := service(nil)
	create(oldNone, off)
	upd2 := oldNone.DeepCopy()
	upd2.Spec.InternalTrafficPolicy = ptr.To(corev1.ServiceInternalTrafficPolicyLocal)
	prepare(upd2, oldNone, off)
	if upd2.Spec.InternalTrafficPolicy != nil {
		t.Errorf("gate off: field added on update")
	}

	// Gate on again: a Service stored without the field gets the default on its next update.
	upd3 := oldNone.DeepCopy()
	if _, errs := prepare(upd3, oldNone, DefaultOptions()); len(errs) != 0 || upd3.Spec.InternalTrafficPolicy == nil ||
		*upd3.Spec.InternalTrafficPolicy != corev1.ServiceInternalTrafficPolicyCluster {
		t.Errorf("gate on: not defaulted on update: %v %v", upd3.Spec.InternalTrafficPolicy, errs)
	}

	// Gate on, a Service validated without defaulting: required.
	raw := allocated(service(nil))
	Default(raw, nil, off) // defaults without the field
	if _, errs := Validate(raw, nil, DefaultOptions()); apiError("Service", "web", errs) != `Service "web" is invalid: spec.internalTrafficPolicy: Required value` {
		t.Errorf("gate on, missing field: %v", errs)
	}
}

func TestServiceUpdate(t *testing.T) {
	old := service(func(s *corev1.Service) {
		s.Spec.Type = corev1.ServiceTypeNodePort
		s.Spec.Ports = []corev1.ServicePort{{Name: "http", Port: 80}, {Name: "https", Port: 443}}
	})
	create(old, DefaultOptions())
	old.ResourceVersion = "5"

	// A PUT that omits allocated values keeps them.
	put := service(func(s *corev1.Service) {
		s.Spec.Type = corev1.ServiceTypeNodePort
		s.Spec.Ports = []corev1.ServicePort{{Name: "http", Port: 80}, {Name: "https", Port: 443}}
		s.ResourceVersion = "5"
	})
	if _, errs := prepare(put, old, DefaultOptions()); len(errs) != 0 {
		t.Fatalf("put refused: %v", errs)
	}
	if put.Spec.ClusterIP != "10.96.0.10" || !reflect.DeepEqual(put.Spec.ClusterIPs, []string{"10.96.0.10"}) ||
		put.Spec.Ports[0].NodePort != 30080 || put.Spec.Ports[1].NodePort != 30081 {
		t.Errorf("allocated values lost: %+v", put.Spec)
	}

	// Changing the ClusterIP is refused.
	moved := old.DeepCopy()
	moved.Spec.ClusterIP, moved.Spec.ClusterIPs = "10.96.0.11", []string{"10.96.0.11"}
	_, errs := prepare(moved, old, DefaultOptions())
	if got := apiError("Service", "web", errs); got != `Service "web" is invalid: spec.clusterIPs[0]: Invalid value: ["10.96.0.11"]: may not change once set` {
		t.Errorf("cluster ip change: %s", got)
	}
	// Only the singular field changed (old client): same message.
	moved1 := old.DeepCopy()
	moved1.Spec.ClusterIP = "10.96.0.12"
	_, errs = prepare(moved1, old, DefaultOptions())
	if got := apiError("Service", "web", errs); got != `Service "web" is invalid: spec.clusterIPs[0]: Invalid value: ["10.96.0.12"]: may not change once set` {
		t.Errorf("singular cluster ip change: %s", got)
	}

	// NodePort -> ClusterIP: node ports and ETP that were only echoed back are dropped.
	toCIP := old.DeepCopy()
	toCIP.Spec.Type = corev1.ServiceTypeClusterIP
	if _, errs := prepare(toCIP, old, DefaultOptions()); len(errs) != 0 {
		t.Fatalf("type change refused: %v", errs)
	}
	if toCIP.Spec.Ports[0].NodePort != 0 || toCIP.Spec.ExternalTrafficPolicy != "" {
		t.Errorf("type-dependent fields kept: %+v", toCIP.Spec)
	}

	// ClusterIP -> ExternalName: cluster fields dropped.
	cip := service(nil)
	create(cip, DefaultOptions())
	toEN := cip.DeepCopy()
	toEN.Spec.Type = corev1.ServiceTypeExternalName
	toEN.Spec.ExternalName = "example.com"
	if _, errs := prepare(toEN, cip, DefaultOptions()); len(errs) != 0 {
		t.Fatalf("to ExternalName refused: %v", errs)
	}
	if toEN.Spec.ClusterIP != "" || toEN.Spec.ClusterIPs != nil || toEN.Spec.IPFamilies != nil || toEN.Spec.InternalTrafficPolicy != nil {
		t.Errorf("cluster fields kept on ExternalName: %+v", toEN.Spec)
	}

	// The name is immutable.
	renamed := cip.DeepCopy()
	renamed.Name = "other"
	_, errs = prepare(renamed, cip, DefaultOptions())
	if got := apiError("Service", "other", errs); !strings.Contains(got, `metadata.name: Invalid value: "other": field is immutable`) {
		t.Errorf("rename: %s", got)
	}
}
