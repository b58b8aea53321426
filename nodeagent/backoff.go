package nodeagent

import (
	"time"

	corev1 "k8s.io/api/core/v1"
)

const (
	backoffBase  = 10 * time.Second
	backoffMax   = 5 * time.Minute
	backoffReset = 10 * time.Minute // a container that ran this long starts over
)

// crashBackoff is the wait before restart number n+1 after n restarts:
// 10 s doubling up to 5 min, as the kubelet's CrashLoopBackOff. The first
// exit (n = 0) already waits 10 s, except that a container which ran longer
// than backoffReset restarts at once with a fresh series (handled by the caller).
func crashBackoff(restarts int32) time.Duration {
	d := backoffBase
	for i := int32(0); i < restarts; i++ {
		d *= 2
		if d >= backoffMax {
			return backoffMax
		}
	}
	return d
}

// shouldRestart applies the pod's restartPolicy to an exit code.
func shouldRestart(policy corev1.RestartPolicy, exitCode int) bool {
	switch policy {
	case corev1.RestartPolicyNever:
		return false
	case corev1.RestartPolicyOnFailure:
		return exitCode != 0
	default:
		return true
	}
}
