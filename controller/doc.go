// Package controller runs kubelab's workload and cluster controllers
// (ReplicaSet, Deployment, EndpointSlice, node IPAM and lifecycle, garbage
// collection, namespaces), talking to the API only through client-go.
package controller
