package nodeagent

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/kubelab/kubelab/apiserver/resources"
)

const (
	leaseDuration   = 40 // seconds, as the kubelet's default
	leaseRenew      = 10 * time.Second
	statusHeartbeat = 30 * time.Second
	maxPods         = 110
)

// capacity is what the node offers: host CPUs and memory unless overridden.
func capacity(cfg *Config) (corev1.ResourceList, error) {
	cpu := resource.MustParse(strconv.Itoa(runtime.NumCPU()))
	if cfg.CPU != "" {
		q, err := resource.ParseQuantity(cfg.CPU)
		if err != nil {
			return nil, fmt.Errorf("cpu %q: %w", cfg.CPU, err)
		}
		cpu = q
	}
	mem := *resource.NewQuantity(hostMemory(), resource.BinarySI)
	if cfg.Memory != "" {
		q, err := resource.ParseQuantity(cfg.Memory)
		if err != nil {
			return nil, fmt.Errorf("memory %q: %w", cfg.Memory, err)
		}
		mem = q
	}
	return corev1.ResourceList{
		corev1.ResourceCPU:    cpu,
		corev1.ResourceMemory: mem,
		corev1.ResourcePods:   *resource.NewQuantity(maxPods, resource.DecimalSI),
	}, nil
}

func hostMemory() int64 {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 1 << 30
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) >= 2 && fs[0] == "MemTotal:" {
			if kb, err := strconv.ParseInt(fs[1], 10, 64); err == nil {
				return kb * 1024
			}
		}
	}
	return 1 << 30
}

// nodeStatus is the status the agent reports; pure apart from the clock.
func nodeStatus(cfg *Config, capa corev1.ResourceList, now metav1.Time, transition metav1.Time) corev1.NodeStatus {
	return corev1.NodeStatus{
		Capacity:    capa,
		Allocatable: capa,
		Phase:       corev1.NodeRunning,
		Addresses: []corev1.NodeAddress{
			{Type: corev1.NodeInternalIP, Address: cfg.NodeIP.String()},
			{Type: corev1.NodeHostName, Address: cfg.NodeName},
		},
		DaemonEndpoints: corev1.NodeDaemonEndpoints{KubeletEndpoint: corev1.DaemonEndpoint{Port: int32(cfg.KubeletPort)}},
		NodeInfo: corev1.NodeSystemInfo{
			MachineID:               machineID(),
			KernelVersion:           kernelVersion(),
			OSImage:                 "kubelab",
			ContainerRuntimeVersion: "kubelab://" + resources.KubernetesVersion,
			KubeletVersion:          resources.KubernetesVersion,
			KubeProxyVersion:        resources.KubernetesVersion,
			OperatingSystem:         runtime.GOOS,
			Architecture:            runtime.GOARCH,
		},
		Conditions: []corev1.NodeCondition{
			{Type: corev1.NodeMemoryPressure, Status: corev1.ConditionFalse, LastHeartbeatTime: now, LastTransitionTime: transition, Reason: "KubeletHasSufficientMemory", Message: "kubelet has sufficient memory available"},
			{Type: corev1.NodeDiskPressure, Status: corev1.ConditionFalse, LastHeartbeatTime: now, LastTransitionTime: transition, Reason: "KubeletHasNoDiskPressure", Message: "kubelet has no disk pressure"},
			{Type: corev1.NodePIDPressure, Status: corev1.ConditionFalse, LastHeartbeatTime: now, LastTransitionTime: transition, Reason: "KubeletHasSufficientPID", Message: "kubelet has sufficient PID available"},
			{Type: corev1.NodeReady, Status: corev1.ConditionTrue, LastHeartbeatTime: now, LastTransitionTime: transition, Reason: "KubeletReady", Message: "kubelet is posting ready status"},
		},
	}
}

func machineID() string {
	b, _ := os.ReadFile("/etc/machine-id")
	return strings.TrimSpace(string(b))
}

func kernelVersion() string {
	b, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	return strings.TrimSpace(string(b))
}

// register creates the Node (or adopts the existing one) and posts its status.
func register(ctx context.Context, client kubernetes.Interface, cfg *Config, capa corev1.ResourceList) (*corev1.Node, error) {
	now := metav1.Now()
	want := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: cfg.NodeName, Labels: map[string]string{
			"kubernetes.io/hostname": cfg.NodeName,
			"kubernetes.io/os":       runtime.GOOS,
			"kubernetes.io/arch":     runtime.GOARCH,
		}},
		Status: nodeStatus(cfg, capa, now, now),
	}
	var node *corev1.Node
	err := retry(ctx, func() error {
		n, err := client.CoreV1().Nodes().Create(ctx, want, metav1.CreateOptions{})
		if apierrors.IsAlreadyExists(err) {
			n, err = client.CoreV1().Nodes().Get(ctx, cfg.NodeName, metav1.GetOptions{})
			if err == nil {
				changed := false
				for k, v := range want.Labels {
					if n.Labels[k] != v {
						if n.Labels == nil {
							n.Labels = map[string]string{}
						}
						n.Labels[k] = v
						changed = true
					}
				}
				if changed {
					n, err = client.CoreV1().Nodes().Update(ctx, n, metav1.UpdateOptions{})
				}
			}
		}
		if err != nil {
			return err
		}
		n.Status = want.Status
		node, err = client.CoreV1().Nodes().UpdateStatus(ctx, n, metav1.UpdateOptions{})
		return err
	})
	return node, err
}

// retry runs fn until it succeeds or ctx ends, backing off up to 5 s.
func retry(ctx context.Context, fn func() error) error {
	delay := 100 * time.Millisecond
	for {
		err := fn()
		if err == nil {
			return nil
		}
		slog.Debug("retrying", "err", err)
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last error: %v)", ctx.Err(), err)
		case <-time.After(delay):
		}
		if delay < 5*time.Second {
			delay *= 2
		}
	}
}

// heartbeat renews the Lease every 10 s and refreshes the Ready condition.
func heartbeat(ctx context.Context, client kubernetes.Interface, cfg *Config, capa corev1.ResourceList) {
	lt := time.NewTicker(leaseRenew)
	defer lt.Stop()
	lastStatus := time.Now()
	renewLease(ctx, client, cfg.NodeName)
	for {
		select {
		case <-ctx.Done():
			return
		case <-lt.C:
		}
		renewLease(ctx, client, cfg.NodeName)
		if time.Since(lastStatus) >= statusHeartbeat {
			if err := postStatus(ctx, client, cfg, capa); err != nil {
				slog.Warn("node status", "err", err)
			} else {
				lastStatus = time.Now()
			}
		}
	}
}

func postStatus(ctx context.Context, client kubernetes.Interface, cfg *Config, capa corev1.ResourceList) error {
	n, err := client.CoreV1().Nodes().Get(ctx, cfg.NodeName, metav1.GetOptions{})
	if err != nil {
		return err
	}
	now := metav1.Now()
	transition := now
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue {
			transition = c.LastTransitionTime
		}
	}
	n.Status = nodeStatus(cfg, capa, now, transition)
	_, err = client.CoreV1().Nodes().UpdateStatus(ctx, n, metav1.UpdateOptions{})
	return err
}

func renewLease(ctx context.Context, client kubernetes.Interface, node string) {
	leases := client.CoordinationV1().Leases("kube-node-lease")
	now := metav1.NewMicroTime(time.Now())
	l, err := leases.Get(ctx, node, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		_, err = leases.Create(ctx, &coordinationv1.Lease{
			ObjectMeta: metav1.ObjectMeta{Name: node, Namespace: "kube-node-lease"},
			Spec: coordinationv1.LeaseSpec{HolderIdentity: ptr.To(node), LeaseDurationSeconds: ptr.To[int32](leaseDuration),
				AcquireTime: &now, RenewTime: &now},
		}, metav1.CreateOptions{})
	} else if err == nil {
		l.Spec.HolderIdentity = ptr.To(node)
		l.Spec.LeaseDurationSeconds = ptr.To[int32](leaseDuration)
		l.Spec.RenewTime = &now
		_, err = leases.Update(ctx, l, metav1.UpdateOptions{})
	}
	if err != nil && ctx.Err() == nil {
		slog.Warn("renew lease", "node", node, "err", err)
	}
}

// waitPodCIDR polls the Node until the IPAM controller has given it a pod CIDR.
func waitPodCIDR(ctx context.Context, client kubernetes.Interface, node string) (*net.IPNet, error) {
	logged := false
	for {
		n, err := client.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
		if err == nil && n.Spec.PodCIDR != "" {
			_, cidr, err := net.ParseCIDR(n.Spec.PodCIDR)
			if err != nil {
				return nil, fmt.Errorf("node %s podCIDR %q: %w", node, n.Spec.PodCIDR, err)
			}
			return cidr, nil
		}
		if !logged {
			slog.Info("waiting for a pod CIDR", "node", node)
			logged = true
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}
