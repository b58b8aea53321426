package nodeagent

import (
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

func TestChooseAdoptions(t *testing.T) {
	ctr := func(name, image string) corev1.Container { return corev1.Container{Name: name, Image: image} }
	pod := func(uid, node string, ctrs ...corev1.Container) *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{UID: types.UID(uid)}, Spec: corev1.PodSpec{NodeName: node, Containers: ctrs}}
	}
	rec := func(uid string, c corev1.Container) containerRecord {
		return containerRecord{UID: uid, Container: c.Name, PID: 100, Start: "1", SpecHash: specHash(&c)}
	}
	a, b := ctr("a", "nginx"), ctr("b", "busybox")
	deleting := pod("del", "n1", a)
	deleting.DeletionTimestamp = &metav1.Time{}
	done := pod("done", "n1", a)
	done.Status.Phase = corev1.PodSucceeded
	initRec := rec("init", a)
	initRec.Init = true
	pods := []*corev1.Pod{pod("ok", "n1", a, b), pod("moved", "n2", a), deleting, done, pod("changed", "n1", ctr("a", "nginx:2")),
		pod("half", "n1", a, b), pod("init", "n1", a), pod("partial", "n1", a, b)}
	recs := []containerRecord{
		rec("ok", a), rec("ok", b), // adopted, both
		rec("gone", a),                             // pod no longer exists
		rec("moved", a),                            // bound elsewhere now
		rec("del", a),                              // being deleted
		rec("done", a),                             // finished
		rec("changed", a),                          // spec changed
		rec("half", a), rec("half", ctr("c", "x")), // one container unknown: whole pod restarts
		initRec,           // init containers are never adopted
		rec("partial", a), // b was not running (back-off): a adopted, b starts fresh
	}
	keep, kill := chooseAdoptions("n1", recs, pods)
	var kept []string
	for uid, cs := range keep {
		for name := range cs {
			kept = append(kept, uid+"/"+name)
		}
	}
	sort.Strings(kept)
	if got, want := strings.Join(kept, " "), "ok/a ok/b partial/a"; got != want {
		t.Errorf("kept %q, want %q", got, want)
	}
	if len(kill) != len(recs)-3 {
		t.Errorf("kill %d records, want %d: %+v", len(kill), len(recs)-3, kill)
	}
}

func TestWorkloadCommandPrefersSmallBinary(t *testing.T) {
	dir := t.TempDir()
	self := filepath.Join(dir, "kubelab")
	if got := workloadCommand(self); !reflect.DeepEqual(got, []string{self, "workload"}) {
		t.Errorf("without %s: %v", WorkloadBinary, got)
	}
	small := filepath.Join(dir, WorkloadBinary)
	if err := os.WriteFile(small, []byte("#!/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := workloadCommand(self); got[0] != self {
		t.Errorf("a non-executable %s was chosen: %v", WorkloadBinary, got)
	}
	if err := os.Chmod(small, 0o755); err != nil {
		t.Fatal(err)
	}
	if got := workloadCommand(self); !reflect.DeepEqual(got, []string{small}) {
		t.Errorf("with %s: %v", WorkloadBinary, got)
	}
}
