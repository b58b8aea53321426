package openapi

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"

	"k8s.io/kube-openapi/pkg/util"
	"k8s.io/kube-openapi/pkg/validation/spec"
)

// Vendor extensions kubectl and the structured-merge machinery read.
const (
	extGVK           = "x-kubernetes-group-version-kind"
	extPatchStrategy = "x-kubernetes-patch-strategy"
	extPatchMergeKey = "x-kubernetes-patch-merge-key"
	extListType      = "x-kubernetes-list-type"
	extListMapKeys   = "x-kubernetes-list-map-keys"
	extAction        = "x-kubernetes-action"

	v2RefPrefix = "#/definitions/"
)

// Types with their own OpenAPI shape (Quantity, IntOrString, Time, ...)
// announce it through these methods, as kube-openapi's generator expects.
type (
	openAPITyper      interface{ OpenAPISchemaType() []string }
	openAPIFormatter  interface{ OpenAPISchemaFormat() string }
	openAPIV3OneOfer  interface{ OpenAPIV3OneOfTypes() []string }
	swaggerDocumenter interface{ SwaggerDoc() map[string]string }
)

var (
	jsonMarshalerType = reflect.TypeOf((*json.Marshaler)(nil)).Elem()
	byteSliceType     = reflect.TypeOf([]byte(nil))
)

// listOverride corrects list semantics where the list-map keys of the
// Kubernetes types differ from their single patch merge key (facts from the
// +listType/+listMapKey markers of k8s.io/api, which reflection cannot see).
type listOverride struct {
	listType string
	keys     []string
}

var listOverrides = map[string]listOverride{
	"k8s.io/api/core/v1.Container.ports":                     {"map", []string{"containerPort", "protocol"}},
	"k8s.io/api/core/v1.EphemeralContainerCommon.ports":      {"map", []string{"containerPort", "protocol"}},
	"k8s.io/api/core/v1.ServiceSpec.ports":                   {"map", []string{"port", "protocol"}},
	"k8s.io/api/core/v1.PodSpec.topologySpreadConstraints":   {"map", []string{"topologyKey", "whenUnsatisfiable"}},
	"k8s.io/api/core/v1.PodStatus.hostIPs":                   {"atomic", nil},
	"k8s.io/api/core/v1.VolumeHealthStatus.healthConditions": {"map", []string{"status", "reason"}},
	"k8s.io/api/core/v1.PodVolumeHealth.healthConditions":    {"map", []string{"status", "reason"}},
}

// optionalFields are always serialised but marked +optional in k8s.io/api
// (a comment marker reflection cannot see), so they must not be required.
var optionalFields = map[string]bool{
	"k8s.io/api/core/v1.ContainerImage.names":     true,
	"k8s.io/api/core/v1.Event.reportingComponent": true,
	"k8s.io/api/core/v1.Event.reportingInstance":  true,
	"k8s.io/api/core/v1.NodeRuntimeHandler.name":  true,
	"k8s.io/api/discovery/v1.EndpointSlice.ports": true,
}

// definitions collects the v2 definitions of Go types by reflection. It is
// not safe for concurrent use; Register builds one and then only reads it.
type definitions struct {
	defs map[string]spec.Schema
	// v3 holds replacement definitions for types whose OpenAPI v3 shape
	// differs from v2 (oneOf for Quantity and IntOrString).
	v3    map[string]spec.Schema
	names map[reflect.Type]string
}

func newDefinitions() *definitions {
	return &definitions{defs: map[string]spec.Schema{}, v3: map[string]spec.Schema{}, names: map[reflect.Type]string{}}
}

// defName is kube's canonical definition name: the Go package path with
// its domain reversed, then the type name (io.k8s.api.core.v1.Service).
func defName(t reflect.Type) string {
	return util.ToCanonicalName(t.PkgPath() + "." + t.Name())
}

// add registers t (a struct or special type) and everything it reaches,
// returning its definition name.
func (d *definitions) add(t reflect.Type) (string, error) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if name, ok := d.names[t]; ok {
		return name, nil
	}
	if t.Name() == "" || t.PkgPath() == "" {
		return "", fmt.Errorf("type %v has no name to define", t)
	}
	name := defName(t)
	d.names[t] = name
	s, err := d.build(t)
	if err != nil {
		return "", fmt.Errorf("definition %s: %w", name, err)
	}
	d.defs[name] = s
	return name, nil
}

// isSpecial reports whether t gets a definition of its own although it is
// not described by its fields (custom JSON or a declared OpenAPI type).
func isSpecial(t reflect.Type) bool {
	if t.Kind() != reflect.Struct || t.PkgPath() == "" {
		return false
	}
	if _, ok := reflect.New(t).Elem().Interface().(openAPITyper); ok {
		return true
	}
	return t.Implements(jsonMarshalerType) || reflect.PointerTo(t).Implements(jsonMarshalerType)
}

func typeDoc(t reflect.Type) map[string]string {
	if sd, ok := reflect.New(t).Elem().Interface().(swaggerDocumenter); ok {
		return sd.SwaggerDoc()
	}
	return nil
}

func (d *definitions) build(t reflect.Type) (spec.Schema, error) {
	doc := typeDoc(t)
	var s spec.Schema
	s.Description = doc[""]
	v := reflect.New(t).Elem().Interface()
	if typer, ok := v.(openAPITyper); ok {
		s.Type = typer.OpenAPISchemaType()
		if f, ok := v.(openAPIFormatter); ok {
			s.Format = f.OpenAPISchemaFormat()
		}
		if o, ok := v.(openAPIV3OneOfer); ok {
			v3 := spec.Schema{SchemaProps: spec.SchemaProps{Description: s.Description, Format: s.Format}}
			for _, typ := range o.OpenAPIV3OneOfTypes() {
				v3.OneOf = append(v3.OneOf, spec.Schema{SchemaProps: spec.SchemaProps{Type: []string{typ}}})
			}
			d.v3[defName(t)] = v3
		}
		return s, nil
	}
	if isSpecial(t) {
		// Custom JSON with no declared shape (RawExtension, FieldsV1):
		// an arbitrary object, as kube publishes them.
		s.Type = []string{"object"}
		return s, nil
	}
	if t.Kind() != reflect.Struct {
		return s, fmt.Errorf("unsupported kind %v", t.Kind())
	}
	s.Type = []string{"object"}
	s.Properties = map[string]spec.Schema{}
	if err := d.addFields(t, doc, &s); err != nil {
		return s, err
	}
	return s, nil
}

// addFields adds the JSON fields of struct t to s, flattening inlined
// embedded structs the way encoding/json does.
func (d *definitions) addFields(t reflect.Type, doc map[string]string, s *spec.Schema) error {
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		name, opts, _ := strings.Cut(tag, ",")
		if name == "-" {
			continue
		}
		if f.Anonymous && name == "" {
			ft := f.Type
			for ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct && !isSpecial(ft) {
				if err := d.addFields(ft, typeDoc(ft), s); err != nil {
					return err
				}
				continue
			}
		}
		if !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		ps, err := d.fieldSchema(f.Type)
		if err != nil {
			return fmt.Errorf("field %s.%s: %w", t.Name(), f.Name, err)
		}
		ps.Description = doc[name]
		if strategy := f.Tag.Get("patchStrategy"); strategy != "" {
			ps.AddExtension(extPatchStrategy, strategy)
		}
		mergeKey := f.Tag.Get("patchMergeKey")
		if mergeKey != "" {
			ps.AddExtension(extPatchMergeKey, mergeKey)
		}
		if lt, keys := listSemantics(t, name, f, mergeKey); lt != "" {
			ps.AddExtension(extListType, lt)
			if len(keys) > 0 {
				anyKeys := make([]any, len(keys))
				for i, k := range keys {
					anyKeys[i] = k
				}
				ps.AddExtension(extListMapKeys, anyKeys)
			}
		}
		s.Properties[name] = ps
		if isRequired(f, opts) && !optionalFields[t.PkgPath()+"."+t.Name()+"."+name] {
			s.Required = append(s.Required, name)
		}
	}
	return nil
}

// listSemantics derives x-kubernetes-list-type (and map keys) from the patch
// tags: a merge list keyed by a field is a map, a merge list of scalars a set.
func listSemantics(t reflect.Type, name string, f reflect.StructField, mergeKey string) (string, []string) {
	ft := f.Type
	if ft.Kind() != reflect.Slice || ft == byteSliceType {
		return "", nil
	}
	if o, ok := listOverrides[t.PkgPath()+"."+t.Name()+"."+name]; ok {
		return o.listType, o.keys
	}
	if !strings.Contains(f.Tag.Get("patchStrategy"), "merge") {
		return "", nil
	}
	if mergeKey != "" {
		return "map", []string{mergeKey}
	}
	elem := ft.Elem()
	for elem.Kind() == reflect.Pointer {
		elem = elem.Elem()
	}
	if elem.Kind() != reflect.Struct {
		return "set", nil
	}
	return "", nil
}

// isRequired approximates the generator's +optional marker, which is a
// comment: a field is required when it is always serialised (no omitempty).
func isRequired(f reflect.StructField, opts string) bool {
	for _, o := range strings.Split(opts, ",") {
		if o == "omitempty" || o == "omitzero" || o == "inline" {
			return false
		}
	}
	return true
}

// fieldSchema is the schema of a value of type t used inside another type.
func (d *definitions) fieldSchema(t reflect.Type) (spec.Schema, error) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == byteSliceType || (t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.Uint8) {
		return primitive("string", "byte"), nil
	}
	if t.Kind() == reflect.Struct {
		name, err := d.add(t)
		if err != nil {
			return spec.Schema{}, err
		}
		return spec.Schema{SchemaProps: spec.SchemaProps{Ref: spec.MustCreateRef(v2RefPrefix + name)}}, nil
	}
	switch t.Kind() {
	case reflect.String:
		return primitive("string", ""), nil
	case reflect.Bool:
		return primitive("boolean", ""), nil
	case reflect.Int32, reflect.Int16, reflect.Int8, reflect.Uint16, reflect.Uint8:
		return primitive("integer", "int32"), nil
	case reflect.Int, reflect.Int64, reflect.Uint32, reflect.Uint, reflect.Uint64:
		return primitive("integer", "int64"), nil
	case reflect.Float32:
		return primitive("number", "float"), nil
	case reflect.Float64:
		return primitive("number", "double"), nil
	case reflect.Slice, reflect.Array:
		items, err := d.fieldSchema(t.Elem())
		if err != nil {
			return spec.Schema{}, err
		}
		s := primitive("array", "")
		s.Items = &spec.SchemaOrArray{Schema: &items}
		return s, nil
	case reflect.Map:
		if t.Key().Kind() != reflect.String {
			return spec.Schema{}, fmt.Errorf("map key %v is not a string", t.Key())
		}
		values, err := d.fieldSchema(t.Elem())
		if err != nil {
			return spec.Schema{}, err
		}
		s := primitive("object", "")
		s.AdditionalProperties = &spec.SchemaOrBool{Allows: true, Schema: &values}
		return s, nil
	case reflect.Interface:
		// Arbitrary JSON (no such field in the served types today).
		return spec.Schema{}, nil
	}
	return spec.Schema{}, fmt.Errorf("unsupported type %v", t)
}

func primitive(typ, format string) spec.Schema {
	return spec.Schema{SchemaProps: spec.SchemaProps{Type: []string{typ}, Format: format}}
}

// refs calls add for each definition name s refers to, directly or nested.
func refs(s *spec.Schema, add func(string)) {
	if s == nil {
		return
	}
	if r := s.Ref.String(); r != "" {
		add(r[strings.LastIndex(r, "/")+1:])
	}
	for k := range s.Properties {
		p := s.Properties[k]
		refs(&p, add)
	}
	if s.Items != nil {
		refs(s.Items.Schema, add)
		for i := range s.Items.Schemas {
			refs(&s.Items.Schemas[i], add)
		}
	}
	if s.AdditionalProperties != nil {
		refs(s.AdditionalProperties.Schema, add)
	}
	for _, l := range [][]spec.Schema{s.AllOf, s.OneOf, s.AnyOf} {
		for i := range l {
			refs(&l[i], add)
		}
	}
}

// closure returns roots and every definition they reach in defs.
func closure(defs map[string]spec.Schema, roots []string) map[string]bool {
	seen := map[string]bool{}
	var visit func(string)
	visit = func(n string) {
		if seen[n] {
			return
		}
		seen[n] = true
		s, ok := defs[n]
		if !ok {
			return
		}
		refs(&s, visit)
	}
	for _, r := range roots {
		visit(r)
	}
	return seen
}
