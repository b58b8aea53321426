package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"

	"github.com/urfave/cli/v2"
)

func serverCommand() *cli.Command {
	return &cli.Command{
		Name:  "server",
		Usage: "run the control plane only (API server, scheduler, controllers)",
		Flags: []cli.Flag{
			dataDirFlag(),
			&cli.StringSliceFlag{Name: "listen", Value: cli.NewStringSlice("127.0.0.1:6443"), Usage: "HTTPS address to serve the API on (repeatable)"},
			&cli.StringSliceFlag{Name: "tls-san", Usage: "extra IP or DNS name for the serving certificate (repeatable)"},
			featureGatesFlag(),
			logLevelFlag(),
		},
		Action: func(c *cli.Context) error {
			if err := setupLogging(c.String("log-level")); err != nil {
				return cli.Exit(err.Error(), 2)
			}
			gates, err := parseFeatureGates(c.String("feature-gates"))
			if err != nil {
				return cli.Exit(err.Error(), 2)
			}
			dataDir, err := filepath.Abs(c.String("data-dir"))
			if err != nil {
				return err
			}
			if err := os.MkdirAll(dataDir, 0o700); err != nil {
				return cli.Exit(err.Error(), 1)
			}
			listen := c.StringSlice("listen")
			ip, port, err := advertised(listen)
			if err != nil {
				return cli.Exit(err.Error(), 2)
			}
			ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			cp, err := startControlPlane(ctx, controlPlaneConfig{
				dataDir: dataDir, listen: listen, tlsSANs: c.StringSlice("tls-san"),
				gates: gates, apiIP: ip, apiPort: port, logLevel: c.String("log-level"),
			})
			if err != nil {
				return cli.Exit(err.Error(), 1)
			}
			fmt.Fprintf(c.App.Writer, "kubelab server ready on https://%s\n  export KUBECONFIG=%s\n  node join token: %s\n",
				listen[0], filepath.Join(dataDir, "kubeconfig"), filepath.Join(dataDir, "node-token"))
			<-ctx.Done()
			cp.wait()
			return cp.err
		},
	}
}

// advertised picks the address the `kubernetes` Service points at: the first
// listen address that is not a wildcard.
func advertised(listen []string) (net.IP, int, error) {
	for _, l := range listen {
		host, p, err := net.SplitHostPort(l)
		if err != nil {
			return nil, 0, fmt.Errorf("--listen %q: %w", l, err)
		}
		port, err := strconv.Atoi(p)
		if err != nil {
			return nil, 0, fmt.Errorf("--listen %q: bad port", l)
		}
		if ip := net.ParseIP(host); ip != nil && !ip.IsUnspecified() {
			return ip, port, nil
		}
	}
	return nil, 0, fmt.Errorf("--listen: need at least one address with a specific IP")
}
