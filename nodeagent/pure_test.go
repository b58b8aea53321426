package nodeagent

import (
	"net"
	"reflect"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

func TestCrashBackoff(t *testing.T) {
	for _, tc := range []struct {
		restarts int32
		want     time.Duration
	}{{0, 10 * time.Second}, {1, 20 * time.Second}, {2, 40 * time.Second}, {3, 80 * time.Second},
		{4, 160 * time.Second}, {5, 5 * time.Minute}, {6, 5 * time.Minute}, {100, 5 * time.Minute}} {
		if got := crashBackoff(tc.restarts); got != tc.want {
			t.Errorf("crashBackoff(%d) = %s, want %s", tc.restarts, got, tc.want)
		}
	}
}

func TestShouldRestart(t *testing.T) {
	for _, tc := range []struct {
		policy corev1.RestartPolicy
		code   int
		want   bool
	}{
		{corev1.RestartPolicyAlways, 0, true}, {corev1.RestartPolicyAlways, 1, true}, {"", 0, true},
		{corev1.RestartPolicyOnFailure, 0, false}, {corev1.RestartPolicyOnFailure, 2, true},
		{corev1.RestartPolicyNever, 0, false}, {corev1.RestartPolicyNever, 137, false},
	} {
		if got := shouldRestart(tc.policy, tc.code); got != tc.want {
			t.Errorf("shouldRestart(%s, %d) = %v", tc.policy, tc.code, got)
		}
	}
}

func TestProbeThresholds(t *testing.T) {
	tm := timingOf(&corev1.Probe{FailureThreshold: 3, SuccessThreshold: 2})
	for _, tc := range []struct {
		name    string
		start   bool
		results []bool
		want    []bool
	}{
		{"readiness needs two successes", false, []bool{true, true, true}, []bool{false, true, true}},
		{"a failure resets the success run", false, []bool{true, false, true, true}, []bool{false, false, false, true}},
		{"liveness fails after three", true, []bool{false, false, false}, []bool{true, true, false}},
		{"a success resets the failure run", true, []bool{false, false, true, false, false}, []bool{true, true, true, true, true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := probeState{ok: tc.start}
			for i, r := range tc.results {
				if got := s.observe(r, tm); got != tc.want[i] {
					t.Fatalf("after result %d (%v): %v, want %v", i, r, got, tc.want[i])
				}
			}
		})
	}
	d := timingOf(&corev1.Probe{})
	if d.period != 10*time.Second || d.timeout != time.Second || d.failure != 3 || d.success != 1 {
		t.Errorf("defaults = %+v", d)
	}
}

func testPod() *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "web-1", Namespace: "shop", UID: "u-1", Labels: map[string]string{"app": "web"}},
		Spec:       corev1.PodSpec{NodeName: "node-2", Containers: []corev1.Container{{Name: "c", Image: "nginx"}}},
	}
}

func TestContainerEnv(t *testing.T) {
	pod := testPod()
	c := &corev1.Container{Env: []corev1.EnvVar{
		{Name: "POD", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}},
		{Name: "NS", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.namespace"}}},
		{Name: "NODE", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "spec.nodeName"}}},
		{Name: "IP", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "status.podIP"}}},
		{Name: "APP", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.labels['app']"}}},
		{Name: "URL", Value: "http://$(IP):80/$(MISSING)/$$(IP)"},
	}}
	env, vals, err := containerEnv(pod, c, "10.244.2.5", "10.200.0.2", nil)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"POD": "web-1", "NS": "shop", "NODE": "node-2", "IP": "10.244.2.5", "APP": "web",
		"URL": "http://10.244.2.5:80/$(MISSING)/$(IP)", "HOSTNAME": "web-1"}
	for k, v := range want {
		if vals[k] != v {
			t.Errorf("%s = %q, want %q", k, vals[k], v)
		}
	}
	if !strings.HasPrefix(env[0], "PATH=") {
		t.Errorf("env starts with %q", env[0])
	}
	if _, _, err := containerEnv(pod, &corev1.Container{Env: []corev1.EnvVar{{Name: "X",
		ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "spec.bogus"}}}}}, "", "", nil); err == nil {
		t.Error("unsupported fieldRef accepted")
	}
}

func TestUserAndCommand(t *testing.T) {
	pod := testPod()
	c := &pod.Spec.Containers[0]
	if u, g := userOf(pod, c); u != nobody || g != nobody {
		t.Errorf("default user %d:%d", u, g)
	}
	c.SecurityContext = &corev1.SecurityContext{RunAsUser: ptr.To[int64](0)}
	if u, g := userOf(pod, c); u != 0 || g != 0 {
		t.Errorf("runAsUser 0 -> %d:%d", u, g)
	}
	pod.Spec.SecurityContext = &corev1.PodSecurityContext{RunAsUser: ptr.To[int64](1000)}
	c.SecurityContext = nil
	if u, _ := userOf(pod, c); u != 1000 {
		t.Errorf("pod runAsUser -> %d", u)
	}
	cfg := &Config{NodeName: "node-2", WorkloadCommand: []string{"/bin/kubelab", "workload"}}
	c.Command = []string{"nginx", "-g", "daemon off;"}
	c.Ports = []corev1.ContainerPort{{ContainerPort: 8080}, {ContainerPort: 53, Protocol: corev1.ProtocolUDP, Name: "dns"}}
	argv, builtin := commandFor(cfg, pod, c, nil)
	if !builtin || argv[0] != "/bin/kubelab" || !reflect.DeepEqual(argv[len(argv)-4:], []string{"--port", "53/UDP/dns", "--port", "8080/TCP/"}) {
		t.Errorf("nginx -> %v builtin=%v", argv, builtin)
	}
	c.Command, c.Args = nil, []string{"-g", "daemon off;"}
	if _, builtin := commandFor(cfg, pod, c, nil); !builtin {
		t.Errorf("args naming no executable must run the built-in workload")
	}
	c.Args = []string{"sleep", "$(X)"}
	if argv, builtin := commandFor(cfg, pod, c, map[string]string{"X": "5"}); builtin || !strings.HasSuffix(argv[0], "/sleep") || argv[1] != "5" {
		t.Errorf("args-only sleep -> %v builtin=%v", argv, builtin)
	}
	c.Command, c.Args = []string{"sh", "-c"}, []string{"echo $(X)"}
	argv, builtin = commandFor(cfg, pod, c, map[string]string{"X": "hi"})
	if builtin || !strings.HasSuffix(argv[0], "/sh") || argv[2] != "echo hi" {
		t.Errorf("sh -> %v builtin=%v", argv, builtin)
	}
}

func node(name, cidr, ip string) *corev1.Node {
	return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: corev1.NodeSpec{PodCIDR: cidr},
		Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{{Type: corev1.NodeHostName, Address: name}, {Type: corev1.NodeInternalIP, Address: ip}}}}
}

func TestRoutes(t *testing.T) {
	nodes := []*corev1.Node{node("node-3", "10.244.3.0/24", "10.200.0.3"), node("node-1", "10.244.1.0/24", "10.200.0.1"),
		node("node-2", "10.244.2.0/24", "10.200.0.2"), node("node-4", "", "10.200.0.4")}
	want := []podRoute{{"10.244.2.0/24", "10.200.0.2"}, {"10.244.3.0/24", "10.200.0.3"}}
	got := desiredRoutes("node-1", nodes)
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("desired = %v", got)
	}
	have := []podRoute{{"10.244.2.0/24", "10.200.0.9"}, {"10.244.9.0/24", "10.200.0.9"}, {"10.244.3.0/24", "10.200.0.3"}}
	add, del := routeDiff(want, have)
	if !reflect.DeepEqual(add, []podRoute{{"10.244.2.0/24", "10.200.0.2"}}) {
		t.Errorf("add = %v", add)
	}
	if !reflect.DeepEqual(del, []podRoute{{"10.244.2.0/24", "10.200.0.9"}, {"10.244.9.0/24", "10.200.0.9"}}) {
		t.Errorf("del = %v", del)
	}
}

func TestPodStatus(t *testing.T) {
	now := metav1.Now()
	running := corev1.ContainerStatus{Name: "c", Ready: true, State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}}
	notReady := running
	notReady.Ready = false
	done0 := corev1.ContainerStatus{Name: "c", State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 0}}}
	done1 := corev1.ContainerStatus{Name: "c", State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 1}}}
	backoff := corev1.ContainerStatus{Name: "c", State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff"}},
		LastTerminationState: done1.State}
	for _, tc := range []struct {
		name  string
		ip    string
		ctrs  []containerView
		phase corev1.PodPhase
		ready corev1.ConditionStatus
	}{
		{"no sandbox yet", "", nil, corev1.PodPending, corev1.ConditionFalse},
		{"running and ready", "10.244.1.2", []containerView{{status: running}}, corev1.PodRunning, corev1.ConditionTrue},
		{"running, readiness pending", "10.244.1.2", []containerView{{status: notReady}}, corev1.PodRunning, corev1.ConditionFalse},
		{"crash loop stays Running", "10.244.1.2", []containerView{{status: backoff}}, corev1.PodRunning, corev1.ConditionFalse},
		{"completed", "10.244.1.2", []containerView{{status: done0, finished: true}}, corev1.PodSucceeded, corev1.ConditionFalse},
		{"failed", "10.244.1.2", []containerView{{status: done1, finished: true}}, corev1.PodFailed, corev1.ConditionFalse},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := podStatus(testPod(), corev1.PodStatus{}, tc.ip, "10.200.0.1", &now, tc.ctrs, now)
			if st.Phase != tc.phase {
				t.Errorf("phase %s, want %s", st.Phase, tc.phase)
			}
			for _, c := range st.Conditions {
				if c.Type == corev1.PodReady && c.Status != tc.ready {
					t.Errorf("Ready %s, want %s", c.Status, tc.ready)
				}
			}
			if tc.ip != "" && (st.PodIP != tc.ip || len(st.PodIPs) != 1) {
				t.Errorf("podIP %q %v", st.PodIP, st.PodIPs)
			}
			if st.HostIP != "10.200.0.1" || len(st.ContainerStatuses) != 1 {
				t.Errorf("hostIP %q, %d container statuses", st.HostIP, len(st.ContainerStatuses))
			}
		})
	}
	// Transition times survive an unchanged condition.
	old := metav1.NewTime(now.Add(-time.Hour))
	prev := corev1.PodStatus{Conditions: []corev1.PodCondition{{Type: corev1.PodScheduled, Status: corev1.ConditionTrue, LastTransitionTime: old}}}
	st := podStatus(testPod(), prev, "", "10.200.0.1", &now, nil, now)
	for _, c := range st.Conditions {
		if c.Type == corev1.PodScheduled && !c.LastTransitionTime.Equal(&old) {
			t.Errorf("PodScheduled transition time moved")
		}
	}
}

func TestFormatLog(t *testing.T) {
	recs := []logRecord{{"2026-01-01T00:00:01Z", "one"}, {"2026-01-01T00:00:02Z", "two"}, {"2026-01-01T00:00:03Z", "three"}}
	two := int64(2)
	for _, tc := range []struct {
		name string
		o    LogOptions
		want string
	}{
		{"all", LogOptions{}, "one\ntwo\nthree\n"},
		{"tail", LogOptions{TailLines: &two}, "two\nthree\n"},
		{"timestamps", LogOptions{TailLines: &two, Timestamps: true}, "2026-01-01T00:00:02Z two\n2026-01-01T00:00:03Z three\n"},
		{"since", LogOptions{Since: time.Date(2026, 1, 1, 0, 0, 2, 0, time.UTC)}, "two\nthree\n"},
	} {
		if got := string(formatLog(recs, tc.o)); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
	if r, ok := parseLogLine("2026-01-01T00:00:01Z stderr a b c"); !ok || r.text != "a b c" {
		t.Errorf("parse: %+v %v", r, ok)
	}
}

func TestNodeStatus(t *testing.T) {
	cfg := &Config{NodeName: "node-1", NodeIP: net.ParseIP("10.200.0.1"), KubeletPort: 10250, CPU: "2", Memory: "1Gi"}
	capa, err := capacity(cfg)
	if err != nil {
		t.Fatal(err)
	}
	now := metav1.Now()
	st := nodeStatus(cfg, capa, now, now)
	if st.Addresses[0].Type != corev1.NodeInternalIP || st.Addresses[0].Address != "10.200.0.1" {
		t.Errorf("addresses %v", st.Addresses)
	}
	if st.Capacity.Cpu().String() != "2" || st.Capacity.Memory().String() != "1Gi" || st.Capacity.Pods().Value() != 110 {
		t.Errorf("capacity %v", st.Capacity)
	}
	if st.DaemonEndpoints.KubeletEndpoint.Port != 10250 || st.NodeInfo.KubeletVersion == "" {
		t.Errorf("endpoint/version %v %q", st.DaemonEndpoints, st.NodeInfo.KubeletVersion)
	}
	ready := st.Conditions[len(st.Conditions)-1]
	if ready.Type != corev1.NodeReady || ready.Status != corev1.ConditionTrue {
		t.Errorf("ready %v", ready)
	}
}

func TestWorkloadEnv(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  []string
		vals map[string]string
		want []string
	}{
		{"one scheduler thread by default", []string{"PATH=/bin", "A=1"}, map[string]string{"PATH": "/bin", "A": "1"},
			[]string{"PATH=/bin", "A=1", "GOMAXPROCS=1"}},
		{"the container's own setting wins", []string{"GOMAXPROCS=4"}, map[string]string{"GOMAXPROCS": "4"},
			[]string{"GOMAXPROCS=4"}},
	} {
		env := append(make([]string, 0, 8), tc.env...)
		got := workloadEnv(env, tc.vals)
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
		if !reflect.DeepEqual(env, tc.env) || (len(env) < cap(env) && env[:len(env)+1][len(env)] != "") {
			t.Errorf("%s: the container's environment was changed: %v", tc.name, env[:cap(env)])
		}
	}
}
