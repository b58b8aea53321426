package main

import (
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/kubelab/kubelab/proxy"
)

const defaultDataDir = "/var/lib/kubelab"

func dataDirFlag() cli.Flag {
	return &cli.StringFlag{Name: "data-dir", Value: defaultDataDir, Usage: "where the lab keeps its database, credentials and state"}
}

func logLevelFlag() cli.Flag {
	return &cli.StringFlag{Name: "log-level", Value: "warn", Usage: "debug, info, warn or error"}
}

func featureGatesFlag() cli.Flag {
	return &cli.StringFlag{Name: "feature-gates", Usage: "comma-separated Gate=true|false, e.g. ServiceInternalTrafficPolicy=false"}
}

// setupLogging makes slog's default handler text on stderr at the given level;
// quiet (warn) unless asked.
func setupLogging(level string) error {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
	}
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: l})))
	return nil
}

// knownFeatureGates are the gates kubelab honours, with their defaults.
var knownFeatureGates = map[string]bool{
	"ServiceInternalTrafficPolicy": true,
}

// parseFeatureGates reads "A=true,B=false" over the defaults; an unknown gate
// or a value that is not a boolean is an error, as in Kubernetes components.
func parseFeatureGates(s string) (map[string]bool, error) {
	gates := make(map[string]bool, len(knownFeatureGates))
	for k, v := range knownFeatureGates {
		gates[k] = v
	}
	for _, kv := range strings.Split(s, ",") {
		kv = strings.TrimSpace(kv)
		if kv == "" {
			continue
		}
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return nil, fmt.Errorf("--feature-gates: %q is not Gate=true|false", kv)
		}
		k = strings.TrimSpace(k)
		if _, known := knownFeatureGates[k]; !known {
			return nil, fmt.Errorf("--feature-gates: unrecognized feature gate: %s", k)
		}
		b, err := strconv.ParseBool(strings.TrimSpace(v))
		if err != nil {
			return nil, fmt.Errorf("--feature-gates: invalid value of %s=%s, err: %v", k, v, err)
		}
		gates[k] = b
	}
	return gates, nil
}

// formatFeatureGates renders gates for a child process's --feature-gates.
func formatFeatureGates(g map[string]bool) string {
	var parts []string
	for k, v := range g {
		if v != knownFeatureGates[k] {
			parts = append(parts, fmt.Sprintf("%s=%t", k, v))
		}
	}
	return strings.Join(parts, ",")
}

// checkProxyMode refuses a --proxy-mode the proxy does not know, before
// anything is started.
func checkProxyMode(mode string) error {
	switch mode {
	case proxy.ModeIptables, proxy.ModeNftables, proxy.ModeAuto:
		return nil
	}
	return fmt.Errorf("--proxy-mode %q: want iptables, nftables or auto", mode)
}
