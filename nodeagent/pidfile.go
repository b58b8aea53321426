package nodeagent

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Each running container leaves DataDir/pods/<uid>/<container>.pid, a JSON
// containerRecord, so that a restarted agent can adopt what it started (or,
// when the pod changed or went, stop it). The start time, in clock ticks
// since boot from /proc/PID/stat, guards against a recycled PID. Records of
// the older "<pid> <start>" form are still understood (for killing only).

// containerRecord is what a restarted agent needs to take a container over.
type containerRecord struct {
	PID       int       `json:"pid"`
	Start     string    `json:"start"` // /proc/PID/stat starttime
	Instance  int32     `json:"instance"`
	StartedAt time.Time `json:"startedAt"`
	ID        string    `json:"id"`
	SpecHash  string    `json:"specHash"`
	Init      bool      `json:"init,omitempty"`

	// Filled in by readRecords, not stored.
	UID       string `json:"-"`
	Container string `json:"-"`
}

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
	if f[0] == "Z" || f[0] == "X" { // dead, waiting to be reaped
		return "", false
	}
	return f[19], true
}

// writePidFile records a just-started process (rec.PID set).
func writePidFile(path string, rec containerRecord) {
	start, ok := procStart(rec.PID)
	if !ok {
		return
	}
	rec.Start = start
	b, err := json.Marshal(rec)
	if err != nil {
		return
	}
	_ = os.MkdirAll(filepath.Dir(path), 0o700)
	tmp := path + ".tmp"
	if os.WriteFile(tmp, b, 0o600) == nil {
		_ = os.Rename(tmp, path)
	}
}

func parseRecord(b []byte) (containerRecord, bool) {
	var rec containerRecord
	if json.Unmarshal(b, &rec) == nil && rec.PID > 1 && rec.Start != "" {
		return rec, true
	}
	fs := strings.Fields(string(b))
	if len(fs) != 2 {
		return rec, false
	}
	pid, err := strconv.Atoi(fs[0])
	if err != nil || pid <= 1 {
		return rec, false
	}
	return containerRecord{PID: pid, Start: fs[1]}, true
}

// liveRecords returns the records under dataDir/pods whose process still
// runs (same PID and start time); records of dead processes are removed.
func liveRecords(dataDir string) []containerRecord {
	files, _ := filepath.Glob(filepath.Join(dataDir, "pods", "*", "*.pid"))
	var out []containerRecord
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		rec, ok := parseRecord(b)
		if !ok {
			_ = os.Remove(f)
			continue
		}
		if start, ok := procStart(rec.PID); !ok || start != rec.Start {
			_ = os.Remove(f)
			continue
		}
		rec.UID = filepath.Base(filepath.Dir(f))
		rec.Container = strings.TrimSuffix(filepath.Base(f), ".pid")
		out = append(out, rec)
	}
	return out
}

// killRecord SIGKILLs a recorded container's process group and removes its record.
func killRecord(dataDir string, rec containerRecord) {
	if start, ok := procStart(rec.PID); ok && start == rec.Start {
		_ = syscall.Kill(-rec.PID, syscall.SIGKILL) // containers lead their own process group
		_ = syscall.Kill(rec.PID, syscall.SIGKILL)
	}
	_ = os.Remove(filepath.Join(dataDir, "pods", rec.UID, rec.Container+".pid"))
}

// killRecorded SIGKILLs the process groups recorded under dataDir/pods and
// removes the records; returns how many were still alive.
func killRecorded(dataDir string) int {
	recs := liveRecords(dataDir)
	for _, rec := range recs {
		killRecord(dataDir, rec)
	}
	return len(recs)
}
