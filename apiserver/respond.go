package apiserver

import (
	"bytes"
	stdjson "encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/kubelab/kubelab/apiserver/printers"
)

var statusGVK = metav1.SchemeGroupVersion.WithKind("Status")

// toStatus turns any error into the Status kube-apiserver would send.
func toStatus(err error) *metav1.Status {
	var se apierrors.APIStatus
	if errors.As(err, &se) {
		st := se.Status()
		st.Kind, st.APIVersion = "Status", "v1"
		if st.Status == "" {
			st.Status = metav1.StatusFailure
		}
		if st.Code == 0 {
			st.Code = http.StatusInternalServerError
		}
		return &st
	}
	st := apierrors.NewInternalError(err).Status()
	st.Kind, st.APIVersion = "Status", "v1"
	return &st
}

// writeError sends err as a Status with its HTTP code.
func writeError(w http.ResponseWriter, err error) {
	st := toStatus(err)
	if st.Code >= 500 {
		slog.Warn("request failed", "err", err)
	}
	writeRaw(w, int(st.Code), mustJSON(st))
}

func mustJSON(obj runtime.Object) []byte {
	var buf bytes.Buffer
	if err := jsonSer.Encode(obj, &buf); err != nil {
		return []byte(fmt.Sprintf(`{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":%q,"reason":"InternalError","code":500}`, err.Error()))
	}
	return buf.Bytes()
}

func writeRaw(w http.ResponseWriter, code int, body []byte) {
	w.Header().Set("Content-Type", mediaJSON)
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(code)
	_, _ = w.Write(body)
}

// addWarnings emits RFC 7234 warning headers, which kubectl prints.
func addWarnings(w http.ResponseWriter, warnings []string) {
	seen := map[string]bool{}
	for _, msg := range warnings {
		if msg == "" || seen[msg] {
			continue
		}
		seen[msg] = true
		w.Header().Add("Warning", `299 - `+strconv.Quote(strings.ReplaceAll(msg, "\n", " ")))
	}
}

// writeObject answers with obj in the representation the client accepts:
// a Table when asked, else YAML, protobuf or JSON.
func writeObject(w http.ResponseWriter, r *http.Request, code int, obj runtime.Object) {
	a := parseAccept(r)
	if a.table {
		if _, isStatus := obj.(*metav1.Status); !isStatus {
			t, err := printers.ToTable(obj, printers.Options{IncludeObject: a.includeObject})
			if err == nil {
				writeRaw(w, code, mustJSON(t))
				return
			}
			slog.Debug("table conversion failed, sending the object", "err", err)
		}
	}
	if a.partial && !a.table {
		if p, err := toPartial(obj); err == nil {
			obj = p
		}
	}
	switch {
	case a.yaml:
		var buf bytes.Buffer
		if err := yamlSer.Encode(obj, &buf); err == nil {
			w.Header().Set("Content-Type", mediaYAML)
			w.Header().Set("Content-Length", strconv.Itoa(buf.Len()))
			w.WriteHeader(code)
			_, _ = w.Write(buf.Bytes())
			return
		}
	case a.protobuf:
		// Kinds without a protobuf form fall back to JSON, as before.
		if writePooled(w, code, mediaProtobuf, obj, (*encodeBuf).protobuf) == nil {
			return
		}
	}
	if err := writePooled(w, code, mediaJSON, obj, (*encodeBuf).json); err != nil {
		writeError(w, fmt.Errorf("encode response: %w", err))
	}
}

// writePooled answers with obj encoded by enc into a pooled buffer, which
// is safe to reuse once Write returns (the response writer has copied or
// sent the bytes by then). When obj cannot be encoded it writes nothing
// and returns the error.
func writePooled(w http.ResponseWriter, code int, contentType string, obj runtime.Object, enc func(*encodeBuf, runtime.Object) ([]byte, error)) error {
	b := getEncodeBuf()
	defer b.release()
	data, err := enc(b, obj)
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", contentType)
	w.Header().Set("Content-Length", strconv.Itoa(len(data)))
	w.WriteHeader(code)
	_, _ = w.Write(data)
	return nil
}

// writeJSONValue sends a non-runtime.Object value (discovery, version) as JSON.
func writeJSONValue(w http.ResponseWriter, code int, contentType string, v any) {
	b, err := jsonMarshal(v)
	if err != nil {
		writeError(w, err)
		return
	}
	w.Header().Set("Content-Type", contentType)
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(code)
	_, _ = w.Write(b)
}

// errNotFoundPath is kube-apiserver's answer for a path it does not serve.
func errNotFoundPath() error {
	return &apierrors.StatusError{ErrStatus: metav1.Status{
		Status: metav1.StatusFailure, Code: http.StatusNotFound, Reason: metav1.StatusReasonNotFound,
		Message: "the server could not find the requested resource", Details: &metav1.StatusDetails{},
	}}
}

func errMethodNotAllowed(r *http.Request) error {
	return &apierrors.StatusError{ErrStatus: metav1.Status{
		Status: metav1.StatusFailure, Code: http.StatusMethodNotAllowed, Reason: metav1.StatusReasonMethodNotAllowed,
		Message: fmt.Sprintf("the server does not allow this method on the requested resource (%s %s)", r.Method, r.URL.Path),
	}}
}

func jsonMarshal(v any) ([]byte, error) { return stdjson.Marshal(v) }

// toPartial converts an object or list to its metadata-only form.
func toPartial(obj runtime.Object) (runtime.Object, error) {
	if _, ok := obj.(*metav1.Status); ok {
		return obj, nil
	}
	if meta.IsListType(obj) {
		items, err := meta.ExtractList(obj)
		if err != nil {
			return nil, err
		}
		lm, err := meta.ListAccessor(obj)
		if err != nil {
			return nil, err
		}
		out := &metav1.PartialObjectMetadataList{TypeMeta: metav1.TypeMeta{Kind: "PartialObjectMetadataList", APIVersion: "meta.k8s.io/v1"}}
		out.ResourceVersion, out.Continue, out.RemainingItemCount = lm.GetResourceVersion(), lm.GetContinue(), lm.GetRemainingItemCount()
		for _, it := range items {
			m, err := meta.Accessor(it)
			if err != nil {
				return nil, err
			}
			p := meta.AsPartialObjectMetadata(m)
			p.TypeMeta = metav1.TypeMeta{Kind: "PartialObjectMetadata", APIVersion: "meta.k8s.io/v1"}
			out.Items = append(out.Items, *p)
		}
		return out, nil
	}
	m, err := meta.Accessor(obj)
	if err != nil {
		return nil, err
	}
	p := meta.AsPartialObjectMetadata(m)
	p.TypeMeta = metav1.TypeMeta{Kind: "PartialObjectMetadata", APIVersion: "meta.k8s.io/v1"}
	return p, nil
}
