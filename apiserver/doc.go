// Package apiserver serves the Kubernetes API over HTTPS on top of the store:
// discovery, OpenAPI, CRUD, patch, watch, subresources, tables, defaulting and
// validation, authentication and kube-apiserver-shaped Status errors.
package apiserver
