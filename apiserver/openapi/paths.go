package openapi

import (
	"fmt"
	"reflect"
	"sort"
	"strings"

	autoscalingv1 "k8s.io/api/autoscaling/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/kube-openapi/pkg/validation/spec"

	"github.com/kubelab/kubelab/apiserver/resources"
)

var (
	mimeJSON     = "application/json"
	produceTypes = []string{mimeJSON, "application/yaml", "application/vnd.kubernetes.protobuf"}
	listProduces = append(append([]string{}, produceTypes...), "application/json;stream=watch", "application/vnd.kubernetes.protobuf;stream=watch")
	watchTypes   = []string{mimeJSON, "application/yaml", "application/vnd.kubernetes.protobuf", "application/json;stream=watch", "application/vnd.kubernetes.protobuf;stream=watch"}
	// Patch body types, in the order kube-apiserver lists them. kubectl
	// picks strategic merge when the PATCH operation consumes it.
	patchTypes = []string{"application/json-patch+json", "application/merge-patch+json", "application/strategic-merge-patch+json", "application/apply-patch+yaml"}
)

// groupVersion carries the naming of one served group/version.
type groupVersion struct {
	gv     schema.GroupVersion
	prefix string // /api/v1, /apis/apps/v1
	key    string // api/v1, apis/apps/v1 (the /openapi/v3 path)
	tag    string // core_v1, apps_v1
	id     string // CoreV1, AppsV1 (operation id infix)
}

func newGroupVersion(gv schema.GroupVersion) groupVersion {
	g := groupVersion{gv: gv}
	group := gv.Group
	if group == "" {
		g.key = "api/" + gv.Version
		group = "core"
	} else {
		g.key = "apis/" + gv.Group + "/" + gv.Version
	}
	g.prefix = "/" + g.key
	short, _, _ := strings.Cut(group, ".")
	g.tag = short + "_" + gv.Version
	g.id = upperFirst(short) + upperFirst(gv.Version)
	return g
}

func upperFirst(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

// builder assembles paths and definitions for a resource table.
type builder struct {
	defs  *definitions
	paths map[string]spec.PathItem
	// roots[gv key] are the definitions the GV's paths refer to directly.
	roots map[string][]string
	// pathGV maps each path to its group/version key.
	pathGV map[string]string
	// gvks collects the x-kubernetes-group-version-kind entries per definition.
	gvks map[string][]map[string]string
}

func newBuilder() *builder {
	return &builder{defs: newDefinitions(), paths: map[string]spec.PathItem{}, roots: map[string][]string{},
		pathGV: map[string]string{}, gvks: map[string][]map[string]string{}}
}

func gvkExt(gvk schema.GroupVersionKind) map[string]string {
	return map[string]string{"group": gvk.Group, "version": gvk.Version, "kind": gvk.Kind}
}

// define adds the Go type of obj as a definition used by gv's paths and
// returns a $ref schema to it.
func (b *builder) define(gv groupVersion, obj any, gvk *schema.GroupVersionKind) (*spec.Schema, error) {
	name, err := b.defs.add(reflect.TypeOf(obj))
	if err != nil {
		return nil, err
	}
	b.roots[gv.key] = append(b.roots[gv.key], name)
	if gvk != nil {
		e := gvkExt(*gvk)
		dup := false
		for _, have := range b.gvks[name] {
			dup = dup || reflect.DeepEqual(have, e)
		}
		if !dup {
			b.gvks[name] = append(b.gvks[name], e)
		}
	}
	return &spec.Schema{SchemaProps: spec.SchemaProps{Ref: spec.MustCreateRef(v2RefPrefix + name)}}, nil
}

// finish stamps the collected GVK extensions onto the definitions, as the
// JSON-shaped values ([]any of map[string]any) that readers of in-memory
// schemas (managedfields, kubectl's patcher) type-assert.
func (b *builder) finish() {
	for name, list := range b.gvks {
		s := b.defs.defs[name]
		sort.Slice(list, func(i, j int) bool {
			return list[i]["group"]+"/"+list[i]["version"]+"/"+list[i]["kind"] < list[j]["group"]+"/"+list[j]["version"]+"/"+list[j]["kind"]
		})
		ext := make([]any, 0, len(list))
		for _, g := range list {
			ext = append(ext, map[string]any{"group": g["group"], "version": g["version"], "kind": g["kind"]})
		}
		s.AddExtension(extGVK, ext)
		b.defs.defs[name] = s
	}
}

func queryParam(name, typ, desc string) spec.Parameter {
	return spec.Parameter{
		ParamProps:        spec.ParamProps{Name: name, In: "query", Description: desc},
		SimpleSchema:      spec.SimpleSchema{Type: typ},
		CommonValidations: spec.CommonValidations{UniqueItems: true},
	}
}

func pathParam(name, desc string) spec.Parameter {
	return spec.Parameter{
		ParamProps:        spec.ParamProps{Name: name, In: "path", Description: desc, Required: true},
		SimpleSchema:      spec.SimpleSchema{Type: "string"},
		CommonValidations: spec.CommonValidations{UniqueItems: true},
	}
}

func bodyParam(s *spec.Schema) spec.Parameter {
	return spec.Parameter{ParamProps: spec.ParamProps{Name: "body", In: "body", Required: true, Schema: s}}
}

var (
	paramPretty          = queryParam("pretty", "string", "If 'true', then the output is pretty printed. Defaults to 'false' unless the user-agent indicates a browser or command-line HTTP tool (curl and wget).")
	paramDryRun          = queryParam("dryRun", "string", "When present, indicates that modifications should not be persisted. Valid values are: - All: all dry run stages will be processed")
	paramFieldManager    = queryParam("fieldManager", "string", "fieldManager is a name associated with the actor or entity that is making these changes.")
	paramFieldValidation = queryParam("fieldValidation", "string", "fieldValidation instructs the server on how to handle objects in the request containing unknown or duplicate fields. Valid values are: - Ignore, - Warn, - Strict.")
	paramForce           = queryParam("force", "boolean", "Force is going to \"force\" Apply requests. It means user will re-acquire conflicting fields owned by other people. Must be unset for non-apply patch requests.")
	listParams           = []spec.Parameter{
		queryParam("allowWatchBookmarks", "boolean", "allowWatchBookmarks requests watch events with type \"BOOKMARK\"."),
		queryParam("continue", "string", "The continue option should be set when retrieving more results from the server."),
		queryParam("fieldSelector", "string", "A selector to restrict the list of returned objects by their fields. Defaults to everything."),
		queryParam("labelSelector", "string", "A selector to restrict the list of returned objects by their labels. Defaults to everything."),
		queryParam("limit", "integer", "limit is a maximum number of responses to return for a list call."),
		queryParam("resourceVersion", "string", "resourceVersion sets a constraint on what resource versions a request may be served from."),
		queryParam("resourceVersionMatch", "string", "resourceVersionMatch determines how resourceVersion is applied to list calls."),
		queryParam("sendInitialEvents", "boolean", "`sendInitialEvents=true` may be set together with `watch=true`."),
		queryParam("timeoutSeconds", "integer", "Timeout for the list/watch call."),
		queryParam("watch", "boolean", "Watch for changes to the described resources and return them as a stream of add, update, and remove notifications."),
	}
	deleteParams = []spec.Parameter{
		paramDryRun,
		queryParam("gracePeriodSeconds", "integer", "The duration in seconds before the object should be deleted. Value must be non-negative integer."),
		queryParam("orphanDependents", "boolean", "Deprecated: please use the PropagationPolicy."),
		queryParam("propagationPolicy", "string", "Whether and how garbage collection will be performed. Acceptable values are: 'Orphan', 'Foreground', 'Background'."),
	}
)

func response(desc string, s *spec.Schema) spec.Response {
	return spec.Response{ResponseProps: spec.ResponseProps{Description: desc, Schema: s}}
}

func responses(codes map[int]spec.Response) *spec.Responses {
	codes[401] = spec.Response{ResponseProps: spec.ResponseProps{Description: "Unauthorized"}}
	return &spec.Responses{ResponsesProps: spec.ResponsesProps{StatusCodeResponses: codes}}
}

func operation(gv groupVersion, action, id, desc string, gvk schema.GroupVersionKind, consumes, produces []string, params []spec.Parameter, resp *spec.Responses) *spec.Operation {
	op := &spec.Operation{OperationProps: spec.OperationProps{
		ID: id, Description: desc, Tags: []string{gv.tag}, Schemes: []string{"https"},
		Consumes: consumes, Produces: produces, Parameters: params, Responses: resp,
	}}
	op.AddExtension(extAction, action)
	op.AddExtension(extGVK, map[string]any{"group": gvk.Group, "version": gvk.Version, "kind": gvk.Kind})
	return op
}

func (b *builder) setPath(gv groupVersion, path string, item spec.PathItem) error {
	if _, dup := b.paths[path]; dup {
		return fmt.Errorf("path %s defined twice", path)
	}
	b.paths[path] = item
	b.pathGV[path] = gv.key
	return nil
}

// addResource adds every path of one served resource and its subresources.
func (b *builder) addResource(r resources.Resource) error {
	if r.New == nil || r.NewList == nil {
		return fmt.Errorf("resource %s: New and NewList are required", r.GVR)
	}
	gv := newGroupVersion(r.GVR.GroupVersion())
	gvk := r.GVK()
	listGVK := r.GVR.GroupVersion().WithKind(r.ListKind)
	obj, err := b.define(gv, r.New(), &gvk)
	if err != nil {
		return err
	}
	list, err := b.define(gv, r.NewList(), &listGVK)
	if err != nil {
		return err
	}
	status, err := b.define(gv, &metav1.Status{}, &schema.GroupVersionKind{Version: "v1", Kind: "Status"})
	if err != nil {
		return err
	}
	gvDelete := gv.gv.WithKind("DeleteOptions")
	delOpts, err := b.define(gv, &metav1.DeleteOptions{}, &gvDelete)
	if err != nil {
		return err
	}
	gvWatch := gv.gv.WithKind("WatchEvent")
	watchEv, err := b.define(gv, &metav1.WatchEvent{}, &gvWatch)
	if err != nil {
		return err
	}
	patch, err := b.define(gv, &metav1.Patch{}, nil)
	if err != nil {
		return err
	}

	kind, plural := r.Kind, r.GVR.Resource
	scope, nsParams := "", []spec.Parameter{}
	collection := gv.prefix + "/" + plural
	watchCollection := gv.prefix + "/watch/" + plural
	if r.Namespaced {
		scope = "Namespaced"
		nsParams = []spec.Parameter{pathParam("namespace", "object name and auth scope, such as for teams and projects")}
		collection = gv.prefix + "/namespaces/{namespace}/" + plural
		watchCollection = gv.prefix + "/watch/namespaces/{namespace}/" + plural
	}
	item := collection + "/{name}"
	nameParam := pathParam("name", "name of the "+kind)
	itemParams := append(append([]spec.Parameter{}, nameParam), nsParams...)
	id := func(verb, suffix string) string { return verb + gv.id + scope + kind + suffix }
	writeParams := func(body *spec.Schema) []spec.Parameter {
		return []spec.Parameter{bodyParam(body), paramDryRun, paramFieldManager, paramFieldValidation}
	}
	patchParams := []spec.Parameter{bodyParam(patch), paramDryRun, paramFieldManager, paramFieldValidation, paramForce}
	objResponses := func(codes ...int) *spec.Responses {
		m := map[int]spec.Response{}
		for _, c := range codes {
			m[c] = response(httpStatusText(c), obj)
		}
		return responses(m)
	}

	// Collection: list, create, deletecollection.
	if err := b.setPath(gv, collection, spec.PathItem{PathItemProps: spec.PathItemProps{
		Parameters: append(append([]spec.Parameter{}, nsParams...), paramPretty),
		Get: operation(gv, "list", id("list", ""), "list or watch objects of kind "+kind, gvk, []string{"*/*"}, listProduces,
			append([]spec.Parameter{}, listParams...), responses(map[int]spec.Response{200: response("OK", list)})),
		Post: operation(gv, "post", id("create", ""), "create a "+kind, gvk, []string{"*/*"}, produceTypes,
			writeParams(obj), objResponses(200, 201, 202)),
		Delete: operation(gv, "deletecollection", id("deleteCollection", ""), "delete collection of "+kind, gvk, []string{"*/*"}, produceTypes,
			append(append([]spec.Parameter{bodyParam(delOpts)}, deleteParams...), listParams...),
			responses(map[int]spec.Response{200: response("OK", status)})),
	}}); err != nil {
		return err
	}
	// Item: read, replace, patch, delete.
	if err := b.setPath(gv, item, spec.PathItem{PathItemProps: spec.PathItemProps{
		Parameters: append(append([]spec.Parameter{}, itemParams...), paramPretty),
		Get: operation(gv, "get", id("read", ""), "read the specified "+kind, gvk, []string{"*/*"}, produceTypes,
			nil, objResponses(200)),
		Put: operation(gv, "put", id("replace", ""), "replace the specified "+kind, gvk, []string{"*/*"}, produceTypes,
			writeParams(obj), objResponses(200, 201)),
		Patch: operation(gv, "patch", id("patch", ""), "partially update the specified "+kind, gvk, patchTypes, produceTypes,
			patchParams, objResponses(200, 201)),
		Delete: operation(gv, "delete", id("delete", ""), "delete a "+kind, gvk, []string{"*/*"}, produceTypes,
			append([]spec.Parameter{bodyParam(delOpts)}, deleteParams...),
			responses(map[int]spec.Response{200: response("OK", status), 202: response("Accepted", status)})),
	}}); err != nil {
		return err
	}
	// Watch paths (deprecated in kube but still published and served).
	watchOp := func(action, verbID, desc string) *spec.Operation {
		return operation(gv, action, verbID, desc, gvk, []string{"*/*"}, watchTypes, nil,
			responses(map[int]spec.Response{200: response("OK", watchEv)}))
	}
	if err := b.setPath(gv, watchCollection, spec.PathItem{PathItemProps: spec.PathItemProps{
		Parameters: append(append(append([]spec.Parameter{}, listParams...), nsParams...), paramPretty),
		Get:        watchOp("watchlist", id("watch", "List"), "watch individual changes to a list of "+kind+". deprecated: use the 'watch' parameter with a list operation instead."),
	}}); err != nil {
		return err
	}
	if err := b.setPath(gv, watchCollection+"/{name}", spec.PathItem{PathItemProps: spec.PathItemProps{
		Parameters: append(append(append([]spec.Parameter{}, listParams...), itemParams...), paramPretty),
		Get:        watchOp("watch", id("watch", ""), "watch changes to an object of kind "+kind+". deprecated: use the 'watch' parameter with a list operation instead, filtered to a single item with the 'fieldSelector' parameter."),
	}}); err != nil {
		return err
	}
	// Namespaced kinds are also listed across all namespaces.
	if r.Namespaced {
		all := gv.prefix + "/" + plural
		allID := func(verb string) string { return verb + gv.id + kind + "ForAllNamespaces" }
		if err := b.setPath(gv, all, spec.PathItem{PathItemProps: spec.PathItemProps{
			Parameters: append(append([]spec.Parameter{}, listParams...), paramPretty),
			Get: operation(gv, "list", allID("list"), "list or watch objects of kind "+kind, gvk, []string{"*/*"}, listProduces,
				nil, responses(map[int]spec.Response{200: response("OK", list)})),
		}}); err != nil {
			return err
		}
		if err := b.setPath(gv, gv.prefix+"/watch/"+plural, spec.PathItem{PathItemProps: spec.PathItemProps{
			Parameters: append(append([]spec.Parameter{}, listParams...), paramPretty),
			Get:        watchOp("watchlist", allID("watch")+"", "watch individual changes to a list of "+kind+". deprecated: use the 'watch' parameter with a list operation instead."),
		}}); err != nil {
			return err
		}
	}
	for _, sub := range r.Subresources {
		if err := b.addSubresource(gv, r, sub, item, itemParams, id, obj, patch); err != nil {
			return fmt.Errorf("resource %s/%s: %w", r.GVR.Resource, sub, err)
		}
	}
	return nil
}

// addSubresource adds the paths of one subresource of r, with kube's verbs.
func (b *builder) addSubresource(gv groupVersion, r resources.Resource, sub, item string, itemParams []spec.Parameter,
	id func(verb, suffix string) string, obj, patch *spec.Schema) error {
	gvk := r.GVK()
	suffix := upperFirst(sub)
	path := item + "/" + sub
	withPretty := append(append([]spec.Parameter{}, itemParams...), paramPretty)
	writeParams := func(body *spec.Schema) []spec.Parameter {
		return []spec.Parameter{bodyParam(body), paramDryRun, paramFieldManager, paramFieldValidation}
	}
	patchParams := []spec.Parameter{bodyParam(patch), paramDryRun, paramFieldManager, paramFieldValidation, paramForce}
	ok := func(s *spec.Schema, codes ...int) *spec.Responses {
		m := map[int]spec.Response{}
		for _, c := range codes {
			m[c] = response(httpStatusText(c), s)
		}
		return responses(m)
	}
	// read/replace/patch of a sub-object (status on the kind, scale on Scale).
	rw := func(s *spec.Schema, k schema.GroupVersionKind, what string) error {
		return b.setPath(gv, path, spec.PathItem{PathItemProps: spec.PathItemProps{
			Parameters: withPretty,
			Get: operation(gv, "get", id("read", suffix), "read "+what+" of the specified "+r.Kind, k, []string{"*/*"}, produceTypes,
				nil, ok(s, 200)),
			Put: operation(gv, "put", id("replace", suffix), "replace "+what+" of the specified "+r.Kind, k, []string{"*/*"}, produceTypes,
				writeParams(s), ok(s, 200, 201)),
			Patch: operation(gv, "patch", id("patch", suffix), "partially update "+what+" of the specified "+r.Kind, k, patchTypes, produceTypes,
				patchParams, ok(s, 200, 201)),
		}})
	}
	str := &spec.Schema{SchemaProps: spec.SchemaProps{Type: []string{"string"}}}
	connect := func(k string, params []spec.Parameter, methods ...string) error {
		cgvk := schema.GroupVersionKind{Version: "v1", Kind: k}
		for _, p := range []string{path, path + "/{path}"} {
			if sub != "proxy" && p != path {
				continue
			}
			pathID := ""
			pp := append([]spec.Parameter{}, itemParams...)
			if p != path {
				pathID = "WithPath"
				pp = append(pp, pathParam("path", "path to the resource"))
			}
			pp = append(pp, params...)
			item := spec.PathItem{PathItemProps: spec.PathItemProps{Parameters: pp}}
			for _, m := range methods {
				op := operation(gv, "connect", "connect"+gv.id+upperFirst(strings.ToLower(m))+scopeOf(r)+r.Kind+suffix+pathID,
					"connect "+m+" requests to "+sub+" of "+r.Kind, cgvk, []string{"*/*"}, []string{"*/*"}, nil, ok(str, 200))
				switch m {
				case "GET":
					item.Get = op
				case "POST":
					item.Post = op
				case "PUT":
					item.Put = op
				case "DELETE":
					item.Delete = op
				case "PATCH":
					item.Patch = op
				case "HEAD":
					item.Head = op
				case "OPTIONS":
					item.Options = op
				}
			}
			if err := b.setPath(gv, p, item); err != nil {
				return err
			}
		}
		return nil
	}
	switch sub {
	case "status":
		return rw(obj, gvk, "status")
	case "scale":
		sgvk := autoscalingv1.SchemeGroupVersion.WithKind("Scale")
		scale, err := b.define(gv, &autoscalingv1.Scale{}, &sgvk)
		if err != nil {
			return err
		}
		return rw(scale, sgvk, "scale")
	case "binding":
		bgvk := corev1.SchemeGroupVersion.WithKind("Binding")
		binding, err := b.define(gv, &corev1.Binding{}, &bgvk)
		if err != nil {
			return err
		}
		return b.setPath(gv, path, spec.PathItem{PathItemProps: spec.PathItemProps{
			Parameters: withPretty,
			Post: operation(gv, "post", id("create", suffix), "create binding of a "+r.Kind, bgvk, []string{"*/*"}, produceTypes,
				writeParams(binding), ok(binding, 200, 201, 202)),
		}})
	case "eviction":
		egvk := policyv1.SchemeGroupVersion.WithKind("Eviction")
		eviction, err := b.define(gv, &policyv1.Eviction{}, &egvk)
		if err != nil {
			return err
		}
		return b.setPath(gv, path, spec.PathItem{PathItemProps: spec.PathItemProps{
			Parameters: withPretty,
			Post: operation(gv, "post", id("create", suffix), "create eviction of a "+r.Kind, egvk, []string{"*/*"}, produceTypes,
				writeParams(eviction), ok(eviction, 200, 201, 202)),
		}})
	case "finalize":
		return b.setPath(gv, path, spec.PathItem{PathItemProps: spec.PathItemProps{
			Parameters: withPretty,
			Put: operation(gv, "put", id("replace", suffix), "replace finalize of the specified "+r.Kind, gvk, []string{"*/*"}, produceTypes,
				writeParams(obj), ok(obj, 200, 201)),
		}})
	case "log":
		params := []spec.Parameter{
			queryParam("container", "string", "The container for which to stream logs. Defaults to only container if there is one container in the pod."),
			queryParam("follow", "boolean", "Follow the log stream of the pod. Defaults to false."),
			queryParam("insecureSkipTLSVerifyBackend", "boolean", "insecureSkipTLSVerifyBackend indicates that the apiserver should not confirm the validity of the serving certificate of the backend it is connecting to."),
			queryParam("limitBytes", "integer", "If set, the number of bytes to read from the server before terminating the log output."),
			queryParam("previous", "boolean", "Return previous terminated container logs. Defaults to false."),
			queryParam("sinceSeconds", "integer", "A relative time in seconds before the current time from which to show logs."),
			queryParam("stream", "string", "Specify which container log stream to return to the client. Acceptable values are \"All\", \"Stdout\" and \"Stderr\"."),
			queryParam("tailLines", "integer", "If set, the number of lines from the end of the logs to show."),
			queryParam("timestamps", "boolean", "If true, add an RFC3339 or RFC3339Nano timestamp at the beginning of every line of log output. Defaults to false."),
		}
		return b.setPath(gv, path, spec.PathItem{PathItemProps: spec.PathItemProps{
			Parameters: append(append(append([]spec.Parameter{}, params...), itemParams...), paramPretty),
			Get: operation(gv, "get", id("read", suffix), "read log of the specified "+r.Kind, gvk, []string{"*/*"},
				[]string{"text/plain", mimeJSON, "application/yaml", "application/vnd.kubernetes.protobuf"}, nil, ok(str, 200)),
		}})
	case "exec", "attach":
		params := []spec.Parameter{
			queryParam("container", "string", "The container in which to execute the command. Defaults to only container if there is only one container in the pod."),
			queryParam("stderr", "boolean", "Redirect the standard error stream of the pod for this call."),
			queryParam("stdin", "boolean", "Redirect the standard input stream of the pod for this call. Defaults to false."),
			queryParam("stdout", "boolean", "Redirect the standard output stream of the pod for this call."),
			queryParam("tty", "boolean", "TTY if true indicates that a tty will be allocated for the exec call. Defaults to false."),
		}
		k := "PodAttachOptions"
		if sub == "exec" {
			k = "PodExecOptions"
			params = append([]spec.Parameter{queryParam("command", "string", "Command is the remote command to execute. argv array. Not executed within a shell.")}, params...)
		}
		return connect(k, params, "GET", "POST")
	case "portforward":
		return connect("PodPortForwardOptions", []spec.Parameter{
			queryParam("ports", "integer", "List of ports to forward Required when using WebSockets"),
		}, "GET", "POST")
	case "proxy":
		return connect(r.Kind+"ProxyOptions", []spec.Parameter{
			queryParam("path", "string", "Path is the URL path to use for the current proxy request."),
		}, "GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")
	}
	return fmt.Errorf("unknown subresource %q", sub)
}

func scopeOf(r resources.Resource) string {
	if r.Namespaced {
		return "Namespaced"
	}
	return ""
}

func httpStatusText(code int) string {
	switch code {
	case 200:
		return "OK"
	case 201:
		return "Created"
	case 202:
		return "Accepted"
	}
	return fmt.Sprint(code)
}
