// Package validation defaults and validates objects the way kube-apiserver
// does for the fields users touch. It is pure: no storage, no allocation
// (ClusterIPs and NodePorts are allocated by the API server before Validate).
package validation

import (
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// Options carries the feature gates that change defaulting and validation.
type Options struct {
	// ServiceInternalTrafficPolicy is the feature gate (default true).
	ServiceInternalTrafficPolicy bool
}

// DefaultOptions are the options with every gate at its default.
func DefaultOptions() Options { return Options{ServiceInternalTrafficPolicy: true} }

// Default fills defaults in place, idempotently. old is nil on create.
func Default(obj, old runtime.Object, opts Options) {}

// DropDisabledFields clears fields whose feature gate is off, unless old
// (nil on create) already carried them.
func DropDisabledFields(obj, old runtime.Object, opts Options) {}

// Validate checks obj (old is nil on create) and returns warnings for the
// client (sent as Warning headers) and field errors (422 Invalid).
func Validate(obj, old runtime.Object, opts Options) (warnings []string, errs field.ErrorList) {
	return nil, nil
}
