package nodeagent

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// probeTiming holds a probe's timing with the API defaults applied.
type probeTiming struct {
	initial, period, timeout time.Duration
	failure, success         int32
}

func timingOf(p *corev1.Probe) probeTiming {
	t := probeTiming{initial: time.Duration(p.InitialDelaySeconds) * time.Second,
		period: time.Duration(p.PeriodSeconds) * time.Second, timeout: time.Duration(p.TimeoutSeconds) * time.Second,
		failure: p.FailureThreshold, success: p.SuccessThreshold}
	if t.period <= 0 {
		t.period = 10 * time.Second
	}
	if t.timeout <= 0 {
		t.timeout = time.Second
	}
	if t.failure <= 0 {
		t.failure = 3
	}
	if t.success <= 0 {
		t.success = 1
	}
	return t
}

// probeState counts consecutive results and says when the verdict flips;
// pure, so the thresholds are table-tested.
type probeState struct {
	ok         bool
	succ, fail int32
}

// observe records one result; returns the verdict after it.
func (s *probeState) observe(success bool, t probeTiming) bool {
	if success {
		s.succ++
		s.fail = 0
		if s.succ >= t.success {
			s.ok = true
		}
	} else {
		s.fail++
		s.succ = 0
		if s.fail >= t.failure {
			s.ok = false
		}
	}
	return s.ok
}

// resolvePort turns a number or a named container port into a number.
func resolvePort(p intstr.IntOrString, c *corev1.Container) (int, error) {
	if p.Type == intstr.Int {
		return p.IntValue(), nil
	}
	for _, cp := range c.Ports {
		if cp.Name == p.StrVal {
			return int(cp.ContainerPort), nil
		}
	}
	if n, err := strconv.Atoi(p.StrVal); err == nil {
		return n, nil
	}
	return 0, fmt.Errorf("no port named %q", p.StrVal)
}

// probeOnce runs one check against the pod at ip.
func (r *containerRun) probeOnce(ctx context.Context, p *corev1.Probe, ip string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	switch {
	case p.HTTPGet != nil:
		port, err := resolvePort(p.HTTPGet.Port, &r.spec)
		if err != nil {
			return err
		}
		host := ip
		if p.HTTPGet.Host != "" {
			host = p.HTTPGet.Host
		}
		scheme := strings.ToLower(string(p.HTTPGet.Scheme))
		if scheme == "" {
			scheme = "http"
		}
		path := p.HTTPGet.Path
		if !strings.HasPrefix(path, "/") {
			path = "/" + path
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("%s://%s%s", scheme, net.JoinHostPort(host, strconv.Itoa(port)), path), nil)
		if err != nil {
			return err
		}
		req.Header.Set("User-Agent", "kube-probe/kubelab")
		for _, h := range p.HTTPGet.HTTPHeaders {
			req.Header.Set(h.Name, h.Value)
		}
		resp, err := probeClient.Do(req)
		if err != nil {
			return err
		}
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 10<<10))
		resp.Body.Close()
		if resp.StatusCode < 200 || resp.StatusCode >= 400 {
			return fmt.Errorf("HTTP probe failed with statuscode: %d", resp.StatusCode)
		}
		return nil
	case p.TCPSocket != nil:
		port, err := resolvePort(p.TCPSocket.Port, &r.spec)
		if err != nil {
			return err
		}
		host := ip
		if p.TCPSocket.Host != "" {
			host = p.TCPSocket.Host
		}
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", net.JoinHostPort(host, strconv.Itoa(port)))
		if err != nil {
			return err
		}
		return c.Close()
	case p.Exec != nil:
		cmd, err := r.execCmd(p.Exec.Command)
		if err != nil {
			return err
		}
		if err := r.startIn(cmd); err != nil {
			return err
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			return err
		case <-ctx.Done():
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
			return fmt.Errorf("command timed out after %s", timeout)
		}
	}
	return fmt.Errorf("probe has no handler")
}

var probeClient = &http.Client{
	Transport: &http.Transport{DisableKeepAlives: true, Proxy: nil},
	CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	},
}

// probes runs the startup probe, then readiness and liveness, for one
// container instance.
func (r *containerRun) probes(ctx context.Context, ip string) {
	r.mu.Lock()
	started := r.started
	r.mu.Unlock()
	if p := r.spec.StartupProbe; p != nil && !started {
		if !r.startupLoop(ctx, p, ip) {
			return
		}
		r.mu.Lock()
		r.started = true
		r.ready = r.spec.ReadinessProbe == nil
		r.mu.Unlock()
		r.w.kick()
	}
	go r.probeLoop(ctx, r.spec.ReadinessProbe, false, ip)
	go r.probeLoop(ctx, r.spec.LivenessProbe, true, ip)
}

// startupLoop probes until the first success (true) or until failureThreshold
// consecutive failures, which kill the container as a liveness failure does.
func (r *containerRun) startupLoop(ctx context.Context, p *corev1.Probe, ip string) bool {
	t := timingOf(p)
	select {
	case <-ctx.Done():
		return false
	case <-time.After(t.initial):
	}
	var fails int32
	tick := time.NewTicker(t.period)
	defer tick.Stop()
	for {
		err := r.probeOnce(ctx, p, ip, t.timeout)
		if ctx.Err() != nil {
			return false
		}
		if err == nil {
			return true
		}
		fails++
		r.w.event(corev1.EventTypeWarning, "Unhealthy", "Startup probe failed: %v", err)
		if fails >= t.failure {
			r.w.event(corev1.EventTypeNormal, "Killing", "Container %s failed startup probe, will be restarted", r.spec.Name)
			r.restartInstance(r.graceFor(p), fmt.Sprintf("startup probe failed: %v", err))
			return false
		}
		select {
		case <-ctx.Done():
			return false
		case <-tick.C:
		}
	}
}

// graceFor is the kill grace after a failed probe: the probe's own
// terminationGracePeriodSeconds, else the pod's, else 30 s.
func (r *containerRun) graceFor(p *corev1.Probe) time.Duration {
	grace := 30 * time.Second
	if pod := r.w.podSnapshot(); pod.Spec.TerminationGracePeriodSeconds != nil {
		grace = time.Duration(*pod.Spec.TerminationGracePeriodSeconds) * time.Second
	}
	if p.TerminationGracePeriodSeconds != nil {
		grace = time.Duration(*p.TerminationGracePeriodSeconds) * time.Second
	}
	return grace
}

// probeLoop runs a readiness or liveness probe for one container instance.
func (r *containerRun) probeLoop(ctx context.Context, p *corev1.Probe, liveness bool, ip string) {
	if p == nil {
		return
	}
	t := timingOf(p)
	st := probeState{ok: liveness} // liveness starts "alive", readiness "not ready"
	select {
	case <-ctx.Done():
		return
	case <-time.After(t.initial):
	}
	tick := time.NewTicker(t.period)
	defer tick.Stop()
	for {
		err := r.probeOnce(ctx, p, ip, t.timeout)
		if ctx.Err() != nil {
			return
		}
		ok := st.observe(err == nil, t)
		if err != nil {
			kind := "Readiness"
			if liveness {
				kind = "Liveness"
			}
			r.w.event(corev1.EventTypeWarning, "Unhealthy", "%s probe failed: %v", kind, err)
		}
		if liveness {
			if !ok {
				grace := r.graceFor(p)
				r.w.event(corev1.EventTypeNormal, "Killing", "Container %s failed liveness probe, will be restarted", r.spec.Name)
				r.restartInstance(grace, fmt.Sprintf("liveness probe failed: %v", err))
				return
			}
		} else {
			r.mu.Lock()
			changed := r.ready != ok && r.state.Running != nil
			if r.state.Running != nil {
				r.ready = ok
			}
			r.mu.Unlock()
			if changed {
				r.w.kick()
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}
