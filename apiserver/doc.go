// Package apiserver serves the Kubernetes API over HTTPS on top of the store:
// discovery, OpenAPI, CRUD, patch, watch, subresources, tables, defaulting and
// validation, authentication and kube-apiserver-shaped Status errors.
//
// Use:
//
//	srv, err := apiserver.New(apiserver.Config{DataDir: dir, Listen: []string{"127.0.0.1:6443"}})
//	go srv.Run(ctx)        // serves until ctx is done
//	<-srv.Ready()          // built-in namespaces exist, listeners serve
//	cfg := srv.LoopbackConfig() // admin client-go config for in-process components
//
// New bootstraps DATA/pki (CA, serving and admin certificates),
// DATA/kubeconfig and DATA/node-token on first start and reuses them after.
// Responses are JSON, YAML or protobuf as the client asks; watches stream
// JSON, Tables, or length-prefixed protobuf WatchEvents
// ("application/vnd.kubernetes.protobuf;stream=watch").
// Objects are stored as protobuf under /<group|core>/<resource>/[<ns>/]<name>;
// metadata.resourceVersion is the store revision. ClusterIPs and NodePorts are
// allocated in memory and rebuilt from the stored Services at start.
//
// Deletion follows kube-apiserver: propagationPolicy Foreground or Orphan
// (or orphanDependents=true) marks the object (deletionTimestamp,
// deletionGracePeriodSeconds 0 or a pod's grace, the finalizer
// "foregroundDeletion" or "orphan") and keeps it; the garbage collector in
// the controller does the dependents' part and lifts the finalizer, and an
// update that removes the last finalizer of a deleted object removes it.
// While deletionTimestamp is set, finalizers can only be removed.
//
// Authorisation: node credentials (system:node:NAME in system:nodes) get
// what kube-apiserver's Node authorizer, system:node role and
// NodeRestriction give a kubelet and kube-proxy: read nodes, pods,
// services, endpoints, endpointslices and namespaces; get the ConfigMaps
// and Secrets their pods use; write their own Node (and status) and their
// own Lease in kube-node-lease; update the status of and delete the pods
// bound to them; record events; discovery, OpenAPI, version and health.
// Anything else is a 403 in kube-apiserver's words, and SelfSubjectAccess
// Reviews (kubectl auth can-i) answer the same.
//
// Known gaps: every other authenticated identity may do everything (no
// RBAC; any client certificate the CA signed is an administrator unless it
// is a node's); NodeRestriction's field-level rules (which labels and
// taints a node may set on itself) are not applied; managedFields are
// tracked from an object's first server-side apply on, not from its
// creation (fieldmanager.go says why); the scale subresource and the
// server's own writes (deletion marks, binding) are not recorded in
// managedFields; services/proxy passes responses through unchanged (no
// rewriting of redirects or links, which kube-apiserver does for HTML).
//
// Server-side apply is apimachinery's field manager, as in kube-apiserver:
// field ownership, removal of fields a manifest drops, conflicts (409, with
// kubectl's "Apply failed with N conflicts") unless force, and
// metadata.managedFields.
// events.k8s.io/v1 Events are stored as core/v1 Events (one object, two
// versions, as in kube-apiserver).
//
// Load: resource requests take a seat among Config.MaxMutatingInflight
// (writes, default 64) or Config.MaxReadonlyInflight (reads, default 128),
// as kube-apiserver's max-in-flight filter; watches, logs, exec, attach,
// port-forward and proxy take none. A request without a seat waits in FIFO
// order, parked, and gets 429 TooManyRequests with Retry-After: 1 only after
// Config.InflightQueueWait (30s); apiserver_current_inqueue_requests and
// apiserver_dropped_requests_total count them. Unlike kube-apiserver,
// system:masters is not exempt (nearly every kubelab client is one).
// Handlers run on pooled goroutines (workers.go) so that a request does
// not grow a fresh stack step by step.
//
// services/NAME[:PORT]/proxy/PATH (PORT a name or number, optionally
// prefixed "http:" or "https:") goes to a random ready address of the
// Service's Endpoints serving that port, without the caller's credentials.
package apiserver
