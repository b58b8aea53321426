package validation

import (
	"encoding/json"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// fuzzKinds are the kinds the API server defaults and validates.
var fuzzKinds = []func() runtime.Object{
	func() runtime.Object { return &corev1.Service{} },
	func() runtime.Object { return &corev1.Pod{} },
	func() runtime.Object { return &appsv1.Deployment{} },
	func() runtime.Object { return &appsv1.ReplicaSet{} },
	func() runtime.Object { return &discoveryv1.EndpointSlice{} },
	func() runtime.Object { return &corev1.Endpoints{} },
	func() runtime.Object { return &corev1.Namespace{} },
	func() runtime.Object { return &corev1.Node{} },
	func() runtime.Object { return &corev1.ConfigMap{} },
	func() runtime.Object { return &corev1.Secret{} },
	func() runtime.Object { return &corev1.ServiceAccount{} },
	func() runtime.Object { return &corev1.Event{} },
	func() runtime.Object { return &eventsv1.Event{} },
	func() runtime.Object { return &coordinationv1.Lease{} },
}

// FuzzDefaultAndValidate feeds arbitrary JSON bodies, as clients may send,
// through defaulting and validation on create and on update (against an
// older body of the same kind), with the feature gate on and off: bad input
// must come back as field errors, never as a panic in the server.
func FuzzDefaultAndValidate(f *testing.F) {
	f.Add(uint8(0), []byte(`{"spec":{"type":"NodePort","ports":[{"port":80,"nodePort":30080}],"internalTrafficPolicy":"Local","externalTrafficPolicy":"Local"}}`),
		[]byte(`{"spec":{"clusterIP":"None","clusterIPs":["None"],"ports":[{"port":80}]}}`), true)
	f.Add(uint8(0), []byte(`{"spec":{"type":"ExternalName","externalName":"x.example","clusterIP":"10.96.0.10"}}`), []byte(`{}`), false)
	f.Add(uint8(1), []byte(`{"spec":{"containers":[{"name":"c","image":"x","ports":[{"containerPort":80}],"readinessProbe":{"httpGet":{"port":"http"}}}],"tolerations":[{"operator":"Exists"}]}}`),
		[]byte(`{"spec":{"containers":[{"name":"c","image":"y"}]},"status":{"podIPs":[{"ip":"10.244.1.2"}]}}`), true)
	f.Add(uint8(2), []byte(`{"spec":{"replicas":-1,"selector":{"matchLabels":{"a":"b"}},"template":{"metadata":{"labels":{"a":"c"}},"spec":{"containers":[]}},"strategy":{"type":"RollingUpdate","rollingUpdate":{"maxSurge":"150%","maxUnavailable":0}}}}`),
		[]byte(`{"spec":{"selector":{"matchExpressions":[{"key":"a","operator":"In"}]}}}`), true)
	f.Add(uint8(4), []byte(`{"addressType":"IPv4","endpoints":[{"addresses":["10.0.0.1","::1"],"conditions":{}}],"ports":[{"port":70000}]}`), []byte(`{"addressType":"IPv6"}`), true)
	f.Add(uint8(7), []byte(`{"spec":{"podCIDR":"10.244.1.0/24","podCIDRs":["10.244.1.0/24","fd00::/64"],"taints":[{"key":"a","effect":"Bogus"}]}}`), []byte(`{"spec":{"podCIDR":"10.244.2.0/24"}}`), true)
	f.Add(uint8(9), []byte(`{"type":"kubernetes.io/tls","stringData":{"tls.crt":"x"},"data":{"":"eA=="}}`), []byte(`{"immutable":true}`), true)
	f.Fuzz(func(t *testing.T, kind uint8, body, oldBody []byte, gate bool) {
		newObj := fuzzKinds[int(kind)%len(fuzzKinds)]
		obj := newObj()
		if json.Unmarshal(body, obj) != nil {
			return
		}
		opts := Options{ServiceInternalTrafficPolicy: gate}
		created := obj.DeepCopyObject()
		DropDisabledFields(created, nil, opts)
		Default(created, nil, opts)
		Validate(created, nil, opts)

		old := newObj()
		if json.Unmarshal(oldBody, old) != nil {
			return
		}
		Default(old, nil, opts)
		updated := obj.DeepCopyObject()
		DropDisabledFields(updated, old, opts)
		Default(updated, old, opts)
		Validate(updated, old, opts)
	})
}
