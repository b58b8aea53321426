package apiserver

import (
	"slices"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

func TestDeletionFinalizers(t *testing.T) {
	const (
		fg = metav1.FinalizerDeleteDependents
		or = metav1.FinalizerOrphanDependents
		x  = "example.com/x"
	)
	policy := func(p metav1.DeletionPropagation) metav1.DeleteOptions {
		return metav1.DeleteOptions{PropagationPolicy: &p}
	}
	for _, c := range []struct {
		name    string
		cur     []string
		opts    metav1.DeleteOptions
		want    []string
		changed bool
	}{
		{"default keeps none", nil, metav1.DeleteOptions{}, nil, false},
		{"default keeps existing", []string{x, fg}, metav1.DeleteOptions{}, []string{x, fg}, false},
		{"background", nil, policy(metav1.DeletePropagationBackground), nil, false},
		{"background drops both", []string{fg, x, or}, policy(metav1.DeletePropagationBackground), []string{x}, true},
		{"foreground adds", []string{x}, policy(metav1.DeletePropagationForeground), []string{x, fg}, true},
		{"foreground present", []string{fg, x}, policy(metav1.DeletePropagationForeground), []string{fg, x}, false},
		{"foreground replaces orphan", []string{or}, policy(metav1.DeletePropagationForeground), []string{fg}, true},
		{"orphan adds", nil, policy(metav1.DeletePropagationOrphan), []string{or}, true},
		{"orphan replaces foreground", []string{x, fg}, policy(metav1.DeletePropagationOrphan), []string{x, or}, true},
		{"orphanDependents true", nil, metav1.DeleteOptions{OrphanDependents: ptr.To(true)}, []string{or}, true},
		{"orphanDependents false drops", []string{fg, or}, metav1.DeleteOptions{OrphanDependents: ptr.To(false)}, []string{}, true},
	} {
		got, changed := deletionFinalizers(c.cur, &c.opts)
		if changed != c.changed || !slices.Equal(got, c.want) && (len(got) != 0 || len(c.want) != 0) {
			t.Errorf("%s: got %v (changed %v), want %v (changed %v)", c.name, got, changed, c.want, c.changed)
		}
	}
}
