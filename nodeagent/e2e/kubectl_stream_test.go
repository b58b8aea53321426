package e2e

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// checkKubectlStreams drives `kubectl exec -i` and `kubectl port-forward`
// through the API server to a pod on a lab node, with the newest kubectl
// (websockets) and kubectl 1.27 (SPDY): stdin reaches the command, its exit
// code comes back, and a forwarded local port reaches the pod's built-in
// web server.
func checkKubectlStreams(t *testing.T, l *kubelabLab) {
	l.mustKubectl("run", "web", "--image=registry.example/web:1.0", "--port=8080")
	l.mustKubectl("wait", "--for=condition=Ready", "pod/web", "--timeout=60s")

	real, err := exec.LookPath("kubectl")
	if err != nil {
		t.Fatal(err)
	}
	if r, err := filepath.EvalSymlinks(real); err == nil {
		real = r
	}
	kubectls := map[string]string{"default": "kubectl", "1.27": filepath.Join(filepath.Dir(real), "kubectl.1.27")}
	if _, err := os.Stat(kubectls["1.27"]); err != nil {
		if os.Getenv("CI") == "" {
			delete(kubectls, "1.27")
			t.Logf("kubectl 1.27 not beside %s: SPDY path not checked (CI always checks it)", real)
		} else {
			t.Fatalf("kubectl 1.27 not found beside %s", real)
		}
	}
	for name, bin := range kubectls {
		t.Run(name, func(t *testing.T) {
			out, errOut, code := l.kubectlWith(bin, "hello from stdin\n", "exec", "-i", "web", "--", "sh", "-c", `read line; echo "pod got: $line"; exit 3`)
			if code != 3 || !strings.Contains(out, "pod got: hello from stdin") {
				t.Fatalf("kubectl exec -i: exit %d (want 3), stdout %q, stderr %q", code, out, errOut)
			}
			checkPortForward(t, l, bin)
		})
	}
}

// kubectlWith runs one kubectl binary against the lab with stdin and returns
// stdout, stderr and the exit code.
func (l *kubelabLab) kubectlWith(bin, stdin string, args ...string) (string, string, int) {
	l.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+filepath.Join(l.dataDir, "kubeconfig"))
	cmd.Stdin = strings.NewReader(stdin)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return out.String(), errOut.String(), 0
	case errors.As(err, &exit):
		return out.String(), errOut.String(), exit.ExitCode()
	default:
		l.t.Fatalf("%s %s: %v", bin, strings.Join(args, " "), err)
		return "", "", -1
	}
}

var forwardingFrom = regexp.MustCompile(`Forwarding from 127\.0\.0\.1:(\d+) -> 8080`)

// checkPortForward starts `kubectl port-forward pod/web :8080` (kubectl
// picks the local port) and fetches the pod's page through it.
func checkPortForward(t *testing.T, l *kubelabLab, bin string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin, "port-forward", "pod/web", ":8080")
	cmd.Env = append(os.Environ(), "KUBECONFIG="+filepath.Join(l.dataDir, "kubeconfig"))
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var errOut bytes.Buffer
	cmd.Stderr = &errOut
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); _ = cmd.Wait() })
	port := make(chan string, 1)
	go func() {
		var seen bytes.Buffer
		buf := make([]byte, 512)
		for {
			n, err := stdout.Read(buf)
			seen.Write(buf[:n])
			if m := forwardingFrom.FindStringSubmatch(seen.String()); m != nil {
				port <- m[1]
				_, _ = io.Copy(io.Discard, stdout)
				return
			}
			if err != nil {
				close(port)
				return
			}
		}
	}()
	var local string
	select {
	case p, ok := <-port:
		if !ok {
			t.Fatalf("kubectl port-forward ended without forwarding: %s", errOut.String())
		}
		local = p
	case <-time.After(20 * time.Second):
		t.Fatalf("kubectl port-forward did not start: %s", errOut.String())
	}
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Get("http://" + net.JoinHostPort("127.0.0.1", local) + "/")
	if err != nil {
		t.Fatalf("GET through port-forward: %v (kubectl stderr: %s)", err, errOut.String())
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if want := "pod default/web on node node-1"; resp.StatusCode != 200 || !strings.Contains(string(body), want) {
		t.Fatalf("through port-forward: %d %q, want a page naming %q", resp.StatusCode, body, want)
	}
}
