package apiserver_test

import (
	"context"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	"github.com/kubelab/kubelab/apiserver/apitest"
)

// TestForegroundAndOrphanDeletion checks the API server's half of the
// garbage collector's propagation policies: the owner is marked (deletion
// timestamp, grace 0, the policy's finalizer), kept and returned; the
// dependents are left alone; lifting the last finalizer removes it.
func TestForegroundAndOrphanDeletion(t *testing.T) {
	inst := apitest.Start(t)
	ctx := context.Background()
	deps := inst.Client.AppsV1().Deployments("default")
	pods := inst.Client.CoreV1().Pods("default")
	cms := inst.Client.CoreV1().ConfigMaps("default")

	d, err := deps.Create(ctx, newDeployment("fg"), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	dep := newPod("fg-dep", "")
	dep.OwnerReferences = []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "Deployment", Name: "fg", UID: d.UID, Controller: ptr.To(true), BlockOwnerDeletion: ptr.To(true)}}
	if _, err := pods.Create(ctx, dep, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// Foreground: the response is the marked object (200), not a Status.
	raw, err := inst.Client.AppsV1().RESTClient().Delete().Namespace("default").Resource("deployments").Name("fg").
		Body(&metav1.DeleteOptions{PropagationPolicy: ptr.To(metav1.DeletePropagationForeground)}).DoRaw(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(raw), `"kind":"Deployment"`) || !strings.Contains(string(raw), `"foregroundDeletion"`) {
		t.Fatalf("foreground delete answered %s", raw)
	}
	got, err := deps.Get(ctx, "fg", metav1.GetOptions{})
	if err != nil || got.DeletionTimestamp == nil || got.DeletionGracePeriodSeconds == nil || *got.DeletionGracePeriodSeconds != 0 ||
		!slices.Equal(got.Finalizers, []string{metav1.FinalizerDeleteDependents}) || got.Generation != d.Generation+1 {
		t.Fatalf("foreground-deleted owner: %v %+v", err, got.ObjectMeta)
	}
	if p, err := pods.Get(ctx, "fg-dep", metav1.GetOptions{}); err != nil || p.DeletionTimestamp != nil || len(p.OwnerReferences) != 1 {
		t.Fatalf("dependent of a foreground deletion is the collector's to delete: %v %+v", err, p)
	}
	// Deleting again changes nothing; a finalizer cannot be added now.
	if err := deps.Delete(ctx, "fg", metav1.DeleteOptions{PropagationPolicy: ptr.To(metav1.DeletePropagationForeground)}); err != nil {
		t.Fatal(err)
	}
	again, _ := deps.Get(ctx, "fg", metav1.GetOptions{})
	if again.ResourceVersion != got.ResourceVersion {
		t.Fatalf("repeated foreground delete rewrote the object: %+v", again.ObjectMeta)
	}
	_, err = deps.Patch(ctx, "fg", types.MergePatchType, []byte(`{"metadata":{"finalizers":["foregroundDeletion","example.com/late"]}}`), metav1.PatchOptions{})
	if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), "no new finalizers can be added if the object is being deleted") {
		t.Fatalf("adding a finalizer while deleting: %v", err)
	}
	// The collector lifts the finalizer with a JSON patch: the owner goes.
	if _, err := deps.Patch(ctx, "fg", types.JSONPatchType, []byte(`[{"op":"test","path":"/metadata/finalizers","value":["foregroundDeletion"]},{"op":"replace","path":"/metadata/finalizers","value":[]}]`), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := deps.Get(ctx, "fg", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("owner after its last finalizer went: %v", err)
	}

	// Orphan, through the deprecated orphanDependents too; other
	// finalizers are kept ahead of the collector's.
	for _, c := range []struct {
		name string
		opts metav1.DeleteOptions
	}{
		{"orphan-policy", metav1.DeleteOptions{PropagationPolicy: ptr.To(metav1.DeletePropagationOrphan)}},
		{"orphan-bool", metav1.DeleteOptions{OrphanDependents: ptr.To(true)}},
	} {
		if _, err := cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: c.name, Finalizers: []string{"example.com/keep"}}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		if err := cms.Delete(ctx, c.name, c.opts); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		cm, err := cms.Get(ctx, c.name, metav1.GetOptions{})
		if err != nil || cm.DeletionTimestamp == nil || !slices.Equal(cm.Finalizers, []string{"example.com/keep", metav1.FinalizerOrphanDependents}) {
			t.Fatalf("%s: %v %+v", c.name, err, cm)
		}
	}
	// An explicit Background delete drops the collector's finalizer (as
	// kube-apiserver); the remaining one still holds the object.
	if err := cms.Delete(ctx, "orphan-policy", metav1.DeleteOptions{PropagationPolicy: ptr.To(metav1.DeletePropagationBackground)}); err != nil {
		t.Fatal(err)
	}
	if cm, err := cms.Get(ctx, "orphan-policy", metav1.GetOptions{}); err != nil || !slices.Equal(cm.Finalizers, []string{"example.com/keep"}) {
		t.Fatalf("after background delete: %v %+v", err, cm)
	}
	// Orphan without other finalizers: marked, not deleted.
	if _, err := cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "orphan-only"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := cms.Delete(ctx, "orphan-only", metav1.DeleteOptions{PropagationPolicy: ptr.To(metav1.DeletePropagationOrphan)}); err != nil {
		t.Fatal(err)
	}
	if cm, err := cms.Get(ctx, "orphan-only", metav1.GetOptions{}); err != nil || !slices.Equal(cm.Finalizers, []string{metav1.FinalizerOrphanDependents}) {
		t.Fatalf("orphan-only: %v %+v", err, cm)
	}
	// Both options at once, or an unknown policy: 422 as kube-apiserver.
	err = cms.Delete(ctx, "orphan-only", metav1.DeleteOptions{OrphanDependents: ptr.To(true), PropagationPolicy: ptr.To(metav1.DeletePropagationOrphan)})
	if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), "orphanDependents and deletionPropagation cannot be both set") {
		t.Fatalf("both options: %v", err)
	}
	err = cms.Delete(ctx, "orphan-only", metav1.DeleteOptions{PropagationPolicy: ptr.To(metav1.DeletionPropagation("Sideways"))})
	if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), "Unsupported value") {
		t.Fatalf("unknown policy: %v", err)
	}

	// A bound pod deleted in the foreground keeps its grace period and,
	// after the agent's grace-0 delete, waits for the finalizer.
	if _, err := pods.Create(ctx, newPod("fg-pod", "node-1"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := pods.Delete(ctx, "fg-pod", metav1.DeleteOptions{PropagationPolicy: ptr.To(metav1.DeletePropagationForeground)}); err != nil {
		t.Fatal(err)
	}
	p, err := pods.Get(ctx, "fg-pod", metav1.GetOptions{})
	if err != nil || p.DeletionGracePeriodSeconds == nil || *p.DeletionGracePeriodSeconds != 30 || !slices.Equal(p.Finalizers, []string{metav1.FinalizerDeleteDependents}) {
		t.Fatalf("foreground pod: %v %+v", err, p.ObjectMeta)
	}
	if err := pods.Delete(ctx, "fg-pod", metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)}); err != nil {
		t.Fatal(err)
	}
	p, err = pods.Get(ctx, "fg-pod", metav1.GetOptions{})
	if err != nil || *p.DeletionGracePeriodSeconds != 0 || !slices.Equal(p.Finalizers, []string{metav1.FinalizerDeleteDependents}) {
		t.Fatalf("foreground pod after grace 0: %v %+v", err, p.ObjectMeta)
	}
	if _, err := pods.Patch(ctx, "fg-pod", types.MergePatchType, []byte(`{"metadata":{"finalizers":null}}`), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := pods.Get(ctx, "fg-pod", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("pod after finalizer removal: %v", err)
	}
}
