package controller

import (
	"encoding/json"
	"fmt"
	"hash/fnv"
	"sort"
	"strconv"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/rand"
)

// Annotations and labels the Deployment controller maintains (the names
// kubectl reads).
const (
	revisionAnnotation        = "deployment.kubernetes.io/revision"
	revisionHistoryAnnotation = "deployment.kubernetes.io/revision-history"
	desiredReplicasAnnotation = "deployment.kubernetes.io/desired-replicas"
	maxReplicasAnnotation     = "deployment.kubernetes.io/max-replicas"
	lastAppliedAnnotation     = "kubectl.kubernetes.io/last-applied-configuration"
)

// Deployment condition reasons, as upstream (kubectl and users match on them).
const (
	reasonNewRSCreated        = "NewReplicaSetCreated"
	reasonRSUpdated           = "ReplicaSetUpdated"
	reasonNewRSAvailable      = "NewReplicaSetAvailable"
	reasonDeadlineExceeded    = "ProgressDeadlineExceeded"
	reasonMinAvailable        = "MinimumReplicasAvailable"
	reasonMinUnavailable      = "MinimumReplicasUnavailable"
	reasonPaused              = "DeploymentPaused"
	reasonResumed             = "DeploymentResumed"
	reasonFailedRSCreate      = "ReplicaSetCreateError"
	defaultProgressDeadline   = 600
	defaultRevisionHistoryMax = 10
)

// templateHash names a pod template: the pod-template-hash label and the
// suffix of the ReplicaSet's name. collisionCount changes it when a
// different template happened to hash the same.
func templateHash(t *corev1.PodTemplateSpec, collisionCount *int32) string {
	c := t.DeepCopy()
	delete(c.Labels, appsv1.DefaultDeploymentUniqueLabelKey)
	data, _ := json.Marshal(c)
	h := fnv.New32a()
	h.Write(data)
	if collisionCount != nil {
		fmt.Fprintf(h, "/%d", *collisionCount)
	}
	return rand.SafeEncodeString(strconv.FormatUint(uint64(h.Sum32()), 10))
}

// resolveSurgeUnavailable turns maxSurge/maxUnavailable into counts for
// desired replicas: surge rounds up, unavailable down, and both zero would
// deadlock a rollout, so unavailable becomes 1.
func resolveSurgeUnavailable(d *appsv1.Deployment) (surge, unavailable int32) {
	desired := int(ptrOr(d.Spec.Replicas, 1))
	ms := intstr.FromString("25%")
	mu := intstr.FromString("25%")
	if ru := d.Spec.Strategy.RollingUpdate; ru != nil {
		if ru.MaxSurge != nil {
			ms = *ru.MaxSurge
		}
		if ru.MaxUnavailable != nil {
			mu = *ru.MaxUnavailable
		}
	}
	s, err := intstr.GetScaledValueFromIntOrPercent(&ms, desired, true)
	if err != nil {
		s = 0
	}
	u, err := intstr.GetScaledValueFromIntOrPercent(&mu, desired, false)
	if err != nil {
		u = 0
	}
	if s == 0 && u == 0 {
		u = 1
	}
	return int32(s), int32(u)
}

func specReplicas(rs *appsv1.ReplicaSet) int32 { return ptrOr(rs.Spec.Replicas, 1) }

func sumSpec(rss []*appsv1.ReplicaSet) int32 {
	var n int32
	for _, rs := range rss {
		n += specReplicas(rs)
	}
	return n
}

// rollingNewReplicas is how many replicas the new ReplicaSet should have
// in this step of a rolling update: up to desired, without the total
// exceeding desired+maxSurge.
func rollingNewReplicas(desired, surge int32, newRS *appsv1.ReplicaSet, all []*appsv1.ReplicaSet) int32 {
	cur := int32(0)
	if newRS != nil {
		cur = specReplicas(newRS)
	}
	if cur >= desired {
		return desired
	}
	total := sumSpec(all)
	maxTotal := desired + surge
	if total >= maxTotal {
		return cur
	}
	return cur + min(maxTotal-total, desired-cur)
}

// rollingOldScaleDown says to what size each old ReplicaSet shrinks in this
// step of a rolling update, keeping at least desired-maxUnavailable pods
// available: first the old pods that are not available anyway, then
// available ones, oldest ReplicaSets first. Only changed sizes are
// returned.
func rollingOldScaleDown(desired, unavailable int32, newRS *appsv1.ReplicaSet, old []*appsv1.ReplicaSet) map[string]int32 {
	out := map[string]int32{}
	if sumSpec(old) == 0 {
		return out
	}
	all := append([]*appsv1.ReplicaSet{}, old...)
	var newUnavailable int32
	if newRS != nil {
		all = append(all, newRS)
		newUnavailable = max(specReplicas(newRS)-newRS.Status.AvailableReplicas, 0)
	}
	minAvailable := desired - unavailable
	maxScaledDown := sumSpec(all) - minAvailable - newUnavailable
	if maxScaledDown <= 0 {
		return out
	}
	sorted := append([]*appsv1.ReplicaSet{}, old...)
	sort.SliceStable(sorted, func(i, j int) bool { return olderRS(sorted[i], sorted[j]) })
	size := map[string]int32{}
	for _, rs := range sorted {
		size[rs.Name] = specReplicas(rs)
	}
	// unhealthy first: they count toward nobody's availability
	cleaned := int32(0)
	for _, rs := range sorted {
		if cleaned >= maxScaledDown {
			break
		}
		bad := size[rs.Name] - rs.Status.AvailableReplicas
		if bad <= 0 {
			continue
		}
		n := min(bad, maxScaledDown-cleaned)
		size[rs.Name] -= n
		cleaned += n
	}
	// then available ones, as far as availability allows
	var available int32
	for _, rs := range all {
		available += rs.Status.AvailableReplicas
	}
	if budget := min(available-minAvailable, maxScaledDown-cleaned); budget > 0 {
		for _, rs := range sorted {
			if budget <= 0 {
				break
			}
			n := min(size[rs.Name], budget)
			size[rs.Name] -= n
			budget -= n
		}
	}
	for _, rs := range sorted {
		if size[rs.Name] != specReplicas(rs) {
			out[rs.Name] = size[rs.Name]
		}
	}
	return out
}

func olderRS(a, b *appsv1.ReplicaSet) bool {
	if !a.CreationTimestamp.Equal(&b.CreationTimestamp) {
		return a.CreationTimestamp.Before(&b.CreationTimestamp)
	}
	return a.Name < b.Name
}

// revisionOf reads a ReplicaSet's revision annotation (0 when absent).
func revisionOf(m metav1.Object) int64 {
	v, err := strconv.ParseInt(m.GetAnnotations()[revisionAnnotation], 10, 64)
	if err != nil {
		return 0
	}
	return v
}

func maxRevision(rss []*appsv1.ReplicaSet) int64 {
	var m int64
	for _, rs := range rss {
		m = max(m, revisionOf(rs))
	}
	return m
}

// skipCopyAnnotations are the Deployment annotations a ReplicaSet does not
// inherit.
var skipCopyAnnotations = map[string]bool{
	lastAppliedAnnotation: true, revisionAnnotation: true, revisionHistoryAnnotation: true,
	desiredReplicasAnnotation: true, maxReplicasAnnotation: true,
	"deprecated.deployment.rollback.to": true,
}

// rsAnnotations returns rs's annotations updated from d: the copied user
// annotations, the revision, and desired/max replicas. changed says
// whether anything differs.
func rsAnnotations(d *appsv1.Deployment, rs *appsv1.ReplicaSet, revision int64, surge int32) (map[string]string, bool) {
	out := map[string]string{}
	for k, v := range rs.Annotations {
		out[k] = v
	}
	for k, v := range d.Annotations {
		if !skipCopyAnnotations[k] {
			out[k] = v
		}
	}
	if revision > 0 {
		if old := revisionOf(rs); old > 0 && old != revision {
			hist := rs.Annotations[revisionHistoryAnnotation]
			if hist != "" {
				hist += ","
			}
			out[revisionHistoryAnnotation] = hist + strconv.FormatInt(old, 10)
		}
		out[revisionAnnotation] = strconv.FormatInt(revision, 10)
	}
	desired := ptrOr(d.Spec.Replicas, 1)
	out[desiredReplicasAnnotation] = strconv.Itoa(int(desired))
	out[maxReplicasAnnotation] = strconv.Itoa(int(desired + maxSurgeOf(d, surge)))
	changed := len(out) != len(rs.Annotations)
	for k, v := range out {
		if rs.Annotations[k] != v {
			changed = true
		}
	}
	return out, changed
}

func maxSurgeOf(d *appsv1.Deployment, surge int32) int32 {
	if d.Spec.Strategy.Type == appsv1.RecreateDeploymentStrategyType {
		return 0
	}
	return surge
}

// deploymentStatus computes a Deployment's status from its ReplicaSets. It
// also returns after how long the progress deadline must be checked again
// (0: no need).
func deploymentStatus(d *appsv1.Deployment, newRS *appsv1.ReplicaSet, all []*appsv1.ReplicaSet, now time.Time) (appsv1.DeploymentStatus, time.Duration) {
	st := appsv1.DeploymentStatus{
		ObservedGeneration: d.Generation,
		CollisionCount:     d.Status.CollisionCount,
		Conditions:         append([]appsv1.DeploymentCondition(nil), d.Status.Conditions...),
	}
	var terminating int32
	var anyTerminating bool
	for _, rs := range all {
		st.Replicas += rs.Status.Replicas
		st.ReadyReplicas += rs.Status.ReadyReplicas
		st.AvailableReplicas += rs.Status.AvailableReplicas
		if rs.Status.TerminatingReplicas != nil {
			anyTerminating = true
			terminating += *rs.Status.TerminatingReplicas
		}
	}
	if anyTerminating {
		st.TerminatingReplicas = &terminating
	}
	if newRS != nil {
		st.UpdatedReplicas = newRS.Status.Replicas
	}
	desired := ptrOr(d.Spec.Replicas, 1)
	st.UnavailableReplicas = max(desired-st.AvailableReplicas, 0)

	_, unavailable := resolveSurgeUnavailable(d)
	if d.Spec.Strategy.Type == appsv1.RecreateDeploymentStrategyType {
		unavailable = desired
	}
	if st.AvailableReplicas >= desired-unavailable {
		setDeployCondition(&st, appsv1.DeploymentAvailable, corev1.ConditionTrue, reasonMinAvailable, "Deployment has minimum availability.", now, false)
	} else {
		setDeployCondition(&st, appsv1.DeploymentAvailable, corev1.ConditionFalse, reasonMinUnavailable, "Deployment does not have minimum availability.", now, false)
	}

	rsName := ""
	if newRS != nil {
		rsName = newRS.Name
	}
	deadline := time.Duration(ptrOr(d.Spec.ProgressDeadlineSeconds, defaultProgressDeadline)) * time.Second
	var recheck time.Duration
	complete := newRS != nil && st.UpdatedReplicas == desired && st.Replicas == desired && st.AvailableReplicas == desired
	prog := deployCondition(&st, appsv1.DeploymentProgressing)
	switch {
	case d.Spec.Paused:
		setDeployCondition(&st, appsv1.DeploymentProgressing, corev1.ConditionUnknown, reasonPaused, "Deployment is paused", now, false)
	case prog != nil && prog.Reason == reasonPaused:
		setDeployCondition(&st, appsv1.DeploymentProgressing, corev1.ConditionUnknown, reasonResumed, "Deployment is resumed", now, true)
	case complete:
		setDeployCondition(&st, appsv1.DeploymentProgressing, corev1.ConditionTrue, reasonNewRSAvailable,
			fmt.Sprintf("ReplicaSet %q has successfully progressed.", rsName), now, false)
	case newRS == nil:
	case progressed(&d.Status, &st) || prog == nil || (prog.Reason == reasonNewRSAvailable):
		setDeployCondition(&st, appsv1.DeploymentProgressing, corev1.ConditionTrue, reasonRSUpdated,
			fmt.Sprintf("ReplicaSet %q is progressing.", rsName), now, true)
		recheck = deadline
	case prog.Reason == reasonDeadlineExceeded:
	default:
		if left := prog.LastUpdateTime.Add(deadline).Sub(now); left <= 0 {
			setDeployCondition(&st, appsv1.DeploymentProgressing, corev1.ConditionFalse, reasonDeadlineExceeded,
				fmt.Sprintf("ReplicaSet %q has timed out progressing.", rsName), now, true)
		} else {
			recheck = left
		}
	}
	return st, recheck
}

// progressed: the rollout moved since the last status.
func progressed(old, cur *appsv1.DeploymentStatus) bool {
	return cur.UpdatedReplicas != old.UpdatedReplicas || cur.Replicas != old.Replicas ||
		cur.ReadyReplicas != old.ReadyReplicas || cur.AvailableReplicas > old.AvailableReplicas
}

func deployCondition(st *appsv1.DeploymentStatus, t appsv1.DeploymentConditionType) *appsv1.DeploymentCondition {
	for i := range st.Conditions {
		if st.Conditions[i].Type == t {
			return &st.Conditions[i]
		}
	}
	return nil
}

// setDeployCondition sets a condition, keeping lastTransitionTime while
// the status is unchanged and lastUpdateTime while nothing changed unless
// touch.
func setDeployCondition(st *appsv1.DeploymentStatus, t appsv1.DeploymentConditionType, status corev1.ConditionStatus, reason, msg string, now time.Time, touch bool) {
	ts := metav1.NewTime(now.Truncate(time.Second))
	c := deployCondition(st, t)
	if c == nil {
		st.Conditions = append(st.Conditions, appsv1.DeploymentCondition{Type: t, Status: status, Reason: reason, Message: msg, LastUpdateTime: ts, LastTransitionTime: ts})
		sort.SliceStable(st.Conditions, func(i, j int) bool { return condOrder(st.Conditions[i].Type) < condOrder(st.Conditions[j].Type) })
		return
	}
	if c.Status != status {
		c.LastTransitionTime = ts
	}
	if c.Status != status || c.Reason != reason || c.Message != msg || touch {
		c.LastUpdateTime = ts
	}
	c.Status, c.Reason, c.Message = status, reason, msg
}

func condOrder(t appsv1.DeploymentConditionType) int {
	switch t {
	case appsv1.DeploymentAvailable:
		return 0
	case appsv1.DeploymentProgressing:
		return 1
	}
	return 2
}

// historyToDelete picks the old ReplicaSets beyond revisionHistoryLimit:
// scaled to zero with no pods left, lowest revisions first.
func historyToDelete(d *appsv1.Deployment, old []*appsv1.ReplicaSet) []*appsv1.ReplicaSet {
	limit := int(ptrOr(d.Spec.RevisionHistoryLimit, defaultRevisionHistoryMax))
	var idle []*appsv1.ReplicaSet
	for _, rs := range old {
		if specReplicas(rs) == 0 && rs.Status.Replicas == 0 && ptrOr(rs.Status.TerminatingReplicas, 0) == 0 && rs.DeletionTimestamp == nil {
			idle = append(idle, rs)
		}
	}
	if len(idle) <= limit {
		return nil
	}
	sort.SliceStable(idle, func(i, j int) bool {
		ri, rj := revisionOf(idle[i]), revisionOf(idle[j])
		if ri != rj {
			return ri < rj
		}
		return olderRS(idle[i], idle[j])
	})
	return idle[:len(idle)-limit]
}
