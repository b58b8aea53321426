package nodeagent

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// Each running container leaves DataDir/pods/<uid>/<container>.pid holding
// "<pid> <start time>", so an agent that was killed outright can still find
// and stop what it started (its pods' processes may outlive it when the
// parent-death signal could not be armed). The start time, in clock ticks
// since boot from /proc/PID/stat, guards against a recycled PID.

func procStart(pid int) (string, bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return "", false
	}
	// Fields after the parenthesised command; starttime is field 22.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return "", false
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 20 {
		return "", false
	}
	return f[19], true
}

func writePidFile(path string, pid int) {
	start, ok := procStart(pid)
	if !ok {
		return
	}
	_ = os.MkdirAll(filepath.Dir(path), 0o700)
	_ = os.WriteFile(path, []byte(fmt.Sprintf("%d %s\n", pid, start)), 0o600)
}

// killRecorded SIGKILLs the process groups recorded under dataDir/pods and
// removes the records; returns how many were still alive.
func killRecorded(dataDir string) int {
	files, _ := filepath.Glob(filepath.Join(dataDir, "pods", "*", "*.pid"))
	n := 0
	for _, f := range files {
		b, err := os.ReadFile(f)
		_ = os.Remove(f)
		if err != nil {
			continue
		}
		fs := strings.Fields(string(b))
		if len(fs) != 2 {
			continue
		}
		pid, err := strconv.Atoi(fs[0])
		if err != nil || pid <= 1 {
			continue
		}
		if start, ok := procStart(pid); ok && start == fs[1] {
			_ = syscall.Kill(-pid, syscall.SIGKILL) // containers lead their own process group
			_ = syscall.Kill(pid, syscall.SIGKILL)
			n++
		}
	}
	return n
}
