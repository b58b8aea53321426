// Package printers renders objects as meta.k8s.io/v1 Tables with the columns
// kube-apiserver uses, so `kubectl get` prints real columns.
//
// The server always produces every column, wide ones included: kubectl
// itself hides the priority>0 columns unless -o wide is asked for, exactly as
// with a real kube-apiserver.
package printers

import (
	"fmt"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/scheme"
)

// Options controls ToTable.
type Options struct {
	// IncludeObject: None, Metadata (default: PartialObjectMetadata rows) or Object.
	IncludeObject metav1.IncludeObjectPolicy
	// NoHeaders leaves out the column definitions (the includeObject-like
	// "noHeaders" table option; watch streams may send them only once).
	NoHeaders bool
	// Now is the reference time for ages; zero means time.Now().
	Now time.Time
}

// ToTable renders a single object or a list (e.g. *corev1.PodList) as a Table.
// Every row's Object carries kind and apiVersion, because kubectl drops the
// whole table when one row lacks them.
func ToTable(obj runtime.Object, opts Options) (*metav1.Table, error) {
	if obj == nil {
		return nil, fmt.Errorf("table: nil object")
	}
	now := opts.Now
	if now.IsZero() {
		now = time.Now()
	}
	items := []runtime.Object{obj}
	isList := meta.IsListType(obj)
	if isList {
		var err error
		if items, err = meta.ExtractList(obj); err != nil {
			return nil, fmt.Errorf("table: %w", err)
		}
	}

	p := printerFor(obj, isList)
	t := &metav1.Table{TypeMeta: metav1.TypeMeta{Kind: "Table", APIVersion: "meta.k8s.io/v1"}}
	if !opts.NoHeaders {
		t.ColumnDefinitions = p.columns
	}
	if isList {
		if lm, err := meta.ListAccessor(obj); err == nil {
			t.ResourceVersion, t.Continue, t.RemainingItemCount = lm.GetResourceVersion(), lm.GetContinue(), lm.GetRemainingItemCount()
		}
	} else if m, err := meta.Accessor(obj); err == nil {
		// A single object's table carries its resourceVersion: kubectl
		// starts `get NAME -w` from there.
		t.ResourceVersion = m.GetResourceVersion()
	}

	t.Rows = make([]metav1.TableRow, 0, len(items))
	for _, it := range items {
		cells, conds, err := p.row(it, now)
		if err != nil {
			return nil, fmt.Errorf("table: %w", err)
		}
		ro, err := rowObject(it, obj, opts.IncludeObject)
		if err != nil {
			return nil, fmt.Errorf("table: %w", err)
		}
		t.Rows = append(t.Rows, metav1.TableRow{Cells: cells, Conditions: conds, Object: ro})
	}
	return t, nil
}

// rowObject builds what a row carries, as kube-apiserver does for the
// includeObject table option.
func rowObject(item, container runtime.Object, policy metav1.IncludeObjectPolicy) (runtime.RawExtension, error) {
	switch policy {
	case metav1.IncludeNone:
		return runtime.RawExtension{}, nil
	case metav1.IncludeObject:
		out := item.DeepCopyObject()
		if out.GetObjectKind().GroupVersionKind().Empty() {
			gvk, err := kindOf(item, container)
			if err != nil {
				return runtime.RawExtension{}, err
			}
			out.GetObjectKind().SetGroupVersionKind(gvk)
		}
		return runtime.RawExtension{Object: out}, nil
	default: // Metadata, also when unset
		m, err := meta.Accessor(item)
		if err != nil {
			return runtime.RawExtension{}, err
		}
		p := meta.AsPartialObjectMetadata(m)
		p.SetGroupVersionKind(metav1.SchemeGroupVersion.WithKind("PartialObjectMetadata"))
		return runtime.RawExtension{Object: p}, nil
	}
}

// kindOf finds an item's kind: from the scheme of the built-in types, else
// from the list's kind with its "List" suffix removed.
func kindOf(item, container runtime.Object) (schema.GroupVersionKind, error) {
	if gvks, _, err := scheme.Scheme.ObjectKinds(item); err == nil && len(gvks) > 0 {
		return gvks[0], nil
	}
	gvk := container.GetObjectKind().GroupVersionKind()
	if k := gvk.Kind; len(k) > 4 && k[len(k)-4:] == "List" {
		gvk.Kind = k[:len(k)-4]
		return gvk, nil
	}
	return schema.GroupVersionKind{}, fmt.Errorf("no kind known for %T", item)
}
