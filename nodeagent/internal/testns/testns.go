// Package testns runs a package's tests inside a fresh, anonymous network
// namespace (via `unshare --net`), so tests may create links, routes and
// sysctls freely without ever touching the host's own network.
package testns

import (
	"fmt"
	"os"
	"os/exec"
	"testing"

	"github.com/vishvananda/netlink"
)

const envMark = "KUBELAB_TESTNS"

// Main re-executes the test binary in a new network namespace when running
// as root, then runs the tests there. Without root the tests run as they are
// (root-only tests skip themselves).
func Main(m *testing.M) {
	if os.Getuid() == 0 && os.Getenv(envMark) == "" {
		cmd := exec.Command("unshare", append([]string{"--net", "--"}, os.Args...)...)
		cmd.Env = append(os.Environ(), envMark+"=1")
		cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
		if err := cmd.Run(); err != nil {
			if ee, ok := err.(*exec.ExitError); ok {
				os.Exit(ee.ExitCode())
			}
			fmt.Fprintln(os.Stderr, "testns:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	if os.Getenv(envMark) == "1" {
		if lo, err := netlink.LinkByName("lo"); err == nil {
			_ = netlink.LinkSetUp(lo)
		}
	}
	os.Exit(m.Run())
}

// Isolated reports whether the tests run in their own namespace.
func Isolated() bool { return os.Getenv(envMark) == "1" }

// Require skips a test that needs root and the private namespace, unless in CI
// (where root is expected, so a skip would hide a failure).
func Require(t *testing.T) {
	t.Helper()
	if !Isolated() {
		if os.Getuid() != 0 && os.Getenv("CI") == "" {
			t.Skip("needs root to create network namespaces and links (runs in CI as root)")
		}
		t.Fatal("root tests must run in a private network namespace (testns.Main)")
	}
}
