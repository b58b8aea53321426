package nodeagent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/kubelab/kubelab/nodeagent/sandbox"
)

// Adoption. Containers have no parent-death signal, so a crashed or killed
// agent leaves its pods running. The restarted agent reads the container
// records (pidfile.go) and, once it has the pods bound to it, keeps every
// container whose pod is still here, not being deleted, and has that
// container with the same spec; it mounts the pod's namespace again and
// follows the process: state, probes, logs (the output pipes are named pipes
// the container keeps open, see streamPipe). Everything else is stopped and
// its sandbox removed; those pods start afresh with their leased IPs.
//
// An adopted process is not the agent's child, so its exit status cannot be
// collected (wait(2) works for children only, and the orphan's new parent
// reaps it). The agent watches it with a pidfd (readable when the process
// exits), or polls /proc where pidfds are missing, and reports the exit as
// the kubelet reports a container it lost: ContainerStatusUnknown, 137. The
// restart policy then applies as to any failure; the restarted container is
// the agent's child again. A shim process per container would keep exact
// exit codes, at the price of one more process (and its memory) per container.

// exitUnknown is the internal exit code of an adopted process.
const exitUnknown = -1

// specHash identifies a container spec, so a record is adopted only by the
// same container.
func specHash(c *corev1.Container) string {
	b, _ := json.Marshal(c)
	h := fnv.New64a()
	_, _ = h.Write(b)
	return fmt.Sprintf("%016x", h.Sum64())
}

// adoptedPod is what the agent takes over of one pod.
type adoptedPod struct {
	sb   *sandbox.Sandbox
	ctrs map[string]*containerRecord
}

// chooseAdoptions decides, from the live records and the pods bound to this
// node, which containers to keep (by pod UID and container name); every
// other record is to be stopped. Pure.
func chooseAdoptions(node string, recs []containerRecord, pods []*corev1.Pod) (keep map[string]map[string]containerRecord, kill []containerRecord) {
	byUID := map[string]*corev1.Pod{}
	for _, p := range pods {
		byUID[string(p.UID)] = p
	}
	ok := func(rec containerRecord) bool {
		p := byUID[rec.UID]
		if p == nil || p.Spec.NodeName != node || p.DeletionTimestamp != nil ||
			p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed || rec.Init || rec.SpecHash == "" {
			return false
		}
		for i := range p.Spec.Containers {
			if p.Spec.Containers[i].Name == rec.Container {
				return specHash(&p.Spec.Containers[i]) == rec.SpecHash
			}
		}
		return false
	}
	// A pod is adopted whole or not at all: one record it cannot keep (an
	// init container still running, a changed spec) restarts the pod.
	bad := map[string]bool{}
	for _, rec := range recs {
		if !ok(rec) {
			bad[rec.UID] = true
		}
	}
	keep = map[string]map[string]containerRecord{}
	for _, rec := range recs {
		if bad[rec.UID] {
			kill = append(kill, rec)
			continue
		}
		if keep[rec.UID] == nil {
			keep[rec.UID] = map[string]containerRecord{}
		}
		keep[rec.UID][rec.Container] = rec
	}
	return keep, kill
}

// adopt takes over what an earlier run of the agent left: it returns the
// pods to adopt, having stopped every other recorded process and removed
// every other sandbox.
func adopt(cfg *Config, sbm *sandbox.Manager, ipam *sandbox.IPAM, pods []*corev1.Pod) map[types.UID]*adoptedPod {
	recs := liveRecords(cfg.DataDir)
	keep, kill := chooseAdoptions(cfg.NodeName, recs, pods)
	for _, rec := range kill {
		killRecord(cfg.DataDir, rec)
	}
	leases, _ := ipam.Leases()
	out := map[types.UID]*adoptedPod{}
	keepUIDs := map[string]bool{}
	for uid, ctrs := range keep {
		var sb *sandbox.Sandbox
		err := errors.New("no IP lease")
		if ip := leases[uid]; ip != nil {
			for _, rec := range ctrs {
				sb, err = sbm.Adopt(uid, ip, rec.PID)
				break
			}
		}
		if err != nil {
			slog.Warn("cannot adopt pod; restarting it", "uid", uid, "err", err)
			for _, rec := range ctrs {
				killRecord(cfg.DataDir, rec)
			}
			continue
		}
		ap := &adoptedPod{sb: sb, ctrs: map[string]*containerRecord{}}
		for name, rec := range ctrs {
			ap.ctrs[name] = &rec
		}
		out[types.UID(uid)] = ap
		keepUIDs[uid] = true
	}
	if n := len(kill); n > 0 {
		slog.Info("stopped containers left by an earlier agent", "count", n)
	}
	if len(out) > 0 {
		slog.Info("adopted pods left by an earlier agent", "count", len(out))
	}
	if err := sbm.CleanupExcept(keepUIDs); err != nil {
		slog.Warn("clean leftovers", "err", err)
	}
	if entries, err := os.ReadDir(volumeRootFor(cfg)); err == nil {
		for _, e := range entries {
			if !keepUIDs[e.Name()] {
				_ = os.RemoveAll(filepath.Join(volumeRootFor(cfg), e.Name()))
			}
		}
	}
	return out
}

// runAdopted follows a container process an earlier agent started.
func (r *containerRun) runAdopted(ctx context.Context, a *containerRecord) (int, error) {
	lw, err := openLog(logDir(r.w.m.cfg.DataDir, string(r.w.uid), r.spec.Name), a.Instance)
	if err != nil {
		return 128, err
	}
	defer lw.Close()
	outR, err := r.reopenStream("stdout")
	if err != nil {
		return 128, err
	}
	errR, err := r.reopenStream("stderr")
	if err != nil {
		outR.Close()
		return 128, err
	}
	proc, err := os.FindProcess(a.PID)
	if err != nil {
		outR.Close()
		errR.Close()
		return 128, err
	}
	// The record stays: if this agent dies too, the next one adopts again.
	r.mu.Lock()
	r.id, r.instance = a.ID, a.Instance
	r.mu.Unlock()
	return r.supervise(ctx, proc, metav1.NewTime(a.StartedAt), lw, outR, errR, func() int {
		waitExit(a.PID, a.Start)
		return exitUnknown
	})
}

// reopenStream opens the agent's end of a container's output pipe again.
func (r *containerRun) reopenStream(stream string) (*os.File, error) {
	p := filepath.Join(r.w.m.cfg.DataDir, "pods", string(r.w.uid), r.spec.Name+"."+stream)
	if err := syscall.Mkfifo(p, 0o600); err != nil && !errors.Is(err, os.ErrExist) {
		return nil, err
	}
	return os.OpenFile(p, os.O_RDONLY|syscall.O_NONBLOCK, 0)
}

// waitExit blocks until the process (pid, with that start time) has exited.
func waitExit(pid int, start string) {
	if fd, err := unix.PidfdOpen(pid, unix.PIDFD_NONBLOCK); err == nil {
		f := os.NewFile(uintptr(fd), "pidfd")
		defer f.Close()
		if s, ok := procStart(pid); !ok || s != start {
			return // gone (or recycled) before the pidfd was taken
		}
		if rc, err := f.SyscallConn(); err == nil {
			exited := func(fd uintptr) bool {
				p := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
				n, err := unix.Poll(p, 0)
				return err == nil && n > 0 && p[0].Revents&unix.POLLIN != 0
			}
			if rc.Read(exited) == nil {
				return
			}
		}
	}
	// No pidfd (old kernel) or not pollable: poll /proc.
	for {
		if s, ok := procStart(pid); !ok || s != start {
			return
		}
		time.Sleep(500 * time.Millisecond)
	}
}
