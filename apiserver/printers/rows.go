package printers

import (
	"fmt"
	"net"
	"sort"
	"strconv"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/duration"
)

const (
	none    = "<none>"
	unknown = "<unknown>"
	// nodeLostReason is what the node lifecycle controller puts in
	// pod.status.reason for pods on an unreachable node.
	nodeLostReason = "NodeLost"
)

func age(t metav1.Time, now time.Time) string {
	if t.IsZero() {
		return unknown
	}
	return duration.HumanDuration(now.Sub(t.Time))
}

func microAge(t metav1.MicroTime, now time.Time) string {
	if t.IsZero() {
		return unknown
	}
	return duration.HumanDuration(now.Sub(t.Time))
}

func orNone(s string) string {
	if s == "" {
		return none
	}
	return s
}

func printDefault(obj runtime.Object, now time.Time) ([]interface{}, []metav1.TableRowCondition, error) {
	m, err := meta.Accessor(obj)
	if err != nil {
		return nil, nil, err
	}
	created := m.GetCreationTimestamp()
	return []interface{}{m.GetName(), created.UTC().Format(time.RFC3339)}, nil, nil
}

var (
	podSucceeded = []metav1.TableRowCondition{{Type: metav1.RowCompleted, Status: metav1.ConditionTrue, Reason: string(corev1.PodSucceeded), Message: "The pod has completed successfully."}}
	podFailed    = []metav1.TableRowCondition{{Type: metav1.RowCompleted, Status: metav1.ConditionTrue, Reason: string(corev1.PodFailed), Message: "The pod failed."}}
)

func restartableInit(c *corev1.Container) bool {
	return c != nil && c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways
}

func podCondition(p *corev1.Pod, t corev1.PodConditionType) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == t {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// podStatus computes READY, STATUS and RESTARTS the way kubectl users know
// them: the phase, overridden by the most telling container state
// (ContainerCreating, CrashLoopBackOff, Completed, Init:..., Terminating).
func podStatus(p *corev1.Pod, now time.Time) (ready string, reason string, restartsText string) {
	total := len(p.Spec.Containers)
	readyCount := 0
	restarts, sidecarRestarts := 0, 0
	var lastRestart, lastSidecarRestart time.Time

	reason = string(p.Status.Phase)
	if p.Status.Reason != "" {
		reason = p.Status.Reason
	}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodScheduled && c.Reason == corev1.PodReasonSchedulingGated {
			reason = corev1.PodReasonSchedulingGated
		}
	}

	inits := map[string]*corev1.Container{}
	for i := range p.Spec.InitContainers {
		c := &p.Spec.InitContainers[i]
		inits[c.Name] = c
		if restartableInit(c) {
			total++
		}
	}
	later := func(cur *time.Time, st corev1.ContainerStatus) {
		if t := st.LastTerminationState.Terminated; t != nil && cur.Before(t.FinishedAt.Time) {
			*cur = t.FinishedAt.Time
		}
	}

	initializing := false
	for i, st := range p.Status.InitContainerStatuses {
		restarts += int(st.RestartCount)
		later(&lastRestart, st)
		sidecar := restartableInit(inits[st.Name])
		if sidecar {
			sidecarRestarts += int(st.RestartCount)
			later(&lastSidecarRestart, st)
		}
		term := st.State.Terminated
		if term != nil && term.ExitCode == 0 {
			continue
		}
		if sidecar && st.Started != nil && *st.Started {
			if st.Ready {
				readyCount++
			}
			continue
		}
		initializing = true
		switch {
		case term != nil && term.Reason != "":
			reason = "Init:" + term.Reason
		case term != nil && term.Signal != 0:
			reason = fmt.Sprintf("Init:Signal:%d", term.Signal)
		case term != nil:
			reason = fmt.Sprintf("Init:ExitCode:%d", term.ExitCode)
		case st.State.Waiting != nil && st.State.Waiting.Reason != "" && st.State.Waiting.Reason != "PodInitializing":
			reason = "Init:" + st.State.Waiting.Reason
		default:
			reason = fmt.Sprintf("Init:%d/%d", i, len(p.Spec.InitContainers))
		}
		break
	}

	if !initializing || podCondition(p, corev1.PodInitialized) {
		restarts, lastRestart = sidecarRestarts, lastSidecarRestart
		running := false
		// Walk backwards so that the first container's state wins, as upstream.
		for i := len(p.Status.ContainerStatuses) - 1; i >= 0; i-- {
			st := p.Status.ContainerStatuses[i]
			restarts += int(st.RestartCount)
			later(&lastRestart, st)
			w, term := st.State.Waiting, st.State.Terminated
			switch {
			case w != nil && w.Reason != "":
				reason = w.Reason
			case term != nil && term.Reason != "":
				reason = term.Reason
			case term != nil && term.Signal != 0:
				reason = fmt.Sprintf("Signal:%d", term.Signal)
			case term != nil:
				reason = fmt.Sprintf("ExitCode:%d", term.ExitCode)
			case st.Ready && st.State.Running != nil:
				running = true
				readyCount++
			}
		}
		if reason == "Completed" && running {
			if podCondition(p, corev1.PodReady) {
				reason = "Running"
			} else {
				reason = "NotReady"
			}
		}
	}

	terminal := p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed
	if p.DeletionTimestamp != nil && p.Status.Reason == nodeLostReason {
		reason = "Unknown"
	} else if p.DeletionTimestamp != nil && !terminal {
		reason = "Terminating"
	}

	restartsText = strconv.Itoa(restarts)
	if restarts != 0 && !lastRestart.IsZero() {
		restartsText = fmt.Sprintf("%d (%s ago)", restarts, age(metav1.NewTime(lastRestart), now))
	}
	return fmt.Sprintf("%d/%d", readyCount, total), reason, restartsText
}

func printPod(p *corev1.Pod, now time.Time) ([]interface{}, []metav1.TableRowCondition) {
	var conds []metav1.TableRowCondition
	switch p.Status.Phase {
	case corev1.PodSucceeded:
		conds = podSucceeded
	case corev1.PodFailed:
		conds = podFailed
	}
	ready, reason, restarts := podStatus(p, now)

	ip := p.Status.PodIP // writers that only set the singular field
	if len(p.Status.PodIPs) > 0 {
		ip = p.Status.PodIPs[0].IP
	}
	gates := none
	if n := len(p.Spec.ReadinessGates); n > 0 {
		trueCount := 0
		for _, g := range p.Spec.ReadinessGates {
			for _, c := range p.Status.Conditions {
				if c.Type == g.ConditionType {
					if c.Status == corev1.ConditionTrue {
						trueCount++
					}
					break
				}
			}
		}
		gates = fmt.Sprintf("%d/%d", trueCount, n)
	}
	return []interface{}{
		p.Name, ready, reason, restarts, age(p.CreationTimestamp, now),
		orNone(ip), orNone(p.Spec.NodeName), orNone(p.Status.NominatedNodeName), gates,
	}, conds
}

func serviceExternalIP(s *corev1.Service) string {
	switch s.Spec.Type {
	case corev1.ServiceTypeClusterIP, corev1.ServiceTypeNodePort:
		if len(s.Spec.ExternalIPs) > 0 {
			return strings.Join(s.Spec.ExternalIPs, ",")
		}
		return none
	case corev1.ServiceTypeLoadBalancer:
		seen := map[string]bool{}
		var lb []string
		for _, in := range s.Status.LoadBalancer.Ingress {
			v := in.IP
			if v == "" {
				v = in.Hostname
			}
			if v != "" && !seen[v] {
				seen[v] = true
				lb = append(lb, v)
			}
		}
		sort.Strings(lb)
		if len(s.Spec.ExternalIPs) > 0 {
			return strings.Join(append(lb, s.Spec.ExternalIPs...), ",")
		}
		if len(lb) > 0 {
			return strings.Join(lb, ",")
		}
		return "<pending>"
	case corev1.ServiceTypeExternalName:
		return s.Spec.ExternalName
	}
	return unknown
}

func servicePorts(ports []corev1.ServicePort) string {
	parts := make([]string, len(ports))
	for i, p := range ports {
		if p.NodePort > 0 {
			parts[i] = fmt.Sprintf("%d:%d/%s", p.Port, p.NodePort, p.Protocol)
		} else {
			parts[i] = fmt.Sprintf("%d/%s", p.Port, p.Protocol)
		}
	}
	if len(parts) == 0 {
		return none
	}
	return strings.Join(parts, ",")
}

func printService(s *corev1.Service, now time.Time) ([]interface{}, []metav1.TableRowCondition) {
	clusterIP := none
	if len(s.Spec.ClusterIPs) > 0 {
		clusterIP = s.Spec.ClusterIPs[0]
	} else if s.Spec.ClusterIP != "" {
		clusterIP = s.Spec.ClusterIP
	}
	return []interface{}{
		s.Name, string(s.Spec.Type), clusterIP, serviceExternalIP(s), servicePorts(s.Spec.Ports), age(s.CreationTimestamp, now),
		labels.FormatLabels(s.Spec.Selector),
	}, nil
}

func containerCells(cs []corev1.Container) (names, images string) {
	n := make([]string, len(cs))
	im := make([]string, len(cs))
	for i, c := range cs {
		n[i], im[i] = c.Name, c.Image
	}
	return strings.Join(n, ","), strings.Join(im, ",")
}

func replicas(p *int32) int64 {
	if p == nil {
		// The API server defaults replicas to 1; a nil here is an
		// undefaulted object, shown as the default would be.
		return 1
	}
	return int64(*p)
}

func printDeployment(d *appsv1.Deployment, now time.Time) ([]interface{}, []metav1.TableRowCondition) {
	sel := "<invalid>"
	if s, err := metav1.LabelSelectorAsSelector(d.Spec.Selector); err == nil {
		sel = s.String()
	}
	names, images := containerCells(d.Spec.Template.Spec.Containers)
	return []interface{}{
		d.Name, fmt.Sprintf("%d/%d", d.Status.ReadyReplicas, replicas(d.Spec.Replicas)),
		int64(d.Status.UpdatedReplicas), int64(d.Status.AvailableReplicas), age(d.CreationTimestamp, now),
		names, images, sel,
	}, nil
}

func printReplicaSet(rs *appsv1.ReplicaSet, now time.Time) ([]interface{}, []metav1.TableRowCondition) {
	names, images := containerCells(rs.Spec.Template.Spec.Containers)
	return []interface{}{
		rs.Name, replicas(rs.Spec.Replicas), int64(rs.Status.Replicas), int64(rs.Status.ReadyReplicas), age(rs.CreationTimestamp, now),
		names, images, metav1.FormatLabelSelector(rs.Spec.Selector),
	}, nil
}

const (
	nodeRolePrefix = "node-role.kubernetes.io/"
	nodeRoleLabel  = "kubernetes.io/role"
)

func nodeRoles(n *corev1.Node) string {
	set := map[string]bool{}
	for k, v := range n.Labels {
		if r, ok := strings.CutPrefix(k, nodeRolePrefix); ok && r != "" {
			set[r] = true
		} else if k == nodeRoleLabel && v != "" {
			set[v] = true
		}
	}
	roles := make([]string, 0, len(set))
	for r := range set {
		roles = append(roles, r)
	}
	sort.Strings(roles)
	return orNone(strings.Join(roles, ","))
}

func nodeAddress(n *corev1.Node, t corev1.NodeAddressType) string {
	for _, a := range n.Status.Addresses {
		if a.Type == t {
			return a.Address
		}
	}
	return none
}

func orUnknown(s string) string {
	if s == "" {
		return unknown
	}
	return s
}

func printNode(n *corev1.Node, now time.Time) ([]interface{}, []metav1.TableRowCondition) {
	var status []string
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			if c.Status == corev1.ConditionTrue {
				status = []string{"Ready"}
			} else {
				status = []string{"NotReady"}
			}
		}
	}
	if len(status) == 0 {
		status = []string{"Unknown"}
	}
	if n.Spec.Unschedulable {
		status = append(status, "SchedulingDisabled")
	}
	info := n.Status.NodeInfo
	return []interface{}{
		n.Name, strings.Join(status, ","), nodeRoles(n), age(n.CreationTimestamp, now), info.KubeletVersion,
		nodeAddress(n, corev1.NodeInternalIP), nodeAddress(n, corev1.NodeExternalIP),
		orUnknown(info.OSImage), orUnknown(info.KernelVersion), orUnknown(info.ContainerRuntimeVersion),
	}, nil
}

func printNamespace(ns *corev1.Namespace, now time.Time) ([]interface{}, []metav1.TableRowCondition) {
	return []interface{}{ns.Name, string(ns.Status.Phase), age(ns.CreationTimestamp, now)}, nil
}

// moreList joins the first max entries and says how many were left out.
func moreList(list []string, total, max int) string {
	s := strings.Join(list, ",")
	if total > max {
		return fmt.Sprintf("%s + %d more...", s, total-max)
	}
	return s
}

func endpointsText(ep *corev1.Endpoints) string {
	if len(ep.Subsets) == 0 {
		return none
	}
	const max = 3
	var list []string
	total := 0
	add := func(s string) {
		total++
		if len(list) < max {
			list = append(list, s)
		}
	}
	for _, ss := range ep.Subsets {
		if len(ss.Ports) == 0 {
			// Headless Services may have no ports.
			for _, a := range ss.Addresses {
				add(a.IP)
			}
			continue
		}
		for _, p := range ss.Ports {
			for _, a := range ss.Addresses {
				add(net.JoinHostPort(a.IP, strconv.Itoa(int(p.Port))))
			}
		}
	}
	return moreList(list, total, max)
}

func printEndpoints(ep *corev1.Endpoints, now time.Time) ([]interface{}, []metav1.TableRowCondition) {
	return []interface{}{ep.Name, endpointsText(ep), age(ep.CreationTimestamp, now)}, nil
}

func unsetIfEmpty(s string) string {
	if s == "" {
		return "<unset>"
	}
	return s
}

func printEndpointSlice(es *discoveryv1.EndpointSlice, now time.Time) ([]interface{}, []metav1.TableRowCondition) {
	const max = 3
	var ports []string
	for _, p := range es.Ports {
		if len(ports) < max {
			v := "*"
			if p.Port != nil {
				v = strconv.Itoa(int(*p.Port))
			} else if p.Name != nil {
				v = *p.Name
			}
			ports = append(ports, v)
		}
	}
	var addrs []string
	total := 0
	for _, e := range es.Endpoints {
		for _, a := range e.Addresses {
			total++
			if len(addrs) < max {
				addrs = append(addrs, a)
			}
		}
	}
	return []interface{}{
		es.Name, string(es.AddressType),
		unsetIfEmpty(moreList(ports, len(es.Ports), max)), unsetIfEmpty(moreList(addrs, total, max)),
		age(es.CreationTimestamp, now),
	}, nil
}

func firstNonEmpty(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func printEvent(e *corev1.Event, now time.Time) ([]interface{}, []metav1.TableRowCondition) {
	first := age(e.FirstTimestamp, now)
	if e.FirstTimestamp.IsZero() {
		first = microAge(e.EventTime, now)
	}
	last := age(e.LastTimestamp, now)
	if e.LastTimestamp.IsZero() {
		last = first
	}
	count := e.Count
	if e.Series != nil {
		last = microAge(e.Series.LastObservedTime, now)
		count = e.Series.Count
	} else if count == 0 {
		// Events of the events.k8s.io API carry no count when single.
		count = 1
	}
	target := strings.ToLower(e.InvolvedObject.Kind)
	if e.InvolvedObject.Name != "" {
		target += "/" + e.InvolvedObject.Name
	}
	source := firstNonEmpty(e.Source.Component, e.ReportingController)
	if inst := firstNonEmpty(e.Source.Host, e.ReportingInstance); inst != "" {
		source += ", " + inst
	}
	return []interface{}{
		last, e.Type, e.Reason, target, e.InvolvedObject.FieldPath, source,
		strings.TrimSpace(e.Message), first, int64(count), e.Name,
	}, nil
}

// printEventsV1 shows an events.k8s.io Event as the core Event it maps to,
// which is what kube-apiserver prints for both APIs.
func printEventsV1(e *eventsv1.Event, now time.Time) ([]interface{}, []metav1.TableRowCondition) {
	ce := &corev1.Event{
		ObjectMeta:          e.ObjectMeta,
		InvolvedObject:      e.Regarding,
		Reason:              e.Reason,
		Message:             e.Note,
		Type:                e.Type,
		EventTime:           e.EventTime,
		ReportingController: e.ReportingController,
		ReportingInstance:   e.ReportingInstance,
		FirstTimestamp:      e.DeprecatedFirstTimestamp,
		LastTimestamp:       e.DeprecatedLastTimestamp,
		Count:               e.DeprecatedCount,
		Source:              e.DeprecatedSource,
	}
	if e.Series != nil {
		ce.Series = &corev1.EventSeries{Count: e.Series.Count, LastObservedTime: e.Series.LastObservedTime}
	}
	return printEvent(ce, now)
}

func printConfigMap(cm *corev1.ConfigMap, now time.Time) ([]interface{}, []metav1.TableRowCondition) {
	return []interface{}{cm.Name, int64(len(cm.Data) + len(cm.BinaryData)), age(cm.CreationTimestamp, now)}, nil
}

func printSecret(s *corev1.Secret, now time.Time) ([]interface{}, []metav1.TableRowCondition) {
	return []interface{}{s.Name, string(s.Type), int64(len(s.Data)), age(s.CreationTimestamp, now)}, nil
}

func printLease(l *coordinationv1.Lease, now time.Time) ([]interface{}, []metav1.TableRowCondition) {
	holder := ""
	if l.Spec.HolderIdentity != nil {
		holder = *l.Spec.HolderIdentity
	}
	return []interface{}{l.Name, holder, age(l.CreationTimestamp, now)}, nil
}

func printServiceAccount(sa *corev1.ServiceAccount, now time.Time) ([]interface{}, []metav1.TableRowCondition) {
	return []interface{}{sa.Name, int64(len(sa.Secrets)), age(sa.CreationTimestamp, now)}, nil
}
