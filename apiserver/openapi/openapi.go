// Package openapi generates the OpenAPI v2 and v3 documents for the served
// resources from the k8s.io/api Go types (their field descriptions come from
// the types' SwaggerDoc methods), so kubectl can validate and explain.
//
// Everything is generated once, at Register time: the handlers then serve
// immutable bytes with precomputed hashes, the way kube-apiserver does
// (ETag = hex SHA-512 of the document; v3 URLs carry that hash and are
// served with immutable caching headers).
package openapi

import (
	"bytes"
	"crypto/sha512"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"runtime/debug"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	openapi_v2 "github.com/google/gnostic-models/openapiv2"
	openapi_v3 "github.com/google/gnostic-models/openapiv3"
	"github.com/gorilla/mux"
	"github.com/munnerz/goautoneg"
	"google.golang.org/protobuf/proto"
	"k8s.io/kube-openapi/pkg/openapiconv"
	"k8s.io/kube-openapi/pkg/spec3"
	"k8s.io/kube-openapi/pkg/validation/spec"

	"github.com/kubelab/kubelab/apiserver/resources"
)

// Media types of the protobuf forms (the "@" spelling is what client-go
// asks for; servers answer with the "." spelling).
const (
	v2ProtoDeprecated = "com.github.proto-openapi.spec.v2@v1.0+protobuf"
	v2Proto           = "com.github.proto-openapi.spec.v2.v1.0+protobuf"
	v3ProtoDeprecated = "com.github.proto-openapi.spec.v3@v1.0+protobuf"
	v3Proto           = "com.github.proto-openapi.spec.v3.v1.0+protobuf"
)

// Register adds /openapi/v2, /openapi/v3 and /openapi/v3/{group-version}
// handlers for res to r.
//
// It checks the table at once but generates the documents in the
// background (about 0.1 s of CPU), so the server reaches /readyz without
// waiting; a request that comes before they are ready waits for them.
// Documents are immutable and shared by every Register of the same table in
// the process (tests start many servers).
func Register(r *mux.Router, res []resources.Resource) error {
	if err := checkTable(res); err != nil {
		return err
	}
	s := &server{ready: make(chan struct{})}
	go func() {
		defer close(s.ready)
		start := time.Now()
		s.docs, s.err = cachedBuild(res)
		if s.err != nil {
			slog.Error("openapi generation failed", "err", s.err)
			return
		}
		slog.Debug("openapi documents generated", "took", time.Since(start))
	}()
	s.register(r)
	return nil
}

// builds shares generated documents between Registers of the same table.
var builds sync.Map // tableKey -> *sharedBuild

type sharedBuild struct {
	once sync.Once
	docs *Documents
	err  error
}

func cachedBuild(res []resources.Resource) (*Documents, error) {
	v, _ := builds.LoadOrStore(tableKey(res), &sharedBuild{})
	b := v.(*sharedBuild)
	b.once.Do(func() { b.docs, b.err = Build(res) })
	return b.docs, b.err
}

// tableKey identifies everything in a resource table that shapes the
// documents.
func tableKey(res []resources.Resource) string {
	var sb strings.Builder
	for _, r := range res {
		fmt.Fprintf(&sb, "%s|%s|%s|%t|%v|%T|%T;", r.GVR, r.Kind, r.ListKind, r.Namespaced, r.Subresources, r.New(), r.NewList())
	}
	return sb.String()
}

// subresources Register knows how to describe.
var knownSubresources = map[string]bool{"status": true, "scale": true, "binding": true, "eviction": true,
	"finalize": true, "log": true, "exec": true, "attach": true, "portforward": true, "proxy": true}

// checkTable rejects what Build would reject for the table's shape.
func checkTable(res []resources.Resource) error {
	for _, r := range res {
		if r.New == nil || r.NewList == nil {
			return fmt.Errorf("openapi: resource %s: New and NewList are required", r.GVR)
		}
		for _, sub := range r.Subresources {
			if !knownSubresources[sub] {
				return fmt.Errorf("openapi: resource %s: unknown subresource %q", r.GVR, sub)
			}
		}
	}
	return nil
}

// server serves the documents once the background generation is done.
type server struct {
	ready chan struct{}
	docs  *Documents
	err   error
}

func (s *server) register(r *mux.Router) {
	r.Handle("/openapi/v2", s.wait((*Documents).serveV2)).Methods(http.MethodGet, http.MethodHead)
	r.Handle("/openapi/v3", s.wait((*Documents).serveV3Index)).Methods(http.MethodGet, http.MethodHead)
	r.PathPrefix("/openapi/v3/").Handler(s.wait((*Documents).serveV3)).Methods(http.MethodGet, http.MethodHead)
}

func (s *server) wait(h func(*Documents, http.ResponseWriter, *http.Request)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-s.ready:
		case <-r.Context().Done():
			return
		}
		if s.err != nil {
			http.Error(w, s.err.Error(), http.StatusInternalServerError)
			return
		}
		h(s.docs, w, r)
	})
}

// document is one served document: its JSON, its hash and, built on first
// request, its protobuf form.
type document struct {
	json     []byte
	etag     string
	modified time.Time

	protoOnce sync.Once
	proto     []byte
	protoErr  error
	toProto   func([]byte) ([]byte, error)
}

func newDocument(b []byte, toProto func([]byte) ([]byte, error)) *document {
	sum := sha512.Sum512(b)
	return &document{json: b, etag: fmt.Sprintf("%X", sum), modified: time.Now(), toProto: toProto}
}

func (d *document) protobuf() ([]byte, error) {
	d.protoOnce.Do(func() { d.proto, d.protoErr = d.toProto(d.json) })
	return d.proto, d.protoErr
}

// Documents holds the generated OpenAPI documents.
type Documents struct {
	defs  map[string]spec.Schema
	v2    *document
	v3    map[string]*document // by "api/v1", "apis/apps/v1"
	index *document
}

// V2JSON returns the OpenAPI v2 document.
func (d *Documents) V2JSON() []byte { return d.v2.json }

// Definitions returns the OpenAPI v2 definitions by name, in the form
// k8s.io/apimachinery/pkg/util/managedfields.NewTypeConverter takes (for
// server-side apply with field ownership). The schemas must not be modified.
func (d *Documents) Definitions() map[string]*spec.Schema {
	out := make(map[string]*spec.Schema, len(d.defs))
	for n := range d.defs {
		s := d.defs[n]
		out[n] = &s
	}
	return out
}

// V3JSON returns the OpenAPI v3 document of a group/version key such as
// "api/v1" or "apis/apps/v1".
func (d *Documents) V3JSON(key string) ([]byte, bool) {
	doc, ok := d.v3[key]
	if !ok {
		return nil, false
	}
	return doc.json, true
}

func v2ToProto(b []byte) ([]byte, error) {
	doc, err := openapi_v2.ParseDocument(b)
	if err != nil {
		return nil, fmt.Errorf("parse openapi v2: %w", err)
	}
	return proto.Marshal(doc)
}

func v3ToProto(b []byte) ([]byte, error) {
	doc, err := openapi_v3.ParseDocument(b)
	if err != nil {
		return nil, fmt.Errorf("parse openapi v3: %w", err)
	}
	return proto.Marshal(doc)
}

// kubeVersion is the Kubernetes release matching the k8s.io/api module
// (v0.37.2 -> v1.37.2), the version the documents describe.
func kubeVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, m := range bi.Deps {
			if m.Path == "k8s.io/api" && strings.HasPrefix(m.Version, "v0.") {
				return "v1." + strings.TrimPrefix(m.Version, "v0.")
			}
		}
	}
	return "v1.0.0-unknown"
}

// Build generates the documents for res.
func Build(res []resources.Resource) (*Documents, error) {
	b := newBuilder()
	for _, r := range res {
		if err := b.addResource(r); err != nil {
			return nil, fmt.Errorf("openapi: %w", err)
		}
	}
	b.finish()
	info := &spec.Info{InfoProps: spec.InfoProps{Title: "Kubernetes", Version: kubeVersion()}}
	security := map[string]*spec.SecurityScheme{
		"BearerToken": {SecuritySchemeProps: spec.SecuritySchemeProps{Type: "apiKey", Name: "authorization", In: "header",
			Description: "Bearer Token authentication"}},
	}
	swagger := &spec.Swagger{SwaggerProps: spec.SwaggerProps{
		Swagger: "2.0", Info: info,
		Paths:               &spec.Paths{Paths: b.paths},
		Definitions:         b.defs.defs,
		SecurityDefinitions: security,
		Security:            []map[string][]string{{"BearerToken": {}}},
	}}
	// v2 and v3 share nothing mutable, so marshal them side by side.
	var (
		wg    sync.WaitGroup
		v2    []byte
		v2Err error
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		if v2, v2Err = json.Marshal(swagger); v2Err != nil {
			v2Err = fmt.Errorf("openapi: marshal v2: %w", v2Err)
		}
	}()
	v3docs, v3Err := b.v3Documents(info, security)
	wg.Wait()
	if v2Err != nil {
		return nil, v2Err
	}
	if v3Err != nil {
		return nil, v3Err
	}
	docs := &Documents{defs: b.defs.defs, v2: newDocument(v2, v2ToProto), v3: map[string]*document{}}
	index := struct {
		Paths map[string]map[string]string `json:"paths"`
	}{Paths: map[string]map[string]string{}}
	for key, doc := range v3docs {
		d := newDocument(doc, v3ToProto)
		docs.v3[key] = d
		index.Paths[key] = map[string]string{"serverRelativeURL": "/openapi/v3/" + key + "?hash=" + d.etag}
	}
	ib, err := json.Marshal(index)
	if err != nil {
		return nil, fmt.Errorf("openapi: marshal v3 index: %w", err)
	}
	docs.index = newDocument(ib, nil)
	return docs, nil
}

// v3Documents builds the OpenAPI v3 document of each group/version: its
// paths and the definitions they reach. Each definition is converted and
// marshalled once and shared by every document that includes it.
func (b *builder) v3Documents(info *spec.Info, security map[string]*spec.SecurityScheme) (map[string][]byte, error) {
	schemas := make(map[string][]byte, len(b.defs.defs))
	for name, s := range b.defs.defs {
		v3 := openapiconv.ConvertSchema(&s)
		if special, ok := b.defs.v3[name]; ok {
			// Types with a v3-only shape (oneOf) replace their v2 form.
			v3 = &special
		}
		raw, err := json.Marshal(v3)
		if err != nil {
			return nil, fmt.Errorf("openapi: marshal v3 schema %s: %w", name, err)
		}
		schemas[name] = raw
	}
	infoJSON, err := json.Marshal(info)
	if err != nil {
		return nil, err
	}
	schemes := spec3.SecuritySchemes{}
	for n, sc := range security {
		schemes[n] = openapiconv.ConvertSecurityScheme(sc)
	}
	securityJSON, err := json.Marshal(schemes)
	if err != nil {
		return nil, err
	}
	byGV := map[string]map[string]spec.PathItem{}
	for p, item := range b.paths {
		key := b.pathGV[p]
		if byGV[key] == nil {
			byGV[key] = map[string]spec.PathItem{}
		}
		byGV[key][p] = item
	}
	out := map[string][]byte{}
	for key, paths := range byGV {
		pathsJSON, err := json.Marshal(openapiconv.ConvertPaths(&spec.Paths{Paths: paths}))
		if err != nil {
			return nil, fmt.Errorf("openapi: marshal v3 paths of %s: %w", key, err)
		}
		reach := closure(b.defs.defs, b.roots[key])
		names := make([]string, 0, len(reach))
		for n := range reach {
			names = append(names, n)
		}
		sort.Strings(names)
		var buf bytes.Buffer
		buf.WriteString(`{"openapi":"3.0.0","info":`)
		buf.Write(infoJSON)
		buf.WriteString(`,"paths":`)
		buf.Write(pathsJSON)
		buf.WriteString(`,"components":{"schemas":{`)
		for i, n := range names {
			if i > 0 {
				buf.WriteByte(',')
			}
			q, _ := json.Marshal(n)
			buf.Write(q)
			buf.WriteByte(':')
			buf.Write(schemas[n])
		}
		buf.WriteString(`},"securitySchemes":`)
		buf.Write(securityJSON)
		buf.WriteString(`},"security":[{"BearerToken":[]}]}`)
		out[key] = buf.Bytes()
	}
	return out, nil
}

// negotiate picks json or protobuf from an Accept header; ok is false when
// neither is acceptable (406, as kube-apiserver answers).
func negotiate(accept, protoDeprecated, protoName string) (useProto, ok bool) {
	if accept == "" {
		accept = "*/*"
	}
	for _, c := range goautoneg.ParseAccept(accept) {
		if c.Type != "application" && c.Type != "*" {
			continue
		}
		switch c.SubType {
		case "json", "*":
			return false, true
		case protoDeprecated, protoName:
			return true, true
		}
	}
	return false, false
}

func (d *Documents) serveV2(w http.ResponseWriter, r *http.Request) {
	w.Header().Add("Vary", "Accept")
	useProto, ok := negotiate(r.Header.Get("Accept"), v2ProtoDeprecated, v2Proto)
	if !ok {
		http.Error(w, "openapi v2: acceptable types are application/json and application/"+v2Proto, http.StatusNotAcceptable)
		return
	}
	serveDocument(w, r, d.v2, useProto, "application/"+v2Proto)
}

func (d *Documents) serveV3Index(w http.ResponseWriter, r *http.Request) {
	serveDocument(w, r, d.index, false, "")
}

func (d *Documents) serveV3(w http.ResponseWriter, r *http.Request) {
	key := strings.TrimPrefix(r.URL.Path, "/openapi/v3/")
	doc, found := d.v3[key]
	if !found {
		notFound(w, r.URL.Path)
		return
	}
	w.Header().Add("Vary", "Accept")
	useProto, ok := negotiate(r.Header.Get("Accept"), v3ProtoDeprecated, v3Proto)
	if !ok {
		http.Error(w, "openapi v3: acceptable types are application/json and application/"+v3Proto, http.StatusNotAcceptable)
		return
	}
	if hash := r.URL.Query().Get("hash"); hash != "" {
		if hash != doc.etag {
			// A stale hash: send the client to the current document.
			http.Redirect(w, r, "/openapi/v3/"+key+"?hash="+doc.etag, http.StatusMovedPermanently)
			return
		}
		// The URL names the content exactly, so it may be cached forever.
		w.Header().Set("Cache-Control", "public, immutable")
		w.Header().Set("Expires", time.Now().AddDate(1, 0, 0).UTC().Format(http.TimeFormat))
	}
	serveDocument(w, r, doc, useProto, "application/"+v3Proto)
}

func serveDocument(w http.ResponseWriter, r *http.Request, doc *document, useProto bool, protoType string) {
	body, ctype := doc.json, "application/json"
	if useProto {
		var err error
		if body, err = doc.protobuf(); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		ctype = protoType
	}
	w.Header().Set("Content-Type", ctype)
	w.Header().Set("Etag", strconv.Quote(doc.etag))
	http.ServeContent(w, r, "", doc.modified, bytes.NewReader(body))
}

func notFound(w http.ResponseWriter, path string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusNotFound)
	_ = json.NewEncoder(w).Encode(map[string]any{
		"kind": "Status", "apiVersion": "v1", "metadata": map[string]any{}, "status": "Failure",
		"message": fmt.Sprintf("the server could not find the requested resource (get %s)", path),
		"reason":  "NotFound", "details": map[string]any{}, "code": http.StatusNotFound,
	})
}
