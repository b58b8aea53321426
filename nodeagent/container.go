package nodeagent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubelab/kubelab/nodeagent/sandbox"
)

const nobody = 65534

// containerRun runs one container of a pod as a process inside the pod's
// namespace and restarts it according to the pod's restartPolicy.
type containerRun struct {
	w    *podWorker
	spec corev1.Container
	init bool // init container: runs to completion, restarted only on failure

	mu       sync.Mutex
	state    corev1.ContainerState
	last     corev1.ContainerState
	restarts int32
	ready    bool
	started  bool
	finished bool // exited and will not be restarted
	id       string
	proc     *os.Process
	instance int32 // log instance of the current (or last) run
	stopping bool
	killed   chan struct{}    // closed by stop: ends back-off waits
	adopt    *containerRecord // a process an earlier agent started, to take over

	done chan struct{}
}

func newContainerRun(w *podWorker, spec corev1.Container, restarts int32) *containerRun {
	return &containerRun{
		w: w, spec: spec, restarts: restarts, instance: restarts,
		state:  corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ContainerCreating"}},
		killed: make(chan struct{}),
		done:   make(chan struct{}),
	}
}

// userOf picks the uid/gid a container runs as: nobody unless the pod or
// container security context names a user.
func userOf(pod *corev1.Pod, c *corev1.Container) (uid, gid int64) {
	uid, gid = -1, -1
	if sc := pod.Spec.SecurityContext; sc != nil {
		if sc.RunAsUser != nil {
			uid = *sc.RunAsUser
		}
		if sc.RunAsGroup != nil {
			gid = *sc.RunAsGroup
		}
	}
	if sc := c.SecurityContext; sc != nil {
		if sc.RunAsUser != nil {
			uid = *sc.RunAsUser
		}
		if sc.RunAsGroup != nil {
			gid = *sc.RunAsGroup
		}
	}
	if uid < 0 {
		uid = nobody
	}
	if gid < 0 {
		if uid == 0 {
			gid = 0
		} else {
			gid = nobody
		}
	}
	return uid, gid
}

// commandFor decides what process runs: the container's command when it
// names a host executable, else the built-in workload. With no command, args
// naming a host executable (`kubectl run x --image=busybox -- sleep 3600`)
// count as the command, since no image supplies an entrypoint here.
func commandFor(cfg *Config, pod *corev1.Pod, c *corev1.Container, vals map[string]string) (argv []string, builtin bool) {
	if len(c.Command) > 0 {
		if p, err := exec.LookPath(c.Command[0]); err == nil {
			argv = append([]string{p}, expandAll(c.Command[1:], vals)...)
			return append(argv, expandAll(c.Args, vals)...), false
		}
	} else if len(c.Args) > 0 {
		if p, err := exec.LookPath(c.Args[0]); err == nil {
			return append([]string{p}, expandAll(c.Args[1:], vals)...), false
		}
	}
	argv = append([]string{}, cfg.WorkloadCommand...)
	argv = append(argv, "--pod", pod.Namespace+"/"+pod.Name, "--node", cfg.NodeName)
	for _, p := range containerPorts(c) {
		argv = append(argv, "--port", p)
	}
	return argv, true
}

// workloadEnv is the built-in workload's environment: the container's, and
// one Go scheduler thread unless the container sets GOMAXPROCS itself. The
// workload answers a request now and then; every extra runtime thread it
// starts costs page faults and CPU at start, and a burst of pods starts a
// hundred of them on a small machine.
func workloadEnv(env []string, vals map[string]string) []string {
	if _, set := vals["GOMAXPROCS"]; set {
		return env
	}
	return append(env[:len(env):len(env)], "GOMAXPROCS=1")
}

func (r *containerRun) snapshot() corev1.ContainerStatus {
	r.mu.Lock()
	defer r.mu.Unlock()
	image := r.spec.Image
	started := r.started
	st := corev1.ContainerStatus{
		Name: r.spec.Name, State: *r.state.DeepCopy(), LastTerminationState: *r.last.DeepCopy(), Ready: r.ready,
		RestartCount: r.restarts, Image: image, ImageID: "kubelab://" + image, ContainerID: r.id,
		Started: &started,
	}
	return st
}

// run is the container's life: start, wait, maybe back off and restart.
func (r *containerRun) run(ctx context.Context) {
	defer close(r.done)
	configRetry := time.Second
	for {
		began := time.Now()
		code, err := r.runOnce(ctx)
		if r.isStopping() || ctx.Err() != nil {
			return
		}
		if ce := (configError{}); errors.As(err, &ce) {
			// Not a run: wait for the ConfigMap or Secret, whatever the
			// restart policy, and count no restart (as the kubelet).
			select {
			case <-ctx.Done():
				return
			case <-r.killed:
				return
			case <-time.After(configRetry):
			}
			configRetry = min(2*configRetry, 20*time.Second)
			continue
		}
		if err != nil {
			slog.Warn("container start", "pod", r.w.key, "container", r.spec.Name, "err", err)
		}
		policy := r.w.podSpec().RestartPolicy
		if r.init && policy != corev1.RestartPolicyNever {
			policy = corev1.RestartPolicyOnFailure
		}
		if !shouldRestart(policy, code) {
			r.mu.Lock()
			r.finished = true
			r.mu.Unlock()
			r.w.kick()
			return
		}
		r.mu.Lock()
		n := r.restarts
		if time.Since(began) > backoffReset {
			n = 0
		}
		delay := crashBackoff(n)
		if n > 0 || code != 0 || err != nil {
			r.state = corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff",
				Message: fmt.Sprintf("back-off %s restarting failed container=%s pod=%s_%s(%s)", delay, r.spec.Name, r.w.name, r.w.ns, r.w.uid)}}
		}
		r.mu.Unlock()
		r.w.kick()
		r.w.event(corev1.EventTypeWarning, "BackOff", "Back-off restarting failed container %s in pod %s", r.spec.Name, r.w.name)
		select {
		case <-ctx.Done():
			return
		case <-r.killed:
			return
		case <-time.After(delay):
		}
		r.mu.Lock()
		r.restarts++
		r.instance = r.restarts
		r.mu.Unlock()
	}
}

func (r *containerRun) isRunning() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.proc != nil
}

func (r *containerRun) isStopping() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.stopping
}

// runOnce starts one process (or takes over the one an earlier agent left)
// and waits for it; returns its exit code.
func (r *containerRun) runOnce(ctx context.Context) (int, error) {
	r.mu.Lock()
	a := r.adopt
	r.adopt = nil
	r.mu.Unlock()
	if a != nil {
		return r.runAdopted(ctx, a)
	}
	pod := r.w.podSnapshot()
	sb := r.w.sandboxInfo()
	env, vals, err := containerEnv(pod, &r.spec, sb.IP.String(), r.w.m.cfg.NodeIP.String(), r.w.m.objects(ctx))
	if err != nil {
		r.setStartError("CreateContainerConfigError", err)
		return 128, err
	}
	env = append(env, volumeEnv(r.w.m.cfg, pod, &r.spec)...)
	argv, builtin := commandFor(r.w.m.cfg, pod, &r.spec, vals)
	uid, gid := userOf(pod, &r.spec)
	r.mu.Lock()
	instance := r.instance
	r.mu.Unlock()
	lw, err := openLog(logDir(r.w.m.cfg.DataDir, string(r.w.uid), r.spec.Name), instance)
	if err != nil {
		r.setStartError("RunContainerError", err)
		return 128, err
	}
	defer lw.Close()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = env
	cmd.Dir = "/"
	if r.spec.WorkingDir != "" {
		if st, err := os.Stat(r.spec.WorkingDir); err == nil && st.IsDir() {
			cmd.Dir = r.spec.WorkingDir
		}
	}
	// No parent-death signal: a container outlives a crashed agent, and the
	// restarted agent adopts it (or stops it, see adopt.go).
	attr := &syscall.SysProcAttr{Setpgid: true}
	if builtin {
		cmd.Env = workloadEnv(env, vals)
		// The workload binds its ports as root, then drops to the user itself.
		cmd.Args = append(cmd.Args, "--uid", strconv.FormatInt(uid, 10))
		if uid == 0 {
			cmd.Args[len(cmd.Args)-1] = "-1"
		}
	} else if uid != 0 {
		attr.Credential = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}}
	}
	cmd.SysProcAttr = attr
	outR, outW, err := r.streamPipe("stdout")
	if err != nil {
		r.setStartError("RunContainerError", err)
		return 128, err
	}
	errR, errW, err := r.streamPipe("stderr")
	if err != nil {
		outR.Close()
		outW.Close()
		r.setStartError("RunContainerError", err)
		return 128, err
	}
	cmd.Stdout, cmd.Stderr = outW, errW
	err = sandbox.Do(sb.Path(), cmd.Start)
	outW.Close()
	errW.Close()
	if err != nil {
		outR.Close()
		errR.Close()
		r.setStartError("RunContainerError", err)
		return 128, err
	}
	r.w.event(corev1.EventTypeNormal, "Pulled", "Container image %q already present on machine", r.spec.Image)
	r.w.event(corev1.EventTypeNormal, "Created", "Created container: %s", r.spec.Name)
	r.w.event(corev1.EventTypeNormal, "Started", "Started container %s", r.spec.Name)
	now := metav1.Now()
	id := fmt.Sprintf("kubelab://%s-%s-%d", string(r.w.uid)[:min(8, len(r.w.uid))], r.spec.Name, instance)
	writePidFile(r.pidFile(), containerRecord{PID: cmd.Process.Pid, Instance: instance, StartedAt: now.Time, ID: id,
		SpecHash: specHash(&r.spec), Init: r.init})
	r.mu.Lock()
	r.id = id
	// With a startup probe the container counts as started (and may become
	// ready) only once that probe has passed.
	r.started = r.spec.StartupProbe == nil
	r.ready = r.spec.ReadinessProbe == nil && r.spec.StartupProbe == nil
	r.mu.Unlock()
	return r.supervise(ctx, cmd.Process, now, lw, outR, errR, func() int {
		werr := cmd.Wait()
		return exitCode(cmd.ProcessState, werr)
	})
}

// streamPipe makes one output stream of the container: a named pipe under
// the pod's data dir, read by the agent (reader) and written by the container
// (writer, opened read-write so the container itself keeps a reader: it
// never meets a broken pipe when the agent dies, and a restarted agent opens
// the same pipe and reads on).
func (r *containerRun) streamPipe(stream string) (reader, writer *os.File, err error) {
	p := filepath.Join(r.w.m.cfg.DataDir, "pods", string(r.w.uid), r.spec.Name+"."+stream)
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return nil, nil, err
	}
	if err := syscall.Mkfifo(p, 0o600); err != nil && !errors.Is(err, os.ErrExist) {
		return nil, nil, fmt.Errorf("mkfifo %s: %w", p, err)
	}
	reader, err = os.OpenFile(p, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, nil, err
	}
	writer, err = os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		reader.Close()
		return nil, nil, err
	}
	return reader, writer, nil
}

// supervise follows a started (or adopted) process until it exits: logs,
// probes, state; wait blocks until the exit and returns the exit code.
func (r *containerRun) supervise(ctx context.Context, proc *os.Process, startedAt metav1.Time, lw *logWriter, outR, errR *os.File, wait func() int) (int, error) {
	var pumps sync.WaitGroup
	pumps.Add(2)
	go lw.pump("stdout", outR, pumps.Done)
	go lw.pump("stderr", errR, pumps.Done)
	pidFile := r.pidFile()
	r.mu.Lock()
	r.proc = proc
	r.state = corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: startedAt}}
	stopping := r.stopping
	r.mu.Unlock()
	if stopping {
		_ = syscall.Kill(-proc.Pid, syscall.SIGKILL)
	}
	r.w.kick()

	probeCtx, cancelProbes := context.WithCancel(ctx)
	go r.probes(probeCtx, r.w.sandboxInfo().IP.String())

	code := wait()
	cancelProbes()
	_ = os.Remove(pidFile)
	// Reap the rest of the process group: a container ends with its main process.
	_ = syscall.Kill(-proc.Pid, syscall.SIGKILL)
	pumpsDone := make(chan struct{})
	go func() { pumps.Wait(); close(pumpsDone) }()
	select {
	case <-pumpsDone:
	case <-time.After(2 * time.Second): // an escaped grandchild holds the pipe
		outR.Close()
		errR.Close()
		<-pumpsDone
	}
	outR.Close()
	errR.Close()
	reason, message := "Completed", ""
	if code != 0 {
		reason = "Error"
	}
	if code == exitUnknown {
		// As the kubelet reports a container it lost track of.
		code, reason = 137, "ContainerStatusUnknown"
		message = "adopted after an agent restart: not the agent's child, so its exit status cannot be observed"
	}
	r.mu.Lock()
	term := corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
		ExitCode: int32(code), Reason: reason, Message: message, StartedAt: startedAt, FinishedAt: metav1.Now(), ContainerID: r.id}}
	r.state = term
	r.last = term
	r.ready = false
	r.proc = nil
	r.mu.Unlock()
	r.w.kick()
	return code, nil
}

func (r *containerRun) pidFile() string {
	return filepath.Join(r.w.m.cfg.DataDir, "pods", string(r.w.uid), r.spec.Name+".pid")
}

func exitCode(ps *os.ProcessState, err error) int {
	if ps == nil {
		if err != nil {
			return 128
		}
		return 0
	}
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ps.ExitCode()
}

func (r *containerRun) setStartError(reason string, err error) {
	r.w.event(corev1.EventTypeWarning, "Failed", "Error: %v", err)
	r.mu.Lock()
	r.state = corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: reason, Message: err.Error()}}
	r.mu.Unlock()
	r.w.kick()
}

// signal sends sig to the container's process group.
func (r *containerRun) signal(sig syscall.Signal) {
	r.mu.Lock()
	p := r.proc
	r.mu.Unlock()
	if p != nil {
		_ = syscall.Kill(-p.Pid, sig)
	}
}

// stop ends the container for good: SIGTERM, then SIGKILL after grace.
func (r *containerRun) stop(grace time.Duration) {
	r.mu.Lock()
	if !r.stopping {
		r.stopping = true
		close(r.killed)
	}
	r.mu.Unlock()
	r.signal(syscall.SIGTERM)
	select {
	case <-r.done:
		return
	case <-time.After(grace):
	}
	r.signal(syscall.SIGKILL)
	<-r.done
}

// restartInstance kills the running process (liveness failure) so that the
// run loop applies the restart policy.
func (r *containerRun) restartInstance(grace time.Duration, reason string) {
	slog.Info("killing container", "pod", r.w.key, "container", r.spec.Name, "reason", reason)
	r.mu.Lock()
	p := r.proc
	r.mu.Unlock()
	if p == nil {
		return
	}
	_ = syscall.Kill(-p.Pid, syscall.SIGTERM)
	t := time.NewTimer(grace)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			_ = syscall.Kill(-p.Pid, syscall.SIGKILL)
			return
		case <-time.After(50 * time.Millisecond):
			r.mu.Lock()
			gone := r.proc != p
			r.mu.Unlock()
			if gone {
				return
			}
		}
	}
}

// execCmd prepares an extra command in the container's context (exec
// probes, kubectl exec): same user and environment; startIn puts it in the
// pod's namespace.
func (r *containerRun) execCmd(argv []string) (*exec.Cmd, error) {
	if len(argv) == 0 {
		return nil, errors.New("empty command")
	}
	pod := r.w.podSnapshot()
	sb := r.w.sandboxInfo()
	if sb == nil {
		return nil, errors.New("pod has no sandbox")
	}
	env, _, err := containerEnv(pod, &r.spec, sb.IP.String(), r.w.m.cfg.NodeIP.String(), r.w.m.objects(r.w.m.ctx))
	if err != nil {
		return nil, err
	}
	env = append(env, volumeEnv(r.w.m.cfg, pod, &r.spec)...)
	p, err := exec.LookPath(argv[0])
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(p, argv[1:]...)
	cmd.Env = env
	cmd.Dir = "/"
	uid, gid := userOf(pod, &r.spec)
	attr := &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if uid != 0 {
		attr.Credential = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}}
	}
	cmd.SysProcAttr = attr
	return cmd, nil
}

// startIn starts cmd inside the pod's namespace.
func (r *containerRun) startIn(cmd *exec.Cmd) error {
	sb := r.w.sandboxInfo()
	if sb == nil {
		return errors.New("pod has no sandbox")
	}
	return sandbox.Do(sb.Path(), cmd.Start)
}
