package apiserver

import (
	"bytes"
	"fmt"
	"net/http"

	jsonpatch "gopkg.in/evanphx/json-patch.v4"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/strategicpatch"
	"sigs.k8s.io/yaml"
)

// patchType maps the request's Content-Type to a patch kind.
func patchType(r *http.Request) (types.PatchType, error) {
	switch mt := requestMediaType(r); mt {
	case string(types.JSONPatchType), string(types.MergePatchType), string(types.StrategicMergePatchType), string(types.ApplyYAMLPatchType):
		return types.PatchType(mt), nil
	case string(types.ApplyCBORPatchType):
		return "", errUnsupportedMediaType(mt)
	default:
		return "", errUnsupportedMediaType(mt)
	}
}

// applyPatch applies a JSON, merge or strategic merge patch to the JSON
// document cur. dataStruct carries the strategic-merge keys (the typed
// object). Server-side apply goes through the field manager instead
// (fieldmanager.go).
func applyPatch(pt types.PatchType, cur, patch []byte, dataStruct runtime.Object) ([]byte, error) {
	switch pt {
	case types.JSONPatchType:
		p, err := jsonpatch.DecodePatch(patch)
		if err != nil {
			return nil, apierrors.NewBadRequest(err.Error())
		}
		out, err := p.Apply(cur)
		if err != nil {
			return nil, apierrors.NewGenericServerResponse(http.StatusUnprocessableEntity, "", schema.GroupResource{}, "", err.Error(), 0, false)
		}
		return out, nil
	case types.MergePatchType:
		out, err := jsonpatch.MergePatch(cur, patch)
		if err != nil {
			return nil, apierrors.NewBadRequest(err.Error())
		}
		return out, nil
	case types.StrategicMergePatchType:
		out, err := strategicpatch.StrategicMergePatch(cur, patch, dataStruct)
		if err != nil {
			return nil, apierrors.NewBadRequest(err.Error())
		}
		return out, nil
	}
	return nil, errUnsupportedMediaType(string(pt))
}

// patchBody reads the patch, converting an apply YAML body to JSON.
func patchBody(r *http.Request, pt types.PatchType) ([]byte, error) {
	body, err := readBody(r)
	if err != nil {
		return nil, err
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return nil, apierrors.NewBadRequest("the request body is empty")
	}
	if pt == types.ApplyYAMLPatchType {
		if body, err = yaml.YAMLToJSON(body); err != nil {
			return nil, apierrors.NewBadRequest("apply patch: " + err.Error())
		}
	}
	return body, nil
}

// decodePatched decodes a patched JSON document into a typed object,
// applying fieldValidation to unknown fields.
func decodePatched(r *http.Request, data []byte, gvk schema.GroupVersionKind, into runtime.Object) (runtime.Object, []string, error) {
	obj, _, err := strictCodecs.UniversalDeserializer().Decode(data, &gvk, into)
	var warns []string
	if err != nil {
		w, ferr := strictOutcome(r, gvk, err)
		if ferr != nil || obj == nil {
			if ferr == nil {
				ferr = apierrors.NewBadRequest(err.Error())
			}
			return nil, nil, ferr
		}
		warns = w
	}
	return obj, warns, nil
}

func (s *Server) handlePatch(w http.ResponseWriter, r *http.Request, q request, mode updateMode) {
	pt, err := patchType(r)
	if err != nil {
		writeError(w, err)
		return
	}
	patch, err := patchBody(r, pt)
	if err != nil {
		writeError(w, err)
		return
	}
	gvk := q.res.GVK()
	manager, force := managerFor(r), forceParam(r)
	popts := &metav1.PatchOptions{FieldManager: r.URL.Query().Get("fieldManager")}
	if r.URL.Query().Has("force") {
		popts.Force = &force
	}
	if errs := metav1validation.ValidatePatchOptions(popts, pt); len(errs) > 0 {
		writeError(w, apierrors.NewInvalid(schema.GroupKind{Group: metav1.GroupName, Kind: "PatchOptions"}, "", errs))
		return
	}
	apply := pt == types.ApplyYAMLPatchType
	sub := ""
	if mode == modeStatus {
		sub = "status"
	}
	if apply {
		if err := checkTypeMeta(patch, gvk); err != nil {
			writeError(w, err)
			return
		}
	}
	ctx := withWriteInfo(r.Context(), writeInfo{manager: manager, applied: apply})
	var decodeWarns []string
	out, warns, err := s.update(ctx, q, mode, func(cur runtime.Object) (runtime.Object, error) {
		var obj runtime.Object
		if apply {
			var err error
			if obj, err = s.applyConfig(gvk, sub, cur, patch, manager, force); err != nil {
				return nil, err
			}
		} else {
			curJSON, err := runtime.Encode(jsonSer, cur)
			if err != nil {
				return nil, err
			}
			patched, err := applyPatch(pt, curJSON, patch, q.res.New())
			if err != nil {
				return nil, err
			}
			var dw []string
			if obj, dw, err = decodePatched(r, patched, gvk, q.res.New()); err != nil {
				return nil, err
			}
			decodeWarns = dw
		}
		m, err := meta.Accessor(obj)
		if err != nil {
			return nil, err
		}
		cm, _ := meta.Accessor(cur)
		if m.GetName() != cm.GetName() {
			return nil, apierrors.NewBadRequest(fmt.Sprintf("the name of the object (%s) does not match the name on the URL (%s)", m.GetName(), cm.GetName()))
		}
		if m.GetNamespace() != cm.GetNamespace() {
			return nil, apierrors.NewBadRequest("the namespace of the provided object does not match the namespace sent on the request")
		}
		return obj, nil
	}, dryRun(r))
	if apierrors.IsNotFound(err) && apply && mode == modeMain {
		s.applyCreate(w, r.WithContext(ctx), q, patch, manager, force)
		return
	}
	addWarnings(w, append(decodeWarns, warns...))
	if err != nil {
		writeError(w, err)
		return
	}
	writeObject(w, r, http.StatusOK, out)
}

// applyCreate serves server-side apply of an object that does not exist:
// the applied configuration is created, owned by the manager.
func (s *Server) applyCreate(w http.ResponseWriter, r *http.Request, q request, body []byte, manager string, force bool) {
	obj, err := s.applyConfig(q.res.GVK(), "", nil, body, manager, force)
	if err != nil {
		writeError(w, err)
		return
	}
	var warns []string
	m, err := meta.Accessor(obj)
	if err != nil {
		writeError(w, apierrors.NewBadRequest(err.Error()))
		return
	}
	if m.GetName() != "" && m.GetName() != q.name {
		writeError(w, apierrors.NewBadRequest(fmt.Sprintf("the name of the object (%s) does not match the name on the URL (%s)", m.GetName(), q.name)))
		return
	}
	m.SetName(q.name)
	if err := setNamespace(obj, q); err != nil {
		writeError(w, err)
		return
	}
	out, w2, err := s.create(r.Context(), q.res, q.ns, obj, dryRun(r))
	addWarnings(w, append(warns, w2...))
	if err != nil {
		writeError(w, err)
		return
	}
	writeObject(w, r, http.StatusCreated, out)
}
