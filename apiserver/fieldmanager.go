package apiserver

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"unicode"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/managedfields"
	"k8s.io/client-go/applyconfigurations"
	"k8s.io/client-go/kubernetes/scheme"
)

// Field ownership (metadata.managedFields) and server-side apply come
// from apimachinery's field manager, the one kube-apiserver runs, fed with
// the built-in types' structured-merge schema that client-go ships. The
// schema takes a quarter of a second to load, so it is loaded on the first
// write that needs it, not at start.
//
// Unlike kube-apiserver (which tracks every create), kubelab starts
// tracking an object at its first server-side apply, the field manager's
// "skip non-applied" mode: tracking costs a fifth of a create's CPU, and
// creates are most of the write load. The first apply records the fields
// the object already has under the manager "before-first-apply" (so
// applying over them conflicts with that manager); from then on every
// update, patch and status write is recorded under its manager.

type fmKey struct {
	gvk schema.GroupVersionKind
	sub string
}

type fieldManagers struct {
	once sync.Once
	tc   managedfields.TypeConverter
	mu   sync.Mutex
	m    map[fmKey]*managedfields.FieldManager
}

func (f *fieldManagers) get(gvk schema.GroupVersionKind, sub string) (*managedfields.FieldManager, error) {
	f.once.Do(func() { f.tc = applyconfigurations.NewTypeConverter(scheme.Scheme) })
	f.mu.Lock()
	defer f.mu.Unlock()
	k := fmKey{gvk, sub}
	if fm, ok := f.m[k]; ok {
		return fm, nil
	}
	fm, err := managedfields.NewDefaultFieldManager(f.tc, scheme.Scheme, noDefaults{}, scheme.Scheme, gvk, gvk.GroupVersion(), sub, nil)
	if err != nil {
		return nil, fmt.Errorf("field manager for %s: %w", gvk, err)
	}
	if f.m == nil {
		f.m = map[fmKey]*managedfields.FieldManager{}
	}
	f.m[k] = fm
	return fm, nil
}

// noDefaults: kubelab defaults objects itself, after the field manager
// ran (so defaulted fields are owned by nobody, as for a manager that
// never set them).
type noDefaults struct{}

func (noDefaults) Default(runtime.Object) {}

// writeInfo travels with a client's write: the field manager to record it
// under, and whether server-side apply already computed managedFields.
type writeInfo struct {
	manager string
	applied bool
}

type writeInfoKey struct{}

func withWriteInfo(ctx context.Context, wi writeInfo) context.Context {
	return context.WithValue(ctx, writeInfoKey{}, wi)
}

func writeInfoFrom(ctx context.Context) writeInfo {
	wi, _ := ctx.Value(writeInfoKey{}).(writeInfo)
	return wi
}

// managerFor is the request's field manager: ?fieldManager=, else the
// user agent's product name, as kube-apiserver.
func managerFor(r *http.Request) string {
	if m := queryOf(r).Get("fieldManager"); m != "" {
		return m
	}
	ua := strings.Split(r.UserAgent(), "/")[0]
	var b bytes.Buffer
	for _, c := range ua {
		if !unicode.IsPrint(c) {
			continue
		}
		if b.Len() >= 128 {
			break
		}
		b.WriteRune(c)
	}
	return b.String()
}

// trackUpdate records an update by the request's manager in newObj's
// managedFields (live is the stored object); the field manager leaves
// objects that were never applied untracked.
func (s *Server) trackUpdate(ctx context.Context, gvk schema.GroupVersionKind, sub string, live, newObj runtime.Object) runtime.Object {
	wi := writeInfoFrom(ctx)
	if wi.manager == "" || wi.applied {
		return newObj
	}
	fm, err := s.fms.get(gvk, sub)
	if err != nil {
		logWarn("managed fields", "err", err)
		return newObj
	}
	if live == nil {
		live = emptyObject(gvk)
	}
	return fm.UpdateNoErrors(live, newObj, wi.manager)
}

func emptyObject(gvk schema.GroupVersionKind) runtime.Object {
	obj, err := scheme.Scheme.New(gvk)
	if err != nil {
		return &unstructured.Unstructured{}
	}
	obj.GetObjectKind().SetGroupVersionKind(gvk)
	return obj
}

// applyConfig merges an apply patch (JSON) into live (nil: the object is
// created) under manager, reporting conflicts unless force.
func (s *Server) applyConfig(gvk schema.GroupVersionKind, sub string, live runtime.Object, patch []byte, manager string, force bool) (runtime.Object, error) {
	fm, err := s.fms.get(gvk, sub)
	if err != nil {
		return nil, apierrors.NewInternalError(err)
	}
	applied := &unstructured.Unstructured{Object: map[string]any{}}
	if err := json.Unmarshal(patch, &applied.Object); err != nil {
		return nil, apierrors.NewBadRequest(fmt.Sprintf("error decoding YAML: %v", err))
	}
	if applied.GetAPIVersion() == "" || applied.GetKind() == "" {
		return nil, apierrors.NewBadRequest(fmt.Sprintf("%s in version %q cannot be handled as a %s: apiVersion and kind must be set in an apply patch", gvk.Kind, gvk.Version, gvk.Kind))
	}
	if live == nil {
		live = emptyObject(gvk)
	}
	out, err := fm.Apply(live, applied, manager, force)
	if err != nil {
		if _, ok := err.(apierrors.APIStatus); ok {
			return nil, err
		}
		return nil, apierrors.NewBadRequest(err.Error())
	}
	return out, nil
}

// forceParam reads ?force=true.
func forceParam(r *http.Request) bool {
	b, _ := strconv.ParseBool(r.URL.Query().Get("force"))
	return b
}
