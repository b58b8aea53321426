package controller

import (
	"context"
	"time"
)

// The garbage collector, namespace and node lifecycle controllers are not
// written yet (see the README's status list). Until they are, these runners
// only wait, so Run's wiring is already in its final shape: deleting a
// Deployment leaves its ReplicaSets, and a dead node's pods stay ready.
type pendingRunner struct{ name string }

func (pendingRunner) run(ctx context.Context) { <-ctx.Done() }

func newGarbageCollector(d *deps) (runner, error)   { return pendingRunner{"garbage collector"}, nil }
func newNamespaceController(d *deps) (runner, error) { return pendingRunner{"namespace"}, nil }
func newNodeLifecycleController(d *deps, _ time.Duration) (runner, error) {
	return pendingRunner{"node lifecycle"}, nil
}
