package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/kubelab/kubelab/nodeagent/labnet"
	"github.com/kubelab/kubelab/proxy"
)

func upCommand() *cli.Command {
	return &cli.Command{
		Name:  "up",
		Usage: "start a lab: control plane plus N nodes, each in its own network namespace (foreground)",
		Flags: []cli.Flag{
			&cli.IntFlag{Name: "nodes", Value: 2, Usage: "number of nodes"},
			dataDirFlag(),
			&cli.StringFlag{Name: "name", Value: "kubelab", Usage: "prefix of every host-level object the lab creates"},
			&cli.IntFlag{Name: "api-port", Value: 6443, Usage: "API server port (on 127.0.0.1 and the lab bridge)"},
			&cli.StringFlag{Name: "subnet", Value: labnet.DefaultSubnet.String(), Usage: "lab bridge network", Hidden: true},
			featureGatesFlag(),
			&cli.StringFlag{Name: "proxy-mode", Value: proxy.ModeAuto, Usage: "how the nodes program Service rules: iptables, nftables, or auto (nftables when nft is installed)"},
			&cli.StringFlag{Name: "no-local-endpoints", Value: "reject", Usage: "what internal traffic to a Local Service meets on a node with no local endpoint: reject or drop"},
			logLevelFlag(),
		},
		Action: runUp,
	}
}

// upConfig is everything `up` needs, resolved from flags.
type upConfig struct {
	dataDir          string
	nodes            int
	apiPort          int
	net              labnet.Config
	gates            map[string]bool
	noLocalEndpoints string
	proxyMode        string
	logLevel         string
}

func runUp(c *cli.Context) error {
	if err := setupLogging(c.String("log-level")); err != nil {
		return cli.Exit(err.Error(), 2)
	}
	cfg, err := upConfigFromFlags(c)
	if err != nil {
		return cli.Exit(err.Error(), 2)
	}
	if err := checkHost(); err != nil {
		return cli.Exit(err.Error(), 1)
	}
	if err := os.MkdirAll(cfg.dataDir, 0o700); err != nil {
		return cli.Exit(err.Error(), 1)
	}
	lock, err := lockDataDir(cfg.dataDir)
	if err != nil {
		return cli.Exit(err.Error(), 1)
	}
	defer lock.Close()
	if others, _ := labnet.Namespaces(cfg.net.Name); len(others) > 0 && labRunningElsewhere(cfg) {
		return cli.Exit(fmt.Sprintf("a lab named %q is already running from another data dir; choose another --name", cfg.net.Name), 1)
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	return up(ctx, cfg, c.App.Writer)
}

func upConfigFromFlags(c *cli.Context) (upConfig, error) {
	dataDir, err := filepath.Abs(c.String("data-dir"))
	if err != nil {
		return upConfig{}, err
	}
	_, subnet, err := net.ParseCIDR(c.String("subnet"))
	if err != nil {
		return upConfig{}, fmt.Errorf("--subnet: %w", err)
	}
	gates, err := parseFeatureGates(c.String("feature-gates"))
	if err != nil {
		return upConfig{}, err
	}
	nle := c.String("no-local-endpoints")
	if nle != "reject" && nle != "drop" {
		return upConfig{}, fmt.Errorf("--no-local-endpoints %q: want reject or drop", nle)
	}
	if err := checkProxyMode(c.String("proxy-mode")); err != nil {
		return upConfig{}, err
	}
	cfg := upConfig{
		proxyMode: c.String("proxy-mode"),
		dataDir:   dataDir, nodes: c.Int("nodes"), apiPort: c.Int("api-port"),
		net:   labnet.Config{Name: c.String("name"), Subnet: subnet, ServiceCIDR: labnet.DefaultServiceCIDR},
		gates: gates, noLocalEndpoints: nle, logLevel: c.String("log-level"),
	}
	if cfg.nodes < 1 || cfg.nodes > 99 {
		return cfg, fmt.Errorf("--nodes %d: want 1 to 99", cfg.nodes)
	}
	if cfg.apiPort < 1 || cfg.apiPort > 65535 {
		return cfg, fmt.Errorf("--api-port %d out of range", cfg.apiPort)
	}
	return cfg, cfg.net.Validate()
}

// checkHost fails early, with the fix, when the lab cannot work here.
func checkHost() error {
	if os.Geteuid() != 0 {
		return errors.New("kubelab up needs root: it creates network namespaces, links and iptables rules (try: sudo kubelab up)")
	}
	for _, tool := range []string{"iptables", "iptables-restore", "ip"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("kubelab up needs %s on the PATH (install it with `make deps`)", tool)
		}
	}
	return nil
}

// labRunningElsewhere reports whether processes already live in this lab
// name's node namespaces: another `up` owns them.
func labRunningElsewhere(cfg upConfig) bool {
	for i := 1; i <= 99; i++ {
		ns := cfg.net.NodeNamespace(labnet.NodeName(i))
		if _, err := os.Stat(labnet.NamespacePath(ns)); err != nil {
			break
		}
		if pids, _ := labnet.ProcessesIn(ns); len(pids) > 0 {
			return true
		}
	}
	return false
}

func up(ctx context.Context, cfg upConfig, out io.Writer) error {
	say := func(format string, a ...any) { fmt.Fprintf(out, format+"\n", a...) }

	// Start from a clean network: leftovers of a crashed run (and their
	// processes) go; the data, and so the cluster, stay.
	if err := labnet.Down(cfg.net); err != nil {
		return fmt.Errorf("clean previous lab network: %w", err)
	}
	if err := labnet.Up(cfg.net, cfg.nodes); err != nil {
		_ = labnet.Down(cfg.net)
		return err
	}
	defer func() {
		if err := labnet.Down(cfg.net); err != nil {
			slog.Warn("remove lab network", "err", err)
		}
	}()
	say("created bridge %s (%s/%d)", cfg.net.BridgeName(), cfg.net.BridgeIP(), maskBits(cfg.net.Subnet))
	for i := 1; i <= cfg.nodes; i++ {
		say("created %s (namespace %s, %s)", labnet.NodeName(i), cfg.net.NodeNamespace(labnet.NodeName(i)), cfg.net.NodeIP(i))
	}
	if w := bridgeFirewallWarning(cfg.net.BridgeName()); w != "" {
		say("%s", w)
	}

	cpCtx, stopControlPlane := context.WithCancel(context.Background())
	cp, err := startControlPlane(cpCtx, controlPlaneConfig{
		dataDir:  cfg.dataDir,
		listen:   []string{net.JoinHostPort("127.0.0.1", strconv.Itoa(cfg.apiPort)), net.JoinHostPort(cfg.net.BridgeIP().String(), strconv.Itoa(cfg.apiPort))},
		tlsSANs:  []string{cfg.net.BridgeIP().String()},
		gates:    cfg.gates,
		apiIP:    cfg.net.BridgeIP(),
		apiPort:  cfg.apiPort,
		logLevel: cfg.logLevel,
	})
	if err != nil {
		stopControlPlane()
		return fmt.Errorf("start control plane: %w", err)
	}
	defer func() {
		stopControlPlane()
		cp.wait()
	}()
	say("API server ready on https://127.0.0.1:%d", cfg.apiPort)

	st := &labState{Name: cfg.net.Name, Nodes: cfg.nodes, Subnet: cfg.net.Subnet.String(), APIPort: cfg.apiPort, PID: os.Getpid()}
	if err := writeLabState(cfg.dataDir, st); err != nil {
		return err
	}
	defer func() {
		st.PID = 0
		_ = writeLabState(cfg.dataDir, st)
	}()

	agents := startAgents(cfg)
	defer agents.stop(10 * time.Second)

	client, err := kubernetes.NewForConfig(cp.loopback)
	if err != nil {
		return err
	}
	if err := waitNodesReady(ctx, client, cfg.nodes, say); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		say("warning: %v (see %s/nodes/*/agent.log)", err, cfg.dataDir)
	}
	say("")
	say("lab %q is up with %d node(s). In another terminal:", cfg.net.Name, cfg.nodes)
	say("  export KUBECONFIG=%s", filepath.Join(cfg.dataDir, "kubeconfig"))
	say("  kubectl get nodes")
	say("  kubelab node exec --data-dir %s node-1 -- curl -s http://<cluster-ip>/", cfg.dataDir)
	say("Stop with Ctrl-C or `kubelab down --data-dir %s`.", cfg.dataDir)

	<-ctx.Done()
	say("stopping lab %q", cfg.net.Name)
	return nil
}

func maskBits(n *net.IPNet) int { ones, _ := n.Mask.Size(); return ones }

// waitNodesReady prints each node as it turns Ready, until all are or a minute passes.
func waitNodesReady(ctx context.Context, client kubernetes.Interface, want int, say func(string, ...any)) error {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	seen := map[string]bool{}
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		nodes, err := client.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
		if err == nil {
			for _, n := range nodes.Items {
				if !seen[n.Name] && nodeReady(&n) {
					seen[n.Name] = true
					say("%s Ready", n.Name)
				}
			}
			if len(seen) >= want {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%d of %d nodes Ready after a minute", len(seen), want)
		case <-tick.C:
		}
	}
}

func nodeReady(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// agentSet supervises one `kubelab agent` child per node, each started inside
// its node's namespace with `ip netns exec`, so the agent is the same program
// that runs on a real machine.
type agentSet struct {
	mu      sync.Mutex
	procs   map[string]*exec.Cmd
	stopped bool
	wg      sync.WaitGroup
}

func startAgents(cfg upConfig) *agentSet {
	self, err := os.Executable()
	if err != nil {
		self = os.Args[0]
	}
	a := &agentSet{procs: map[string]*exec.Cmd{}}
	for i := 1; i <= cfg.nodes; i++ {
		node := labnet.NodeName(i)
		nodeDir := filepath.Join(cfg.dataDir, "nodes", node)
		args := []string{"netns", "exec", cfg.net.NodeNamespace(node), self, "agent",
			"--server", fmt.Sprintf("https://%s", net.JoinHostPort(cfg.net.BridgeIP().String(), strconv.Itoa(cfg.apiPort))),
			"--token-file", filepath.Join(cfg.dataDir, "node-token"),
			"--ca-file", filepath.Join(cfg.dataDir, "pki", "ca.crt"),
			"--node-name", node,
			"--data-dir", nodeDir,
			"--netns-prefix", cfg.net.NodeNamespace(node) + "-",
			"--no-local-endpoints", cfg.noLocalEndpoints,
			"--proxy-mode", cfg.proxyMode,
			"--log-level", cfg.logLevel,
		}
		if fg := formatFeatureGates(cfg.gates); fg != "" {
			args = append(args, "--feature-gates", fg)
		}
		a.wg.Add(1)
		go a.supervise(node, nodeDir, args)
	}
	return a
}

// supervise keeps one agent running, restarting it with back-off if it dies.
func (a *agentSet) supervise(node, nodeDir string, args []string) {
	defer a.wg.Done()
	backoff := time.Second
	for {
		if err := os.MkdirAll(nodeDir, 0o700); err != nil {
			slog.Error("agent data dir", "node", node, "err", err)
			return
		}
		logf, err := os.OpenFile(filepath.Join(nodeDir, "agent.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			slog.Error("agent log", "node", node, "err", err)
			return
		}
		cmd := exec.Command("ip", args...)
		cmd.Stdout, cmd.Stderr = logf, logf
		// Own process group: a Ctrl-C at the terminal reaches `up` only, which
		// then stops the agents in order.
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		a.mu.Lock()
		if a.stopped {
			a.mu.Unlock()
			logf.Close()
			return
		}
		err = cmd.Start()
		if err == nil {
			a.procs[node] = cmd
		}
		a.mu.Unlock()
		if err != nil {
			slog.Error("start agent", "node", node, "err", err)
		} else {
			started := time.Now()
			err = cmd.Wait()
			if time.Since(started) > time.Minute {
				backoff = time.Second
			}
		}
		logf.Close()
		a.mu.Lock()
		stopped := a.stopped
		a.mu.Unlock()
		if stopped {
			return
		}
		slog.Warn("agent exited; restarting", "node", node, "err", err, "in", backoff)
		time.Sleep(backoff)
		backoff = min(2*backoff, 30*time.Second)
	}
}

// stop sends SIGTERM to every agent and SIGKILL to those still running after grace.
func (a *agentSet) stop(grace time.Duration) {
	a.mu.Lock()
	a.stopped = true
	for _, cmd := range a.procs {
		if cmd.Process != nil {
			_ = cmd.Process.Signal(syscall.SIGTERM)
		}
	}
	a.mu.Unlock()
	done := make(chan struct{})
	go func() { a.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(grace):
		a.mu.Lock()
		for _, cmd := range a.procs {
			if cmd.Process != nil {
				_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			}
		}
		a.mu.Unlock()
		<-done
	}
}
