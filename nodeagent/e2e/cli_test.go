package e2e

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// runKubelab runs the kubelab binary to completion (30 s at most) and
// returns its combined output and exit code.
func runKubelab(t *testing.T, bin string, stdin string, env []string, cred *syscall.Credential, args ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	if env != nil {
		cmd.Env = env
	}
	if cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	}
	cmd.Stdin = strings.NewReader(stdin)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return out.String(), 0
	case errors.As(err, &exit):
		return out.String(), exit.ExitCode()
	default:
		t.Fatalf("kubelab %s: %v", strings.Join(args, " "), err)
		return "", -1
	}
}

// TestKubelabCLIAndStreams covers the CLI's promises around a running lab:
// a second `up` on the same data dir or with the same name is refused with a
// clear message and leaves the running lab alone; `up` refuses to start
// without root or without iptables; `node exec` runs a command in the node's
// namespace with stdin attached and hands back its exit code. On the same
// lab, kubectl's streaming verbs (exec -i, port-forward) reach a pod.
func TestKubelabCLIAndStreams(t *testing.T) {
	l := startKubelab(t, 1)
	t.Run("kubectl exec and port-forward", func(t *testing.T) { checkKubectlStreams(t, l) })

	t.Run("same data dir", func(t *testing.T) {
		out, code := runKubelab(t, l.bin, "", nil, nil, "up", "--nodes", "1", "--name", l.name+"x", "--data-dir", l.dataDir)
		if code != 1 || !strings.Contains(out, "a lab is already running on "+l.dataDir) {
			t.Fatalf("second up on the same data dir: exit %d, output:\n%s", code, out)
		}
	})
	t.Run("same name", func(t *testing.T) {
		out, code := runKubelab(t, l.bin, "", nil, nil, "up", "--nodes", "1", "--name", l.name, "--data-dir", t.TempDir())
		if code != 1 || !strings.Contains(out, `a lab named "`+l.name+`" is already running`) {
			t.Fatalf("second up with the same name: exit %d, output:\n%s", code, out)
		}
	})
	t.Run("no iptables", func(t *testing.T) {
		empty := t.TempDir()
		out, code := runKubelab(t, l.bin, "", []string{"PATH=" + empty}, nil, "up", "--nodes", "1", "--name", l.name+"y", "--data-dir", t.TempDir())
		if code != 1 || !strings.Contains(out, "kubelab up needs iptables on the PATH") {
			t.Fatalf("up without iptables: exit %d, output:\n%s", code, out)
		}
	})
	t.Run("not root", func(t *testing.T) {
		// nobody must be able to run the binary: a copy in a world-readable
		// directory (the test build lives in a private one).
		dir, err := os.MkdirTemp("", "kubelab-nobody-")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(dir) })
		if err := os.Chmod(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		copyFile(t, l.bin, filepath.Join(dir, "kubelab"), 0o755)
		out, code := runKubelab(t, filepath.Join(dir, "kubelab"), "", []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"},
			&syscall.Credential{Uid: 65534, Gid: 65534}, "up", "--nodes", "1", "--name", l.name+"z", "--data-dir", filepath.Join(dir, "data"))
		if code != 1 || !strings.Contains(out, "kubelab up needs root") {
			t.Fatalf("up as nobody: exit %d, output:\n%s", code, out)
		}
	})
	t.Run("node exec", func(t *testing.T) {
		out, code := runKubelab(t, l.bin, "hello\n", nil, nil, "node", "exec", "--data-dir", l.dataDir, "node-1", "--",
			"sh", "-c", `read line; echo "got:$line"; ip -o -4 addr show dev eth0; exit 7`)
		if code != 7 || !strings.Contains(out, "got:hello") {
			t.Fatalf("node exec: exit %d (want 7), output:\n%s", code, out)
		}
		// The command ran in node-1's namespace: it sees the node's own address.
		n, err := l.client.CoreV1().Nodes().Get(context.Background(), "node-1", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		var internal string
		for _, a := range n.Status.Addresses {
			if a.Type == corev1.NodeInternalIP {
				internal = a.Address
			}
		}
		if internal == "" || !strings.Contains(out, " "+internal+"/") {
			t.Fatalf("node exec output does not show node-1's InternalIP %q on eth0:\n%s", internal, out)
		}
		out, code = runKubelab(t, l.bin, "", nil, nil, "node", "exec", "--data-dir", l.dataDir, "node-9", "--", "true")
		if code != 1 || !strings.Contains(out, `has no node "node-9"`) {
			t.Fatalf("node exec on a missing node: exit %d, output:\n%s", code, out)
		}
	})

	// The refused starts left the running lab as it was.
	n, err := l.client.CoreV1().Nodes().Get(context.Background(), "node-1", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady && c.Status != corev1.ConditionTrue {
			t.Fatalf("node-1 not Ready after the refused starts: %v", c)
		}
	}
	select {
	case err := <-l.exited:
		l.cmd = nil
		t.Fatalf("the running lab exited (%v):\n%s", err, l.out.String())
	default:
	}
}

func copyFile(t *testing.T, from, to string, mode os.FileMode) {
	t.Helper()
	src, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
	if err := dst.Close(); err != nil {
		t.Fatal(err)
	}
}
