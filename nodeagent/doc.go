// Package nodeagent is a kubelab node: it registers the Node, keeps its Lease,
// runs the pods bound to it in their own network namespaces, and reports
// their status, as the kubelet does.
package nodeagent
