package controller

import (
	"context"
	"time"
)

// The namespace and node lifecycle controllers are not written yet (see the
// README's status list). Until they are, these runners only wait, so Run's
// wiring is already in its final shape: a deleted namespace stays
// Terminating, and a dead node's pods stay ready.
type pendingRunner struct{ name string }

func (pendingRunner) run(ctx context.Context) { <-ctx.Done() }

func newNamespaceController(d *deps) (runner, error) { return pendingRunner{"namespace"}, nil }
func newNodeLifecycleController(d *deps, _ time.Duration) (runner, error) {
	return pendingRunner{"node lifecycle"}, nil
}
