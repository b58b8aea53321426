package resources

import (
	"os"
	"regexp"
	"testing"
)

func TestKubernetesVersionMatchesGoMod(t *testing.T) {
	mod, err := os.ReadFile("../../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^\s*k8s\.io/api v0\.(\d+\.\d+)`).FindSubmatch(mod)
	if m == nil {
		t.Fatal("k8s.io/api not found in go.mod")
	}
	if want := "v1." + string(m[1]); KubernetesVersion != want {
		t.Fatalf("KubernetesVersion = %s, go.mod serves %s", KubernetesVersion, want)
	}
	info := VersionInfo("", "", "linux/amd64")
	if info.Major != "1" || info.Minor != "37" {
		t.Fatalf("VersionInfo major/minor = %q/%q", info.Major, info.Minor)
	}
}
