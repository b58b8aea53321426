package netnsdir

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/kubelab/kubelab/nodeagent/internal/testns"
)

func TestMain(m *testing.M) { testns.Main(m) }

// mountsAt returns the optional fields (propagation tags such as
// "shared:12") of every mount whose mount point is dir, from
// /proc/self/mountinfo.
func mountsAt(t *testing.T, dir string) [][]string {
	t.Helper()
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	var out [][]string
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) < 7 || f[4] != dir {
			continue
		}
		var opt []string
		for _, o := range f[6:] {
			if o == "-" {
				break
			}
			opt = append(opt, o)
		}
		out = append(out, opt)
	}
	return out
}

// scratchDir is a directory of the test's own, unmounted however often it
// was mounted when the test ends.
func scratchDir(t *testing.T) string {
	t.Helper()
	testns.Require(t)
	dir := filepath.Join(t.TempDir(), "netns")
	t.Cleanup(func() {
		for range 10 {
			if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
				return
			}
		}
	})
	return dir
}

func TestEnsureMakesOneSharedMountPoint(t *testing.T) {
	dir := scratchDir(t)
	for i := range 3 { // later calls, as `ip netns add` would make, stack nothing
		if err := Ensure(dir); err != nil {
			t.Fatalf("Ensure #%d: %v", i+1, err)
		}
		m := mountsAt(t, dir)
		if len(m) != 1 {
			t.Fatalf("after Ensure #%d: %d mounts at %s, want 1", i+1, len(m), dir)
		}
		if !strings.HasPrefix(strings.Join(m[0], " "), "shared:") {
			t.Fatalf("after Ensure #%d: mount at %s has propagation %q, want shared", i+1, dir, m[0])
		}
	}
}

// A namespace mounted after Ensure stays removable when another tool
// prepares the directory again: the regression behind namespaces that
// `kubelab down` could not remove (EBUSY) once a test had run `ip netns add`.
func TestNamespaceRemovableAfterAnotherPrepare(t *testing.T) {
	dir := scratchDir(t)
	if err := Ensure(dir); err != nil {
		t.Fatal(err)
	}
	name := filepath.Join(dir, "ns")
	if err := os.WriteFile(name, nil, 0o444); err != nil {
		t.Fatal(err)
	}
	// The test's own network namespace (testns) stands in for a node's.
	if err := unix.Mount("/proc/self/ns/net", name, "none", unix.MS_BIND, ""); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = unix.Unmount(name, unix.MNT_DETACH) })
	if err := Ensure(dir); err != nil {
		t.Fatal(err)
	}
	if err := unix.Unmount(name, unix.MNT_DETACH); err != nil {
		t.Fatalf("unmount: %v", err)
	}
	if err := os.Remove(name); err != nil {
		t.Fatalf("remove after unmount: %v", err)
	}
}

func TestEnsureReportsFailure(t *testing.T) {
	testns.Require(t)
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := Ensure(filepath.Join(file, "netns")); err == nil {
		t.Fatal("Ensure under a regular file succeeded")
	}
}
