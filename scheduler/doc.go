// Package scheduler assigns pending pods to nodes, as kube-scheduler does,
// talking to the API only through client-go.
package scheduler
