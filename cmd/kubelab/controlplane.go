package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"sync"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/kubelab/kubelab/apiserver"
	"github.com/kubelab/kubelab/controller"
	"github.com/kubelab/kubelab/scheduler"
)

// controlPlaneConfig is what `server` and `up` share.
type controlPlaneConfig struct {
	dataDir  string
	listen   []string
	tlsSANs  []string
	gates    map[string]bool
	apiIP    net.IP
	apiPort  int
	logLevel string
}

// controlPlane is a running API server with the scheduler and controllers,
// which reach it over HTTPS through client-go like any other client.
type controlPlane struct {
	loopback *rest.Config
	wg       sync.WaitGroup
	errMu    sync.Mutex
	err      error
}

func (cp *controlPlane) fail(what string, err error) {
	if err == nil || err == context.Canceled {
		return
	}
	slog.Error(what+" stopped", "err", err)
	cp.errMu.Lock()
	if cp.err == nil {
		cp.err = fmt.Errorf("%s: %w", what, err)
	}
	cp.errMu.Unlock()
}

// wait blocks until every component has returned (after ctx is cancelled).
func (cp *controlPlane) wait() { cp.wg.Wait() }

func startControlPlane(ctx context.Context, cfg controlPlaneConfig) (*controlPlane, error) {
	srv, err := apiserver.New(apiserver.Config{
		DataDir:      cfg.dataDir,
		Listen:       cfg.listen,
		TLSSANs:      cfg.tlsSANs,
		FeatureGates: cfg.gates,
	})
	if err != nil {
		return nil, err
	}
	cp := &controlPlane{}
	runErr := make(chan error, 1)
	cp.wg.Add(1)
	go func() {
		defer cp.wg.Done()
		err := srv.Run(ctx)
		cp.fail("API server", err)
		runErr <- err
	}()
	select {
	case <-srv.Ready():
	case err := <-runErr:
		return nil, fmt.Errorf("API server: %w", err)
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	cp.loopback = srv.LoopbackConfig()
	client, err := kubernetes.NewForConfig(controller.ClientConfig(cp.loopback))
	if err != nil {
		return nil, err
	}
	// The scheduler gets a client of its own so the shared client's rate
	// limit neither caps it nor slows the controllers.
	schedClient, err := kubernetes.NewForConfig(scheduler.ClientConfig(cp.loopback))
	if err != nil {
		return nil, err
	}
	cp.wg.Add(2)
	go func() {
		defer cp.wg.Done()
		cp.fail("scheduler", scheduler.Run(ctx, schedClient, scheduler.Options{}))
	}()
	go func() {
		defer cp.wg.Done()
		cp.fail("controllers", controller.Run(ctx, client, controller.Options{
			APIServerIP:   cfg.apiIP,
			APIServerPort: cfg.apiPort,
		}))
	}()
	return cp, nil
}
