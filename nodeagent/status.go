package nodeagent

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// containerView is what status computation needs of one container run.
type containerView struct {
	status   corev1.ContainerStatus
	finished bool // exited for good
	init     bool // an init container
}

func exitedOK(v containerView) bool {
	t := v.status.State.Terminated
	return v.finished && t != nil && t.ExitCode == 0
}

// initProgress says how far the init containers got: all done, or one
// failed for good (restartPolicy Never).
func initProgress(pod *corev1.Pod, inits map[string]containerView) (done, failed bool) {
	done = true
	for _, c := range pod.Spec.InitContainers {
		v, ok := inits[c.Name]
		if !ok || !exitedOK(v) {
			done = false
		}
		if ok && v.finished && !exitedOK(v) {
			failed = true
		}
	}
	return done, failed
}

// podStatus computes the status to report; pure. prev supplies the
// transition times of unchanged conditions.
func podStatus(pod *corev1.Pod, prev corev1.PodStatus, podIP, hostIP string, startTime *metav1.Time, ctrs []containerView, now metav1.Time) corev1.PodStatus {
	st := corev1.PodStatus{HostIP: hostIP, StartTime: startTime, QOSClass: prev.QOSClass}
	if hostIP != "" {
		st.HostIPs = []corev1.HostIP{{IP: hostIP}}
	}
	if podIP != "" {
		st.PodIP = podIP
		st.PodIPs = []corev1.PodIP{{IP: podIP}}
	}
	byName := map[string]containerView{}
	inits := map[string]containerView{}
	for _, c := range ctrs {
		if c.init {
			inits[c.status.Name] = c
		} else {
			byName[c.status.Name] = c
		}
	}
	initDone, initFailed := initProgress(pod, inits)
	for _, c := range pod.Spec.InitContainers {
		v, ok := inits[c.Name]
		if !ok {
			f := false
			v = containerView{status: corev1.ContainerStatus{Name: c.Name, Image: c.Image, ImageID: "", Started: &f,
				State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "PodInitializing"}}}}
		}
		st.InitContainerStatuses = append(st.InitContainerStatuses, v.status)
	}
	waitReason := "ContainerCreating"
	if !initDone {
		waitReason = "PodInitializing"
	}
	allReady, allStarted, allFinished, anyFailed := true, true, true, false
	for _, c := range pod.Spec.Containers {
		v, ok := byName[c.Name]
		if !ok {
			f := false
			v = containerView{status: corev1.ContainerStatus{Name: c.Name, Image: c.Image, Started: &f,
				State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: waitReason}}}}
		}
		st.ContainerStatuses = append(st.ContainerStatuses, v.status)
		s := v.status
		if !s.Ready {
			allReady = false
		}
		if s.State.Running == nil && s.State.Terminated == nil && s.LastTerminationState.Terminated == nil {
			allStarted = false
		}
		if !v.finished {
			allFinished = false
		} else if t := s.State.Terminated; t != nil && t.ExitCode != 0 {
			anyFailed = true
		}
	}
	switch {
	case initFailed:
		st.Phase = corev1.PodFailed
	case !initDone:
		st.Phase = corev1.PodPending
	case len(pod.Spec.Containers) > 0 && allFinished && anyFailed:
		st.Phase = corev1.PodFailed
	case len(pod.Spec.Containers) > 0 && allFinished:
		st.Phase = corev1.PodSucceeded
	case podIP != "" && allStarted:
		st.Phase = corev1.PodRunning
	default:
		st.Phase = corev1.PodPending
	}
	ready := corev1.ConditionFalse
	reason := "ContainersNotReady"
	if allReady && len(pod.Spec.Containers) > 0 {
		ready, reason = corev1.ConditionTrue, ""
	}
	if st.Phase == corev1.PodSucceeded || st.Phase == corev1.PodFailed {
		ready, reason = corev1.ConditionFalse, "PodCompleted"
	}
	sandboxReady := corev1.ConditionFalse
	if podIP != "" {
		sandboxReady = corev1.ConditionTrue
	}
	conds := []corev1.PodCondition{
		{Type: corev1.PodReadyToStartContainers, Status: sandboxReady},
		{Type: corev1.PodInitialized, Status: initialized(initDone)},
		{Type: corev1.PodReady, Status: ready, Reason: reason},
		{Type: corev1.ContainersReady, Status: ready, Reason: reason},
		{Type: corev1.PodScheduled, Status: corev1.ConditionTrue},
	}
	for i := range conds {
		conds[i].LastTransitionTime = now
		for _, p := range prev.Conditions {
			if p.Type == conds[i].Type && p.Status == conds[i].Status {
				conds[i].LastTransitionTime = p.LastTransitionTime
			}
		}
	}
	st.Conditions = conds
	return st
}

func initialized(done bool) corev1.ConditionStatus {
	if done {
		return corev1.ConditionTrue
	}
	return corev1.ConditionFalse
}
