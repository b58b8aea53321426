package nodeagent

import (
	"fmt"

	"k8s.io/client-go/kubernetes"
	coordinationv1 "k8s.io/client-go/kubernetes/typed/coordination/v1"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	discoveryv1 "k8s.io/client-go/kubernetes/typed/discovery/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/flowcontrol"
)

// nodeClient is a kubernetes.Interface holding only the API groups a node
// agent and its proxy talk to: core (nodes, pods, events, services),
// coordination (the Lease) and discovery (EndpointSlices).
//
// kubernetes.NewForConfig builds a typed client for each of the ~50 groups
// and versions the library knows; an idle agent's RSS is mostly the
// executable's pages it ever touched, and those constructors alone touched
// about 15 more spread over the text (BenchmarkIdleAgentRSS). Any other
// group is nil here: calling it panics, so a new use shows up in the first
// test that runs it rather than silently costing memory.
type nodeClient struct {
	kubernetes.Interface // nil: groups the agent does not use
	core                 *typedcorev1.CoreV1Client
	coordination         *coordinationv1.CoordinationV1Client
	discovery            *discoveryv1.DiscoveryV1Client
}

func (c *nodeClient) CoreV1() typedcorev1.CoreV1Interface { return c.core }
func (c *nodeClient) CoordinationV1() coordinationv1.CoordinationV1Interface {
	return c.coordination
}
func (c *nodeClient) DiscoveryV1() discoveryv1.DiscoveryV1Interface { return c.discovery }

// newNodeClient is kubernetes.NewForConfig for the agent's groups: one HTTP
// client (one connection pool) and one rate limiter shared by all of them,
// as the full clientset shares them.
func newNodeClient(c *rest.Config) (kubernetes.Interface, error) {
	cfg := *c
	if cfg.UserAgent == "" {
		cfg.UserAgent = rest.DefaultKubernetesUserAgent()
	}
	if cfg.RateLimiter == nil && cfg.QPS > 0 {
		if cfg.Burst <= 0 {
			return nil, fmt.Errorf("client config: burst must be positive when QPS is set")
		}
		cfg.RateLimiter = flowcontrol.NewTokenBucketRateLimiter(cfg.QPS, cfg.Burst)
	}
	hc, err := rest.HTTPClientFor(&cfg)
	if err != nil {
		return nil, fmt.Errorf("client transport: %w", err)
	}
	var nc nodeClient
	if nc.core, err = typedcorev1.NewForConfigAndClient(&cfg, hc); err != nil {
		return nil, fmt.Errorf("core/v1 client: %w", err)
	}
	if nc.coordination, err = coordinationv1.NewForConfigAndClient(&cfg, hc); err != nil {
		return nil, fmt.Errorf("coordination/v1 client: %w", err)
	}
	if nc.discovery, err = discoveryv1.NewForConfigAndClient(&cfg, hc); err != nil {
		return nil, fmt.Errorf("discovery/v1 client: %w", err)
	}
	return &nc, nil
}
