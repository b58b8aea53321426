package apiserver

import (
	"bytes"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"
	"sync"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/runtime/serializer/json"
	"k8s.io/apimachinery/pkg/runtime/serializer/protobuf"
	"k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/yaml"
)

// maxBodyBytes is kube-apiserver's limit for a request body.
const maxBodyBytes = 3 << 20

const (
	mediaJSON     = "application/json"
	mediaYAML     = "application/yaml"
	mediaProtobuf = "application/vnd.kubernetes.protobuf"
)

var (
	strictCodecs = serializer.NewCodecFactory(scheme.Scheme, serializer.EnableStrict)
	jsonSer      = json.NewSerializerWithOptions(json.DefaultMetaFactory, scheme.Scheme, scheme.Scheme, json.SerializerOptions{})
	yamlSer      = json.NewSerializerWithOptions(json.DefaultMetaFactory, scheme.Scheme, scheme.Scheme, json.SerializerOptions{Yaml: true})
	protoSer     = protobuf.NewSerializer(scheme.Scheme, scheme.Scheme)
)

// readBody reads at most maxBodyBytes; a larger body is a 413.
func readBody(r *http.Request) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r.Body, maxBodyBytes+1))
	if err != nil {
		return nil, apierrors.NewBadRequest("reading request body: " + err.Error())
	}
	if len(b) > maxBodyBytes {
		return nil, apierrors.NewRequestEntityTooLargeError("limit is 3145728")
	}
	return b, nil
}

// requestMediaType is the body's media type; none means JSON (kubectl scale
// --current-replicas sends a JSON PUT without Content-Type).
func requestMediaType(r *http.Request) string {
	ct := r.Header.Get("Content-Type")
	if ct == "" {
		return mediaJSON
	}
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return ct
	}
	return mt
}

// errUnsupportedMediaType builds the 415 Status.
func errUnsupportedMediaType(mt string) error {
	return &apierrors.StatusError{ErrStatus: metav1.Status{
		Status: metav1.StatusFailure, Code: http.StatusUnsupportedMediaType,
		Reason:  metav1.StatusReasonUnsupportedMediaType,
		Message: fmt.Sprintf("the body of the request was in an unknown format - accepted media types include: application/json, application/yaml, application/vnd.kubernetes.protobuf (got %q)", mt),
	}}
}

// decodeResult is a decoded request body.
type decodeResult struct {
	obj      runtime.Object
	warnings []string // unknown/duplicate field warnings (fieldValidation=Warn)
}

// decodeBody decodes a JSON, YAML or protobuf body into a new object of the
// resource's kind, enforcing that any kind/apiVersion in it match gvk and
// applying the fieldValidation directive (Strict: 400, Warn: warnings,
// Ignore: nothing; unset behaves as Warn, as in kube-apiserver).
// readAndDecode reads the request body (bounded) and decodes it as gvk.
func readAndDecode(r *http.Request, gvk schema.GroupVersionKind, into runtime.Object) (*decodeResult, error) {
	body, err := readBody(r)
	if err != nil {
		return nil, err
	}
	return decodeBody(r, body, gvk, into)
}

func decodeBody(r *http.Request, body []byte, gvk schema.GroupVersionKind, into runtime.Object) (*decodeResult, error) {
	mt := requestMediaType(r)
	var dec runtime.Decoder
	switch mt {
	case mediaJSON, mediaYAML, "application/merge-patch+json", "application/strategic-merge-patch+json", "application/json-patch+json", "application/apply-patch+yaml":
		dec = strictCodecs.UniversalDeserializer()
	case mediaProtobuf:
		dec = scheme.Codecs.UniversalDeserializer()
	default:
		return nil, errUnsupportedMediaType(mt)
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return nil, apierrors.NewBadRequest("the request body is empty")
	}
	if mt == mediaYAML || mt == "application/apply-patch+yaml" {
		j, err := yaml.YAMLToJSON(body)
		if err != nil {
			return nil, apierrors.NewBadRequest(fmt.Sprintf("%s in version %q cannot be handled as a %s: %v", gvk.Kind, gvk.Version, gvk.Kind, err))
		}
		body = j
	}
	if mt != mediaProtobuf {
		if err := checkTypeMeta(body, gvk); err != nil {
			return nil, err
		}
	}
	obj, _, err := dec.Decode(body, &gvk, into)
	res := &decodeResult{obj: obj}
	if err != nil {
		w, ferr := strictOutcome(r, gvk, err)
		if ferr != nil || obj == nil {
			if ferr == nil {
				ferr = apierrors.NewBadRequest(fmt.Sprintf("%s in version %q cannot be handled as a %s: %v", gvk.Kind, gvk.Version, gvk.Kind, err))
			}
			return nil, ferr
		}
		res.warnings = w
	}
	if obj == nil {
		return nil, apierrors.NewBadRequest("could not decode the request body")
	}
	got := obj.GetObjectKind().GroupVersionKind()
	if got.Kind != "" && got != gvk {
		return nil, apierrors.NewBadRequest(fmt.Sprintf("%s in version %q cannot be handled as a %s: the object kind %q does not match the URL's %q", gvk.Kind, gvk.Version, gvk.Kind, got.GroupVersion().WithKind(got.Kind).String(), gvk.String()))
	}
	obj.GetObjectKind().SetGroupVersionKind(gvk)
	return res, nil
}

// strictOutcome applies fieldValidation to a decoding error: a strict
// decoding error becomes a 400 (Strict), warnings (Warn, the default) or
// nothing (Ignore); any other error is a 400.
func strictOutcome(r *http.Request, gvk schema.GroupVersionKind, err error) ([]string, error) {
	if sde, ok := runtime.AsStrictDecodingError(err); ok {
		switch queryOf(r).Get("fieldValidation") {
		case "Strict":
			return nil, apierrors.NewBadRequest(fmt.Sprintf("%s in version %q cannot be handled as a %s: %v", gvk.Kind, gvk.Version, gvk.Kind, err))
		case "Ignore":
			return nil, nil
		}
		var out []string
		for _, e := range sde.Errors() {
			out = append(out, e.Error())
		}
		return out, nil
	}
	return nil, apierrors.NewBadRequest(fmt.Sprintf("%s in version %q cannot be handled as a %s: %v", gvk.Kind, gvk.Version, gvk.Kind, err))
}

// checkTypeMeta rejects a JSON body whose kind or apiVersion is present
// and does not match the URL's.
func checkTypeMeta(body []byte, gvk schema.GroupVersionKind) error {
	got, err := json.DefaultMetaFactory.Interpret(body)
	if err != nil {
		return apierrors.NewBadRequest(fmt.Sprintf("%s in version %q cannot be handled as a %s: %v", gvk.Kind, gvk.Version, gvk.Kind, err))
	}
	if got.Version != "" && got.GroupVersion() != gvk.GroupVersion() {
		return apierrors.NewBadRequest(fmt.Sprintf("the API version in the data (%s) does not match the expected API version (%s)", got.GroupVersion().String(), gvk.GroupVersion().String()))
	}
	if got.Kind != "" && got.Kind != gvk.Kind {
		return apierrors.NewBadRequest(fmt.Sprintf("the kind in the data (%s) does not match the expected kind (%s)", got.Kind, gvk.Kind))
	}
	return nil
}

// accept describes what the client wants back.
type accept struct {
	table    bool
	yaml     bool
	protobuf bool
	// partial: metadata-only clients (as=PartialObjectMetadata[List]).
	partial bool
	// includeObject for tables.
	includeObject metav1.IncludeObjectPolicy
}

// parseAccept reads the Accept header as a list of media types with
// parameters: a Table is served when one entry asks for as=Table in
// meta.k8s.io; YAML or protobuf only when they come first.
func parseAccept(r *http.Request) accept {
	// client-go's usual values (protobuf for built-in kinds by default,
	// else JSON) and curl's need no parsing.
	switch r.Header.Get("Accept") {
	case "", mediaJSON, "application/json, */*", "*/*":
		return accept{includeObject: metav1.IncludeMetadata}
	case "application/vnd.kubernetes.protobuf,application/json", "application/vnd.kubernetes.protobuf, */*":
		return accept{protobuf: true, includeObject: metav1.IncludeMetadata}
	}
	var a accept
	first := true
	for _, part := range strings.Split(r.Header.Get("Accept"), ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		mt, params, err := mime.ParseMediaType(part)
		if err != nil {
			continue
		}
		if (params["as"] == "PartialObjectMetadata" || params["as"] == "PartialObjectMetadataList") && params["g"] == "meta.k8s.io" {
			a.partial = true
		}
		if params["as"] == "Table" && params["g"] == "meta.k8s.io" && (mt == mediaJSON) {
			if v := params["v"]; v == "v1" || v == "v1beta1" || v == "" {
				a.table = true
			}
		}
		if first {
			switch mt {
			case mediaYAML:
				a.yaml = true
			case mediaProtobuf:
				if params["as"] == "" {
					a.protobuf = true
				}
			}
			first = false
		}
	}
	switch metav1.IncludeObjectPolicy(queryOf(r).Get("includeObject")) {
	case metav1.IncludeNone:
		a.includeObject = metav1.IncludeNone
	case metav1.IncludeObject:
		a.includeObject = metav1.IncludeObject
	default:
		a.includeObject = metav1.IncludeMetadata
	}
	return a
}

// encodeStore serialises an object for the store (protobuf: about three
// times faster to decode than JSON for the list-heavy controllers).
func encodeStore(obj runtime.Object) ([]byte, error) {
	var buf bytes.Buffer
	if err := protoSer.Encode(obj, &buf); err != nil {
		return nil, fmt.Errorf("encode %T: %w", obj, err)
	}
	return buf.Bytes(), nil
}

// encodeBuf is reusable space for encoding one object: the protobuf
// serializer's scratch buffer and the output. Every create and every
// response encodes at least once; fresh buffers for each (grown step by
// step for JSON) were a good part of the handler's garbage, which the
// collector then has to chase on the same two cores as the requests.
type encodeBuf struct {
	alloc runtime.Allocator
	out   bytes.Buffer
}

// maxPooledEncode: a buffer that grew past this (a large list) is left to
// the collector rather than kept in the pool.
const maxPooledEncode = 256 << 10

var encodeBufs = sync.Pool{New: func() any { return new(encodeBuf) }}

func getEncodeBuf() *encodeBuf { return encodeBufs.Get().(*encodeBuf) }

// release returns b to the pool; bytes it returned must no longer be used.
func (b *encodeBuf) release() {
	if b.out.Cap() > maxPooledEncode {
		return
	}
	b.out.Reset()
	encodeBufs.Put(b)
}

// protobuf encodes obj as protobuf into b; the bytes stay valid until the
// next use or release of b.
func (b *encodeBuf) protobuf(obj runtime.Object) ([]byte, error) {
	b.out.Reset()
	if err := protoSer.EncodeWithAllocator(obj, &b.out, &b.alloc); err != nil {
		return nil, fmt.Errorf("encode %T: %w", obj, err)
	}
	return b.out.Bytes(), nil
}

// json encodes obj as JSON into b (see protobuf).
func (b *encodeBuf) json(obj runtime.Object) ([]byte, error) {
	b.out.Reset()
	if err := jsonSer.Encode(obj, &b.out); err != nil {
		return nil, fmt.Errorf("encode %T: %w", obj, err)
	}
	return b.out.Bytes(), nil
}

// decodeStore decodes a stored value into into.
func decodeStore(data []byte, into runtime.Object) (runtime.Object, error) {
	obj, _, err := protoSer.Decode(data, nil, into)
	if err != nil {
		return nil, fmt.Errorf("decode stored %T: %w", into, err)
	}
	return obj, nil
}
