// Package apitest starts real kubelab API servers for tests: a server on a
// loopback port with its data (bbolt store, PKI, kubeconfig) in a temporary
// directory, plus a client-go clientset and helpers to run the real kubectl
// against it.
package apitest

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/kubelab/kubelab/apiserver"
)

// Instance is a running test server.
type Instance struct {
	Server *apiserver.Server
	// DataDir is the server's data directory (store.db, pki/, kubeconfig, node-token).
	DataDir string
	// Kubeconfig is DataDir/kubeconfig (admin client certificate).
	Kubeconfig string
	// Config is the admin client configuration from the kubeconfig.
	Config *rest.Config
	// Client is a clientset built from Config.
	Client kubernetes.Interface

	cfg    apiserver.Config
	cancel context.CancelFunc
	done   chan error
}

// Option changes the server configuration before start.
type Option func(*apiserver.Config)

// WithFeatureGates sets feature gates.
func WithFeatureGates(g map[string]bool) Option {
	return func(c *apiserver.Config) { c.FeatureGates = g }
}

// WithConfig lets a test change any field of the server configuration.
func WithConfig(f func(*apiserver.Config)) Option { return Option(f) }

// WithDataDir reuses a data directory (e.g. to test a restart).
func WithDataDir(dir string) Option { return func(c *apiserver.Config) { c.DataDir = dir } }

// Start runs a server on 127.0.0.1 (random port) in t.TempDir() and stops it
// at the end of the test.
func Start(t testing.TB, opts ...Option) *Instance {
	t.Helper()
	cfg := apiserver.Config{Listen: []string{"127.0.0.1:0"}, BookmarkInterval: time.Second}
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.DataDir == "" {
		cfg.DataDir = t.TempDir()
	}
	inst := &Instance{cfg: cfg}
	inst.start(t)
	t.Cleanup(func() { inst.Stop(t) })
	return inst
}

func (i *Instance) start(t testing.TB) {
	t.Helper()
	srv, err := apiserver.New(i.cfg)
	if err != nil {
		t.Fatalf("apiserver.New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	select {
	case <-srv.Ready():
	case err := <-done:
		cancel()
		t.Fatalf("apiserver.Run: %v", err)
	case <-time.After(30 * time.Second):
		cancel()
		t.Fatal("apiserver not ready after 30s")
	}
	i.Server, i.cancel, i.done = srv, cancel, done
	i.DataDir = i.cfg.DataDir
	i.Kubeconfig = filepath.Join(i.DataDir, "kubeconfig")
	if i.Config, err = clientcmd.BuildConfigFromFlags("", i.Kubeconfig); err != nil {
		t.Fatalf("kubeconfig: %v", err)
	}
	i.Config.QPS, i.Config.Burst = 1000, 2000
	if i.Client, err = kubernetes.NewForConfig(i.Config); err != nil {
		t.Fatalf("clientset: %v", err)
	}
}

// Stop stops the server (idempotent).
func (i *Instance) Stop(t testing.TB) {
	if i.cancel == nil {
		return
	}
	i.cancel()
	i.cancel = nil
	select {
	case err := <-i.done:
		if err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("apiserver.Run returned: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Errorf("apiserver did not stop within 15s")
	}
}

// Restart stops the server and starts a new one on the same data
// directory and listen address (a new random port when it was 0).
func (i *Instance) Restart(t testing.TB) {
	t.Helper()
	i.Stop(t)
	i.start(t)
}

// KubectlPath finds a kubectl binary: "" is `kubectl` on the PATH; a version
// such as "1.27" is kubectl.1.27 beside the real file of `kubectl` (where the
// Google Cloud SDK keeps its versioned binaries). It skips the test when the
// binary is missing.
func KubectlPath(t testing.TB, version string) string {
	t.Helper()
	p, err := exec.LookPath("kubectl")
	if err != nil {
		t.Skipf("kubectl not installed: %v", err)
	}
	if version == "" {
		return p
	}
	real, err := filepath.EvalSymlinks(p)
	if err != nil {
		t.Fatalf("resolve kubectl: %v", err)
	}
	v := filepath.Join(filepath.Dir(real), "kubectl."+version)
	if _, err := os.Stat(v); err != nil {
		t.Skipf("%s not installed", v)
	}
	return v
}

// Kubectl runs `kubectl args...` against the server (own discovery cache
// per test) and returns stdout, stderr and the error.
func (i *Instance) Kubectl(t testing.TB, args ...string) (string, string, error) {
	t.Helper()
	return i.KubectlBin(t, KubectlPath(t, ""), "", args...)
}

// KubectlBin runs a given kubectl binary with stdin.
func (i *Instance) KubectlBin(t testing.TB, bin, stdin string, args ...string) (string, string, error) {
	t.Helper()
	cache := filepath.Join(i.DataDir, "kubectl-cache")
	cmd := exec.Command(bin, append([]string{"--cache-dir", cache}, args...)...)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+i.Kubeconfig)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	err := cmd.Run()
	return out.String(), errb.String(), err
}

// MustKubectl runs kubectl and fails the test on error.
func (i *Instance) MustKubectl(t testing.TB, args ...string) string {
	t.Helper()
	out, errOut, err := i.Kubectl(t, args...)
	if err != nil {
		t.Fatalf("kubectl %s: %v\nstdout: %s\nstderr: %s", strings.Join(args, " "), err, out, errOut)
	}
	return out
}

// URL is the server's https URL.
func (i *Instance) URL() string { return i.Server.URL() }

// CAFile is DataDir/pki/ca.crt (what agents pass as --ca-file).
func (i *Instance) CAFile() string { return filepath.Join(i.DataDir, "pki", "ca.crt") }

// TokenFile is DataDir/node-token (the join token, mode 0600).
func (i *Instance) TokenFile() string { return filepath.Join(i.DataDir, "node-token") }
