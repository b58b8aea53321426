package controller

import (
	"context"
	"fmt"
	"sort"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	listerscorev1 "k8s.io/client-go/listers/core/v1"
	listersdiscoveryv1 "k8s.io/client-go/listers/discovery/v1"
	toolscache "k8s.io/client-go/tools/cache"
)

const (
	managedBy      = "endpointslice-controller.k8s.io"
	maxPerSlice    = 100
	labelSvcName   = discoveryv1.LabelServiceName
	labelManagedBy = discoveryv1.LabelManagedBy
)

type endpointsController struct {
	d        *deps
	services listerscorev1.ServiceLister
	pods     listerscorev1.PodLister
	nodes    listerscorev1.NodeLister
	slices   listersdiscoveryv1.EndpointSliceLister
	queue    *queue
}

func newEndpointsController(d *deps) (runner, error) {
	f := d.factory
	c := &endpointsController{d: d,
		services: f.Core().V1().Services().Lister(), pods: f.Core().V1().Pods().Lister(),
		nodes: f.Core().V1().Nodes().Lister(), slices: f.Discovery().V1().EndpointSlices().Lister()}
	c.queue = newQueue("endpointslice", d.log, c.sync)
	if err := d.handle(f.Core().V1().Services().Informer(), cacheHandler(c.queue)); err != nil {
		return nil, err
	}
	podHandler := toolscache.ResourceEventHandlerFuncs{
		AddFunc:    func(o any) { c.enqueueForPod(o) },
		UpdateFunc: func(old, cur any) { c.enqueueForPod(old); c.enqueueForPod(cur) },
		DeleteFunc: func(o any) { c.enqueueForPod(o) },
	}
	if err := d.handle(f.Core().V1().Pods().Informer(), podHandler); err != nil {
		return nil, err
	}
	sliceHandler := toolscache.ResourceEventHandlerFuncs{
		AddFunc:    func(o any) { c.enqueueForSlice(o) },
		UpdateFunc: func(_, cur any) { c.enqueueForSlice(cur) },
		DeleteFunc: func(o any) { c.enqueueForSlice(o) },
	}
	if err := d.handle(f.Discovery().V1().EndpointSlices().Informer(), sliceHandler); err != nil {
		return nil, err
	}
	return c, d.handle(f.Core().V1().Nodes().Informer(), toolscache.ResourceEventHandlerFuncs{})
}

func (c *endpointsController) run(ctx context.Context) { c.queue.run(ctx, c.d.workers) }

func (c *endpointsController) enqueueForPod(o any) {
	if t, ok := o.(toolscache.DeletedFinalStateUnknown); ok {
		o = t.Obj
	}
	p, ok := o.(*corev1.Pod)
	if !ok {
		return
	}
	svcs, _ := c.services.Services(p.Namespace).List(labels.Everything())
	for _, s := range svcs {
		if s.Spec.Selector != nil && labels.SelectorFromSet(s.Spec.Selector).Matches(labels.Set(p.Labels)) {
			c.queue.add(p.Namespace + "/" + s.Name)
		}
	}
}

func (c *endpointsController) enqueueForSlice(o any) {
	if t, ok := o.(toolscache.DeletedFinalStateUnknown); ok {
		o = t.Obj
	}
	s, ok := o.(*discoveryv1.EndpointSlice)
	if !ok || s.Labels[labelManagedBy] != managedBy {
		return
	}
	if name := s.Labels[labelSvcName]; name != "" {
		c.queue.add(s.Namespace + "/" + name)
	}
}

// sliceGroup is the endpoints that share one port mapping.
type sliceGroup struct {
	ports []discoveryv1.EndpointPort
	eps   []desiredEndpoint
}

// desiredEndpoint is one pod's endpoint, before slicing.
type desiredEndpoint struct {
	ep  discoveryv1.Endpoint
	pod *corev1.Pod
}

// endpointConditions follows the EndpointSlice controller: a terminating pod
// is not ready but keeps serving while its readiness holds.
func endpointConditions(p *corev1.Pod) discoveryv1.EndpointConditions {
	ready := podReady(p)
	terminating := p.DeletionTimestamp != nil
	return discoveryv1.EndpointConditions{
		Ready:       boolPtr(ready && !terminating),
		Serving:     boolPtr(ready),
		Terminating: boolPtr(terminating),
	}
}

func boolPtr(b bool) *bool { return &b }

// resolvePort finds the pod's port for a Service port (targetPort by name or number).
func resolvePort(sp corev1.ServicePort, p *corev1.Pod) (int32, bool) {
	tp := sp.TargetPort
	switch {
	case tp.Type == intstr.String && tp.StrVal != "":
		for _, ctr := range p.Spec.Containers {
			for _, cp := range ctr.Ports {
				if cp.Name == tp.StrVal && cp.Protocol == sp.Protocol {
					return cp.ContainerPort, true
				}
			}
		}
		return 0, false
	case tp.IntVal != 0:
		return tp.IntVal, true
	default:
		return sp.Port, true
	}
}

func (c *endpointsController) sync(ctx context.Context, key string) error {
	ns, name, err := toolscache.SplitMetaNamespaceKey(key)
	if err != nil {
		return nil
	}
	svc, err := c.services.Services(ns).Get(name)
	if apierrors.IsNotFound(err) {
		return nil // slices and Endpoints go with the Service (ownerReferences)
	}
	if err != nil {
		return err
	}
	if svc.Spec.Selector == nil {
		return nil // left to the user
	}
	pods, err := c.pods.Pods(ns).List(labels.SelectorFromSet(svc.Spec.Selector))
	if err != nil {
		return err
	}
	sort.Slice(pods, func(i, j int) bool { return pods[i].Name < pods[j].Name })

	// One slice set per distinct port mapping; pods whose named ports
	// resolve differently get different slices, as upstream.
	groups := map[string]*sliceGroup{}
	var order []string
	for _, p := range pods {
		if p.Status.PodIP == "" || p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
			continue
		}
		var ports []discoveryv1.EndpointPort
		for _, sp := range svc.Spec.Ports {
			port, ok := resolvePort(sp, p)
			if !ok {
				continue
			}
			n, proto := sp.Name, sp.Protocol
			ports = append(ports, discoveryv1.EndpointPort{Name: &n, Port: &port, Protocol: &proto, AppProtocol: sp.AppProtocol})
		}
		gk := fmt.Sprint(portsKey(ports))
		g, ok := groups[gk]
		if !ok {
			g = &sliceGroup{ports: ports}
			groups[gk] = g
			order = append(order, gk)
		}
		ep := discoveryv1.Endpoint{
			Addresses:  []string{p.Status.PodIP},
			Conditions: endpointConditions(p),
			TargetRef:  &corev1.ObjectReference{Kind: "Pod", Namespace: p.Namespace, Name: p.Name, UID: p.UID},
		}
		if p.Spec.NodeName != "" {
			node := p.Spec.NodeName
			ep.NodeName = &node
			if n, err := c.nodes.Get(node); err == nil {
				if z, ok := n.Labels[corev1.LabelTopologyZone]; ok {
					ep.Zone = &z
				}
			}
		}
		g.eps = append(g.eps, desiredEndpoint{ep: ep, pod: p})
	}

	var desired []discoveryv1.EndpointSlice
	for _, gk := range order {
		g := groups[gk]
		for start := 0; start < len(g.eps); start += maxPerSlice {
			end := min(start+maxPerSlice, len(g.eps))
			s := discoveryv1.EndpointSlice{AddressType: discoveryv1.AddressTypeIPv4, Ports: g.ports}
			for _, de := range g.eps[start:end] {
				s.Endpoints = append(s.Endpoints, de.ep)
			}
			desired = append(desired, s)
		}
	}
	if len(desired) == 0 {
		// A Service with no endpoints keeps one empty slice, as upstream.
		var ports []discoveryv1.EndpointPort
		desired = append(desired, discoveryv1.EndpointSlice{AddressType: discoveryv1.AddressTypeIPv4, Ports: ports, Endpoints: []discoveryv1.Endpoint{}})
	}
	if err := c.reconcileSlices(ctx, svc, desired); err != nil {
		return err
	}
	return c.reconcileEndpoints(ctx, svc, groups, order)
}

func portsKey(ports []discoveryv1.EndpointPort) []string {
	var k []string
	for _, p := range ports {
		k = append(k, fmt.Sprintf("%s/%d/%s", *p.Name, *p.Port, *p.Protocol))
	}
	return k
}

// reconcileSlices rewrites the Service's managed slices in place, creating or
// deleting only to match the desired count.
func (c *endpointsController) reconcileSlices(ctx context.Context, svc *corev1.Service, desired []discoveryv1.EndpointSlice) error {
	sel := labels.SelectorFromSet(labels.Set{labelSvcName: svc.Name, labelManagedBy: managedBy})
	existing, err := c.slices.EndpointSlices(svc.Namespace).List(sel)
	if err != nil {
		return err
	}
	sort.Slice(existing, func(i, j int) bool { return existing[i].Name < existing[j].Name })
	owner := metav1.OwnerReference{APIVersion: "v1", Kind: "Service", Name: svc.Name, UID: svc.UID,
		Controller: boolPtr(true), BlockOwnerDeletion: boolPtr(true)}
	api := c.d.client.DiscoveryV1().EndpointSlices(svc.Namespace)
	for i, want := range desired {
		if i < len(existing) {
			cur := existing[i]
			if apiequality.Semantic.DeepEqual(cur.Endpoints, want.Endpoints) && apiequality.Semantic.DeepEqual(cur.Ports, want.Ports) {
				continue
			}
			upd := cur.DeepCopy()
			upd.Endpoints, upd.Ports = want.Endpoints, want.Ports
			if _, err := api.Update(ctx, upd, metav1.UpdateOptions{}); err != nil {
				return fmt.Errorf("update slice %s/%s: %w", cur.Namespace, cur.Name, err)
			}
			continue
		}
		want.ObjectMeta = metav1.ObjectMeta{
			GenerateName:    svc.Name + "-",
			Namespace:       svc.Namespace,
			Labels:          map[string]string{labelSvcName: svc.Name, labelManagedBy: managedBy},
			OwnerReferences: []metav1.OwnerReference{owner},
		}
		if _, err := api.Create(ctx, &want, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("create slice for %s/%s: %w", svc.Namespace, svc.Name, err)
		}
	}
	for _, extra := range existing[min(len(desired), len(existing)):] {
		if err := api.Delete(ctx, extra.Name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			return err
		}
	}
	return nil
}

// reconcileEndpoints keeps the core/v1 Endpoints in step for describe and
// older tools: ready endpoints as addresses, the rest as notReadyAddresses.
func (c *endpointsController) reconcileEndpoints(ctx context.Context, svc *corev1.Service, groups map[string]*sliceGroup, order []string) error {
	want := &corev1.Endpoints{
		ObjectMeta: metav1.ObjectMeta{Name: svc.Name, Namespace: svc.Namespace,
			Labels: map[string]string{discoveryv1.LabelSkipMirror: "true"}},
	}
	for _, gk := range order {
		g := groups[gk]
		var sub corev1.EndpointSubset
		for _, p := range g.ports {
			sub.Ports = append(sub.Ports, corev1.EndpointPort{Name: *p.Name, Port: *p.Port, Protocol: *p.Protocol, AppProtocol: p.AppProtocol})
		}
		for _, de := range g.eps {
			addr := corev1.EndpointAddress{IP: de.ep.Addresses[0], NodeName: de.ep.NodeName, TargetRef: de.ep.TargetRef}
			if *de.ep.Conditions.Ready {
				sub.Addresses = append(sub.Addresses, addr)
			} else {
				sub.NotReadyAddresses = append(sub.NotReadyAddresses, addr)
			}
		}
		if len(sub.Addresses)+len(sub.NotReadyAddresses) > 0 {
			want.Subsets = append(want.Subsets, sub)
		}
	}
	api := c.d.client.CoreV1().Endpoints(svc.Namespace)
	cur, err := api.Get(ctx, svc.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		_, err = api.Create(ctx, want, metav1.CreateOptions{})
		return err
	}
	if err != nil {
		return err
	}
	if apiequality.Semantic.DeepEqual(cur.Subsets, want.Subsets) {
		return nil
	}
	cur.Subsets = want.Subsets
	_, err = api.Update(ctx, cur, metav1.UpdateOptions{})
	return err
}
