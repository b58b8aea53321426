package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// labState is what `up` records in the data dir so that `down` and
// `node exec` find the same lab without repeating its flags.
type labState struct {
	Name    string `json:"name"`
	Nodes   int    `json:"nodes"`
	Subnet  string `json:"subnet"`
	APIPort int    `json:"apiPort"`
	// PID of the running `kubelab up`, 0 once it stopped cleanly.
	PID int `json:"pid"`
}

func labStatePath(dataDir string) string { return filepath.Join(dataDir, "lab.json") }

func readLabState(dataDir string) (*labState, error) {
	b, err := os.ReadFile(labStatePath(dataDir))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("no lab in %s (start one with `kubelab up --data-dir %s`)", dataDir, dataDir)
	}
	if err != nil {
		return nil, err
	}
	var s labState
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("read %s: %w", labStatePath(dataDir), err)
	}
	return &s, nil
}

func writeLabState(dataDir string, s *labState) error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	tmp := labStatePath(dataDir) + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, labStatePath(dataDir))
}

// lockDataDir takes an exclusive, non-blocking lock that lives as long as the
// process: a second `up` on the same data dir fails at once instead of
// fighting the first over the same namespaces.
func lockDataDir(dataDir string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dataDir, "up.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("a lab is already running on %s (stop it with `kubelab down --data-dir %s`)", dataDir, dataDir)
		}
		return nil, fmt.Errorf("lock %s: %w", dataDir, err)
	}
	return f, nil
}

// processAlive reports whether pid still runs.
func processAlive(pid int) bool {
	return pid > 0 && syscall.Kill(pid, 0) == nil
}
