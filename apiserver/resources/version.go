package resources

import (
	"strings"

	"k8s.io/apimachinery/pkg/version"
)

// KubernetesVersion is the Kubernetes release whose API kubelab serves: the
// k8s.io/api module in go.mod (v0.37.2 is Kubernetes v1.37.2). A test keeps
// the two in step, because kubectl picks its own behaviour from this answer.
const KubernetesVersion = "v1.37.2"

// VersionInfo is the /version answer (and the node's kubeletVersion).
func VersionInfo(gitCommit, buildDate, platform string) version.Info {
	parts := strings.SplitN(strings.TrimPrefix(KubernetesVersion, "v"), ".", 3)
	return version.Info{
		Major:      parts[0],
		Minor:      parts[1],
		GitVersion: KubernetesVersion,
		GitCommit:  gitCommit,
		BuildDate:  buildDate,
		GoVersion:  goVersion(),
		Compiler:   "gc",
		Platform:   platform,
	}
}
