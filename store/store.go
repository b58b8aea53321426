// Package store is kubelab's durable, versioned object store on bbolt.
//
// It knows nothing of HTTP or of Kubernetes types: it keeps opaque values under
// string keys, stamps every successful write with the next value of one
// cluster-wide revision counter (the API server exposes it as
// metadata.resourceVersion), and lets callers watch changes from any revision
// still kept in its history. It is the only package that imports bbolt, so
// another backend can implement Interface later.
package store

import (
	"context"
	"errors"
)

// Object is one stored value with the bookkeeping the store keeps beside it.
type Object struct {
	Key string
	// UID is supplied on Create and checked by Delete preconditions.
	UID string
	// Value is opaque to the store.
	Value []byte
	// CreateRevision is the revision of the write that created the key.
	CreateRevision int64
	// Revision is the revision of the last write to the key (its resourceVersion).
	Revision int64
}

// EventType says what happened to a key.
type EventType string

const (
	Added    EventType = "ADDED"
	Modified EventType = "MODIFIED"
	Deleted  EventType = "DELETED"
	// Progress carries no object: every event up to Revision that matched the
	// watch has already been delivered (used for bookmarks).
	Progress EventType = "PROGRESS"
)

// Event is one change seen by a watcher. For Deleted, Object is the last value
// with Revision set to the deleting revision. Prev is the value before the
// change (nil for Added), so callers can tell when an object leaves a filter.
type Event struct {
	Type     EventType
	Revision int64
	Object   *Object
	Prev     *Object
}

// Filter selects objects; nil selects everything.
type Filter func(*Object) bool

// ListOptions controls List.
type ListOptions struct {
	// Prefix restricts the list to keys that start with it.
	Prefix string
	// Revision reads the list as of that revision (0 = latest). Only revisions
	// still in history can be read; older ones give ErrTooOld.
	Revision int64
	// Limit caps the number of items returned (0 = no limit).
	Limit int64
	// Continue resumes a previous paginated list; it pins the list's revision.
	Continue string
	Filter   Filter
}

// ListResult is one page of a list.
type ListResult struct {
	Items []*Object
	// Revision is the revision the list was read at.
	Revision int64
	// Continue is non-empty when more items remain.
	Continue string
	// RemainingItemCount is the number of items after this page, when known.
	RemainingItemCount *int64
}

// Preconditions guard Update and Delete; zero fields are not checked.
type Preconditions struct {
	UID      string
	Revision int64
}

// WatchOptions controls Watch.
type WatchOptions struct {
	Prefix string
	// Revision: deliver every change with a revision greater than this one.
	// 0 means "from now".
	Revision int64
	Filter   Filter
}

// Watcher streams events in revision order with no gap and no duplicate.
type Watcher interface {
	// Events is closed when the watch ends (Stop, context done, store closed,
	// or the watcher fell too far behind; then Err says why).
	Events() <-chan Event
	// RequestProgress queues a Progress event, in order, carrying the newest
	// revision whose events have all been delivered.
	RequestProgress()
	Err() error
	Stop()
}

// Interface is what the API server needs from storage. Create and Update
// copy the value they are given: callers may reuse its bytes once the call
// returns (the API server encodes into pooled buffers).
type Interface interface {
	Get(ctx context.Context, key string) (*Object, error)
	List(ctx context.Context, opts ListOptions) (*ListResult, error)
	Create(ctx context.Context, key, uid string, value []byte) (*Object, error)
	// Update replaces the value; pre.Revision/UID, when set, must match.
	Update(ctx context.Context, key string, value []byte, pre Preconditions) (*Object, error)
	// GuaranteedUpdate reads the key, calls tryUpdate with the current object,
	// and writes the returned value, retrying on conflict. tryUpdate returning
	// an error aborts with that error. Returning the same bytes writes nothing.
	GuaranteedUpdate(ctx context.Context, key string, tryUpdate func(cur *Object) ([]byte, error)) (*Object, error)
	Delete(ctx context.Context, key string, pre Preconditions) (*Object, error)
	Watch(ctx context.Context, opts WatchOptions) (Watcher, error)
	// CurrentRevision is the revision of the newest durable write.
	CurrentRevision() int64
	Close() error
}

// Typed errors; test with errors.Is.
var (
	ErrNotFound      = errors.New("store: not found")
	ErrAlreadyExists = errors.New("store: already exists")
	ErrConflict      = errors.New("store: conflict")
	// ErrTooOld: the requested revision was compacted away (API: 410 Gone).
	ErrTooOld = errors.New("store: revision compacted")
	// ErrInvalidContinue: the continue token is malformed (API: 400).
	ErrInvalidContinue = errors.New("store: invalid continue token")
	ErrClosed          = errors.New("store: closed")
)
