// Package kubelabtest gives end-to-end tests the kubelab executables, built
// the way `make build` builds them (static), once per test process.
package kubelabtest

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// Binary returns the path of a kubelab executable with kubelab-workload
// beside it (the agent prefers that one for built-in containers). It builds
// both once per test process, or takes the kubelab named by $KUBELAB_BIN to
// test a build made some other way.
func Binary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		if p := os.Getenv("KUBELAB_BIN"); p != "" {
			binPath = p
			return
		}
		dir, err := os.MkdirTemp("", "kubelab-test-bin-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "kubelab")
		build := exec.Command("go", "build", "-o", dir+"/",
			"github.com/kubelab/kubelab/cmd/kubelab", "github.com/kubelab/kubelab/cmd/kubelab-workload")
		build.Env = append(os.Environ(), "CGO_ENABLED=0") // as `make build`
		out, err := build.CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// Output collects a child process's stdout and stderr while tests read it.
type Output struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (o *Output) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.b.Write(p)
}

// String is everything written so far.
func (o *Output) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.b.String()
}
