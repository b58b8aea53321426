package labnet

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
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
