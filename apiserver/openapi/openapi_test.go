package openapi

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"

	openapi_v2 "github.com/google/gnostic-models/openapiv2"
	openapi_v3 "github.com/google/gnostic-models/openapiv3"
	"github.com/gorilla/mux"
	"google.golang.org/protobuf/proto"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/managedfields"
	"k8s.io/apimachinery/pkg/util/strategicpatch"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/openapi3"
	"k8s.io/client-go/rest"
	"k8s.io/kube-openapi/pkg/spec3"
	protomodels "k8s.io/kube-openapi/pkg/util/proto"
	"k8s.io/kube-openapi/pkg/util/proto/validation"
	"k8s.io/kube-openapi/pkg/validation/spec"

	"github.com/kubelab/kubelab/apiserver/resources"
)

// newServer serves the OpenAPI handlers for the real resource table.
func newServer(t *testing.T) *httptest.Server {
	t.Helper()
	r := mux.NewRouter()
	if err := Register(r, resources.All); err != nil {
		t.Fatalf("Register: %v", err)
	}
	srv := httptest.NewServer(r)
	t.Cleanup(srv.Close)
	return srv
}

func get(t *testing.T, url, accept string, hdr ...string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

// field walks a util/proto model along a field path, following refs, the
// way kubectl explain does.
func field(t *testing.T, s protomodels.Schema, path ...string) protomodels.Schema {
	t.Helper()
	for _, name := range path {
		for {
			ref, ok := s.(protomodels.Reference)
			if !ok {
				break
			}
			s = ref.SubSchema()
		}
		kind, ok := s.(*protomodels.Kind)
		if !ok {
			t.Fatalf("%s: not an object but %T", s.GetPath(), s)
		}
		if s, ok = kind.Fields[name]; !ok {
			t.Fatalf("%s has no field %q", kind.GetPath(), name)
		}
	}
	return s
}

var itpDoc = corev1.ServiceSpec{}.SwaggerDoc()["internalTrafficPolicy"]

func TestV2JSONExplainsInternalTrafficPolicy(t *testing.T) {
	srv := newServer(t)
	resp, body := get(t, srv.URL+"/openapi/v2", "application/json")
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		t.Fatalf("status %d, content type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	var sw spec.Swagger
	if err := json.Unmarshal(body, &sw); err != nil {
		t.Fatalf("kube-openapi cannot parse the v2 document: %v", err)
	}
	doc, err := openapi_v2.ParseDocument(body)
	if err != nil {
		t.Fatalf("gnostic cannot parse the v2 document: %v", err)
	}
	models, err := protomodels.NewOpenAPIData(doc)
	if err != nil {
		t.Fatalf("util/proto rejects the v2 document: %v", err)
	}
	svc := models.LookupModel("io.k8s.api.core.v1.Service")
	if svc == nil {
		t.Fatal("no io.k8s.api.core.v1.Service")
	}
	itp := field(t, svc, "spec", "internalTrafficPolicy")
	if itpDoc == "" || itp.GetDescription() != itpDoc {
		t.Errorf("internalTrafficPolicy description = %q, want %q", itp.GetDescription(), itpDoc)
	}
	if p, ok := itp.(*protomodels.Primitive); !ok || p.Type != "string" {
		t.Errorf("internalTrafficPolicy is %#v, want a string", itp)
	}
	gvk := svc.GetExtensions()[extGVK]
	if !reflect.DeepEqual(gvk, []interface{}{map[interface{}]interface{}{"group": "", "version": "v1", "kind": "Service"}}) {
		t.Errorf("Service %s = %#v", extGVK, gvk)
	}
}

// client-go's discovery client is what kubectl uses for the v2 document: it
// asks only for protobuf and has no JSON fallback since v0.29.
func TestV2ProtobufThroughClientGo(t *testing.T) {
	srv := newServer(t)
	dc := discovery.NewDiscoveryClientForConfigOrDie(&rest.Config{Host: srv.URL})
	doc, err := dc.OpenAPISchema()
	if err != nil {
		t.Fatalf("OpenAPISchema: %v", err)
	}
	models, err := protomodels.NewOpenAPIData(doc)
	if err != nil {
		t.Fatalf("util/proto rejects the protobuf document: %v", err)
	}
	if d := field(t, models.LookupModel("io.k8s.api.core.v1.Service"), "spec", "internalTrafficPolicy").GetDescription(); d != itpDoc {
		t.Errorf("description over protobuf = %q", d)
	}

	resp, body := get(t, srv.URL+"/openapi/v2", "application/com.github.proto-openapi.spec.v2@v1.0+protobuf")
	if ct := resp.Header.Get("Content-Type"); ct != "application/com.github.proto-openapi.spec.v2.v1.0+protobuf" {
		t.Errorf("protobuf content type = %q", ct)
	}
	var d openapi_v2.Document
	if err := proto.Unmarshal(body, &d); err != nil {
		t.Fatalf("protobuf body: %v", err)
	}
	if resp.Header.Get("Etag") == "" || !strings.Contains(resp.Header.Get("Vary"), "Accept") {
		t.Errorf("headers %v: want Etag and Vary: Accept", resp.Header)
	}
	// The ETag revalidates.
	resp2, _ := get(t, srv.URL+"/openapi/v2", "application/json", "If-None-Match", resp.Header.Get("Etag"))
	if resp2.StatusCode != http.StatusNotModified {
		t.Errorf("If-None-Match: status %d, want 304", resp2.StatusCode)
	}
}

func TestV2NotAcceptable(t *testing.T) {
	srv := newServer(t)
	for accept, want := range map[string]int{
		"text/html":                         http.StatusNotAcceptable,
		"application/xml":                   http.StatusNotAcceptable,
		"*/*":                               http.StatusOK,
		"":                                  http.StatusOK,
		"application/*":                     http.StatusOK,
		"text/html, application/json;q=0.5": http.StatusOK,
	} {
		if resp, _ := get(t, srv.URL+"/openapi/v2", accept); resp.StatusCode != want {
			t.Errorf("Accept %q: status %d, want %d", accept, resp.StatusCode, want)
		}
	}
}

func wantKeys() []string {
	var keys []string
	for _, gv := range resources.GroupVersions() {
		keys = append(keys, newGroupVersion(gv).key)
	}
	return keys
}

func TestV3IndexHashesAndCaching(t *testing.T) {
	srv := newServer(t)
	resp, body := get(t, srv.URL+"/openapi/v3", "application/json")
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("index: status %d, content type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	var index struct {
		Paths map[string]struct {
			ServerRelativeURL string `json:"serverRelativeURL"`
		} `json:"paths"`
	}
	if err := json.Unmarshal(body, &index); err != nil {
		t.Fatal(err)
	}
	for _, key := range wantKeys() {
		u := index.Paths[key].ServerRelativeURL
		if !strings.HasPrefix(u, "/openapi/v3/"+key+"?hash=") {
			t.Fatalf("index entry %q = %q", key, u)
		}
		resp, body := get(t, srv.URL+u, "application/json")
		if resp.StatusCode != 200 {
			t.Fatalf("%s: status %d", u, resp.StatusCode)
		}
		if cc := resp.Header.Get("Cache-Control"); cc != "public, immutable" {
			t.Errorf("%s: Cache-Control %q", u, cc)
		}
		if resp.Header.Get("Expires") == "" || resp.Header.Get("Content-Type") != "application/json" {
			t.Errorf("%s: headers %v", u, resp.Header)
		}
		hash := strings.TrimPrefix(u, "/openapi/v3/"+key+"?hash=")
		if resp.Header.Get("Etag") != `"`+hash+`"` {
			t.Errorf("%s: Etag %q, want the hash", u, resp.Header.Get("Etag"))
		}
		if _, err := openapi_v3.ParseDocument(body); err != nil {
			t.Errorf("%s: gnostic cannot parse: %v", u, err)
		}
		var doc spec3.OpenAPI
		if err := json.Unmarshal(body, &doc); err != nil {
			t.Errorf("%s: spec3 cannot parse: %v", u, err)
		}
		// A stale hash redirects to the current one; no hash means no
		// immutable caching.
		resp, _ = get(t, srv.URL+"/openapi/v3/"+key+"?hash=0123", "application/json")
		if resp.StatusCode != http.StatusMovedPermanently || resp.Header.Get("Location") != u {
			t.Errorf("stale hash: status %d, Location %q", resp.StatusCode, resp.Header.Get("Location"))
		}
		resp, _ = get(t, srv.URL+"/openapi/v3/"+key, "application/json")
		if resp.StatusCode != 200 || resp.Header.Get("Cache-Control") != "" {
			t.Errorf("no hash: status %d, Cache-Control %q", resp.StatusCode, resp.Header.Get("Cache-Control"))
		}
		resp, body = get(t, srv.URL+u, "application/com.github.proto-openapi.spec.v3@v1.0+protobuf")
		var pd openapi_v3.Document
		if err := proto.Unmarshal(body, &pd); err != nil || resp.Header.Get("Content-Type") != "application/com.github.proto-openapi.spec.v3.v1.0+protobuf" {
			t.Errorf("%s protobuf: %v, content type %q", u, err, resp.Header.Get("Content-Type"))
		}
	}
	if resp, _ := get(t, srv.URL+"/openapi/v3/apis/nope/v1", "application/json"); resp.StatusCode != 404 {
		t.Errorf("unknown group version: status %d", resp.StatusCode)
	}
}

// TestV3ExplainThroughClientGo reads the documents the way kubectl explain
// (1.27+) does: client-go's openapi3 root, then util/proto's v3 models.
func TestV3ExplainThroughClientGo(t *testing.T) {
	srv := newServer(t)
	dc := discovery.NewDiscoveryClientForConfigOrDie(&rest.Config{Host: srv.URL})
	root := openapi3.NewRoot(dc.OpenAPIV3())
	gvs, err := root.GroupVersions()
	if err != nil || len(gvs) != len(resources.GroupVersions()) {
		t.Fatalf("GroupVersions = %v, %v", gvs, err)
	}
	core, err := root.GVSpec(schema.GroupVersion{Version: "v1"})
	if err != nil {
		t.Fatalf("GVSpec(v1): %v", err)
	}
	svc := core.Components.Schemas["io.k8s.api.core.v1.Service"]
	if svc == nil {
		t.Fatal("v3 api/v1 has no io.k8s.api.core.v1.Service")
	}
	spec := svc.Properties["spec"]
	if len(spec.AllOf) != 1 || spec.AllOf[0].Ref.String() != "#/components/schemas/io.k8s.api.core.v1.ServiceSpec" {
		t.Fatalf("Service.spec = %#v", spec)
	}
	itp := core.Components.Schemas["io.k8s.api.core.v1.ServiceSpec"].Properties["internalTrafficPolicy"]
	if itp.Description != itpDoc || !itp.Type.Contains("string") {
		t.Errorf("internalTrafficPolicy = %q %v", itp.Description, itp.Type)
	}

	raw, err := dc.OpenAPIV3().Paths()
	if err != nil {
		t.Fatal(err)
	}
	b, err := raw["api/v1"].Schema("application/json")
	if err != nil {
		t.Fatal(err)
	}
	doc, err := openapi_v3.ParseDocument(b)
	if err != nil {
		t.Fatal(err)
	}
	models, err := protomodels.NewOpenAPIV3Data(doc)
	if err != nil {
		t.Fatalf("util/proto rejects the v3 document: %v", err)
	}
	// kube's v3 wraps described references in allOf, which util/proto reads
	// as arbitrary values (kubectl explain walks the JSON instead), so look
	// at ServiceSpec directly.
	if models.LookupModel("io.k8s.api.core.v1.Service") == nil {
		t.Error("v3 models: no Service")
	}
	if d := field(t, models.LookupModel("io.k8s.api.core.v1.ServiceSpec"), "internalTrafficPolicy").GetDescription(); d != itpDoc {
		t.Errorf("v3 models: description %q", d)
	}
}

// TestPatchOperationsAdvertiseFieldValidation checks, for every served kind,
// what kubectl's query-param verifier and apply patcher look for in the v3
// document of its group/version.
func TestPatchOperationsAdvertiseFieldValidation(t *testing.T) {
	docs, err := Build(resources.All)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range resources.All {
		key := newGroupVersion(r.GVR.GroupVersion()).key
		b, _ := docs.V3JSON(key)
		var doc spec3.OpenAPI
		if err := json.Unmarshal(b, &doc); err != nil {
			t.Fatal(err)
		}
		found := false
		for path, item := range doc.Paths.Paths {
			if item.Patch == nil {
				continue
			}
			var gvk map[string]string
			if err := item.Patch.Extensions.GetObject(extGVK, &gvk); err != nil {
				t.Fatalf("%s patch: %v", path, err)
			}
			if gvk["group"] != r.GVR.Group || gvk["version"] != r.GVR.Version || gvk["kind"] != r.Kind {
				continue
			}
			found = true
			hasFV := false
			for _, p := range item.Patch.Parameters {
				hasFV = hasFV || (p.Name == "fieldValidation" && p.In == "query")
			}
			if !hasFV {
				t.Errorf("%s patch has no fieldValidation query parameter", path)
			}
			if item.Patch.RequestBody == nil || item.Patch.RequestBody.Content["application/strategic-merge-patch+json"] == nil {
				t.Errorf("%s patch does not consume strategic merge patches", path)
			}
		}
		if !found {
			t.Errorf("%s: no PATCH operation with its GVK in %s", r.GVK(), key)
		}
		var gvks []map[string]string
		name := defName(reflect.TypeOf(r.New()).Elem())
		if s := doc.Components.Schemas[name]; s == nil {
			t.Errorf("%s: no schema %s", key, name)
		} else if err := s.Extensions.GetObject(extGVK, &gvks); err != nil || len(gvks) != 1 || gvks[0]["kind"] != r.Kind {
			t.Errorf("%s %s = %v (%v)", name, extGVK, gvks, err)
		}
	}
}

func TestPathsForEveryResource(t *testing.T) {
	docs, err := Build(resources.All)
	if err != nil {
		t.Fatal(err)
	}
	var sw spec.Swagger
	if err := json.Unmarshal(docs.V2JSON(), &sw); err != nil {
		t.Fatal(err)
	}
	for _, r := range resources.All {
		gv := newGroupVersion(r.GVR.GroupVersion())
		coll := gv.prefix + "/" + r.GVR.Resource
		if r.Namespaced {
			coll = gv.prefix + "/namespaces/{namespace}/" + r.GVR.Resource
		}
		want := map[string][]string{
			coll:                             {"get", "post", "delete"},
			coll + "/{name}":                 {"get", "put", "patch", "delete"},
			gv.prefix + "/" + r.GVR.Resource: {"get"},
		}
		for _, sub := range r.Subresources {
			switch sub {
			case "status", "scale":
				want[coll+"/{name}/"+sub] = []string{"get", "put", "patch"}
			case "binding", "eviction":
				want[coll+"/{name}/"+sub] = []string{"post"}
			case "log":
				want[coll+"/{name}/"+sub] = []string{"get"}
			case "finalize":
				want[coll+"/{name}/"+sub] = []string{"put"}
			default:
				want[coll+"/{name}/"+sub] = []string{"get", "post"}
			}
		}
		for path, verbs := range want {
			item, ok := sw.Paths.Paths[path]
			if !ok {
				t.Errorf("%s: no path %s", r.GVR, path)
				continue
			}
			ops := map[string]*spec.Operation{"get": item.Get, "post": item.Post, "put": item.Put, "patch": item.Patch, "delete": item.Delete}
			for _, v := range verbs {
				if ops[v] == nil {
					t.Errorf("%s: no %s", path, v)
				} else if ops[v].Extensions[extGVK] == nil || ops[v].Extensions[extAction] == nil {
					t.Errorf("%s %s: missing GVK/action extensions", path, v)
				}
			}
		}
		if p := sw.Paths.Paths[coll+"/{name}"].Patch; p != nil && !reflect.DeepEqual(p.Consumes, patchTypes) {
			t.Errorf("%s patch consumes %v", coll, p.Consumes)
		}
	}
}

// TestDefinitionShapes pins the reflection rules to kube's published shapes.
func TestDefinitionShapes(t *testing.T) {
	docs, err := Build(resources.All)
	if err != nil {
		t.Fatal(err)
	}
	var sw spec.Swagger
	if err := json.Unmarshal(docs.V2JSON(), &sw); err != nil {
		t.Fatal(err)
	}
	b, _ := docs.V3JSON("api/v1")
	var v3 spec3.OpenAPI
	if err := json.Unmarshal(b, &v3); err != nil {
		t.Fatal(err)
	}
	def := func(n string) spec.Schema {
		s, ok := sw.Definitions[n]
		if !ok {
			t.Fatalf("no definition %s", n)
		}
		return s
	}
	prop := func(n, p string) *spec.Schema {
		s, ok := def(n).Properties[p]
		if !ok {
			t.Fatalf("%s has no property %s", n, p)
		}
		return &s
	}
	const core, meta = "io.k8s.api.core.v1.", "io.k8s.apimachinery.pkg.apis.meta.v1."
	tests := []struct {
		name      string
		got, want any
	}{
		{"IntOrString v2", def("io.k8s.apimachinery.pkg.util.intstr.IntOrString").Type, spec.StringOrArray{"string"}},
		{"IntOrString v2 format", def("io.k8s.apimachinery.pkg.util.intstr.IntOrString").Format, "int-or-string"},
		{"IntOrString v3 oneOf", len(v3.Components.Schemas["io.k8s.apimachinery.pkg.util.intstr.IntOrString"].OneOf), 2},
		{"Quantity v2", def("io.k8s.apimachinery.pkg.api.resource.Quantity").Type, spec.StringOrArray{"string"}},
		{"Quantity v3 oneOf", len(v3.Components.Schemas["io.k8s.apimachinery.pkg.api.resource.Quantity"].OneOf), 2},
		{"Time", def(meta + "Time").Format, "date-time"},
		{"RawExtension", def("io.k8s.apimachinery.pkg.runtime.RawExtension").Type, spec.StringOrArray{"object"}},
		{"FieldsV1", def(meta + "FieldsV1").Type, spec.StringOrArray{"object"}},
		{"ObjectMeta.name", prop(meta+"ObjectMeta", "name").Type, spec.StringOrArray{"string"}},
		{"ObjectMeta.labels", prop(meta+"ObjectMeta", "labels").AdditionalProperties.Schema.Type, spec.StringOrArray{"string"}},
		{"ObjectMeta.finalizers list type", prop(meta+"ObjectMeta", "finalizers").Extensions[extListType], "set"},
		{"ObjectMeta.ownerReferences merge key", prop(meta+"ObjectMeta", "ownerReferences").Extensions[extPatchMergeKey], "uid"},
		{"ServicePort.port", prop(core+"ServicePort", "port").Format, "int32"},
		{"ServicePort.targetPort", prop(core+"ServicePort", "targetPort").Ref.String(), "#/definitions/io.k8s.apimachinery.pkg.util.intstr.IntOrString"},
		{"Secret.data", prop(core+"Secret", "data").AdditionalProperties.Schema.Format, "byte"},
		{"ResourceRequirements.limits", prop(core+"ResourceRequirements", "limits").AdditionalProperties.Schema.Ref.String(), "#/definitions/io.k8s.apimachinery.pkg.api.resource.Quantity"},
		{"PodSpec.containers strategy", prop(core+"PodSpec", "containers").Extensions[extPatchStrategy], "merge"},
		{"PodSpec.containers merge key", prop(core+"PodSpec", "containers").Extensions[extPatchMergeKey], "name"},
		{"PodSpec.volumes strategy", prop(core+"PodSpec", "volumes").Extensions[extPatchStrategy], "merge,retainKeys"},
		{"Container.ports map keys", prop(core+"Container", "ports").Extensions[extListMapKeys], []any{"containerPort", "protocol"}},
		{"Container.ports items", prop(core+"Container", "ports").Items.Schema.Ref.String(), "#/definitions/io.k8s.api.core.v1.ContainerPort"},
		{"Container required", def(core + "Container").Required, []string{"name"}},
		{"PodSpec required", def(core + "PodSpec").Required, []string{"containers"}},
		{"DeploymentSpec required", def("io.k8s.api.apps.v1.DeploymentSpec").Required, []string{"selector", "template"}},
		{"ServiceSpec required", def(core + "ServiceSpec").Required, []string(nil)},
		{"Service inlined TypeMeta", prop(core+"Service", "kind").Type, spec.StringOrArray{"string"}},
		{"Volume inlined VolumeSource", prop(core+"Volume", "configMap").Ref.String(), "#/definitions/io.k8s.api.core.v1.ConfigMapVolumeSource"},
		{"Volume inlined description", prop(core+"Volume", "configMap").Description, corev1.VolumeSource{}.SwaggerDoc()["configMap"]},
		{"Deployment description", def("io.k8s.api.apps.v1.Deployment").Description, appsv1.Deployment{}.SwaggerDoc()[""]},
	}
	for _, tt := range tests {
		got, want := tt.got, tt.want
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s = %#v, want %#v", tt.name, got, want)
		}
	}
}

// TestStrategicMergeFromSchemas checks that the patch kubectl computes from
// the served schemas (v3 first, then v2) equals the one the Go structs give.
func TestStrategicMergeFromSchemas(t *testing.T) {
	docs, err := Build(resources.All)
	if err != nil {
		t.Fatal(err)
	}
	pd, err := openapi_v2.ParseDocument(docs.V2JSON())
	if err != nil {
		t.Fatal(err)
	}
	models, err := protomodels.NewOpenAPIData(pd)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		key, def                    string
		obj                         any
		original, modified, current string
	}{
		{"apis/apps/v1", "io.k8s.api.apps.v1.Deployment", &appsv1.Deployment{},
			`{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"web","labels":{"a":"1"}},"spec":{"template":{"spec":{"containers":[{"name":"web","image":"nginx","ports":[{"containerPort":80}],"env":[{"name":"A","value":"1"}]}]}}}}`,
			`{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"web","labels":{"b":"2"}},"spec":{"template":{"spec":{"containers":[{"name":"web","image":"nginx:2","ports":[{"containerPort":8080}],"env":[{"name":"B","value":"2"}]},{"name":"side","image":"busybox"}]}}}}`,
			`{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"web","labels":{"a":"1"},"finalizers":["x"]},"spec":{"replicas":1,"template":{"spec":{"containers":[{"name":"web","image":"nginx","imagePullPolicy":"Always","ports":[{"containerPort":80,"protocol":"TCP"}],"env":[{"name":"A","value":"1"}]}]}}}}`},
		{"api/v1", "io.k8s.api.core.v1.Service", &corev1.Service{},
			`{"apiVersion":"v1","kind":"Service","metadata":{"name":"s"},"spec":{"internalTrafficPolicy":"Local","ports":[{"port":80,"targetPort":8080}],"selector":{"app":"web"}}}`,
			`{"apiVersion":"v1","kind":"Service","metadata":{"name":"s"},"spec":{"internalTrafficPolicy":"Cluster","ports":[{"port":80,"targetPort":"http"},{"port":443}],"selector":{"app":"web2"}}}`,
			`{"apiVersion":"v1","kind":"Service","metadata":{"name":"s"},"spec":{"clusterIP":"10.96.0.10","internalTrafficPolicy":"Local","ports":[{"port":80,"protocol":"TCP","targetPort":8080}],"selector":{"app":"web"}}}`},
	}
	for _, c := range cases {
		structMeta, err := strategicpatch.NewPatchMetaFromStruct(c.obj)
		if err != nil {
			t.Fatal(err)
		}
		want, err := strategicpatch.CreateThreeWayMergePatch([]byte(c.original), []byte(c.modified), []byte(c.current), structMeta, true)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := docs.V3JSON(c.key)
		var doc spec3.OpenAPI
		if err := json.Unmarshal(b, &doc); err != nil {
			t.Fatal(err)
		}
		v3Meta := strategicpatch.PatchMetaFromOpenAPIV3{Schema: doc.Components.Schemas[c.def], SchemaList: doc.Components.Schemas}
		got3, err := strategicpatch.CreateThreeWayMergePatch([]byte(c.original), []byte(c.modified), []byte(c.current), v3Meta, true)
		if err != nil {
			t.Fatalf("%s v3 patch: %v", c.def, err)
		}
		v2Meta := strategicpatch.NewPatchMetaFromOpenAPI(models.LookupModel(c.def))
		got2, err := strategicpatch.CreateThreeWayMergePatch([]byte(c.original), []byte(c.modified), []byte(c.current), v2Meta, true)
		if err != nil {
			t.Fatalf("%s v2 patch: %v", c.def, err)
		}
		if !jsonEqual(t, got3, want) || !jsonEqual(t, got2, want) {
			t.Errorf("%s:\n v3 %s\n v2 %s\n go %s", c.def, got3, got2, want)
		}
	}
}

// TestClientSideValidationV2 runs kubectl's client-side validator (used when
// a server does not advertise fieldValidation) against the v2 models: valid
// manifests pass, typos and missing required fields are reported.
func TestClientSideValidationV2(t *testing.T) {
	docs, err := Build(resources.All)
	if err != nil {
		t.Fatal(err)
	}
	pd, err := openapi_v2.ParseDocument(docs.V2JSON())
	if err != nil {
		t.Fatal(err)
	}
	models, err := protomodels.NewOpenAPIData(pd)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, def, obj string
		wantErrs       []string
	}{
		{"deployment", "io.k8s.api.apps.v1.Deployment", `{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"web","labels":{"a":"b"}},"spec":{"replicas":1,"selector":{"matchLabels":{"app":"web"}},"template":{"metadata":{"labels":{"app":"web"}},"spec":{"containers":[{"name":"web","image":"nginx","ports":[{"containerPort":80}],"resources":{"limits":{"cpu":"100m","memory":1000000}},"readinessProbe":{"httpGet":{"port":"http"}}}]}}}}`, nil},
		{"service", "io.k8s.api.core.v1.Service", `{"apiVersion":"v1","kind":"Service","metadata":{"name":"web"},"spec":{"internalTrafficPolicy":"Local","selector":{"app":"web"},"ports":[{"port":80,"targetPort":8080},{"port":81,"targetPort":"http"}]}}`, nil},
		{"endpointslice", "io.k8s.api.discovery.v1.EndpointSlice", `{"apiVersion":"discovery.k8s.io/v1","kind":"EndpointSlice","metadata":{"name":"web-1"},"addressType":"IPv4","endpoints":[{"addresses":["10.244.1.5"],"conditions":{"ready":true}}]}`, nil},
		{"typo", "io.k8s.api.apps.v1.Deployment", `{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"web"},"spec":{"replica":1,"selector":{},"template":{"spec":{"containers":[{"name":"web"}]}}}}`, []string{`unknown field "replica"`}},
		{"missing container name", "io.k8s.api.core.v1.Pod", `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p"},"spec":{"containers":[{"image":"nginx"}]}}`, []string{`missing required field "name"`}},
		{"wrong type", "io.k8s.api.core.v1.Service", `{"apiVersion":"v1","kind":"Service","metadata":{"name":"s"},"spec":{"ports":[{"port":true}]}}`, []string{"port"}},
	}
	for _, tt := range tests {
		var obj map[string]any
		if err := json.Unmarshal([]byte(tt.obj), &obj); err != nil {
			t.Fatal(err)
		}
		errs := validation.ValidateModel(obj, models.LookupModel(tt.def), tt.def)
		if len(errs) != len(tt.wantErrs) {
			t.Errorf("%s: errors %v, want %d", tt.name, errs, len(tt.wantErrs))
			continue
		}
		for i, e := range errs {
			if !strings.Contains(e.Error(), tt.wantErrs[i]) {
				t.Errorf("%s: error %q, want it to mention %q", tt.name, e, tt.wantErrs[i])
			}
		}
	}
}

// TestTypeConverterForServerSideApply feeds the definitions to the
// structured-merge machinery kube-apiserver uses for server-side apply.
func TestTypeConverterForServerSideApply(t *testing.T) {
	docs, err := Build(resources.All)
	if err != nil {
		t.Fatal(err)
	}
	tc, err := managedfields.NewTypeConverter(docs.Definitions(), false)
	if err != nil {
		t.Fatalf("NewTypeConverter: %v", err)
	}
	objs := map[string]string{
		// The same port number over TCP and UDP is two entries of the map list.
		"service":    `{"apiVersion":"v1","kind":"Service","metadata":{"name":"dns","ownerReferences":[{"apiVersion":"v1","kind":"X","name":"x","uid":"1"}],"finalizers":["a","b"]},"spec":{"ports":[{"port":53,"protocol":"TCP"},{"port":53,"protocol":"UDP"}],"selector":{"a":"b"}}}`,
		"deployment": `{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"web"},"spec":{"selector":{"matchLabels":{"app":"web"}},"template":{"spec":{"containers":[{"name":"web","image":"nginx","ports":[{"containerPort":53,"protocol":"TCP"},{"containerPort":53,"protocol":"UDP"}],"env":[{"name":"A"}]}]}}}}`,
		"node":       `{"apiVersion":"v1","kind":"Node","metadata":{"name":"n"},"status":{"addresses":[{"type":"InternalIP","address":"10.200.0.1"},{"type":"Hostname","address":"n"}],"conditions":[{"type":"Ready","status":"True"}]}}`,
	}
	for name, js := range objs {
		var u unstructured.Unstructured
		if err := json.Unmarshal([]byte(js), &u.Object); err != nil {
			t.Fatal(err)
		}
		if _, err := tc.ObjectToTyped(&u); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	var dup unstructured.Unstructured
	_ = json.Unmarshal([]byte(`{"apiVersion":"v1","kind":"Service","metadata":{"name":"s"},"spec":{"ports":[{"port":80,"protocol":"TCP"},{"port":80,"protocol":"TCP"}]}}`), &dup.Object)
	if _, err := tc.ObjectToTyped(&dup); err == nil {
		t.Error("duplicate Service port keys accepted")
	}
}

func jsonEqual(t *testing.T, a, b []byte) bool {
	var x, y any
	if err := json.Unmarshal(a, &x); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &y); err != nil {
		t.Fatal(err)
	}
	return reflect.DeepEqual(x, y)
}

// A different table gets its own documents (they are shared only between
// identical tables).
func TestRegisterSubsetTable(t *testing.T) {
	svc, _ := resources.Lookup("", "v1", "services")
	r := mux.NewRouter()
	if err := Register(r, []resources.Resource{svc}); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(r)
	defer srv.Close()
	_, body := get(t, srv.URL+"/openapi/v3", "")
	var index struct {
		Paths map[string]any `json:"paths"`
	}
	if err := json.Unmarshal(body, &index); err != nil {
		t.Fatal(err)
	}
	if len(index.Paths) != 1 || index.Paths["api/v1"] == nil {
		t.Errorf("index for a Service-only table: %s", body)
	}
	_, body = get(t, srv.URL+"/openapi/v3/api/v1", "")
	if strings.Contains(string(body), "/pods") || !strings.Contains(string(body), "/namespaces/{namespace}/services/{name}/status") {
		t.Errorf("api/v1 document of a Service-only table has the wrong paths")
	}
}

func TestRegisterRejectsBadTables(t *testing.T) {
	bad := resources.All[0]
	bad.Subresources = []string{"frobnicate"}
	if err := Register(mux.NewRouter(), []resources.Resource{bad}); err == nil {
		t.Error("unknown subresource accepted")
	}
	bad = resources.All[0]
	bad.New = nil
	if err := Register(mux.NewRouter(), []resources.Resource{bad}); err == nil {
		t.Error("missing New accepted")
	}
}

// BenchmarkBuild measures generating all documents (the work Register starts
// in the background).
func BenchmarkBuild(b *testing.B) {
	start := cpuTime()
	for i := 0; i < b.N; i++ {
		if _, err := Build(resources.All); err != nil {
			b.Fatal(err)
		}
	}
	reportCPU(b, start)
}

// cpuTime is the process's user+system CPU time; on a shared machine it is
// a steadier measure of the work than wall time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func reportCPU(b *testing.B, start time.Duration) {
	b.ReportMetric(float64(cpuTime()-start)/float64(time.Millisecond)/float64(b.N), "cpu-ms/op")
}

// BenchmarkV2Protobuf measures the one-time protobuf conversion of v2.
func BenchmarkV2Protobuf(b *testing.B) {
	docs, err := Build(resources.All)
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	start := cpuTime()
	for i := 0; i < b.N; i++ {
		if _, err := v2ToProto(docs.V2JSON()); err != nil {
			b.Fatal(err)
		}
	}
	reportCPU(b, start)
}
