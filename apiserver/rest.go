package apiserver

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/apimachinery/pkg/util/uuid"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/yaml"

	"github.com/kubelab/kubelab/apiserver/resources"
	apivalidation "github.com/kubelab/kubelab/apiserver/validation"
	"github.com/kubelab/kubelab/store"
)

// request is a parsed resource path.
type request struct {
	res     resources.Resource
	ns      string
	name    string
	sub     string
	subpath string
}

func (q request) gr() schema.GroupResource { return q.res.GVR.GroupResource() }

func schemaGR(group, resource string) schema.GroupResource {
	return schema.GroupResource{Group: group, Resource: resource}
}

// Store keys: /<group or "core">/<resource>/[<namespace>/]<name>.
func groupSeg(r resources.Resource) string {
	if r.GVR.Group == "" {
		return "core"
	}
	return r.GVR.Group
}

func objectKey(r resources.Resource, ns, name string) string {
	r = storageResource(r)
	if r.Namespaced {
		return "/" + groupSeg(r) + "/" + r.GVR.Resource + "/" + ns + "/" + name
	}
	return "/" + groupSeg(r) + "/" + r.GVR.Resource + "/" + name
}

func collectionPrefix(r resources.Resource, ns string) string {
	r = storageResource(r)
	p := "/" + groupSeg(r) + "/" + r.GVR.Resource + "/"
	if r.Namespaced && ns != "" {
		p += ns + "/"
	}
	return p
}

func validateNodeName(name string) string {
	if errs := validation.IsDNS1123Subdomain(name); len(errs) > 0 {
		return strings.Join(errs, "; ")
	}
	return ""
}

func servedGV(gv schema.GroupVersion) bool {
	for _, g := range resources.GroupVersions() {
		if g == gv {
			return true
		}
	}
	return false
}

func parsePath(gv schema.GroupVersion, segs []string) (request, bool) {
	var q request
	if len(segs) >= 3 && segs[0] == "namespaces" {
		if r, ok := resources.Lookup(gv.Group, gv.Version, segs[2]); ok && r.Namespaced {
			q.res, q.ns = r, segs[1]
			segs = segs[3:]
			goto rest
		}
	}
	{
		r, ok := resources.Lookup(gv.Group, gv.Version, segs[0])
		if !ok {
			return q, false
		}
		q.res = r
		segs = segs[1:]
		if r.Namespaced && len(segs) > 0 {
			return q, false // a namespaced object needs its namespace in the path
		}
	}
rest:
	if len(segs) > 0 {
		q.name = segs[0]
	}
	if len(segs) > 1 {
		q.sub = segs[1]
	}
	if len(segs) > 2 {
		q.subpath = strings.Join(segs[2:], "/")
	}
	if q.name == "" && len(segs) > 0 {
		return q, false
	}
	return q, true
}

func (s *Server) serveGroupVersion(w http.ResponseWriter, r *http.Request, group, version, rest string) {
	gv := schema.GroupVersion{Group: group, Version: version}
	if !servedGV(gv) {
		writeError(w, errNotFoundPath())
		return
	}
	trailing := strings.HasSuffix(rest, "/")
	rest = strings.Trim(rest, "/")
	if rest == "" {
		if r.Method != http.MethodGet {
			writeError(w, errMethodNotAllowed(r))
			return
		}
		serveResourceList(w, gv)
		return
	}
	q, ok := parsePath(gv, strings.Split(rest, "/"))
	if !ok {
		writeError(w, errNotFoundPath())
		return
	}
	if trailing && q.subpath != "" {
		q.subpath += "/"
	}
	setRequestInfo(r, q)
	if !s.authorizeRequest(w, r, q) {
		return
	}
	release, ok := s.inflight.admit(w, r, q)
	if !ok {
		return
	}
	defer release()
	query := queryOf(r)
	switch {
	case q.name == "":
		switch r.Method {
		case http.MethodGet:
			if wv := query.Get("watch"); wv == "true" || wv == "1" {
				setVerb(r, "WATCH")
				s.handleWatch(w, r, q)
				return
			}
			setVerb(r, "LIST")
			s.handleList(w, r, q)
		case http.MethodPost:
			s.handleCreate(w, r, q)
		case http.MethodDelete:
			s.handleDeleteCollection(w, r, q)
		default:
			writeError(w, errMethodNotAllowed(r))
		}
	case q.sub == "":
		switch r.Method {
		case http.MethodGet:
			s.handleGet(w, r, q)
		case http.MethodPut:
			s.handleUpdate(w, r, q, modeMain)
		case http.MethodPatch:
			s.handlePatch(w, r, q, modeMain)
		case http.MethodDelete:
			s.handleDelete(w, r, q)
		default:
			writeError(w, errMethodNotAllowed(r))
		}
	default:
		s.serveSubresource(w, r, q)
	}
}

func dryRun(r *http.Request) bool {
	for _, v := range queryOf(r)["dryRun"] {
		if v == "All" {
			return true
		}
	}
	return false
}

// decode turns a stored value into its typed object with kind, apiVersion
// and resourceVersion filled in.
func (s *Server) decode(res resources.Resource, so *store.Object) (runtime.Object, error) {
	obj, err := decodeFor(res, so.Value)
	if err != nil {
		return nil, err
	}
	obj.GetObjectKind().SetGroupVersionKind(res.GVK())
	if m, err := meta.Accessor(obj); err == nil {
		m.SetResourceVersion(strconv.FormatInt(so.Revision, 10))
	}
	return obj, nil
}

func (s *Server) getObject(ctx context.Context, q request) (runtime.Object, *store.Object, error) {
	so, err := s.store.Get(ctx, objectKey(q.res, q.ns, q.name))
	if err != nil {
		return nil, nil, storeErr(err, q.gr(), q.name)
	}
	obj, err := s.decode(q.res, so)
	return obj, so, err
}

// storeErr maps store errors to API errors.
func storeErr(err error, gr schema.GroupResource, name string) error {
	switch {
	case errors.Is(err, store.ErrNotFound):
		return apierrors.NewNotFound(gr, name)
	case errors.Is(err, store.ErrAlreadyExists):
		return apierrors.NewAlreadyExists(gr, name)
	case errors.Is(err, store.ErrConflict):
		return errConflict(gr, name)
	case errors.Is(err, store.ErrTooOld):
		return apierrors.NewResourceExpired("The provided resourceVersion is too old")
	case errors.Is(err, store.ErrInvalidContinue):
		return apierrors.NewBadRequest("continue key is not valid: " + err.Error())
	}
	var se apierrors.APIStatus
	if errors.As(err, &se) {
		return err
	}
	return apierrors.NewInternalError(err)
}

func errConflict(gr schema.GroupResource, name string) error {
	return apierrors.NewConflict(gr, name, errors.New("the object has been modified; please apply your changes to the latest version and try again"))
}

func (s *Server) handleGet(w http.ResponseWriter, r *http.Request, q request) {
	obj, _, err := s.getObject(r.Context(), q)
	if err != nil {
		writeError(w, err)
		return
	}
	writeObject(w, r, http.StatusOK, obj)
}

func (s *Server) handleList(w http.ResponseWriter, r *http.Request, q request) {
	query := r.URL.Query()
	sel, err := parseSelector(query.Get("labelSelector"), query.Get("fieldSelector"), q.res.New())
	if err != nil {
		writeError(w, err)
		return
	}
	opts := store.ListOptions{Prefix: collectionPrefix(q.res, q.ns), Continue: query.Get("continue")}
	if l := query.Get("limit"); l != "" {
		if opts.Limit, err = strconv.ParseInt(l, 10, 64); err != nil || opts.Limit < 0 {
			writeError(w, apierrors.NewBadRequest("invalid limit: "+l))
			return
		}
	}
	if query.Get("resourceVersionMatch") == string(metav1.ResourceVersionMatchExact) {
		rv, err := strconv.ParseInt(query.Get("resourceVersion"), 10, 64)
		if err != nil {
			writeError(w, apierrors.NewBadRequest("invalid resourceVersion for resourceVersionMatch=Exact"))
			return
		}
		opts.Revision = rv
	}
	list, err := s.list(r.Context(), q.res, opts, sel)
	if err != nil {
		writeError(w, storeErr(err, q.gr(), ""))
		return
	}
	writeObject(w, r, http.StatusOK, list)
}

// list reads a (page of a) collection, decoding each matching object once.
func (s *Server) list(ctx context.Context, res resources.Resource, opts store.ListOptions, sel selector) (runtime.Object, error) {
	var mu sync.Mutex
	decoded := map[string]runtime.Object{}
	if !sel.empty() {
		opts.Filter = func(o *store.Object) bool {
			obj, err := s.decode(res, o)
			if err != nil || !sel.matches(obj) {
				return false
			}
			mu.Lock()
			decoded[o.Key+"@"+strconv.FormatInt(o.Revision, 10)] = obj
			mu.Unlock()
			return true
		}
	}
	lr, err := s.store.List(ctx, opts)
	if err != nil {
		return nil, err
	}
	items := make([]runtime.Object, 0, len(lr.Items))
	for _, it := range lr.Items {
		obj := decoded[it.Key+"@"+strconv.FormatInt(it.Revision, 10)]
		if obj == nil {
			if obj, err = s.decode(res, it); err != nil {
				return nil, err
			}
		}
		items = append(items, obj)
	}
	list := res.NewList()
	if err := meta.SetList(list, items); err != nil {
		return nil, err
	}
	lm, err := meta.ListAccessor(list)
	if err != nil {
		return nil, err
	}
	lm.SetResourceVersion(strconv.FormatInt(lr.Revision, 10))
	lm.SetContinue(lr.Continue)
	lm.SetRemainingItemCount(lr.RemainingItemCount)
	list.GetObjectKind().SetGroupVersionKind(res.GVR.GroupVersion().WithKind(res.ListKind))
	return list, nil
}

func (s *Server) handleCreate(w http.ResponseWriter, r *http.Request, q request) {
	ctx := withWriteInfo(r.Context(), writeInfo{manager: managerFor(r)})
	dr, err := readAndDecode(r, q.res.GVK(), q.res.New())
	if err != nil {
		writeError(w, err)
		return
	}
	if err := setNamespace(dr.obj, q); err != nil {
		writeError(w, err)
		return
	}
	out, warns, err := s.create(ctx, q.res, q.ns, dr.obj, dryRun(r))
	addWarnings(w, append(dr.warnings, warns...))
	if err != nil {
		writeError(w, err)
		return
	}
	writeObject(w, r, http.StatusCreated, out)
}

// setNamespace fills an object's namespace from the URL, refusing a
// different one.
func setNamespace(obj runtime.Object, q request) error {
	m, err := meta.Accessor(obj)
	if err != nil {
		return apierrors.NewBadRequest(err.Error())
	}
	if !q.res.Namespaced {
		m.SetNamespace("")
		return nil
	}
	if m.GetNamespace() == "" {
		m.SetNamespace(q.ns)
	} else if m.GetNamespace() != q.ns {
		return apierrors.NewBadRequest("the namespace of the provided object does not match the namespace sent on the request")
	}
	return nil
}

const nameChars = "bcdfghjklmnpqrstvwxz2456789"

func randomSuffix() string {
	b := make([]byte, 5)
	for i := range b {
		b[i] = nameChars[rand.IntN(len(nameChars))]
	}
	return string(b)
}

type fieldKey struct {
	t    reflect.Type
	name string
}

// fieldIndexes caches, per object type and field name, the field's index
// ([]int(nil) when there is none): looking a field up by name walks the
// struct's fields every time.
var fieldIndexes sync.Map

func fieldIndex(obj runtime.Object, name string) ([]int, bool) {
	t := reflect.TypeOf(obj)
	k := fieldKey{t, name}
	if v, ok := fieldIndexes.Load(k); ok {
		idx := v.([]int)
		return idx, idx != nil
	}
	var idx []int
	if t != nil && t.Kind() == reflect.Pointer && t.Elem().Kind() == reflect.Struct {
		if f, ok := t.Elem().FieldByName(name); ok {
			idx = f.Index
		}
	}
	fieldIndexes.Store(k, idx)
	return idx, idx != nil
}

func hasField(obj runtime.Object, name string) bool {
	_, ok := fieldIndex(obj, name)
	return ok
}

// getField is obj's field name, which must exist (see hasField).
func getField(obj runtime.Object, name string) reflect.Value {
	idx, _ := fieldIndex(obj, name)
	return reflect.ValueOf(obj).Elem().FieldByIndex(idx)
}

// copyField sets dst.name = src.name (same types).
func copyField(dst, src runtime.Object, name string) {
	if hasField(dst, name) && hasField(src, name) {
		getField(dst, name).Set(getField(src, name))
	}
}

func (s *Server) namespaceUsable(ctx context.Context, ns string) error {
	terminating, ok := s.nsc.get(ns)
	if !ok {
		nsRes, _ := resources.Lookup("", "v1", "namespaces")
		obj, _, err := s.getObject(ctx, request{res: nsRes, name: ns})
		if err != nil {
			return err
		}
		s.nsc.observe(obj, false)
		terminating = namespaceTerminating(obj.(*corev1.Namespace))
	}
	if terminating {
		return apierrors.NewForbidden(schema.GroupResource{}, "", fmt.Errorf("unable to create new content in namespace %s because it is being terminated", ns))
	}
	return nil
}

// create runs the create pipeline: names, system metadata, defaulting,
// allocation, validation, then the store write (skipped for dry runs).
func (s *Server) create(ctx context.Context, res resources.Resource, ns string, obj runtime.Object, dry bool) (runtime.Object, []string, error) {
	m, err := meta.Accessor(obj)
	if err != nil {
		return nil, nil, apierrors.NewBadRequest(err.Error())
	}
	gk := res.GVK().GroupKind()
	if m.GetName() == "" && m.GetGenerateName() != "" {
		m.SetName(m.GetGenerateName() + randomSuffix())
	}
	if m.GetName() == "" {
		return nil, nil, apierrors.NewInvalid(gk, "", field.ErrorList{field.Required(field.NewPath("metadata", "name"), "name or generateName is required")})
	}
	if err := authorizeCreateName(ctx, res, ns, m.GetName()); err != nil {
		return nil, nil, err
	}
	if res.Namespaced {
		if err := s.namespaceUsable(ctx, ns); err != nil {
			return nil, nil, err
		}
	}
	obj.GetObjectKind().SetGroupVersionKind(res.GVK())
	m.SetUID(types.UID(uuid.NewUUID()))
	m.SetCreationTimestamp(metav1.Now())
	m.SetResourceVersion("")
	m.SetDeletionTimestamp(nil)
	m.SetDeletionGracePeriodSeconds(nil)
	if hasField(obj, "Spec") {
		m.SetGeneration(1)
	} else {
		m.SetGeneration(0)
	}
	prepareCreate(obj)
	apivalidation.Default(obj, nil, s.valOpts)
	apivalidation.DropDisabledFields(obj, nil, s.valOpts)
	var alloc *allocation
	if svc, ok := obj.(*corev1.Service); ok {
		var errs field.ErrorList
		if alloc, errs = s.allocateService(svc, nil); len(errs) > 0 {
			return nil, nil, apierrors.NewInvalid(gk, m.GetName(), errs)
		}
		apivalidation.Default(obj, nil, s.valOpts)
	}
	warns, errs := apivalidation.Validate(obj, nil, s.valOpts)
	if len(errs) > 0 {
		s.rollback(alloc)
		return nil, warns, apierrors.NewInvalid(gk, m.GetName(), errs)
	}
	if dry {
		s.rollback(alloc)
		return obj, warns, nil
	}
	// The store copies the value (store.Interface), so the encoding can
	// go back to the pool as soon as Create returns.
	eb := getEncodeBuf()
	data, err := encodeForInto(eb, res, obj)
	if err != nil {
		eb.release()
		s.rollback(alloc)
		return nil, warns, apierrors.NewInternalError(err)
	}
	so, err := s.store.Create(ctx, objectKey(res, ns, m.GetName()), string(m.GetUID()), data)
	eb.release()
	if err != nil {
		s.rollback(alloc)
		return nil, warns, storeErr(err, res.GVR.GroupResource(), m.GetName())
	}
	m.SetResourceVersion(strconv.FormatInt(so.Revision, 10))
	s.nsc.observe(obj, false)
	return obj, warns, nil
}

// prepareCreate sets the kind-specific state a new object starts in. As in
// kube-apiserver, a status sent with a new Pod, Deployment, ReplicaSet or
// Service is dropped (it is the controllers' and agents' to write); Nodes
// keep theirs (agents register with it).
func prepareCreate(obj runtime.Object) {
	switch o := obj.(type) {
	case *appsv1.Deployment:
		o.Status = appsv1.DeploymentStatus{}
	case *appsv1.ReplicaSet:
		o.Status = appsv1.ReplicaSetStatus{}
	case *corev1.Service:
		o.Status = corev1.ServiceStatus{}
	case *corev1.Namespace:
		if len(o.Spec.Finalizers) == 0 {
			o.Spec.Finalizers = []corev1.FinalizerName{corev1.FinalizerKubernetes}
		}
		o.Status = corev1.NamespaceStatus{Phase: corev1.NamespaceActive}
	case *corev1.Pod:
		o.Status = corev1.PodStatus{Phase: corev1.PodPending, QOSClass: qosClass(&o.Spec)}
	}
}

// updateMode says which part of an object a write may change.
type updateMode int

const (
	modeMain     updateMode = iota // spec and metadata; status kept
	modeStatus                     // status only; everything else kept
	modeFinalize                   // namespaces: spec.finalizers only
	modeSystem                     // internal writes (deletion, binding): taken as is
)

var errDryRunDone = errors.New("dry run")

// update reads the object, lets mutate produce the new version, prepares it
// for mode and writes it, retrying on concurrent writes. An object whose
// deletion was only waiting for finalizers is removed once they are gone.
func (s *Server) update(ctx context.Context, q request, mode updateMode, mutate func(cur runtime.Object) (runtime.Object, error), dry bool) (runtime.Object, []string, error) {
	key := objectKey(q.res, q.ns, q.name)
	var (
		warns     []string
		alloc     *allocation
		result    runtime.Object
		oldObj    runtime.Object
		deleteNow bool
	)
	so, err := s.store.GuaranteedUpdate(ctx, key, func(cur *store.Object) ([]byte, error) {
		s.rollback(alloc)
		alloc = nil
		old, err := s.decode(q.res, cur)
		if err != nil {
			return nil, err
		}
		newObj, err := mutate(old.DeepCopyObject())
		if err != nil {
			return nil, err
		}
		final, w, a, del, err := s.prepareUpdate(ctx, q, mode, old, newObj, cur.Revision)
		warns, alloc, deleteNow = w, a, del
		if err != nil {
			return nil, err
		}
		oldObj, result = old, final
		if dry {
			return nil, errDryRunDone
		}
		m, _ := meta.Accessor(final)
		m.SetResourceVersion("")
		data, err := encodeFor(q.res, final)
		return data, err
	})
	if errors.Is(err, errDryRunDone) {
		s.rollback(alloc)
		return result, warns, nil
	}
	if err != nil {
		s.rollback(alloc)
		return nil, warns, storeErr(err, q.gr(), q.name)
	}
	if svc, ok := result.(*corev1.Service); ok {
		s.releaseUnused(oldObj.(*corev1.Service), svc)
	}
	out, err := s.decode(q.res, so)
	if err != nil {
		return nil, warns, err
	}
	s.nsc.observe(out, false)
	if deleteNow {
		if do, err := s.store.Delete(ctx, key, store.Preconditions{Revision: so.Revision}); err == nil {
			if o, err := s.decode(q.res, do); err == nil {
				out = o
			}
			s.afterDelete(out)
		} else if !errors.Is(err, store.ErrNotFound) && !errors.Is(err, store.ErrConflict) {
			return nil, warns, storeErr(err, q.gr(), q.name)
		}
	}
	return out, warns, nil
}

// prepareUpdate turns the client's new version into the one to store.
func (s *Server) prepareUpdate(ctx context.Context, q request, mode updateMode, old, newObj runtime.Object, rev int64) (runtime.Object, []string, *allocation, bool, error) {
	gk := q.res.GVK().GroupKind()
	om, err := meta.Accessor(old)
	if err != nil {
		return nil, nil, nil, false, err
	}
	nm, err := meta.Accessor(newObj)
	if err != nil {
		return nil, nil, nil, false, apierrors.NewBadRequest(err.Error())
	}
	if rv := nm.GetResourceVersion(); rv != "" && rv != strconv.FormatInt(rev, 10) {
		return nil, nil, nil, false, errConflict(q.gr(), q.name)
	}
	if uid := nm.GetUID(); uid != "" && uid != om.GetUID() {
		return nil, nil, nil, false, apierrors.NewConflict(q.gr(), q.name, fmt.Errorf("Precondition failed: UID in precondition: %v, UID in object meta: %v", uid, om.GetUID()))
	}
	newObj.GetObjectKind().SetGroupVersionKind(q.res.GVK())
	if mode == modeSystem {
		return newObj, nil, nil, shouldRemove(newObj), nil
	}
	final := newObj
	switch mode {
	case modeStatus:
		final = old.DeepCopyObject()
		copyField(final, newObj, "Status")
	case modeFinalize:
		final = old.DeepCopyObject()
		if ns, ok := final.(*corev1.Namespace); ok {
			ns.Spec.Finalizers = newObj.(*corev1.Namespace).Spec.Finalizers
		}
	case modeMain:
		nm.SetName(om.GetName())
		nm.SetNamespace(om.GetNamespace())
		nm.SetUID(om.GetUID())
		nm.SetCreationTimestamp(om.GetCreationTimestamp())
		nm.SetDeletionTimestamp(om.GetDeletionTimestamp())
		nm.SetDeletionGracePeriodSeconds(om.GetDeletionGracePeriodSeconds())
		nm.SetGeneration(om.GetGeneration())
		copyField(final, old, "Status")
	}
	fm, _ := meta.Accessor(final)
	apivalidation.Default(final, old, s.valOpts)
	apivalidation.DropDisabledFields(final, old, s.valOpts)
	var alloc *allocation
	if svc, ok := final.(*corev1.Service); ok && mode == modeMain {
		var errs field.ErrorList
		if alloc, errs = s.allocateService(svc, old.(*corev1.Service)); len(errs) > 0 {
			return nil, nil, nil, false, apierrors.NewInvalid(gk, q.name, errs)
		}
	}
	if mode == modeMain || mode == modeStatus {
		sub := ""
		if mode == modeStatus {
			sub = "status"
		}
		final = s.trackUpdate(ctx, q.res.GVK(), sub, old, final)
		if fm, err = meta.Accessor(final); err != nil {
			s.rollback(alloc)
			return nil, nil, nil, false, apierrors.NewInternalError(err)
		}
	}
	if mode == modeMain && hasField(final, "Spec") && !equality.Semantic.DeepEqual(getField(final, "Spec").Interface(), getField(old, "Spec").Interface()) {
		fm.SetGeneration(om.GetGeneration() + 1)
	}
	warns, errs := apivalidation.Validate(final, old, s.valOpts)
	if len(errs) > 0 {
		s.rollback(alloc)
		return nil, warns, nil, false, apierrors.NewInvalid(gk, q.name, errs)
	}
	return final, warns, alloc, shouldRemove(final), nil
}

// shouldRemove: a deleted object whose finalizers are all gone (and, for a
// pod, whose graceful deletion is not pending) is removed from the store.
func shouldRemove(obj runtime.Object) bool {
	m, err := meta.Accessor(obj)
	if err != nil || m.GetDeletionTimestamp() == nil || len(m.GetFinalizers()) > 0 {
		return false
	}
	if ns, ok := obj.(*corev1.Namespace); ok && len(ns.Spec.Finalizers) > 0 {
		return false
	}
	if g := m.GetDeletionGracePeriodSeconds(); g != nil && *g > 0 {
		return false
	}
	return true
}

func (s *Server) handleUpdate(w http.ResponseWriter, r *http.Request, q request, mode updateMode) {
	ctx := withWriteInfo(r.Context(), writeInfo{manager: managerFor(r)})
	dr, err := readAndDecode(r, q.res.GVK(), q.res.New())
	if err != nil {
		writeError(w, err)
		return
	}
	m, _ := meta.Accessor(dr.obj)
	if m.GetName() != "" && m.GetName() != q.name {
		writeError(w, apierrors.NewBadRequest(fmt.Sprintf("the name of the object (%s) does not match the name on the URL (%s)", m.GetName(), q.name)))
		return
	}
	m.SetName(q.name)
	if err := setNamespace(dr.obj, q); err != nil {
		writeError(w, err)
		return
	}
	out, warns, err := s.update(ctx, q, mode, func(runtime.Object) (runtime.Object, error) {
		return dr.obj.DeepCopyObject(), nil
	}, dryRun(r))
	addWarnings(w, append(dr.warnings, warns...))
	if err != nil {
		writeError(w, err)
		return
	}
	writeObject(w, r, http.StatusOK, out)
}

// deleteOptions reads DeleteOptions from the body (JSON, YAML or protobuf)
// or, without a body, from the query.
func deleteOptions(r *http.Request) (*metav1.DeleteOptions, error) {
	opts := &metav1.DeleteOptions{}
	body, err := readBody(r)
	if err != nil {
		return nil, err
	}
	if len(strings.TrimSpace(string(body))) > 0 {
		var err error
		if requestMediaType(r) == mediaProtobuf {
			_, _, err = scheme.Codecs.UniversalDeserializer().Decode(body, nil, opts)
		} else {
			err = yaml.Unmarshal(body, opts)
		}
		if err != nil {
			return nil, apierrors.NewBadRequest("invalid DeleteOptions: " + err.Error())
		}
	}
	qv := r.URL.Query()
	if g := qv.Get("gracePeriodSeconds"); g != "" && opts.GracePeriodSeconds == nil {
		n, err := strconv.ParseInt(g, 10, 64)
		if err != nil {
			return nil, apierrors.NewBadRequest("invalid gracePeriodSeconds")
		}
		opts.GracePeriodSeconds = &n
	}
	if p := qv.Get("propagationPolicy"); p != "" && opts.PropagationPolicy == nil {
		pp := metav1.DeletionPropagation(p)
		opts.PropagationPolicy = &pp
	}
	if o := qv.Get("orphanDependents"); o != "" && opts.OrphanDependents == nil {
		b := o == "true"
		opts.OrphanDependents = &b
	}
	if dryRun(r) {
		opts.DryRun = []string{metav1.DryRunAll}
	}
	return opts, nil
}

func (s *Server) handleDelete(w http.ResponseWriter, r *http.Request, q request) {
	opts, err := deleteOptions(r)
	if err != nil {
		writeError(w, err)
		return
	}
	out, err := s.delete(r.Context(), q, opts)
	if err != nil {
		writeError(w, err)
		return
	}
	writeObject(w, r, http.StatusOK, out)
}

var protectedNamespaces = map[string]bool{"default": true, "kube-system": true, "kube-public": true}

// podGrace decides a pod's deletion grace period as kube-apiserver does: a
// pod not bound to a node, or already finished, goes at once.
func podGrace(pod *corev1.Pod, opts *metav1.DeleteOptions) int64 {
	grace := int64(corev1.DefaultTerminationGracePeriodSeconds)
	if pod.Spec.TerminationGracePeriodSeconds != nil {
		grace = *pod.Spec.TerminationGracePeriodSeconds
	}
	if opts.GracePeriodSeconds != nil {
		grace = *opts.GracePeriodSeconds
	}
	if pod.Spec.NodeName == "" || pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
		grace = 0
	}
	if pod.DeletionGracePeriodSeconds != nil && *pod.DeletionGracePeriodSeconds < grace {
		grace = *pod.DeletionGracePeriodSeconds
	}
	if grace < 0 {
		grace = 0
	}
	return grace
}

// delete removes an object, or marks it deleted when finalizers, a
// pod's graceful termination or the garbage collector (propagationPolicy
// Foreground or Orphan) must act first.
func (s *Server) delete(ctx context.Context, q request, opts *metav1.DeleteOptions) (runtime.Object, error) {
	if errs := metav1validation.ValidateDeleteOptions(opts); len(errs) > 0 {
		return nil, apierrors.NewInvalid(schema.GroupKind{Group: metav1.GroupName, Kind: "DeleteOptions"}, "", errs)
	}
	obj, _, err := s.getObject(ctx, q)
	if err != nil {
		return nil, err
	}
	m, _ := meta.Accessor(obj)
	if p := opts.Preconditions; p != nil {
		if p.UID != nil && *p.UID != m.GetUID() {
			return nil, apierrors.NewConflict(q.gr(), q.name, fmt.Errorf("Precondition failed: UID in precondition: %v, UID in object meta: %v", *p.UID, m.GetUID()))
		}
		if p.ResourceVersion != nil && *p.ResourceVersion != m.GetResourceVersion() {
			return nil, apierrors.NewConflict(q.gr(), q.name, fmt.Errorf("Precondition failed: ResourceVersion in precondition: %v, ResourceVersion in object meta: %v", *p.ResourceVersion, m.GetResourceVersion()))
		}
	}
	if _, ok := obj.(*corev1.Namespace); ok && protectedNamespaces[q.name] {
		return nil, apierrors.NewForbidden(q.gr(), q.name, errors.New("this namespace may not be deleted"))
	}
	now := time.Now()
	if len(opts.DryRun) > 0 {
		markDeleted(obj, opts, now)
		return obj, nil
	}
	if markDeleted(obj.DeepCopyObject(), opts, now) {
		out, _, err := s.update(ctx, q, modeSystem, func(cur runtime.Object) (runtime.Object, error) {
			if cm, err := meta.Accessor(cur); err == nil {
				cm.SetResourceVersion("")
			}
			// When the object no longer needs to wait (a concurrent
			// write removed its finalizers), it is marked all the same
			// and update removes it.
			markDeleted(cur, opts, now)
			return cur, nil
		}, false)
		return out, err
	}
	pre := store.Preconditions{}
	if p := opts.Preconditions; p != nil && p.ResourceVersion != nil {
		pre.Revision, _ = strconv.ParseInt(*p.ResourceVersion, 10, 64)
	}
	if p := opts.Preconditions; p != nil && p.UID != nil {
		pre.UID = string(*p.UID)
	}
	do, err := s.store.Delete(ctx, objectKey(q.res, q.ns, q.name), pre)
	if err != nil {
		return nil, storeErr(err, q.gr(), q.name)
	}
	out, err := s.decode(q.res, do)
	if err != nil {
		return nil, err
	}
	s.afterDelete(out)
	return out, nil
}

// markDeleted applies a delete request to obj as kube-apiserver does and
// reports whether the object must stay for now: it sets the finalizers the
// propagation policy calls for (see deletionFinalizers), and when anything
// is pending (finalizers, a namespace's spec.finalizers, a pod's grace
// period) it sets deletionTimestamp and deletionGracePeriodSeconds (0, or
// the pod's grace, only ever shortened), bumps a non-zero generation the
// first time and puts a namespace in phase Terminating.
func markDeleted(obj runtime.Object, opts *metav1.DeleteOptions, now time.Time) bool {
	m, err := meta.Accessor(obj)
	if err != nil {
		return false
	}
	grace := int64(0)
	if pod, ok := obj.(*corev1.Pod); ok {
		grace = podGrace(pod, opts)
	}
	if fins, changed := deletionFinalizers(m.GetFinalizers(), opts); changed {
		m.SetFinalizers(fins)
	}
	stay := len(m.GetFinalizers()) > 0 || grace > 0
	ns, isNS := obj.(*corev1.Namespace)
	if isNS && len(ns.Spec.Finalizers) > 0 {
		stay = true
	}
	if m.GetDeletionTimestamp() == nil && m.GetGeneration() > 0 {
		m.SetGeneration(m.GetGeneration() + 1)
	}
	if m.GetDeletionTimestamp() == nil || grace < derefGrace(m.GetDeletionGracePeriodSeconds()) {
		ts := metav1.NewTime(now.Add(time.Duration(grace) * time.Second))
		m.SetDeletionTimestamp(&ts)
		m.SetDeletionGracePeriodSeconds(&grace)
	}
	if isNS {
		ns.Status.Phase = corev1.NamespaceTerminating
	}
	return stay
}

// deletionFinalizers decides the garbage collector's finalizers for a
// delete, as kube-apiserver does: an explicit orphanDependents or
// propagationPolicy wins (Orphan: "orphan"; Foreground: "foregroundDeletion";
// Background: neither); without one, a GC finalizer the object already
// carries stays. Other finalizers are kept in order.
func deletionFinalizers(cur []string, opts *metav1.DeleteOptions) ([]string, bool) {
	orphan, foreground := slices.Contains(cur, metav1.FinalizerOrphanDependents), slices.Contains(cur, metav1.FinalizerDeleteDependents)
	switch {
	case opts.OrphanDependents != nil:
		orphan, foreground = *opts.OrphanDependents, false
	case opts.PropagationPolicy != nil:
		orphan = *opts.PropagationPolicy == metav1.DeletePropagationOrphan
		foreground = *opts.PropagationPolicy == metav1.DeletePropagationForeground
	}
	out := make([]string, 0, len(cur)+1)
	for _, f := range cur {
		if f != metav1.FinalizerOrphanDependents && f != metav1.FinalizerDeleteDependents {
			out = append(out, f)
		}
	}
	if orphan {
		out = append(out, metav1.FinalizerOrphanDependents)
	}
	if foreground {
		out = append(out, metav1.FinalizerDeleteDependents)
	}
	if sets.New(out...).Equal(sets.New(cur...)) {
		return cur, false
	}
	return out, true
}

func derefGrace(g *int64) int64 {
	if g == nil {
		return 1 << 62
	}
	return *g
}

// afterDelete frees what a removed object held. obj carries the deleting
// revision.
func (s *Server) afterDelete(obj runtime.Object) {
	s.nsc.observe(obj, true)
	if svc, ok := obj.(*corev1.Service); ok {
		s.releaseUnused(svc, nil)
	}
}

func (s *Server) handleDeleteCollection(w http.ResponseWriter, r *http.Request, q request) {
	query := r.URL.Query()
	sel, err := parseSelector(query.Get("labelSelector"), query.Get("fieldSelector"), q.res.New())
	if err != nil {
		writeError(w, err)
		return
	}
	opts, err := deleteOptions(r)
	if err != nil {
		writeError(w, err)
		return
	}
	list, err := s.list(r.Context(), q.res, store.ListOptions{Prefix: collectionPrefix(q.res, q.ns)}, sel)
	if err != nil {
		writeError(w, storeErr(err, q.gr(), ""))
		return
	}
	items, _ := meta.ExtractList(list)
	var out []runtime.Object
	for _, it := range items {
		m, _ := meta.Accessor(it)
		o, err := s.delete(r.Context(), request{res: q.res, ns: m.GetNamespace(), name: m.GetName()}, opts)
		if err != nil {
			if apierrors.IsNotFound(err) {
				continue
			}
			writeError(w, err)
			return
		}
		out = append(out, o)
	}
	res := q.res.NewList()
	_ = meta.SetList(res, out)
	res.GetObjectKind().SetGroupVersionKind(q.res.GVR.GroupVersion().WithKind(q.res.ListKind))
	if lm, err := meta.ListAccessor(res); err == nil {
		lm.SetResourceVersion(strconv.FormatInt(s.store.CurrentRevision(), 10))
	}
	writeObject(w, r, http.StatusOK, res)
}

// qosClass is the pod's QoS class, computed as the kubelet does for the
// common cases (requests equal to limits for every container: Guaranteed).
func qosClass(spec *corev1.PodSpec) corev1.PodQOSClass {
	any, guaranteed := false, true
	for _, c := range append(append([]corev1.Container{}, spec.InitContainers...), spec.Containers...) {
		if len(c.Resources.Requests) > 0 || len(c.Resources.Limits) > 0 {
			any = true
		}
		for _, rn := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
			l, hasL := c.Resources.Limits[rn]
			r, hasR := c.Resources.Requests[rn]
			if !hasL || (hasR && r.Cmp(l) != 0) {
				guaranteed = false
			}
		}
	}
	switch {
	case !any:
		return corev1.PodQOSBestEffort
	case guaranteed:
		return corev1.PodQOSGuaranteed
	}
	return corev1.PodQOSBurstable
}
