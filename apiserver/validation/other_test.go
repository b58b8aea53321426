package validation

import (
	"fmt"
	"reflect"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/utils/ptr"
)

func errText(kind string, obj, old runtime.Object) string {
	_, errs := prepare(obj, old, DefaultOptions())
	name := ""
	if m, ok := obj.(metav1.Object); ok {
		name = m.GetName()
	}
	return apiError(kind, name, errs)
}

func slice(mod func(es *discoveryv1.EndpointSlice)) *discoveryv1.EndpointSlice {
	es := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: "web-abc", Namespace: "default", Labels: map[string]string{discoveryv1.LabelServiceName: "web"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints: []discoveryv1.Endpoint{{Addresses: []string{"10.244.1.5"}, NodeName: ptr.To("node-1"),
			Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}}},
		Ports: []discoveryv1.EndpointPort{{Port: ptr.To[int32](80)}},
	}
	if mod != nil {
		mod(es)
	}
	return es
}

func TestEndpointSlice(t *testing.T) {
	es := slice(nil)
	if got := errText("EndpointSlice", es, nil); got != "" {
		t.Fatalf("valid slice refused: %s", got)
	}
	if p := es.Ports[0]; p.Name == nil || *p.Name != "" || p.Protocol == nil || *p.Protocol != corev1.ProtocolTCP {
		t.Errorf("port defaults %+v", p)
	}
	es.ResourceVersion = "2"

	many := make([]discoveryv1.Endpoint, 1001)
	for i := range many {
		many[i] = discoveryv1.Endpoint{Addresses: []string{fmt.Sprintf("10.244.%d.%d", i/250, i%250+1)}}
	}
	cases := []struct {
		name string
		es   *discoveryv1.EndpointSlice
		want string
	}{
		{"address type required", slice(func(es *discoveryv1.EndpointSlice) { es.AddressType = "" }),
			`EndpointSlice.discovery.k8s.io "web-abc" is invalid: addressType: Required value`},
		{"address type unsupported", slice(func(es *discoveryv1.EndpointSlice) { es.AddressType = "MAC" }),
			`EndpointSlice.discovery.k8s.io "web-abc" is invalid: addressType: Unsupported value: "MAC": supported values: "FQDN", "IPv4", "IPv6"`},
		{"ipv6 address in ipv4 slice", slice(func(es *discoveryv1.EndpointSlice) { es.Endpoints[0].Addresses = []string{"fd00::5"} }),
			`EndpointSlice.discovery.k8s.io "web-abc" is invalid: endpoints[0].addresses[0]: Invalid value: "fd00::5": must be an IPv4 address`},
		{"bad address", slice(func(es *discoveryv1.EndpointSlice) { es.Endpoints[0].Addresses = []string{"10.244.1"} }),
			`EndpointSlice.discovery.k8s.io "web-abc" is invalid: endpoints[0].addresses[0]: Invalid value: "10.244.1": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)`},
		{"loopback", slice(func(es *discoveryv1.EndpointSlice) { es.Endpoints[0].Addresses = []string{"127.0.0.1"} }),
			`EndpointSlice.discovery.k8s.io "web-abc" is invalid: endpoints[0].addresses[0]: Invalid value: "127.0.0.1": may not be in the loopback range (127.0.0.0/8, ::1/128)`},
		{"no addresses", slice(func(es *discoveryv1.EndpointSlice) { es.Endpoints[0].Addresses = nil }),
			`EndpointSlice.discovery.k8s.io "web-abc" is invalid: endpoints[0].addresses: Required value: must contain at least 1 address`},
		{"too many endpoints", slice(func(es *discoveryv1.EndpointSlice) { es.Endpoints = many }),
			`EndpointSlice.discovery.k8s.io "web-abc" is invalid: endpoints: Too many: 1001: must have at most 1000 items`},
		{"duplicate port names", slice(func(es *discoveryv1.EndpointSlice) {
			es.Ports = []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To[int32](80)}, {Name: ptr.To("http"), Port: ptr.To[int32](81)}}
		}), `EndpointSlice.discovery.k8s.io "web-abc" is invalid: ports[1].name: Duplicate value: "http"`},
		{"bad protocol", slice(func(es *discoveryv1.EndpointSlice) { es.Ports[0].Protocol = ptr.To(corev1.Protocol("ICMP")) }),
			`EndpointSlice.discovery.k8s.io "web-abc" is invalid: ports[0].protocol: Unsupported value: "ICMP": supported values: "SCTP", "TCP", "UDP"`},
		{"fqdn", slice(func(es *discoveryv1.EndpointSlice) {
			es.AddressType = discoveryv1.AddressTypeFQDN
			es.Endpoints[0].Addresses = []string{"db.example.com"}
		}), ``},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := errText("EndpointSlice", c.es, nil); got != c.want {
				t.Errorf("\n got %s\nwant %s", got, c.want)
			}
		})
	}

	changed := es.DeepCopy()
	changed.AddressType = discoveryv1.AddressTypeIPv6
	changed.Endpoints[0].Addresses = []string{"fd00::5"}
	if got := errText("EndpointSlice", changed, es); got != `EndpointSlice.discovery.k8s.io "web-abc" is invalid: addressType: Invalid value: "IPv6": field is immutable` {
		t.Errorf("address type change: %s", got)
	}
}

func TestSmallKinds(t *testing.T) {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "lab"}}
	if got := errText("Namespace", ns, nil); got != "" || ns.Status.Phase != corev1.NamespaceActive || ns.Labels["kubernetes.io/metadata.name"] != "lab" {
		t.Errorf("namespace: %q %+v", got, ns)
	}
	badNS := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "my.lab"}}
	if got := errText("Namespace", badNS, nil); got != `Namespace "my.lab" is invalid: metadata.name: Invalid value: "my.lab": must not contain dots` {
		t.Errorf("namespace name: %s", got)
	}
	nsWithNS := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "x", Namespace: "default"}}
	if got := errText("Namespace", nsWithNS, nil); got != `Namespace "x" is invalid: metadata.namespace: Forbidden: not allowed on this type` {
		t.Errorf("namespaced namespace: %s", got)
	}

	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-1"}, Spec: corev1.NodeSpec{PodCIDR: "10.244.1.0/24"},
		Status: corev1.NodeStatus{Capacity: corev1.ResourceList{corev1.ResourcePods: *resourceQty("110")}}}
	if got := errText("Node", node, nil); got != "" || !reflect.DeepEqual(node.Spec.PodCIDRs, []string{"10.244.1.0/24"}) || node.Status.Allocatable == nil {
		t.Errorf("node: %q %+v", got, node)
	}
	node.ResourceVersion = "1"
	moved := node.DeepCopy()
	moved.Spec.PodCIDR, moved.Spec.PodCIDRs = "10.244.2.0/24", []string{"10.244.2.0/24"}
	if got := errText("Node", moved, node); got != `Node "node-1" is invalid: spec.podCIDRs: Forbidden: node updates may not change podCIDR except from "" to valid` {
		t.Errorf("node cidr change: %s", got)
	}
	tainted := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-2"}, Spec: corev1.NodeSpec{Taints: []corev1.Taint{{Key: "k", Effect: "Sometimes"}}}}
	if got := errText("Node", tainted, nil); got != `Node "node-2" is invalid: metadata.taints[0].effect: Unsupported value: "Sometimes": supported values: "NoSchedule", "PreferNoSchedule", "NoExecute"` {
		t.Errorf("taint: %s", got)
	}

	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "cfg", Namespace: "default"}, Data: map[string]string{"bad key": "v"}}
	if got := errText("ConfigMap", cm, nil); got != `ConfigMap "cfg" is invalid: data[bad key]: Invalid value: "bad key": a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')` {
		t.Errorf("configmap key: %s", got)
	}

	sec := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "s", Namespace: "default"}, StringData: map[string]string{"password": "hunter2"}}
	if got := errText("Secret", sec, nil); got != "" || sec.Type != corev1.SecretTypeOpaque || string(sec.Data["password"]) != "hunter2" || sec.StringData != nil {
		t.Errorf("secret defaults: %q %+v", got, sec)
	}
	sec.ResourceVersion = "1"
	retyped := sec.DeepCopy()
	retyped.Type = corev1.SecretTypeBasicAuth
	if got := errText("Secret", retyped, sec); got != `Secret "s" is invalid: [data[username]: Required value, data[password]: Required value, type: Invalid value: "kubernetes.io/basic-auth": field is immutable]` &&
		got != `Secret "s" is invalid: type: Invalid value: "kubernetes.io/basic-auth": field is immutable` {
		t.Errorf("secret type change: %s", got)
	}
	tls := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "t", Namespace: "default"}, Type: corev1.SecretTypeTLS, Data: map[string][]byte{"tls.crt": nil}}
	if got := errText("Secret", tls, nil); got != `Secret "t" is invalid: data[tls.key]: Required value` {
		t.Errorf("tls secret: %s", got)
	}

	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}
	if got := errText("ServiceAccount", sa, nil); got != `ServiceAccount "default" is invalid: metadata.namespace: Required value` {
		t.Errorf("serviceaccount: %s", got)
	}

	lease := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: "node-1", Namespace: "kube-node-lease"},
		Spec: coordinationv1.LeaseSpec{HolderIdentity: ptr.To("node-1"), LeaseDurationSeconds: ptr.To[int32](0)}}
	if got := errText("Lease", lease, nil); got != `Lease "node-1" is invalid: spec.leaseDurationSeconds: Invalid value: 0: must be greater than 0` {
		t.Errorf("lease: %s", got)
	}
	lease.Spec.LeaseDurationSeconds = ptr.To[int32](40)
	if got := errText("Lease", lease, nil); got != "" {
		t.Errorf("valid lease: %s", got)
	}

	ep := &corev1.Endpoints{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default"}, Subsets: []corev1.EndpointSubset{{
		Addresses: []corev1.EndpointAddress{{IP: "10.244.1.5"}}, Ports: []corev1.EndpointPort{{Port: 80}, {Name: "https", Port: 443}}}}}
	if got := errText("Endpoints", ep, nil); got != `Endpoints "web" is invalid: subsets[0].ports[0].name: Required value` || ep.Subsets[0].Ports[0].Protocol != corev1.ProtocolTCP {
		t.Errorf("endpoints: %s", got)
	}
}

func TestEvents(t *testing.T) {
	core := &corev1.Event{ObjectMeta: metav1.ObjectMeta{Name: "web-1.1", Namespace: "default"},
		InvolvedObject: corev1.ObjectReference{Kind: "Pod", Namespace: "default", Name: "web-1"}, Reason: "Scheduled", Type: "Normal"}
	if got := errText("Event", core, nil); got != "" {
		t.Errorf("core event: %s", got)
	}
	wrongNS := core.DeepCopy()
	wrongNS.InvolvedObject.Namespace = "lab"
	if got := errText("Event", wrongNS, nil); got != `Event "web-1.1" is invalid: involvedObject.namespace: Invalid value: "lab": does not match event.namespace` {
		t.Errorf("core event namespace: %s", got)
	}
	newStyle := core.DeepCopy()
	newStyle.EventTime = metav1.NewMicroTime(time.Now())
	if got := errText("Event", newStyle, nil); got != `Event "web-1.1" is invalid: [reportingComponent: Required value, reportingComponent: Invalid value: "": name part must be non-empty, `+
		`reportingComponent: Invalid value: "": name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character `+
		`(e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]'), reportingInstance: Required value, action: Required value]` {
		t.Errorf("core event with eventTime: %s", got)
	}

	ev := &eventsv1.Event{ObjectMeta: metav1.ObjectMeta{Name: "web.1", Namespace: "default"}, EventTime: metav1.NewMicroTime(time.Now()),
		Regarding: corev1.ObjectReference{Kind: "Deployment", Namespace: "default", Name: "web"}, Reason: "ScalingReplicaSet", Action: "Scale",
		Type: "Normal", ReportingController: "kubelab.io/deployment-controller", ReportingInstance: "kubelab-1", Note: "Scaled up"}
	if got := errText("Event", ev, nil); got != "" {
		t.Errorf("events.k8s.io event: %s", got)
	}
	bad := ev.DeepCopy()
	bad.Type = "Info"
	bad.DeprecatedCount = 3
	if got := errText("Event", bad, nil); got != `Event "web.1" is invalid: [type: Invalid value: "": has invalid value: Info, count: Invalid value: "": needs to be unset]` {
		t.Errorf("events.k8s.io bad: %s", got)
	}
	ev.ResourceVersion = "1"
	edited := ev.DeepCopy()
	edited.Reason = "Other"
	if got := errText("Event", edited, ev); got != `Event "web.1" is invalid: reason: Invalid value: "Other": field is immutable` {
		t.Errorf("events.k8s.io update: %s", got)
	}
}

func TestValidateMismatchedOld(t *testing.T) {
	_, errs := Validate(pod(nil), service(nil), DefaultOptions())
	if len(errs) != 1 || errs[0].Type != "InternalError" {
		t.Errorf("mismatched old: %v", errs)
	}
}

func resourceQty(s string) *resource.Quantity {
	q := resource.MustParse(s)
	return &q
}

func TestUnconditionalUpdate(t *testing.T) {
	old := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "cfg", Namespace: "default", ResourceVersion: "7", UID: "u1"}}
	put := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "cfg", Namespace: "default", UID: "u1"}, Data: map[string]string{"a": "b"}}
	if got := errText("ConfigMap", put, old); got != "" {
		t.Errorf("update without resourceVersion refused: %s", got)
	}
	if put.ResourceVersion != "" {
		t.Errorf("Validate changed the object's resourceVersion")
	}
	put.UID = "u2"
	if got := errText("ConfigMap", put, old); got != `ConfigMap "cfg" is invalid: metadata.uid: Invalid value: "u2": field is immutable` {
		t.Errorf("uid change: %s", got)
	}
}
