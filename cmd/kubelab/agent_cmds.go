package main

// The `agent` command and the hidden `workload` command, owned by the
// nodeagent helper; main.go registers agentCommand() and workloadCommand().

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os/signal"
	"syscall"

	"github.com/urfave/cli/v2"
	"k8s.io/client-go/kubernetes"

	"github.com/kubelab/kubelab/nodeagent"
	"github.com/kubelab/kubelab/nodeagent/workload"
	"github.com/kubelab/kubelab/proxy"
)

func agentCommand() *cli.Command {
	return &cli.Command{
		Name:  "agent",
		Usage: "run a node: join the cluster, register, run its pods, program routes and iptables",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "server", Required: true, Usage: "API server URL, e.g. https://10.200.0.254:6443"},
			&cli.StringFlag{Name: "token-file", Usage: "file holding the node join token (DATA/node-token)"},
			&cli.StringFlag{Name: "ca-file", Usage: "cluster CA certificate (default: ca.crt next to the token file)"},
			&cli.StringFlag{Name: "node-name", Usage: "node name (default: host name)"},
			&cli.StringFlag{Name: "data-dir", Value: "/var/lib/kubelab/agent", Usage: "agent state: credentials, IP leases, pod logs"},
			&cli.StringFlag{Name: "node-ip", Usage: "node InternalIP (default: first IPv4 of eth0 or of the default-route link)"},
			&cli.StringFlag{Name: "cpu", Usage: "CPU capacity to report (default: host CPUs)"},
			&cli.StringFlag{Name: "memory", Usage: "memory capacity to report, e.g. 4Gi (default: host memory)"},
			&cli.IntFlag{Name: "kubelet-port", Value: 10250, Usage: "port of the kubelet API on the node IP"},
			&cli.StringFlag{Name: "netns-prefix", Usage: "prefix of pod network namespace names (default kubelab-<node>-)"},
			&cli.StringFlag{Name: "cluster-cidr", Value: "10.244.0.0/16", Usage: "pod network of the whole cluster (for the proxy's masquerading)"},
			&cli.StringFlag{Name: "service-cidr", Value: "10.96.0.0/12", Usage: "Service ClusterIP range (informational)"},
			&cli.StringFlag{Name: "no-local-endpoints", Value: "reject", Usage: "internal traffic to a Local Service with no local endpoint: reject or drop"},
			&cli.BoolFlag{Name: "no-proxy", Usage: "do not program Service rules"},
			&cli.StringFlag{Name: "proxy-mode", Value: proxy.ModeAuto, Usage: "how Service rules are programmed: iptables, nftables, or auto (nftables when nft is installed)"},
			featureGatesFlag(),
			logLevelFlag(),
		},
		Action: func(c *cli.Context) error {
			if err := setupLogging(c.String("log-level")); err != nil {
				return err
			}
			gates, err := parseFeatureGates(c.String("feature-gates"))
			if err != nil {
				return err
			}
			cfg := nodeagent.Config{
				ServerURL: c.String("server"), TokenFile: c.String("token-file"), CAFile: c.String("ca-file"),
				NodeName: c.String("node-name"), DataDir: c.String("data-dir"),
				CPU: c.String("cpu"), Memory: c.String("memory"), KubeletPort: c.Int("kubelet-port"),
				NetnsPrefix: c.String("netns-prefix"), FeatureGates: gates,
				ServiceInternalTrafficPolicy: gates["ServiceInternalTrafficPolicy"],
				NoLocalEndpoints:             c.String("no-local-endpoints"),
			}
			if s := c.String("node-ip"); s != "" {
				if cfg.NodeIP = net.ParseIP(s).To4(); cfg.NodeIP == nil {
					return fmt.Errorf("--node-ip %q is not an IPv4 address", s)
				}
			}
			if !c.Bool("no-proxy") {
				clusterCIDR, serviceCIDR, mode := c.String("cluster-cidr"), c.String("service-cidr"), c.String("proxy-mode")
				if err := checkProxyMode(mode); err != nil {
					return err
				}
				cfg.StartProxy = func(ctx context.Context, client kubernetes.Interface, p nodeagent.ProxyParams) (http.Handler, error) {
					px, err := proxy.New(client, proxy.Config{
						NodeName: p.NodeName, NodeIP: p.NodeIP, ClusterCIDR: clusterCIDR, ServiceCIDR: serviceCIDR,
						NoLocalEndpoints: cfg.NoLocalEndpoints, ServiceInternalTrafficPolicy: cfg.ServiceInternalTrafficPolicy,
						Registerer: p.Registerer, Mode: mode,
					})
					if err != nil {
						return nil, err
					}
					go func() {
						if err := px.Run(ctx); err != nil && ctx.Err() == nil {
							slog.Error("proxy stopped", "err", err)
						}
					}()
					return px.Handler(), nil
				}
			}
			ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			return nodeagent.Run(ctx, cfg)
		},
	}
}

// workloadCommand is kubelab's built-in container process (hidden): the agent
// starts it inside a pod's namespace for containers that run no host command.
func workloadCommand() *cli.Command {
	return &cli.Command{
		Name:            "workload",
		Hidden:          true,
		SkipFlagParsing: true,
		Usage:           "built-in container: HTTP page and TCP/UDP echo on the pod's ports",
		Action: func(c *cli.Context) error {
			return workload.Main(c.Args().Slice())
		},
	}
}
