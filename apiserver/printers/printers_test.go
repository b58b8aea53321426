package printers

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	k8stypes "k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
)

var now = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

func ago(d time.Duration) metav1.Time { return metav1.NewTime(now.Add(-d)) }

func om(name string, created time.Duration) metav1.ObjectMeta {
	return metav1.ObjectMeta{Name: name, Namespace: "default", UID: k8stypes.UID("uid-" + name), ResourceVersion: "7",
		Labels: map[string]string{"app": "web"}, CreationTimestamp: ago(created)}
}

// headers renders the column names as kubectl does (upper case), split in
// the always-shown and the -o wide ones.
func headers(t *metav1.Table) (normal, wide string) {
	var n, w []string
	for _, c := range t.ColumnDefinitions {
		if c.Priority == 0 {
			n = append(n, strings.ToUpper(c.Name))
		} else {
			w = append(w, strings.ToUpper(c.Name))
		}
	}
	return strings.Join(n, " "), strings.Join(w, " ")
}

func TestColumns(t *testing.T) {
	cases := []struct {
		obj          runtime.Object
		normal, wide string
	}{
		{&corev1.Pod{}, "NAME READY STATUS RESTARTS AGE", "IP NODE NOMINATED NODE READINESS GATES"},
		{&corev1.ServiceList{}, "NAME TYPE CLUSTER-IP EXTERNAL-IP PORT(S) AGE", "SELECTOR"},
		{&appsv1.Deployment{}, "NAME READY UP-TO-DATE AVAILABLE AGE", "CONTAINERS IMAGES SELECTOR"},
		{&appsv1.ReplicaSet{}, "NAME DESIRED CURRENT READY AGE", "CONTAINERS IMAGES SELECTOR"},
		{&corev1.Node{}, "NAME STATUS ROLES AGE VERSION", "INTERNAL-IP EXTERNAL-IP OS-IMAGE KERNEL-VERSION CONTAINER-RUNTIME"},
		{&corev1.Namespace{}, "NAME STATUS AGE", ""},
		{&corev1.Endpoints{}, "NAME ENDPOINTS AGE", ""},
		{&discoveryv1.EndpointSlice{}, "NAME ADDRESSTYPE PORTS ENDPOINTS AGE", ""},
		{&corev1.Event{}, "LAST SEEN TYPE REASON OBJECT MESSAGE", "SUBOBJECT SOURCE FIRST SEEN COUNT NAME"},
		{&eventsv1.EventList{}, "LAST SEEN TYPE REASON OBJECT MESSAGE", "SUBOBJECT SOURCE FIRST SEEN COUNT NAME"},
		{&corev1.ConfigMap{}, "NAME DATA AGE", ""},
		{&corev1.Secret{}, "NAME TYPE DATA AGE", ""},
		{&coordinationv1.Lease{}, "NAME HOLDER AGE", ""},
		{&corev1.ServiceAccount{}, "NAME SECRETS AGE", ""},
		{&corev1.PersistentVolume{}, "NAME CREATED AT", ""},
	}
	for _, c := range cases {
		tab, err := ToTable(c.obj, Options{Now: now})
		if err != nil {
			t.Fatalf("%T: %v", c.obj, err)
		}
		n, w := headers(tab)
		if n != c.normal || w != c.wide {
			t.Errorf("%T: columns %q | %q, want %q | %q", c.obj, n, w, c.normal, c.wide)
		}
		names := 0
		for _, col := range tab.ColumnDefinitions {
			if col.Description == "" {
				t.Errorf("%T: column %s has no description", c.obj, col.Name)
			}
			if col.Format == "name" {
				names++
				if col.Type != "string" {
					t.Errorf("%T: name column type %q", c.obj, col.Type)
				}
			}
		}
		if names != 1 {
			t.Errorf("%T: %d name-format columns, want 1", c.obj, names)
		}
	}
}

func TestColumnTypes(t *testing.T) {
	types := func(o runtime.Object) string {
		tab, err := ToTable(o, Options{})
		if err != nil {
			t.Fatal(err)
		}
		var s []string
		for _, c := range tab.ColumnDefinitions {
			s = append(s, c.Type)
		}
		return strings.Join(s, ",")
	}
	if got := types(&appsv1.ReplicaSet{}); got != "string,integer,integer,integer,string,string,string,string" {
		t.Errorf("replicaset types %s", got)
	}
	if got := types(&corev1.Pod{}); got != "string,string,string,string,string,string,string,string,string" {
		t.Errorf("pod types %s", got)
	}
}

func cells(t *testing.T, obj runtime.Object) []interface{} {
	t.Helper()
	tab, err := ToTable(obj, Options{Now: now})
	if err != nil {
		t.Fatal(err)
	}
	if len(tab.Rows) != 1 {
		t.Fatalf("%d rows", len(tab.Rows))
	}
	if len(tab.Rows[0].Cells) != len(tab.ColumnDefinitions) {
		t.Fatalf("%d cells for %d columns", len(tab.Rows[0].Cells), len(tab.ColumnDefinitions))
	}
	return tab.Rows[0].Cells
}

func running(name string, ready bool, restarts int32) corev1.ContainerStatus {
	return corev1.ContainerStatus{Name: name, Ready: ready, RestartCount: restarts,
		State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: ago(time.Hour)}}}
}

func waiting(name, reason string, restarts int32) corev1.ContainerStatus {
	return corev1.ContainerStatus{Name: name, RestartCount: restarts,
		State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: reason}}}
}

func TestPodRows(t *testing.T) {
	base := func() *corev1.Pod {
		return &corev1.Pod{ObjectMeta: om("web-1", 5*time.Minute), Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "nginx", Image: "nginx"}}}}
	}
	cases := []struct {
		name string
		mod  func(p *corev1.Pod)
		want []interface{}
	}{
		{"pending unscheduled", func(p *corev1.Pod) { p.Status.Phase = corev1.PodPending },
			[]interface{}{"web-1", "0/1", "Pending", "0", "5m", "<none>", "<none>", "<none>", "<none>"}},
		{"container creating", func(p *corev1.Pod) {
			p.Spec.NodeName = "node-2"
			p.Status.Phase = corev1.PodPending
			p.Status.ContainerStatuses = []corev1.ContainerStatus{waiting("nginx", "ContainerCreating", 0)}
		}, []interface{}{"web-1", "0/1", "ContainerCreating", "0", "5m", "<none>", "node-2", "<none>", "<none>"}},
		{"running", func(p *corev1.Pod) {
			p.Spec.NodeName = "node-2"
			p.Status.Phase = corev1.PodRunning
			p.Status.PodIPs = []corev1.PodIP{{IP: "10.244.2.5"}}
			p.Status.ContainerStatuses = []corev1.ContainerStatus{running("nginx", true, 0)}
		}, []interface{}{"web-1", "1/1", "Running", "0", "5m", "10.244.2.5", "node-2", "<none>", "<none>"}},
		{"only the singular pod ip", func(p *corev1.Pod) {
			p.Status.Phase = corev1.PodRunning
			p.Status.PodIP = "10.244.1.7"
		}, []interface{}{"web-1", "0/1", "Running", "0", "5m", "10.244.1.7", "<none>", "<none>", "<none>"}},
		{"crash loop with restart age", func(p *corev1.Pod) {
			p.Status.Phase = corev1.PodRunning
			st := waiting("nginx", "CrashLoopBackOff", 4)
			st.LastTerminationState.Terminated = &corev1.ContainerStateTerminated{ExitCode: 1, Reason: "Error", FinishedAt: ago(90 * time.Second)}
			p.Status.ContainerStatuses = []corev1.ContainerStatus{st}
		}, []interface{}{"web-1", "0/1", "CrashLoopBackOff", "4 (90s ago)", "5m", "<none>", "<none>", "<none>", "<none>"}},
		{"completed", func(p *corev1.Pod) {
			p.Status.Phase = corev1.PodSucceeded
			p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "nginx",
				State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{Reason: "Completed"}}}}
		}, []interface{}{"web-1", "0/1", "Completed", "0", "5m", "<none>", "<none>", "<none>", "<none>"}},
		{"exit code without reason", func(p *corev1.Pod) {
			p.Status.Phase = corev1.PodFailed
			p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "nginx",
				State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 137}}}}
		}, []interface{}{"web-1", "0/1", "ExitCode:137", "0", "5m", "<none>", "<none>", "<none>", "<none>"}},
		{"terminating", func(p *corev1.Pod) {
			p.Status.Phase = corev1.PodRunning
			p.DeletionTimestamp = ptr.To(ago(time.Second))
			p.Status.ContainerStatuses = []corev1.ContainerStatus{running("nginx", true, 0)}
		}, []interface{}{"web-1", "1/1", "Terminating", "0", "5m", "<none>", "<none>", "<none>", "<none>"}},
		{"node lost", func(p *corev1.Pod) {
			p.Status.Phase = corev1.PodRunning
			p.Status.Reason = "NodeLost"
			p.DeletionTimestamp = ptr.To(ago(time.Second))
		}, []interface{}{"web-1", "0/1", "Unknown", "0", "5m", "<none>", "<none>", "<none>", "<none>"}},
		{"init waiting", func(p *corev1.Pod) {
			p.Status.Phase = corev1.PodPending
			p.Spec.InitContainers = []corev1.Container{{Name: "a"}, {Name: "b"}}
			p.Status.InitContainerStatuses = []corev1.ContainerStatus{
				{Name: "a", State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 0}}},
				{Name: "b", State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}},
			}
			p.Status.ContainerStatuses = []corev1.ContainerStatus{waiting("nginx", "PodInitializing", 0)}
		}, []interface{}{"web-1", "0/1", "Init:1/2", "0", "5m", "<none>", "<none>", "<none>", "<none>"}},
		{"init crash", func(p *corev1.Pod) {
			p.Status.Phase = corev1.PodPending
			p.Spec.InitContainers = []corev1.Container{{Name: "a"}}
			p.Status.InitContainerStatuses = []corev1.ContainerStatus{waiting("a", "CrashLoopBackOff", 2)}
		}, []interface{}{"web-1", "0/1", "Init:CrashLoopBackOff", "2", "5m", "<none>", "<none>", "<none>", "<none>"}},
		{"readiness gates and two containers", func(p *corev1.Pod) {
			p.Status.Phase = corev1.PodRunning
			p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: "side"})
			p.Spec.ReadinessGates = []corev1.PodReadinessGate{{ConditionType: "x"}, {ConditionType: "y"}}
			p.Status.Conditions = []corev1.PodCondition{{Type: "x", Status: corev1.ConditionTrue}, {Type: "y", Status: corev1.ConditionFalse}}
			p.Status.ContainerStatuses = []corev1.ContainerStatus{running("nginx", true, 1), running("side", false, 2)}
			p.Status.NominatedNodeName = "node-1"
		}, []interface{}{"web-1", "1/2", "Running", "3", "5m", "<none>", "<none>", "node-1", "1/2"}},
		{"scheduling gated", func(p *corev1.Pod) {
			p.Status.Phase = corev1.PodPending
			p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodScheduled, Status: corev1.ConditionFalse, Reason: "SchedulingGated"}}
		}, []interface{}{"web-1", "0/1", "SchedulingGated", "0", "5m", "<none>", "<none>", "<none>", "<none>"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := base()
			c.mod(p)
			if got := cells(t, p); !reflect.DeepEqual(got, c.want) {
				t.Errorf("cells\n got %#v\nwant %#v", got, c.want)
			}
		})
	}
}

func TestPodRowConditions(t *testing.T) {
	p := &corev1.Pod{ObjectMeta: om("done", time.Hour), Status: corev1.PodStatus{Phase: corev1.PodSucceeded}}
	tab, _ := ToTable(p, Options{Now: now})
	if c := tab.Rows[0].Conditions; len(c) != 1 || c[0].Type != metav1.RowCompleted || c[0].Status != metav1.ConditionTrue {
		t.Errorf("conditions %+v", c)
	}
}

func svc(typ corev1.ServiceType, mod func(s *corev1.Service)) *corev1.Service {
	s := &corev1.Service{ObjectMeta: om("web", 2*time.Hour), Spec: corev1.ServiceSpec{
		Type: typ, ClusterIP: "10.96.0.10", ClusterIPs: []string{"10.96.0.10"},
		Selector: map[string]string{"app": "web"},
		Ports:    []corev1.ServicePort{{Port: 80, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromInt32(80)}},
	}}
	if mod != nil {
		mod(s)
	}
	return s
}

func TestServiceRows(t *testing.T) {
	cases := []struct {
		name string
		obj  *corev1.Service
		want []interface{}
	}{
		{"cluster ip", svc(corev1.ServiceTypeClusterIP, nil),
			[]interface{}{"web", "ClusterIP", "10.96.0.10", "<none>", "80/TCP", "120m", "app=web"}},
		{"node port", svc(corev1.ServiceTypeNodePort, func(s *corev1.Service) {
			s.Spec.Ports[0].NodePort = 30080
			s.Spec.Ports = append(s.Spec.Ports, corev1.ServicePort{Port: 53, NodePort: 30053, Protocol: corev1.ProtocolUDP})
		}), []interface{}{"web", "NodePort", "10.96.0.10", "<none>", "80:30080/TCP,53:30053/UDP", "120m", "app=web"}},
		{"load balancer pending", svc(corev1.ServiceTypeLoadBalancer, func(s *corev1.Service) { s.Spec.Ports[0].NodePort = 31000 }),
			[]interface{}{"web", "LoadBalancer", "10.96.0.10", "<pending>", "80:31000/TCP", "120m", "app=web"}},
		{"load balancer with ingress and external ips", svc(corev1.ServiceTypeLoadBalancer, func(s *corev1.Service) {
			s.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: "192.0.2.9"}, {Hostname: "lb.example"}}
			s.Spec.ExternalIPs = []string{"198.51.100.1"}
		}), []interface{}{"web", "LoadBalancer", "10.96.0.10", "192.0.2.9,lb.example,198.51.100.1", "80/TCP", "120m", "app=web"}},
		{"headless no ports no selector", svc(corev1.ServiceTypeClusterIP, func(s *corev1.Service) {
			s.Spec.ClusterIP, s.Spec.ClusterIPs, s.Spec.Ports, s.Spec.Selector = "None", []string{"None"}, nil, nil
		}), []interface{}{"web", "ClusterIP", "None", "<none>", "<none>", "120m", "<none>"}},
		{"external name", svc(corev1.ServiceTypeExternalName, func(s *corev1.Service) {
			s.Spec.ClusterIP, s.Spec.ClusterIPs, s.Spec.ExternalName, s.Spec.Ports = "", nil, "db.example.com", nil
		}), []interface{}{"web", "ExternalName", "<none>", "db.example.com", "<none>", "120m", "app=web"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := cells(t, c.obj); !reflect.DeepEqual(got, c.want) {
				t.Errorf("cells\n got %#v\nwant %#v", got, c.want)
			}
		})
	}
}

func podTemplate() corev1.PodTemplateSpec {
	return corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "web"}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "nginx", Image: "nginx"}, {Name: "log", Image: "busybox:1.36"}}}}
}

func TestWorkloadRows(t *testing.T) {
	d := &appsv1.Deployment{ObjectMeta: om("web", 3*24*time.Hour+2*time.Hour), Spec: appsv1.DeploymentSpec{
		Replicas: ptr.To[int32](3), Template: podTemplate(),
		Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"},
			MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "tier", Operator: metav1.LabelSelectorOpIn, Values: []string{"a", "b"}}}},
	}, Status: appsv1.DeploymentStatus{ReadyReplicas: 2, UpdatedReplicas: 3, AvailableReplicas: 2}}
	want := []interface{}{"web", "2/3", int64(3), int64(2), "3d2h", "nginx,log", "nginx,busybox:1.36", "app=web,tier in (a,b)"}
	if got := cells(t, d); !reflect.DeepEqual(got, want) {
		t.Errorf("deployment\n got %#v\nwant %#v", got, want)
	}

	rs := &appsv1.ReplicaSet{ObjectMeta: om("web-7d9f", 40*time.Second), Spec: appsv1.ReplicaSetSpec{
		Replicas: ptr.To[int32](1), Template: podTemplate(),
		Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web", "pod-template-hash": "7d9f"}},
	}, Status: appsv1.ReplicaSetStatus{Replicas: 1, ReadyReplicas: 1}}
	want = []interface{}{"web-7d9f", int64(1), int64(1), int64(1), "40s", "nginx,log", "nginx,busybox:1.36", "app=web,pod-template-hash=7d9f"}
	if got := cells(t, rs); !reflect.DeepEqual(got, want) {
		t.Errorf("replicaset\n got %#v\nwant %#v", got, want)
	}
}

func TestNodeRows(t *testing.T) {
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-1", CreationTimestamp: ago(10 * time.Minute),
		Labels: map[string]string{"node-role.kubernetes.io/worker": "", "node-role.kubernetes.io/edge": "", "kubernetes.io/role": "lab"}},
		Spec: corev1.NodeSpec{Unschedulable: true},
		Status: corev1.NodeStatus{
			Conditions: []corev1.NodeCondition{{Type: corev1.NodeMemoryPressure, Status: corev1.ConditionFalse}, {Type: corev1.NodeReady, Status: corev1.ConditionTrue}},
			Addresses:  []corev1.NodeAddress{{Type: corev1.NodeHostName, Address: "node-1"}, {Type: corev1.NodeInternalIP, Address: "10.200.0.1"}},
			NodeInfo:   corev1.NodeSystemInfo{KubeletVersion: "v1.37.2-kubelab", OSImage: "Debian", KernelVersion: "6.1.0", ContainerRuntimeVersion: "kubelab://0.1"},
		}}
	want := []interface{}{"node-1", "Ready,SchedulingDisabled", "edge,lab,worker", "10m", "v1.37.2-kubelab", "10.200.0.1", "<none>", "Debian", "6.1.0", "kubelab://0.1"}
	if got := cells(t, n); !reflect.DeepEqual(got, want) {
		t.Errorf("node\n got %#v\nwant %#v", got, want)
	}
	bare := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-2"}}
	want = []interface{}{"node-2", "Unknown", "<none>", "<unknown>", "", "<none>", "<none>", "<unknown>", "<unknown>", "<unknown>"}
	if got := cells(t, bare); !reflect.DeepEqual(got, want) {
		t.Errorf("bare node\n got %#v\nwant %#v", got, want)
	}
	notReady := bare.DeepCopy()
	notReady.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionUnknown}}
	if got := cells(t, notReady)[1]; got != "NotReady" {
		t.Errorf("not ready node status %v", got)
	}
}

func TestSmallKinds(t *testing.T) {
	sa := &corev1.ServiceAccount{ObjectMeta: om("default", time.Hour), Secrets: []corev1.ObjectReference{{Name: "x"}}}
	cases := []struct {
		name string
		obj  runtime.Object
		want []interface{}
	}{
		{"namespace", &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "lab", CreationTimestamp: ago(time.Hour)}, Status: corev1.NamespaceStatus{Phase: corev1.NamespaceActive}},
			[]interface{}{"lab", "Active", "60m"}},
		{"configmap", &corev1.ConfigMap{ObjectMeta: om("cfg", time.Hour), Data: map[string]string{"a": "1", "b": "2"}, BinaryData: map[string][]byte{"c": nil}},
			[]interface{}{"cfg", int64(3), "60m"}},
		{"secret", &corev1.Secret{ObjectMeta: om("s", time.Hour), Type: corev1.SecretTypeOpaque, Data: map[string][]byte{"k": []byte("v")}},
			[]interface{}{"s", "Opaque", int64(1), "60m"}},
		{"lease", &coordinationv1.Lease{ObjectMeta: om("node-1", 30*time.Second), Spec: coordinationv1.LeaseSpec{HolderIdentity: ptr.To("node-1")}},
			[]interface{}{"node-1", "node-1", "30s"}},
		{"lease without holder", &coordinationv1.Lease{ObjectMeta: om("x", 30*time.Second)},
			[]interface{}{"x", "", "30s"}},
		{"serviceaccount", sa, []interface{}{"default", int64(1), "60m"}},
		{"unknown kind", &corev1.PersistentVolume{ObjectMeta: metav1.ObjectMeta{Name: "pv", CreationTimestamp: metav1.NewTime(now)}},
			[]interface{}{"pv", "2026-11-25T12:00:00Z"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := cells(t, c.obj); !reflect.DeepEqual(got, c.want) {
				t.Errorf("cells\n got %#v\nwant %#v", got, c.want)
			}
		})
	}
}

func TestEndpointsRows(t *testing.T) {
	addrs := func(ips ...string) []corev1.EndpointAddress {
		var a []corev1.EndpointAddress
		for _, ip := range ips {
			a = append(a, corev1.EndpointAddress{IP: ip})
		}
		return a
	}
	cases := []struct {
		name string
		ep   corev1.Endpoints
		want string
	}{
		{"empty", corev1.Endpoints{}, "<none>"},
		{"one", corev1.Endpoints{Subsets: []corev1.EndpointSubset{{Addresses: addrs("10.244.1.5"), Ports: []corev1.EndpointPort{{Port: 80}}}}}, "10.244.1.5:80"},
		{"more", corev1.Endpoints{Subsets: []corev1.EndpointSubset{{
			Addresses: addrs("10.244.1.5", "10.244.2.5", "10.244.1.6"),
			Ports:     []corev1.EndpointPort{{Name: "http", Port: 80}, {Name: "https", Port: 443}}}}},
			"10.244.1.5:80,10.244.2.5:80,10.244.1.6:80 + 3 more..."},
		{"headless no ports", corev1.Endpoints{Subsets: []corev1.EndpointSubset{{Addresses: addrs("10.244.1.5", "fd00::5")}}}, "10.244.1.5,fd00::5"},
		{"ipv6 port", corev1.Endpoints{Subsets: []corev1.EndpointSubset{{Addresses: addrs("fd00::5"), Ports: []corev1.EndpointPort{{Port: 80}}}}}, "[fd00::5]:80"},
		{"not ready only", corev1.Endpoints{Subsets: []corev1.EndpointSubset{{NotReadyAddresses: addrs("10.244.1.5"), Ports: []corev1.EndpointPort{{Port: 80}}}}}, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ep := c.ep
			ep.ObjectMeta = om("web", time.Minute)
			want := []interface{}{"web", c.want, "60s"}
			if got := cells(t, &ep); !reflect.DeepEqual(got, want) {
				t.Errorf("cells %#v, want %#v", got, want)
			}
		})
	}
}

func TestEndpointSliceRows(t *testing.T) {
	ep := func(a ...string) discoveryv1.Endpoint { return discoveryv1.Endpoint{Addresses: a} }
	es := &discoveryv1.EndpointSlice{ObjectMeta: om("web-abc", time.Minute), AddressType: discoveryv1.AddressTypeIPv4,
		Ports:     []discoveryv1.EndpointPort{{Port: ptr.To[int32](80)}, {Name: ptr.To("dns")}, {}, {Port: ptr.To[int32](9)}},
		Endpoints: []discoveryv1.Endpoint{ep("10.244.1.5"), ep("10.244.2.5", "10.244.2.6"), ep("10.244.3.5")}}
	want := []interface{}{"web-abc", "IPv4", "80,dns,* + 1 more...", "10.244.1.5,10.244.2.5,10.244.2.6 + 1 more...", "60s"}
	if got := cells(t, es); !reflect.DeepEqual(got, want) {
		t.Errorf("cells\n got %#v\nwant %#v", got, want)
	}
	empty := &discoveryv1.EndpointSlice{ObjectMeta: om("web-x", time.Minute), AddressType: discoveryv1.AddressTypeIPv6}
	want = []interface{}{"web-x", "IPv6", "<unset>", "<unset>", "60s"}
	if got := cells(t, empty); !reflect.DeepEqual(got, want) {
		t.Errorf("empty cells %#v", got)
	}
}

func TestEventRows(t *testing.T) {
	core := &corev1.Event{ObjectMeta: om("web-1.abc", time.Hour),
		InvolvedObject: corev1.ObjectReference{Kind: "Pod", Name: "web-1", FieldPath: "spec.containers{nginx}"},
		Reason:         "Started", Message: "Started container nginx\n", Type: "Normal",
		Source:         corev1.EventSource{Component: "kubelet", Host: "node-1"},
		FirstTimestamp: ago(10 * time.Minute), LastTimestamp: ago(2 * time.Minute), Count: 3}
	want := []interface{}{"2m", "Normal", "Started", "pod/web-1", "spec.containers{nginx}", "kubelet, node-1", "Started container nginx", "10m", int64(3), "web-1.abc"}
	if got := cells(t, core); !reflect.DeepEqual(got, want) {
		t.Errorf("core event\n got %#v\nwant %#v", got, want)
	}

	newAPI := &eventsv1.Event{ObjectMeta: om("web.1", time.Hour), EventTime: metav1.NewMicroTime(now.Add(-45 * time.Second)),
		Regarding: corev1.ObjectReference{Kind: "Deployment", Name: "web"}, Reason: "ScalingReplicaSet", Note: "Scaled up",
		Type: "Normal", ReportingController: "deployment-controller"}
	want = []interface{}{"45s", "Normal", "ScalingReplicaSet", "deployment/web", "", "deployment-controller", "Scaled up", "45s", int64(1), "web.1"}
	if got := cells(t, newAPI); !reflect.DeepEqual(got, want) {
		t.Errorf("events.k8s.io event\n got %#v\nwant %#v", got, want)
	}

	series := newAPI.DeepCopy()
	series.Series = &eventsv1.EventSeries{Count: 7, LastObservedTime: metav1.NewMicroTime(now.Add(-5 * time.Second))}
	series.Regarding = corev1.ObjectReference{Kind: "Node"}
	series.ReportingInstance = "kubelab-1"
	want = []interface{}{"5s", "Normal", "ScalingReplicaSet", "node", "", "deployment-controller, kubelab-1", "Scaled up", "45s", int64(7), "web.1"}
	if got := cells(t, series); !reflect.DeepEqual(got, want) {
		t.Errorf("series event\n got %#v\nwant %#v", got, want)
	}
}

func TestListMetadataAndRowObjects(t *testing.T) {
	rc := int64(4)
	list := &corev1.PodList{ListMeta: metav1.ListMeta{ResourceVersion: "106", Continue: "tok", RemainingItemCount: &rc},
		Items: []corev1.Pod{{ObjectMeta: om("a", time.Minute)}, {ObjectMeta: om("b", time.Minute)}}}

	tab, err := ToTable(list, Options{Now: now})
	if err != nil {
		t.Fatal(err)
	}
	if tab.Kind != "Table" || tab.APIVersion != "meta.k8s.io/v1" || tab.ResourceVersion != "106" || tab.Continue != "tok" ||
		tab.RemainingItemCount == nil || *tab.RemainingItemCount != 4 || len(tab.Rows) != 2 {
		t.Fatalf("table meta %+v rows %d", tab.ListMeta, len(tab.Rows))
	}

	// Default (Metadata): PartialObjectMetadata with the full metadata, as JSON kubectl reads.
	raw, err := json.Marshal(tab)
	if err != nil {
		t.Fatal(err)
	}
	var decoded struct {
		Rows []struct {
			Object map[string]interface{} `json:"object"`
		} `json:"rows"`
	}
	if err := json.Unmarshal(raw, &decoded); err != nil {
		t.Fatal(err)
	}
	o := decoded.Rows[1].Object
	md, _ := o["metadata"].(map[string]interface{})
	if o["kind"] != "PartialObjectMetadata" || o["apiVersion"] != "meta.k8s.io/v1" || md["name"] != "b" || md["namespace"] != "default" ||
		md["labels"].(map[string]interface{})["app"] != "web" || md["uid"] != "uid-b" || md["resourceVersion"] != "7" {
		t.Errorf("metadata row object %v", o)
	}
	if _, hasSpec := o["spec"]; hasSpec {
		t.Errorf("metadata row object carries spec")
	}

	// Object: the full object with kind/apiVersion, without touching the caller's list.
	tab, _ = ToTable(list, Options{Now: now, IncludeObject: metav1.IncludeObject})
	p, ok := tab.Rows[0].Object.Object.(*corev1.Pod)
	if !ok || p.Kind != "Pod" || p.APIVersion != "v1" || p.Name != "a" {
		t.Errorf("object row %#v", tab.Rows[0].Object.Object)
	}
	if list.Items[0].Kind != "" {
		t.Errorf("caller's list was modified")
	}
	rs, _ := ToTable(&appsv1.ReplicaSetList{Items: []appsv1.ReplicaSet{{}}}, Options{IncludeObject: metav1.IncludeObject})
	if gvk := rs.Rows[0].Object.Object.GetObjectKind().GroupVersionKind(); gvk.Kind != "ReplicaSet" || gvk.GroupVersion().String() != "apps/v1" {
		t.Errorf("replicaset row kind %v", gvk)
	}

	// None: no object.
	tab, _ = ToTable(list, Options{Now: now, IncludeObject: metav1.IncludeNone})
	if tab.Rows[0].Object.Object != nil || tab.Rows[0].Object.Raw != nil {
		t.Errorf("none row object %v", tab.Rows[0].Object)
	}

	// A single object: one row, its resourceVersion; NoHeaders drops the columns.
	single, _ := ToTable(&list.Items[0], Options{Now: now, NoHeaders: true})
	if len(single.Rows) != 1 || single.ResourceVersion != "7" || single.ColumnDefinitions != nil {
		t.Errorf("single %+v", single)
	}
	empty, _ := ToTable(&corev1.ServiceList{ListMeta: metav1.ListMeta{ResourceVersion: "9"}}, Options{})
	if empty.Rows == nil || len(empty.Rows) != 0 || len(empty.ColumnDefinitions) != 7 {
		t.Errorf("empty list table %+v", empty)
	}
}

func BenchmarkToTable500Pods(b *testing.B) {
	list := &corev1.PodList{}
	for i := 0; i < 500; i++ {
		list.Items = append(list.Items, corev1.Pod{ObjectMeta: om("web", time.Minute),
			Spec:   corev1.PodSpec{Containers: []corev1.Container{{Name: "nginx"}}},
			Status: corev1.PodStatus{Phase: corev1.PodRunning, ContainerStatuses: []corev1.ContainerStatus{running("nginx", true, 0)}}})
	}
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if _, err := ToTable(list, Options{Now: now}); err != nil {
			b.Fatal(err)
		}
	}
}
