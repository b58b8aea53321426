package proxy

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"

	"github.com/coreos/go-iptables/iptables"
)

// Executor runs the tools kubelab drives (iptables-*, conntrack, sysctl) in
// the network namespace the proxier programs. The agent runs inside the node's
// namespace and uses HostExecutor; tests use NetnsExecutor.
type Executor interface {
	// ToolPath returns an executable that runs tool (a bare name such as
	// "iptables-nft-restore") in the target namespace. Libraries that exec
	// by path (go-iptables) get the same path.
	ToolPath(tool string) (string, error)
}

type hostExecutor struct{}

// HostExecutor runs tools in the caller's own network namespace.
func HostExecutor() Executor { return hostExecutor{} }

func (hostExecutor) ToolPath(tool string) (string, error) { return exec.LookPath(tool) }

// NetnsExecutor runs tools through `ip netns exec name`, via small wrapper
// scripts written to dir (so go-iptables, which execs a path, works too).
func NetnsExecutor(name, dir string) Executor { return &netnsExecutor{name: name, dir: dir} }

type netnsExecutor struct {
	name, dir string
	mu        sync.Mutex
}

func (n *netnsExecutor) ToolPath(tool string) (string, error) {
	real, err := exec.LookPath(tool)
	if err != nil {
		return "", err
	}
	ipPath, err := exec.LookPath("ip")
	if err != nil {
		return "", err
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	p := filepath.Join(n.dir, n.name+"-"+tool)
	if _, err := os.Stat(p); err == nil {
		return p, nil
	}
	script := fmt.Sprintf("#!/bin/sh\nexec %s netns exec %s %s \"$@\"\n", ipPath, n.name, real)
	if err := os.WriteFile(p, []byte(script), 0o755); err != nil {
		return "", fmt.Errorf("write wrapper for %s: %w", tool, err)
	}
	return p, nil
}

func run(ctx context.Context, ex Executor, stdin []byte, tool string, args ...string) ([]byte, error) {
	path, err := ex.ToolPath(tool)
	if err != nil {
		return nil, fmt.Errorf("find %s: %w", tool, err)
	}
	cmd := exec.CommandContext(ctx, path, args...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return out.Bytes(), fmt.Errorf("%s %s: %w: %s", tool, strings.Join(args, " "), err, strings.TrimSpace(errb.String()))
	}
	return out.Bytes(), nil
}

// Backend is the iptables flavour in use: "nft" or "legacy".
type Backend string

// DetectBackend picks the backend the node already uses, as kube-proxy and
// the kubelet do: if the legacy tables hold rules (ours or anyone's) and the
// nft ones do not, legacy; otherwise whatever `iptables` itself is.
func DetectBackend(ctx context.Context, ex Executor) (Backend, error) {
	nftRules := countRules(ctx, ex, "iptables-nft-save")
	legacyRules := countRules(ctx, ex, "iptables-legacy-save")
	if legacyRules > 0 && nftRules == 0 {
		return "legacy", nil
	}
	if nftRules > 0 {
		return "nft", nil
	}
	out, err := run(ctx, ex, nil, "iptables", "--version")
	if err != nil {
		// No generic iptables; prefer nft when present.
		if _, err2 := ex.ToolPath("iptables-nft"); err2 == nil {
			return "nft", nil
		}
		return "", fmt.Errorf("detect iptables backend: %w", err)
	}
	if strings.Contains(string(out), "legacy") {
		return "legacy", nil
	}
	return "nft", nil
}

func countRules(ctx context.Context, ex Executor, tool string) int {
	out, err := run(ctx, ex, nil, tool)
	if err != nil {
		return 0
	}
	return strings.Count(string(out), "\n-A ")
}

// ipt wraps the iptables tools of one backend.
type ipt struct {
	ex      Executor
	backend Backend
	lib     *iptables.IPTables
}

func newIPT(ctx context.Context, ex Executor, backend Backend) (*ipt, error) {
	path, err := ex.ToolPath("iptables-" + string(backend))
	if err != nil {
		return nil, err
	}
	lib, err := iptables.New(iptables.Path(path), iptables.Timeout(5))
	if err != nil {
		return nil, fmt.Errorf("go-iptables %s: %w", path, err)
	}
	return &ipt{ex: ex, backend: backend, lib: lib}, nil
}

func (t *ipt) tool(suffix string) string { return "iptables-" + string(t.backend) + suffix }

// restore applies one iptables-restore transaction without flushing chains
// it does not name.
func (t *ipt) restore(ctx context.Context, text string) error {
	_, err := run(ctx, t.ex, []byte(text), t.tool("-restore"), "-w", "5", "--noflush")
	return err
}

// save returns iptables-save output for a table, with counters if asked.
func (t *ipt) save(ctx context.Context, table string, counters bool) (string, error) {
	args := []string{"-t", table}
	if counters {
		args = append(args, "-c")
	}
	out, err := run(ctx, t.ex, nil, t.tool("-save"), args...)
	return string(out), err
}

// jumpRule is a bootstrap rule from a built-in chain into a kubelab chain.
type jumpRule struct {
	table, chain string
	spec         []string
}

var jumps = []jumpRule{
	{"nat", "PREROUTING", []string{"-m", "comment", "--comment", "kubelab service portals", "-j", chainServices}},
	{"nat", "OUTPUT", []string{"-m", "comment", "--comment", "kubelab service portals", "-j", chainServices}},
	{"nat", "POSTROUTING", []string{"-m", "comment", "--comment", "kubelab postrouting rules", "-j", chainPostrouting}},
	{"filter", "INPUT", []string{"-m", "conntrack", "--ctstate", "NEW", "-m", "comment", "--comment", "kubelab external services", "-j", chainExternalServices}},
	{"filter", "FORWARD", []string{"-m", "conntrack", "--ctstate", "NEW", "-m", "comment", "--comment", "kubelab service portals", "-j", chainServices}},
	{"filter", "FORWARD", []string{"-m", "conntrack", "--ctstate", "NEW", "-m", "comment", "--comment", "kubelab external services", "-j", chainExternalServices}},
	{"filter", "FORWARD", []string{"-m", "comment", "--comment", "kubelab forwarding rules", "-j", chainForward}},
	{"filter", "OUTPUT", []string{"-m", "conntrack", "--ctstate", "NEW", "-m", "comment", "--comment", "kubelab service portals", "-j", chainServices}},
	{"filter", "OUTPUT", []string{"-m", "conntrack", "--ctstate", "NEW", "-m", "comment", "--comment", "kubelab external services", "-j", chainExternalServices}},
}

// ensureJumps makes sure every bootstrap jump exists (the target chains were
// created by the preceding restore). Jumps go first in the built-in chains,
// as kube-proxy's do, so other rules cannot shadow Services.
func (t *ipt) ensureJumps() error {
	for _, j := range jumps {
		ok, err := t.lib.ChainExists(j.table, j.spec[len(j.spec)-1])
		if err != nil {
			return fmt.Errorf("check chain %s/%s: %w", j.table, j.spec[len(j.spec)-1], err)
		}
		if !ok {
			if err := t.lib.NewChain(j.table, j.spec[len(j.spec)-1]); err != nil {
				return fmt.Errorf("create chain: %w", err)
			}
		}
		exists, err := t.lib.Exists(j.table, j.chain, j.spec...)
		if err != nil {
			return fmt.Errorf("check jump %s/%s: %w", j.table, j.chain, err)
		}
		if !exists {
			if err := t.lib.Insert(j.table, j.chain, 1, j.spec...); err != nil {
				return fmt.Errorf("insert jump %s/%s: %w", j.table, j.chain, err)
			}
		}
	}
	return nil
}

// cleanup removes every jump and every KUBELAB- chain from nat and filter.
func (t *ipt) cleanup() error {
	var errs []string
	for _, j := range jumps {
		// A jump to a chain that does not exist cannot exist either (and
		// iptables -C fails on it).
		if ok, err := t.lib.ChainExists(j.table, j.spec[len(j.spec)-1]); err != nil || !ok {
			continue
		}
		if err := t.lib.DeleteIfExists(j.table, j.chain, j.spec...); err != nil {
			errs = append(errs, err.Error())
		}
	}
	// Then every kubelab chain, in one transaction per table: declaring a
	// chain flushes it, so none is still referenced when -X runs.
	for _, table := range []string{"nat", "filter"} {
		chains, err := t.lib.ListChains(table)
		if err != nil {
			errs = append(errs, err.Error())
			continue
		}
		var ours []string
		for _, c := range chains {
			if strings.HasPrefix(c, chainPrefix) {
				ours = append(ours, c)
			}
		}
		if len(ours) == 0 {
			continue
		}
		var b strings.Builder
		writeTable(&b, table, nil, ours)
		if err := t.restore(context.Background(), b.String()); err != nil {
			errs = append(errs, err.Error())
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("cleanup: %s", strings.Join(errs, "; "))
	}
	return nil
}

// existingChains lists the KUBELAB- chains currently in a table.
func existingChains(save string) []string {
	var out []string
	for _, line := range strings.Split(save, "\n") {
		if strings.HasPrefix(line, ":"+chainPrefix) {
			if f := strings.Fields(line[1:]); len(f) > 0 {
				out = append(out, f[0])
			}
		}
	}
	return out
}

// conntrackDelete deletes conntrack entries; "nothing to delete" is fine.
func conntrackDelete(ctx context.Context, ex Executor, args ...string) error {
	out, err := run(ctx, ex, nil, "conntrack", append([]string{"-D"}, args...)...)
	if err != nil && !strings.Contains(err.Error(), "0 flow entries") && !strings.Contains(string(out), "0 flow entries") {
		return err
	}
	return nil
}

// setRouteLocalnet lets NodePorts answer on 127.0.0.1: DNATed packets with a
// loopback source may then be routed off the loopback device.
func setRouteLocalnet(ctx context.Context, ex Executor) error {
	_, err := run(ctx, ex, nil, "sysctl", "-q", "-w", "net.ipv4.conf.all.route_localnet=1")
	return err
}
