package labnet

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// namespaceInode identifies a named namespace by the inode of its bind mount,
// which is what /proc/PID/ns/net links to.
func namespaceInode(name string) (uint64, error) {
	var st syscall.Stat_t
	if err := syscall.Stat(NamespacePath(name), &st); err != nil {
		return 0, err
	}
	return st.Ino, nil
}

// ProcessesIn lists the PIDs whose network namespace is the named one.
func ProcessesIn(name string) ([]int, error) {
	ino, err := namespaceInode(name)
	if err != nil {
		return nil, err
	}
	want := fmt.Sprintf("net:[%d]", ino)
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if link, err := os.Readlink(filepath.Join("/proc", e.Name(), "ns", "net")); err == nil && link == want {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}

// killNamespaceProcesses SIGKILLs what still runs in a lab namespace, so that
// deleting the namespace really frees it (a process keeps its namespace alive).
func killNamespaceProcesses(name string) {
	pids, err := ProcessesIn(name)
	if err != nil {
		return
	}
	for _, pid := range pids {
		if pid != os.Getpid() {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// hiddenNamespaceInodes finds lab namespaces that are mounted only in some
// other mount namespace: an agent started with `ip netns exec` mounts its
// pods' namespaces in its own mount namespace, which outlives the agent as
// long as its pods run. Here their files are empty; the mount tables of
// other processes still name them, with the namespace's inode as the root.
func hiddenNamespaceInodes(prefix string) map[uint64]string {
	self, _ := os.Readlink("/proc/self/ns/mnt")
	seen := map[string]bool{self: true}
	out := map[uint64]string{}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		mnt, err := os.Readlink(filepath.Join("/proc", e.Name(), "ns", "mnt"))
		if err != nil || seen[mnt] {
			continue
		}
		seen[mnt] = true
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "mountinfo"))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			f := strings.Fields(line)
			if len(f) < 5 {
				continue
			}
			root, point := f[3], f[4]
			dir, name := filepath.Dir(point), filepath.Base(point)
			if (dir != "/run/netns" && dir != netnsDir) || !strings.HasPrefix(name, prefix) {
				continue
			}
			var ino uint64
			if _, err := fmt.Sscanf(root, "net:[%d]", &ino); err == nil {
				out[ino] = name
			}
		}
	}
	return out
}

// killHiddenNamespaceProcesses SIGKILLs every process inside a lab namespace
// that is mounted only elsewhere (see hiddenNamespaceInodes): the pods of a
// crashed agent.
func killHiddenNamespaceProcesses(prefix string) int {
	inodes := hiddenNamespaceInodes(prefix)
	if len(inodes) == 0 {
		return 0
	}
	n := 0
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		link, err := os.Readlink(filepath.Join("/proc", e.Name(), "ns", "net"))
		if err != nil {
			continue
		}
		var ino uint64
		if _, err := fmt.Sscanf(link, "net:[%d]", &ino); err == nil {
			if _, ok := inodes[ino]; ok {
				_ = syscall.Kill(pid, syscall.SIGKILL)
				n++
			}
		}
	}
	return n
}
