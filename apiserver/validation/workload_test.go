package validation

import (
	"reflect"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
)

func pod(mod func(p *corev1.Pod)) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "web-1", Namespace: "default", Labels: map[string]string{"app": "web"}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{
			Name: "nginx", Image: "nginx", Ports: []corev1.ContainerPort{{ContainerPort: 80}},
		}}},
	}
	if mod != nil {
		mod(p)
	}
	return p
}

func podErr(p, old *corev1.Pod) string {
	_, errs := prepare(p, old, DefaultOptions())
	return apiError("Pod", p.Name, errs)
}

func TestPodDefaults(t *testing.T) {
	p := pod(func(p *corev1.Pod) {
		p.Spec.Containers = append(p.Spec.Containers,
			corev1.Container{Name: "pinned", Image: "registry.local:5000/tools/busybox:1.36",
				Resources:      corev1.ResourceRequirements{Limits: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m"), corev1.ResourceMemory: resource.MustParse("64Mi")}},
				ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Port: intstr.FromInt32(80)}}}},
			corev1.Container{Name: "latest", Image: "registry.local:5000/app:latest"},
			corev1.Container{Name: "digest", Image: "nginx@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"},
		)
		p.Spec.Volumes = []corev1.Volume{{Name: "scratch"}}
	})
	if msg := podErr(p, nil); msg != "" {
		t.Fatalf("valid pod refused: %s", msg)
	}
	s := p.Spec
	if s.RestartPolicy != corev1.RestartPolicyAlways || s.DNSPolicy != corev1.DNSClusterFirst || *s.TerminationGracePeriodSeconds != 30 ||
		s.SchedulerName != "default-scheduler" || s.SecurityContext == nil || !*s.EnableServiceLinks {
		t.Errorf("pod spec defaults %+v", s)
	}
	pulls := []corev1.PullPolicy{}
	for _, c := range s.Containers {
		pulls = append(pulls, c.ImagePullPolicy)
		if c.TerminationMessagePath != "/dev/termination-log" || c.TerminationMessagePolicy != corev1.TerminationMessageReadFile {
			t.Errorf("container %s termination message defaults %q %q", c.Name, c.TerminationMessagePath, c.TerminationMessagePolicy)
		}
	}
	if want := []corev1.PullPolicy{"Always", "IfNotPresent", "Always", "IfNotPresent"}; !reflect.DeepEqual(pulls, want) {
		t.Errorf("pull policies %v, want %v", pulls, want)
	}
	if s.Containers[0].Ports[0].Protocol != corev1.ProtocolTCP {
		t.Errorf("port protocol %q", s.Containers[0].Ports[0].Protocol)
	}
	pinned := s.Containers[1]
	if q := pinned.Resources.Requests[corev1.ResourceCPU]; q.String() != "100m" {
		t.Errorf("requests not defaulted from limits: %v", pinned.Resources.Requests)
	}
	if pr := pinned.ReadinessProbe; pr.TimeoutSeconds != 1 || pr.PeriodSeconds != 10 || pr.SuccessThreshold != 1 || pr.FailureThreshold != 3 ||
		pr.HTTPGet.Path != "/" || pr.HTTPGet.Scheme != corev1.URISchemeHTTP {
		t.Errorf("probe defaults %+v", pr)
	}
	if s.Volumes[0].EmptyDir == nil {
		t.Errorf("volume without source is not an emptyDir")
	}
	if p.Status.Phase != corev1.PodPending || p.Status.QOSClass != corev1.PodQOSBurstable {
		t.Errorf("status %q %q", p.Status.Phase, p.Status.QOSClass)
	}
	if q := qosClass(&pod(nil).Spec); q != corev1.PodQOSBestEffort {
		t.Errorf("best effort pod: %s", q)
	}
}

func TestPodValidationMessages(t *testing.T) {
	cases := []struct {
		name string
		pod  *corev1.Pod
		want string
	}{
		{"no containers", pod(func(p *corev1.Pod) { p.Spec.Containers = nil }),
			`Pod "web-1" is invalid: spec.containers: Required value`},
		{"image required", pod(func(p *corev1.Pod) { p.Spec.Containers[0].Image = "" }),
			`Pod "web-1" is invalid: spec.containers[0].image: Required value`},
		{"duplicate container names", pod(func(p *corev1.Pod) {
			p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: "nginx", Image: "nginx"})
		}), `Pod "web-1" is invalid: spec.containers[1].name: Duplicate value: "nginx"`},
		{"init and regular share names", pod(func(p *corev1.Pod) {
			p.Spec.InitContainers = []corev1.Container{{Name: "nginx", Image: "busybox"}}
		}), `Pod "web-1" is invalid: spec.containers[0].name: Duplicate value: "nginx"`},
		{"bad container name", pod(func(p *corev1.Pod) { p.Spec.Containers[0].Name = "Nginx_1" }),
			`Pod "web-1" is invalid: spec.containers[0].name: Invalid value: "Nginx_1": a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')`},
		{"restart policy", pod(func(p *corev1.Pod) { p.Spec.RestartPolicy = "Sometimes" }),
			`Pod "web-1" is invalid: spec.restartPolicy: Unsupported value: "Sometimes": supported values: "Always", "OnFailure", "Never"`},
		{"container port range", pod(func(p *corev1.Pod) { p.Spec.Containers[0].Ports[0].ContainerPort = 70000 }),
			`Pod "web-1" is invalid: spec.containers[0].ports[0].containerPort: Invalid value: 70000: must be between 1 and 65535, inclusive`},
		{"container port required", pod(func(p *corev1.Pod) { p.Spec.Containers[0].Ports[0].ContainerPort = 0 }),
			`Pod "web-1" is invalid: spec.containers[0].ports[0].containerPort: Required value`},
		{"duplicate port names", pod(func(p *corev1.Pod) {
			p.Spec.Containers[0].Ports = []corev1.ContainerPort{{Name: "http", ContainerPort: 80}, {Name: "http", ContainerPort: 81}}
		}), `Pod "web-1" is invalid: spec.containers[0].ports[1].name: Duplicate value: "http"`},
		{"pull policy", pod(func(p *corev1.Pod) { p.Spec.Containers[0].ImagePullPolicy = "Sometimes" }),
			`Pod "web-1" is invalid: spec.containers[0].imagePullPolicy: Unsupported value: "Sometimes": supported values: "Always", "IfNotPresent", "Never"`},
		{"image whitespace", pod(func(p *corev1.Pod) { p.Spec.Containers[0].Image = " nginx" }),
			`Pod "web-1" is invalid: spec.containers[0].image: Invalid value: " nginx": must not have leading or trailing whitespace`},
		{"unknown volume mount", pod(func(p *corev1.Pod) {
			p.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "data", MountPath: "/data"}}
		}), `Pod "web-1" is invalid: spec.containers[0].volumeMounts[0].name: Not found: "data"`},
		{"pod name", pod(func(p *corev1.Pod) { p.Name = "Web" }),
			`Pod "Web" is invalid: metadata.name: Invalid value: "Web": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')`},
		{"generate name", pod(func(p *corev1.Pod) { p.Name = "web-abcde"; p.GenerateName = "Web-" }),
			`Pod "web-abcde" is invalid: metadata.generateName: Invalid value: "Web-": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')`},
		{"label key", pod(func(p *corev1.Pod) { p.Labels = map[string]string{"bad key": "x"} }),
			`Pod "web-1" is invalid: metadata.labels: Invalid value: "bad key": name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')`},
		{"annotations too large", pod(func(p *corev1.Pod) { p.Annotations = map[string]string{"a": strings.Repeat("x", 256*1024)} }),
			`Pod "web-1" is invalid: metadata.annotations: Too long: may not be more than 262144 bytes`},
		{"active deadline", pod(func(p *corev1.Pod) { p.Spec.ActiveDeadlineSeconds = ptr.To[int64](0) }),
			`Pod "web-1" is invalid: spec.activeDeadlineSeconds: Invalid value: 0: must be between 1 and 2147483647, inclusive`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := podErr(c.pod, nil); got != c.want {
				t.Errorf("\n got %s\nwant %s", got, c.want)
			}
		})
	}
}

func TestPodUpdate(t *testing.T) {
	old := pod(func(p *corev1.Pod) {
		p.Spec.Tolerations = []corev1.Toleration{{Key: "a", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute, TolerationSeconds: ptr.To[int64](30)}}
		p.Spec.NodeName = "node-1"
	})
	if msg := podErr(old, nil); msg != "" {
		t.Fatal(msg)
	}
	old.ResourceVersion = "3"

	ok := old.DeepCopy()
	ok.Spec.Containers[0].Image = "nginx:1.27"
	ok.Spec.ActiveDeadlineSeconds = ptr.To[int64](600)
	ok.Spec.Tolerations[0].TolerationSeconds = ptr.To[int64](60)
	ok.Spec.Tolerations = append(ok.Spec.Tolerations, corev1.Toleration{Key: "b", Operator: corev1.TolerationOpEqual, Value: "x"})
	ok.Labels["tier"] = "front"
	ok.Status.Phase = corev1.PodRunning
	if msg := podErr(ok, old); msg != "" {
		t.Errorf("allowed update refused: %s", msg)
	}

	changed := old.DeepCopy()
	changed.Spec.RestartPolicy = corev1.RestartPolicyNever
	msg := podErr(changed, old)
	wantPrefix := "Pod \"web-1\" is invalid: spec: Forbidden: pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)\n"
	if !strings.HasPrefix(msg, wantPrefix) || !strings.Contains(msg, `RestartPolicy: "Never"`) {
		t.Errorf("spec change:\n%s", msg)
	}

	added := old.DeepCopy()
	added.Spec.Containers = append(added.Spec.Containers, corev1.Container{Name: "x", Image: "x"})
	if got := podErr(added, old); got != `Pod "web-1" is invalid: spec.containers: Forbidden: pod updates may not add or remove containers` {
		t.Errorf("container added: %s", got)
	}

	tol := old.DeepCopy()
	tol.Spec.Tolerations[0].Key = "c"
	if got := podErr(tol, old); got != `Pod "web-1" is invalid: spec.tolerations: Forbidden: existing toleration can not be modified except its tolerationSeconds` {
		t.Errorf("toleration changed: %s", got)
	}

	gated := old.DeepCopy()
	gated.Spec.SchedulingGates = []corev1.PodSchedulingGate{{Name: "example.com/wait"}}
	if got := podErr(gated, old); got != `Pod "web-1" is invalid: spec.schedulingGates[0].name: Forbidden: only deletion is allowed, but found new scheduling gate 'example.com/wait'` {
		t.Errorf("gate added: %s", got)
	}
	gated.ResourceVersion = "4"
	ungated := gated.DeepCopy()
	ungated.Spec.SchedulingGates = nil
	if got := podErr(ungated, gated); got != "" {
		t.Errorf("gate removal refused: %s", got)
	}

	withDeadline := old.DeepCopy()
	withDeadline.Spec.ActiveDeadlineSeconds = ptr.To[int64](60)
	longer := withDeadline.DeepCopy()
	longer.Spec.ActiveDeadlineSeconds = ptr.To[int64](120)
	if got := podErr(longer, withDeadline); got != `Pod "web-1" is invalid: spec.activeDeadlineSeconds: Invalid value: 120: must be less than or equal to previous value` {
		t.Errorf("deadline raised: %s", got)
	}
}

func deployment(mod func(d *appsv1.Deployment)) *appsv1.Deployment {
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default"},
		Spec: appsv1.DeploymentSpec{
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "web"}},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "nginx", Image: "nginx:1.27", Ports: []corev1.ContainerPort{{ContainerPort: 80}}}}},
			},
		},
	}
	if mod != nil {
		mod(d)
	}
	return d
}

func TestDeploymentDefaults(t *testing.T) {
	d := deployment(nil)
	if _, errs := prepare(d, nil, DefaultOptions()); len(errs) != 0 {
		t.Fatal(errs)
	}
	s := d.Spec
	if *s.Replicas != 1 || s.Strategy.Type != appsv1.RollingUpdateDeploymentStrategyType ||
		*s.Strategy.RollingUpdate.MaxSurge != intstr.FromString("25%") || *s.Strategy.RollingUpdate.MaxUnavailable != intstr.FromString("25%") ||
		*s.RevisionHistoryLimit != 10 || *s.ProgressDeadlineSeconds != 600 {
		t.Errorf("deployment defaults %+v", s)
	}
	ts := s.Template.Spec
	if ts.RestartPolicy != corev1.RestartPolicyAlways || ts.DNSPolicy != corev1.DNSClusterFirst || *ts.TerminationGracePeriodSeconds != 30 ||
		ts.SchedulerName != "default-scheduler" || ts.Containers[0].ImagePullPolicy != corev1.PullIfNotPresent || ts.Containers[0].Ports[0].Protocol != corev1.ProtocolTCP {
		t.Errorf("template defaults %+v", ts)
	}
	if ts.EnableServiceLinks != nil {
		t.Errorf("templates do not get enableServiceLinks (only Pods do)")
	}

	rs := &appsv1.ReplicaSet{ObjectMeta: d.ObjectMeta, Spec: appsv1.ReplicaSetSpec{Selector: d.Spec.Selector, Template: d.Spec.Template}}
	rs.Spec.Template.Spec.Containers[0].ImagePullPolicy = ""
	if _, errs := prepare(rs, nil, DefaultOptions()); len(errs) != 0 || *rs.Spec.Replicas != 1 || rs.Spec.Template.Spec.Containers[0].ImagePullPolicy == "" {
		t.Errorf("replicaset defaults: %v %+v", errs, rs.Spec)
	}
}

func TestWorkloadValidationMessages(t *testing.T) {
	check := func(t *testing.T, kind string, got, want string) {
		t.Helper()
		if got != want {
			t.Errorf("%s\n got %s\nwant %s", kind, got, want)
		}
	}
	dErr := func(d, old *appsv1.Deployment) string {
		_, errs := prepare(d, old, DefaultOptions())
		return apiError("Deployment", d.Name, errs)
	}

	check(t, "selector mismatch", dErr(deployment(func(d *appsv1.Deployment) { d.Spec.Template.Labels = map[string]string{"app": "other"} }), nil),
		"Deployment.apps \"web\" is invalid: spec.template.metadata.labels: Invalid value: {\"app\":\"other\"}: `selector` does not match template `labels`")
	check(t, "selector missing", dErr(deployment(func(d *appsv1.Deployment) { d.Spec.Selector = nil }), nil),
		// kube-apiserver reports the mismatch too: a nil selector matches nothing.
		"Deployment.apps \"web\" is invalid: [spec.selector: Required value, spec.template.metadata.labels: Invalid value: {\"app\":\"web\"}: `selector` does not match template `labels`]")
	check(t, "empty selector", dErr(deployment(func(d *appsv1.Deployment) { d.Spec.Selector = &metav1.LabelSelector{} }), nil),
		`Deployment.apps "web" is invalid: spec.selector: Invalid value: {}: empty selector is invalid for deployment`)
	check(t, "negative replicas", dErr(deployment(func(d *appsv1.Deployment) { d.Spec.Replicas = ptr.To[int32](-1) }), nil),
		`Deployment.apps "web" is invalid: spec.replicas: Invalid value: -1: must be greater than or equal to 0`)
	check(t, "template restart policy", dErr(deployment(func(d *appsv1.Deployment) { d.Spec.Template.Spec.RestartPolicy = corev1.RestartPolicyNever }), nil),
		`Deployment.apps "web" is invalid: spec.template.spec.restartPolicy: Unsupported value: "Never": supported values: "Always"`)
	check(t, "template image", dErr(deployment(func(d *appsv1.Deployment) { d.Spec.Template.Spec.Containers[0].Image = "" }), nil),
		`Deployment.apps "web" is invalid: spec.template.spec.containers[0].image: Required value`)
	check(t, "recreate with rolling params", dErr(deployment(func(d *appsv1.Deployment) {
		d.Spec.Strategy = appsv1.DeploymentStrategy{Type: appsv1.RecreateDeploymentStrategyType, RollingUpdate: &appsv1.RollingUpdateDeployment{}}
	}), nil), "Deployment.apps \"web\" is invalid: spec.strategy.rollingUpdate: Forbidden: may not be specified when strategy `type` is 'Recreate'")
	check(t, "zero surge and unavailable", dErr(deployment(func(d *appsv1.Deployment) {
		d.Spec.Strategy.RollingUpdate = &appsv1.RollingUpdateDeployment{MaxSurge: ptr.To(intstr.FromInt32(0)), MaxUnavailable: ptr.To(intstr.FromString("0%"))}
	}), nil), "Deployment.apps \"web\" is invalid: spec.strategy.rollingUpdate.maxUnavailable: Invalid value: \"0%\": may not be 0 when `maxSurge` is 0")
	check(t, "progress deadline", dErr(deployment(func(d *appsv1.Deployment) {
		d.Spec.MinReadySeconds = 700
	}), nil), `Deployment.apps "web" is invalid: spec.progressDeadlineSeconds: Invalid value: 600: must be greater than minReadySeconds`)

	old := deployment(nil)
	prepare(old, nil, DefaultOptions())
	old.ResourceVersion = "9"
	moved := old.DeepCopy()
	moved.Spec.Selector = &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web", "v": "2"}}
	moved.Spec.Template.Labels["v"] = "2"
	check(t, "selector immutable", dErr(moved, old),
		`Deployment.apps "web" is invalid: spec.selector: Invalid value: {"matchLabels":{"app":"web","v":"2"}}: field is immutable`)
	scaled := old.DeepCopy()
	scaled.Spec.Replicas = ptr.To[int32](5)
	scaled.Spec.Template.Spec.Containers[0].Image = "nginx:1.28"
	check(t, "scale and new image", dErr(scaled, old), "")

	rsErr := func(rs, old *appsv1.ReplicaSet) string {
		_, errs := prepare(rs, old, DefaultOptions())
		return apiError("ReplicaSet", rs.Name, errs)
	}
	rs := &appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{Name: "web-abc", Namespace: "default"},
		Spec: appsv1.ReplicaSetSpec{Replicas: ptr.To[int32](-2), Selector: old.Spec.Selector, Template: old.Spec.Template}}
	check(t, "replicaset replicas", rsErr(rs, nil),
		`ReplicaSet.apps "web-abc" is invalid: spec.replicas: Invalid value: -2: must be greater than or equal to 0`)
	rs.Spec.Replicas = ptr.To[int32](1)
	check(t, "replicaset ok", rsErr(rs, nil), "")
	rs.ResourceVersion = "4"
	rs2 := rs.DeepCopy()
	rs2.Spec.Selector = &metav1.LabelSelector{MatchLabels: map[string]string{"app": "x"}}
	rs2.Spec.Template.Labels = map[string]string{"app": "x"}
	check(t, "replicaset selector immutable", rsErr(rs2, rs),
		`ReplicaSet.apps "web-abc" is invalid: spec.selector: Invalid value: {"matchLabels":{"app":"x"}}: field is immutable`)
}
