package validation

import (
	"encoding/json"
	"fmt"
	"net"
	"reflect"
	"strings"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	eventsv1 "k8s.io/api/events/v1"
	apimachineryvalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/utils/ptr"
)

// maxDataSize is the limit on a ConfigMap's or Secret's data (1 MiB).
const maxDataSize = 1 * 1024 * 1024

// --- Namespace

func defaultNamespace(ns *corev1.Namespace, create bool) {
	if ns.Name != "" {
		if ns.Labels == nil {
			ns.Labels = map[string]string{}
		}
		ns.Labels[corev1.LabelMetadataName] = ns.Name
	}
	if create && ns.Status.Phase == "" {
		ns.Status.Phase = corev1.NamespaceActive
	}
}

func validateNamespace(ns, old *corev1.Namespace) field.ErrorList {
	var om *metav1.ObjectMeta
	if old != nil {
		om = &old.ObjectMeta
	}
	errs := validateMeta(&ns.ObjectMeta, om, false, apimachineryvalidation.ValidateNamespaceName)
	for i, f := range ns.Spec.Finalizers {
		errs = append(errs, validateFinalizerName(string(f), field.NewPath("spec", "finalizers").Index(i))...)
	}
	return errs
}

func validateFinalizerName(name string, path *field.Path) field.ErrorList {
	var errs field.ErrorList
	for _, msg := range validation.IsQualifiedName(name) {
		errs = append(errs, field.Invalid(path, name, msg))
	}
	return errs
}

// --- Node

func defaultNode(n *corev1.Node) {
	if n.Spec.PodCIDR != "" && len(n.Spec.PodCIDRs) == 0 {
		n.Spec.PodCIDRs = []string{n.Spec.PodCIDR}
	} else if n.Spec.PodCIDR == "" && len(n.Spec.PodCIDRs) > 0 {
		n.Spec.PodCIDR = n.Spec.PodCIDRs[0]
	}
	if n.Status.Allocatable == nil && n.Status.Capacity != nil {
		n.Status.Allocatable = n.Status.Capacity.DeepCopy()
	}
}

var taintEffects = []corev1.TaintEffect{corev1.TaintEffectNoSchedule, corev1.TaintEffectPreferNoSchedule, corev1.TaintEffectNoExecute}

func validateNode(n, old *corev1.Node) field.ErrorList {
	var om *metav1.ObjectMeta
	if old != nil {
		om = &old.ObjectMeta
	}
	errs := validateMeta(&n.ObjectMeta, om, false, apimachineryvalidation.NameIsDNSSubdomain)
	sp := field.NewPath("spec")
	for i, c := range n.Spec.PodCIDRs {
		errs = append(errs, validation.IsValidCIDRForLegacyField(sp.Child("podCIDRs").Index(i), c, true, nil)...)
	}
	if len(n.Spec.PodCIDRs) > 2 {
		errs = append(errs, field.Invalid(sp.Child("podCIDRs"), n.Spec.PodCIDRs, "may specify no more than one CIDR for each IP family"))
	}
	type keyEffect struct {
		key    string
		effect corev1.TaintEffect
	}
	seen := map[keyEffect]bool{}
	for i, t := range n.Spec.Taints {
		// kube-apiserver reports taints under metadata, not spec.
		tp := field.NewPath("metadata", "taints").Index(i)
		errs = append(errs, metav1validation.ValidateLabelName(t.Key, tp.Child("key"))...)
		if msgs := validation.IsValidLabelValue(t.Value); len(msgs) > 0 {
			errs = append(errs, field.Invalid(tp.Child("value"), t.Value, strings.Join(msgs, ";")))
		}
		if t.Effect == "" {
			errs = append(errs, field.Required(tp.Child("effect"), ""))
		} else if !contains(taintEffects, t.Effect) {
			errs = append(errs, field.NotSupported(tp.Child("effect"), t.Effect, taintEffects))
		}
		k := keyEffect{t.Key, t.Effect}
		if seen[k] {
			d := field.Duplicate(tp, t)
			d.Detail = "taints must be unique by key and effect pair"
			errs = append(errs, d)
		}
		seen[k] = true
	}
	if old != nil && old.Spec.ProviderID != "" && old.Spec.ProviderID != n.Spec.ProviderID {
		errs = append(errs, field.Forbidden(sp.Child("providerID"), "node updates may not change providerID except from \"\" to valid"))
	}
	if old != nil && len(old.Spec.PodCIDRs) > 0 && !reflect.DeepEqual(old.Spec.PodCIDRs, n.Spec.PodCIDRs) {
		// The IPAM controller may assign a CIDR once; never change it.
		errs = append(errs, field.Forbidden(sp.Child("podCIDRs"), "node updates may not change podCIDR except from \"\" to valid"))
	}
	return errs
}

// --- ConfigMap and Secret

func validateDataKeys[V string | []byte](data map[string]V, path *field.Path) (field.ErrorList, int) {
	var errs field.ErrorList
	size := 0
	for k, v := range data {
		for _, msg := range validation.IsConfigMapKey(k) {
			errs = append(errs, field.Invalid(path.Key(k), k, msg))
		}
		size += len(v)
	}
	return errs, size
}

func validateConfigMap(cm, old *corev1.ConfigMap) field.ErrorList {
	var om *metav1.ObjectMeta
	if old != nil {
		om = &old.ObjectMeta
	}
	errs := validateMeta(&cm.ObjectMeta, om, true, apimachineryvalidation.NameIsDNSSubdomain)
	e, size := validateDataKeys(cm.Data, field.NewPath("data"))
	errs = append(errs, e...)
	for k := range cm.Data {
		if _, dup := cm.BinaryData[k]; dup {
			errs = append(errs, field.Invalid(field.NewPath("data").Key(k), k, "duplicate of key present in binaryData"))
		}
	}
	e, bsize := validateDataKeys(cm.BinaryData, field.NewPath("binaryData"))
	errs = append(errs, e...)
	if size+bsize > maxDataSize {
		errs = append(errs, field.TooLong(field.NewPath(""), "", maxDataSize))
	}
	if old != nil && old.Immutable != nil && *old.Immutable {
		if cm.Immutable == nil || !*cm.Immutable {
			errs = append(errs, field.Forbidden(field.NewPath("immutable"), "field is immutable when `immutable` is set"))
		}
		if !reflect.DeepEqual(cm.Data, old.Data) {
			errs = append(errs, field.Forbidden(field.NewPath("data"), "field is immutable when `immutable` is set"))
		}
		if !reflect.DeepEqual(cm.BinaryData, old.BinaryData) {
			errs = append(errs, field.Forbidden(field.NewPath("binaryData"), "field is immutable when `immutable` is set"))
		}
	}
	return errs
}

// defaultSecret sets the type and folds stringData into data, which is
// what the API does when it reads a Secret (stringData is write-only).
func defaultSecret(s *corev1.Secret) {
	if s.Type == "" {
		s.Type = corev1.SecretTypeOpaque
	}
	if len(s.StringData) > 0 {
		if s.Data == nil {
			s.Data = map[string][]byte{}
		}
		for k, v := range s.StringData {
			s.Data[k] = []byte(v)
		}
	}
	s.StringData = nil
}

func validateSecret(s, old *corev1.Secret) field.ErrorList {
	var om *metav1.ObjectMeta
	if old != nil {
		om = &old.ObjectMeta
	}
	errs := validateMeta(&s.ObjectMeta, om, true, apimachineryvalidation.NameIsDNSSubdomain)
	data := field.NewPath("data")
	e, size := validateDataKeys(s.Data, data)
	errs = append(errs, e...)
	if size > maxDataSize {
		errs = append(errs, field.TooLong(data, "", maxDataSize))
	}
	required := func(keys ...string) {
		for _, k := range keys {
			if _, ok := s.Data[k]; !ok {
				errs = append(errs, field.Required(data.Key(k), ""))
			}
		}
	}
	wellFormedJSON := func(key string) {
		b, ok := s.Data[key]
		if !ok {
			errs = append(errs, field.Required(data.Key(key), ""))
			return
		}
		if err := json.Unmarshal(b, &map[string]interface{}{}); err != nil {
			errs = append(errs, field.Invalid(data.Key(key), "<secret contents redacted>", err.Error()))
		}
	}
	switch s.Type {
	case corev1.SecretTypeServiceAccountToken:
		if s.Annotations[corev1.ServiceAccountNameKey] == "" {
			errs = append(errs, field.Required(field.NewPath("metadata", "annotations").Key(corev1.ServiceAccountNameKey), ""))
		}
	case corev1.SecretTypeDockercfg:
		wellFormedJSON(corev1.DockerConfigKey)
	case corev1.SecretTypeDockerConfigJson:
		wellFormedJSON(corev1.DockerConfigJsonKey)
	case corev1.SecretTypeBasicAuth:
		_, u := s.Data[corev1.BasicAuthUsernameKey]
		_, p := s.Data[corev1.BasicAuthPasswordKey]
		if !u && !p {
			required(corev1.BasicAuthUsernameKey, corev1.BasicAuthPasswordKey)
		}
	case corev1.SecretTypeSSHAuth:
		if len(s.Data[corev1.SSHAuthPrivateKey]) == 0 {
			errs = append(errs, field.Required(data.Key(corev1.SSHAuthPrivateKey), ""))
		}
	case corev1.SecretTypeTLS:
		required(corev1.TLSCertKey, corev1.TLSPrivateKeyKey)
	}
	if old != nil {
		errs = append(errs, apimachineryvalidation.ValidateImmutableField(s.Type, old.Type, field.NewPath("type"))...)
		if old.Immutable != nil && *old.Immutable {
			if s.Immutable == nil || !*s.Immutable {
				errs = append(errs, field.Forbidden(field.NewPath("immutable"), "field is immutable when `immutable` is set"))
			}
			if !reflect.DeepEqual(s.Data, old.Data) {
				errs = append(errs, field.Forbidden(data, "field is immutable when `immutable` is set"))
			}
		}
	}
	return errs
}

// --- Endpoints and EndpointSlices

func defaultEndpoints(ep *corev1.Endpoints) {
	for i := range ep.Subsets {
		for j := range ep.Subsets[i].Ports {
			if ep.Subsets[i].Ports[j].Protocol == "" {
				ep.Subsets[i].Ports[j].Protocol = corev1.ProtocolTCP
			}
		}
	}
}

func validateEndpoints(ep, old *corev1.Endpoints) field.ErrorList {
	var om *metav1.ObjectMeta
	if old != nil {
		om = &old.ObjectMeta
	}
	errs := validateMeta(&ep.ObjectMeta, om, true, apimachineryvalidation.NameIsDNSSubdomain)
	sp := field.NewPath("subsets")
	for i, ss := range ep.Subsets {
		ip := sp.Index(i)
		if len(ss.Addresses) == 0 && len(ss.NotReadyAddresses) == 0 {
			errs = append(errs, field.Required(ip, "must specify `addresses` or `notReadyAddresses`"))
		}
		for j, a := range ss.Addresses {
			errs = append(errs, validateEndpointAddress(&a, ip.Child("addresses").Index(j))...)
		}
		for j, a := range ss.NotReadyAddresses {
			errs = append(errs, validateEndpointAddress(&a, ip.Child("notReadyAddresses").Index(j))...)
		}
		for j, p := range ss.Ports {
			pp := ip.Child("ports").Index(j)
			if len(ss.Ports) > 1 && p.Name == "" {
				errs = append(errs, field.Required(pp.Child("name"), ""))
			} else if p.Name != "" {
				errs = append(errs, dns1123Label(p.Name, pp.Child("name"))...)
			}
			for _, msg := range validation.IsValidPortNum(int(p.Port)) {
				errs = append(errs, field.Invalid(pp.Child("port"), p.Port, msg))
			}
			errs = append(errs, validateProtocol(p.Protocol, pp.Child("protocol"))...)
		}
	}
	return errs
}

func validateEndpointAddress(a *corev1.EndpointAddress, path *field.Path) field.ErrorList {
	errs := validation.IsValidIPForLegacyField(path.Child("ip"), a.IP, true, nil)
	if len(errs) == 0 {
		errs = append(errs, nonSpecialIP(a.IP, path.Child("ip"))...)
	}
	if a.Hostname != "" {
		errs = append(errs, dns1123Label(a.Hostname, path.Child("hostname"))...)
	}
	if a.NodeName != nil {
		for _, msg := range apimachineryvalidation.NameIsDNSSubdomain(*a.NodeName, false) {
			errs = append(errs, field.Invalid(path.Child("nodeName"), *a.NodeName, msg))
		}
	}
	return errs
}

func defaultEndpointSlice(es *discoveryv1.EndpointSlice) {
	for i := range es.Ports {
		if es.Ports[i].Name == nil {
			es.Ports[i].Name = ptr.To("")
		}
		if es.Ports[i].Protocol == nil {
			es.Ports[i].Protocol = ptr.To(corev1.ProtocolTCP)
		}
	}
}

const (
	maxSliceEndpoints = 1000
	maxSliceAddresses = 100
	maxSlicePorts     = 20000
)

var supportedAddressTypes = sets.New(string(discoveryv1.AddressTypeIPv4), string(discoveryv1.AddressTypeIPv6), string(discoveryv1.AddressTypeFQDN))

func validateEndpointSlice(es, old *discoveryv1.EndpointSlice) field.ErrorList {
	var om *metav1.ObjectMeta
	if old != nil {
		om = &old.ObjectMeta
	}
	errs := validateMeta(&es.ObjectMeta, om, true, apimachineryvalidation.NameIsDNSSubdomain)
	at := field.NewPath("addressType")
	if es.AddressType == "" {
		errs = append(errs, field.Required(at, ""))
	} else if !supportedAddressTypes.Has(string(es.AddressType)) {
		errs = append(errs, field.NotSupported(at, es.AddressType, sets.List(supportedAddressTypes)))
	}
	errs = append(errs, validateSliceEndpoints(es.Endpoints, es.AddressType, field.NewPath("endpoints"))...)
	errs = append(errs, validateSlicePorts(es.Ports, field.NewPath("ports"))...)
	if old != nil {
		errs = append(errs, apimachineryvalidation.ValidateImmutableField(es.AddressType, old.AddressType, at)...)
	}
	return errs
}

func validateSliceEndpoints(eps []discoveryv1.Endpoint, at discoveryv1.AddressType, path *field.Path) field.ErrorList {
	if len(eps) > maxSliceEndpoints {
		return field.ErrorList{field.TooMany(path, len(eps), maxSliceEndpoints)}
	}
	var errs field.ErrorList
	for i, ep := range eps {
		ip := path.Index(i)
		ap := ip.Child("addresses")
		if len(ep.Addresses) == 0 {
			errs = append(errs, field.Required(ap, "must contain at least 1 address"))
		} else if len(ep.Addresses) > maxSliceAddresses {
			errs = append(errs, field.TooMany(ap, len(ep.Addresses), maxSliceAddresses))
		}
		for j, a := range ep.Addresses {
			p := ap.Index(j)
			switch at {
			case discoveryv1.AddressTypeIPv4, discoveryv1.AddressTypeIPv6:
				e := validation.IsValidIPForLegacyField(p, a, true, nil)
				if len(e) == 0 {
					parsed := net.ParseIP(a)
					if want4 := at == discoveryv1.AddressTypeIPv4; want4 != (parsed.To4() != nil) {
						e = append(e, field.Invalid(p, a, fmt.Sprintf("must be an %s address", at)))
					} else {
						e = append(e, nonSpecialIP(a, p)...)
					}
				}
				errs = append(errs, e...)
			case discoveryv1.AddressTypeFQDN:
				errs = append(errs, validation.IsFullyQualifiedDomainName(p, a)...)
			}
		}
		if ep.NodeName != nil {
			for _, msg := range apimachineryvalidation.NameIsDNSSubdomain(*ep.NodeName, false) {
				errs = append(errs, field.Invalid(ip.Child("nodeName"), *ep.NodeName, msg))
			}
		}
		if ep.Hostname != nil {
			errs = append(errs, dns1123Label(*ep.Hostname, ip.Child("hostname"))...)
		}
		errs = append(errs, metav1validation.ValidateLabels(ep.DeprecatedTopology, ip.Child("deprecatedTopology"))...)
	}
	return errs
}

func validateSlicePorts(ports []discoveryv1.EndpointPort, path *field.Path) field.ErrorList {
	if len(ports) > maxSlicePorts {
		return field.ErrorList{field.TooMany(path, len(ports), maxSlicePorts)}
	}
	var errs field.ErrorList
	names := sets.New[string]()
	for i, p := range ports {
		ip := path.Index(i)
		name := ptr.Deref(p.Name, "")
		if name != "" {
			errs = append(errs, dns1123Label(name, ip.Child("name"))...)
		}
		if names.Has(name) {
			errs = append(errs, field.Duplicate(ip.Child("name"), name))
		}
		names.Insert(name)
		if p.Protocol == nil {
			errs = append(errs, field.Required(ip.Child("protocol"), ""))
		} else {
			errs = append(errs, validateProtocol(*p.Protocol, ip.Child("protocol"))...)
		}
		if p.Port != nil {
			for _, msg := range validation.IsValidPortNum(int(*p.Port)) {
				errs = append(errs, field.Invalid(ip.Child("port"), *p.Port, msg))
			}
		}
		if p.AppProtocol != nil {
			errs = append(errs, qualifiedName(*p.AppProtocol, ip.Child("appProtocol"))...)
		}
	}
	return errs
}

// --- Events

const (
	reportingInstanceLimit = 128
	actionLimit            = 128
	reasonLimit            = 128
	noteLimit              = 1024
)

// validateCoreEvent follows kube-apiserver's rules for core/v1 Events,
// which are lenient for old clients: namespaces must agree, and events that
// carry eventTime must name their reporter, action and reason.
func validateCoreEvent(e, _ *corev1.Event) field.ErrorList {
	return legacyEventRules(e, "reportingComponent")
}

func legacyEventRules(e *corev1.Event, reportingField string) field.ErrorList {
	var errs field.ErrorList
	nsMismatch := field.Invalid(field.NewPath("involvedObject", "namespace"), e.InvolvedObject.Namespace, "does not match event.namespace")
	if e.EventTime.IsZero() {
		if e.InvolvedObject.Namespace == "" {
			if e.Namespace != metav1.NamespaceNone && e.Namespace != metav1.NamespaceDefault {
				errs = append(errs, nsMismatch)
			}
		} else if e.Namespace != e.InvolvedObject.Namespace {
			errs = append(errs, nsMismatch)
		}
	} else {
		if e.InvolvedObject.Namespace == "" && e.Namespace != metav1.NamespaceDefault && e.Namespace != metav1.NamespaceSystem {
			errs = append(errs, nsMismatch)
		}
		if e.ReportingController == "" {
			errs = append(errs, field.Required(field.NewPath(reportingField), ""))
		}
		errs = append(errs, qualifiedName(e.ReportingController, field.NewPath(reportingField))...)
		if e.ReportingInstance == "" {
			errs = append(errs, field.Required(field.NewPath("reportingInstance"), ""))
		}
		if len(e.ReportingInstance) > reportingInstanceLimit {
			errs = append(errs, field.Invalid(field.NewPath("reportingInstance"), "", fmt.Sprintf("can have at most %v characters", reportingInstanceLimit)))
		}
		if e.Action == "" {
			errs = append(errs, field.Required(field.NewPath("action"), ""))
		}
		if len(e.Action) > actionLimit {
			errs = append(errs, field.Invalid(field.NewPath("action"), "", fmt.Sprintf("can have at most %v characters", actionLimit)))
		}
		if e.Reason == "" {
			errs = append(errs, field.Required(field.NewPath("reason"), ""))
		}
		if len(e.Reason) > reasonLimit {
			errs = append(errs, field.Invalid(field.NewPath("reason"), "", fmt.Sprintf("can have at most %v characters", reasonLimit)))
		}
		if len(e.Message) > noteLimit {
			errs = append(errs, field.Invalid(field.NewPath("message"), "", fmt.Sprintf("can have at most %v characters", noteLimit)))
		}
	}
	for _, msg := range validation.IsDNS1123Subdomain(e.Namespace) {
		errs = append(errs, field.Invalid(field.NewPath("namespace"), e.Namespace, msg))
	}
	return errs
}

// asCoreEvent maps an events.k8s.io Event onto the core fields the rules
// (and their error paths) are written against, as kube-apiserver does.
func asCoreEvent(e *eventsv1.Event) *corev1.Event {
	ce := &corev1.Event{
		ObjectMeta: e.ObjectMeta, InvolvedObject: e.Regarding, Related: e.Related,
		Reason: e.Reason, Message: e.Note, Type: e.Type, Action: e.Action, EventTime: e.EventTime,
		ReportingController: e.ReportingController, ReportingInstance: e.ReportingInstance,
		Source: e.DeprecatedSource, FirstTimestamp: e.DeprecatedFirstTimestamp,
		LastTimestamp: e.DeprecatedLastTimestamp, Count: e.DeprecatedCount,
	}
	if e.Series != nil {
		ce.Series = &corev1.EventSeries{Count: e.Series.Count, LastObservedTime: e.Series.LastObservedTime}
	}
	return ce
}

func validateEventsV1(ev, oldEv *eventsv1.Event) field.ErrorList {
	e := asCoreEvent(ev)
	errs := legacyEventRules(e, "reportingController")
	series := func() {
		if e.Series != nil {
			if e.Series.Count < 2 {
				errs = append(errs, field.Invalid(field.NewPath("series.count"), "", "should be at least 2"))
			}
			if e.Series.LastObservedTime.IsZero() {
				errs = append(errs, field.Required(field.NewPath("series.lastObservedTime"), ""))
			}
		}
	}
	if oldEv != nil {
		old := asCoreEvent(oldEv)
		errs = append(errs, metaUpdate(&e.ObjectMeta, &old.ObjectMeta)...)
		series()
		immutable := func(n, o interface{}, name string) {
			errs = append(errs, apimachineryvalidation.ValidateImmutableField(n, o, field.NewPath(name))...)
		}
		immutable(e.InvolvedObject, old.InvolvedObject, "involvedObject")
		immutable(e.Reason, old.Reason, "reason")
		immutable(e.Message, old.Message, "message")
		immutable(e.Type, old.Type, "type")
		immutable(e.EventTime, old.EventTime, "eventTime")
		immutable(e.Action, old.Action, "action")
		immutable(e.Related, old.Related, "related")
		immutable(e.ReportingController, old.ReportingController, "reportingController")
		immutable(e.ReportingInstance, old.ReportingInstance, "reportingInstance")
		return errs
	}
	errs = append(errs, apimachineryvalidation.ValidateObjectMeta(&e.ObjectMeta, true, apimachineryvalidation.NameIsDNSSubdomain, field.NewPath("metadata"))...)
	series()
	if e.EventTime.IsZero() {
		errs = append(errs, field.Required(field.NewPath("eventTime"), ""))
	}
	if e.Type != corev1.EventTypeNormal && e.Type != corev1.EventTypeWarning {
		errs = append(errs, field.Invalid(field.NewPath("type"), "", fmt.Sprintf("has invalid value: %v", e.Type)))
	}
	if !e.FirstTimestamp.IsZero() {
		errs = append(errs, field.Invalid(field.NewPath("firstTimestamp"), "", "needs to be unset"))
	}
	if !e.LastTimestamp.IsZero() {
		errs = append(errs, field.Invalid(field.NewPath("lastTimestamp"), "", "needs to be unset"))
	}
	if e.Count != 0 {
		errs = append(errs, field.Invalid(field.NewPath("count"), "", "needs to be unset"))
	}
	if e.Source.Component != "" || e.Source.Host != "" {
		errs = append(errs, field.Invalid(field.NewPath("source"), "", "needs to be unset"))
	}
	return errs
}

// --- Lease

func validateLease(l, old *coordinationv1.Lease) field.ErrorList {
	var om *metav1.ObjectMeta
	if old != nil {
		om = &old.ObjectMeta
	}
	errs := validateMeta(&l.ObjectMeta, om, true, apimachineryvalidation.NameIsDNSSubdomain)
	sp := field.NewPath("spec")
	if d := l.Spec.LeaseDurationSeconds; d != nil && *d <= 0 {
		errs = append(errs, field.Invalid(sp.Child("leaseDurationSeconds"), d, "must be greater than 0"))
	}
	if t := l.Spec.LeaseTransitions; t != nil && *t < 0 {
		errs = append(errs, field.Invalid(sp.Child("leaseTransitions"), t, "must be greater than or equal to 0"))
	}
	if l.Spec.PreferredHolder != nil && *l.Spec.PreferredHolder != "" && (l.Spec.Strategy == nil || *l.Spec.Strategy == "") {
		errs = append(errs, field.Forbidden(sp.Child("preferredHolder"), "may only be specified if `strategy` is defined"))
	}
	return errs
}
