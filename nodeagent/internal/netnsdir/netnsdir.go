// Package netnsdir prepares the directory where named network namespaces
// are bind-mounted, in the way iproute2's `ip netns` expects to find it.
//
// `ip netns add` turns /run/netns into a shared mount point the first time
// it runs, by bind-mounting the directory onto itself recursively. Done
// while namespaces created by another tool are already mounted there, that
// copies their mounts into the new layer and leaves the originals shadowed
// below it: unmounting a name then removes only the copy, and the file can
// no longer be removed (EBUSY), so the namespace outlives `kubelab down`.
// Making the directory a shared mount point before the first namespace is
// mounted leaves `ip netns` nothing to stack on top.
package netnsdir

import (
	"errors"
	"fmt"
	"os"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// Path is where named namespaces live (the same directory as `ip netns`).
const Path = "/var/run/netns"

// prepared records that Path is already a shared mount point, so that the
// hot path (a pod sandbox) pays for the check once per process.
var prepared atomic.Bool

// Prepare makes Path a shared mount point, once per process.
func Prepare() error {
	if prepared.Load() {
		return nil
	}
	if err := Ensure(Path); err != nil {
		return err
	}
	prepared.Store(true)
	return nil
}

// Ensure makes dir (created when missing) a mount point with shared
// propagation, as iproute2 does: a directory that is a mount point already
// is only marked shared; otherwise it is bind-mounted onto itself first.
func Ensure(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("namespace directory: %w", err)
	}
	err := unix.Mount("", dir, "none", unix.MS_SHARED|unix.MS_REC, "")
	if err == nil {
		return nil
	}
	if !errors.Is(err, unix.EINVAL) { // EINVAL: not a mount point
		return fmt.Errorf("share mounts of %s: %w", dir, err)
	}
	if err := unix.Mount(dir, dir, "none", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("bind %s onto itself: %w", dir, err)
	}
	if err := unix.Mount("", dir, "none", unix.MS_SHARED|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("share mounts of %s: %w", dir, err)
	}
	return nil
}
