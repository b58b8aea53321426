package nodeagent

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/portforward"
	"k8s.io/client-go/tools/remotecommand"
	"k8s.io/client-go/transport/spdy"
	utilexec "k8s.io/client-go/util/exec"
)

// testPKI is a throwaway cluster CA with a node credential (the kubelet
// API's serving cert) and an admin client cert (what the API server presents).
type testPKI struct {
	dir              string
	caPEM            []byte
	adminCert, admin []byte
	node             credentials
}

func newTestPKI(t *testing.T, nodeIP net.IP) *testPKI {
	dir := t.TempDir()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test-ca"}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(48 * time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, _ := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	ca, _ := x509.ParseCertificate(caDER)
	issue := func(cn string, ips []net.IP, usage []x509.ExtKeyUsage) (certPEM, keyPEM []byte) {
		k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(47 * time.Hour), IPAddresses: ips, ExtKeyUsage: usage,
			KeyUsage: x509.KeyUsageDigitalSignature}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &k.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		kd, _ := x509.MarshalECPrivateKey(k)
		return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kd})
	}
	p := &testPKI{dir: dir, caPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), node: credentialPaths(dir)}
	nc, nk := issue("system:node:node-t", []net.IP{nodeIP}, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth})
	p.adminCert, p.admin = issue("admin", nil, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth})
	_ = os.MkdirAll(filepath.Dir(p.node.CertFile), 0o700)
	for f, b := range map[string][]byte{p.node.CertFile: nc, p.node.KeyFile: nk, p.node.CAFile: p.caPEM} {
		if err := os.WriteFile(f, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return p
}

// startKubeletAPI serves the rig's pods on 127.0.0.1 and returns an admin
// rest.Config for it.
func startKubeletAPI(t *testing.T, r *rig) (*rest.Config, *testPKI) {
	ip := net.ParseIP("127.0.0.1")
	pki := newTestPKI(t, ip)
	srv, err := newKubeletServer(r.cfg, pki.node, r.pm, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "proxy handler")
	}))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.ServeTLS(ln, "", "") }()
	t.Cleanup(func() { _ = srv.Close() })
	return &rest.Config{Host: "https://" + ln.Addr().String(),
		TLSClientConfig: rest.TLSClientConfig{CAData: pki.caPEM, CertData: pki.adminCert, KeyData: pki.admin}}, pki
}

func get(t *testing.T, cfg *rest.Config, path string) (int, string) {
	t.Helper()
	tr, err := rest.TransportFor(cfg)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Get(cfg.Host + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestKubeletAPILogsAndAuth(t *testing.T) {
	r := newRig(t)
	cfg, pki := startKubeletAPI(t, r)
	r.add(&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "talk"}, Spec: corev1.PodSpec{Containers: []corev1.Container{
		{Name: "c", Image: "busybox", Command: []string{"sh", "-c", "echo one; echo two; sleep 0.3; echo three >&2; exec sleep 60"}}}}})
	r.waitFor("talk", 10*time.Second, running)
	deadline := time.Now().Add(5 * time.Second)
	var body string
	for {
		_, body = get(t, cfg, "/containerLogs/default/talk/c")
		if body == "one\ntwo\nthree\n" || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if body != "one\ntwo\nthree\n" {
		t.Fatalf("logs = %q", body)
	}
	if _, body = get(t, cfg, "/containerLogs/default/talk/c?tailLines=1&timestamps=true"); !strings.HasSuffix(body, "Z three\n") || strings.Count(body, "\n") != 1 {
		t.Fatalf("tail+timestamps = %q", body)
	}
	if code, body := get(t, cfg, "/containerLogs/default/talk/c?previous=true"); code != 400 || !strings.Contains(body, `previous terminated container \"c\" in pod \"talk\" not found`) {
		t.Fatalf("previous: %d %s", code, body)
	}
	if code, body := get(t, cfg, "/containerLogs/default/nope/c"); code != 404 || !strings.Contains(body, `"reason":"NotFound"`) {
		t.Fatalf("missing pod: %d %s", code, body)
	}
	if code, body := get(t, cfg, "/kubelab/services"); code != 200 || body != "proxy handler" {
		t.Fatalf("proxy mount: %d %s", code, body)
	}
	// The agent's own metrics and, built on this first scrape, the Go
	// runtime's and the process's.
	for i := 0; i < 2; i++ {
		code, body := get(t, cfg, "/metrics")
		for _, want := range []string{"kubelab_agent_sandbox_create_seconds", "go_goroutines", "process_cpu_seconds_total"} {
			if code != 200 || !strings.Contains(body, want) {
				t.Fatalf("metrics scrape %d: %d, no %s", i+1, code, want)
			}
		}
	}
	// Follow: the open stream delivers lines written later.
	tr, _ := rest.TransportFor(cfg)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, cfg.Host+"/containerLogs/default/talk/c?follow=true&tailLines=0", nil)
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	w := r.pm.find("default", "talk").container("c")
	lw, err := openLog(logDir(r.cfg.DataDir, string(r.pm.find("default", "talk").uid), "c"), w.instance)
	if err != nil {
		t.Fatal(err)
	}
	lw.line("stdout", []byte("later"))
	lw.Close()
	buf := make([]byte, 6)
	if _, err := io.ReadFull(resp.Body, buf); err != nil || string(buf) != "later\n" {
		t.Fatalf("follow read %q %v", buf, err)
	}
	// Without a client certificate only /healthz answers.
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pki.caPEM)
	anon := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	for path, want := range map[string]int{"/healthz": 200, "/containerLogs/default/talk/c": 401} {
		resp, err := anon.Get(cfg.Host + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("anonymous %s: %d, want %d", path, resp.StatusCode, want)
		}
	}
}

func TestKubeletAPIExec(t *testing.T) {
	r := newRig(t)
	cfg, _ := startKubeletAPI(t, r)
	r.add(&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "box"}, Spec: corev1.PodSpec{Containers: []corev1.Container{
		{Name: "c", Image: "busybox", Command: []string{"sleep", "60"}}}}})
	pod := r.waitFor("box", 10*time.Second, running)
	q := url.Values{"command": {"sh", "-c", "echo out $(id -u) $(cat /proc/net/fib_trie | grep -c " + pod.Status.PodIP + "); echo err >&2; exit 3"},
		"stdout": {"true"}, "stderr": {"true"}}
	u := cfg.Host + "/exec/default/box/c?" + q.Encode()
	ws, err := remotecommand.NewWebSocketExecutor(cfg, "GET", u)
	if err != nil {
		t.Fatal(err)
	}
	pu, _ := url.Parse(u)
	sp, err := remotecommand.NewSPDYExecutor(cfg, "POST", pu)
	if err != nil {
		t.Fatal(err)
	}
	for name, ex := range map[string]remotecommand.Executor{"websocket": ws, "spdy": sp} {
		var out, errb bytes.Buffer
		err := ex.StreamWithContext(context.Background(), remotecommand.StreamOptions{Stdout: &out, Stderr: &errb})
		var ce utilexec.CodeExitError
		if !errors.As(err, &ce) || ce.Code != 3 {
			t.Errorf("%s: err = %v, want exit code 3", name, err)
		}
		if !strings.HasPrefix(out.String(), "out 65534 ") || strings.HasPrefix(out.String(), "out 65534 0") || errb.String() != "err\n" {
			t.Errorf("%s: stdout %q stderr %q", name, out.String(), errb.String())
		}
	}
	// stdin reaches the command and a clean exit is success.
	q = url.Values{"command": {"cat"}, "stdin": {"true"}, "stdout": {"true"}}
	u = cfg.Host + "/exec/default/box/c?" + q.Encode()
	ws, _ = remotecommand.NewWebSocketExecutor(cfg, "GET", u)
	pu, _ = url.Parse(u)
	sp, _ = remotecommand.NewSPDYExecutor(cfg, "POST", pu)
	for name, ex := range map[string]remotecommand.Executor{"websocket": ws, "spdy": sp} {
		var out bytes.Buffer
		if err := ex.StreamWithContext(context.Background(), remotecommand.StreamOptions{Stdin: strings.NewReader("hello " + name), Stdout: &out}); err != nil {
			t.Errorf("%s: %v", name, err)
		}
		if out.String() != "hello "+name {
			t.Errorf("%s: stdout %q", name, out.String())
		}
	}
}

func TestKubeletAPIPortForward(t *testing.T) {
	r := newRig(t)
	cfg, _ := startKubeletAPI(t, r)
	r.add(&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "web"}, Spec: corev1.PodSpec{Containers: []corev1.Container{
		{Name: "c", Image: "nginx", Ports: []corev1.ContainerPort{{ContainerPort: 8080}},
			ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intOrStr(8080)}}, PeriodSeconds: 1}}}}})
	// kubectl's port-forward gives up on the first refused connection: wait until the pod serves.
	r.waitFor("web", 10*time.Second, func(p *corev1.Pod) bool { return running(p) && isReady(p) })
	rt, up, err := spdy.RoundTripperFor(cfg)
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(cfg.Host + "/portForward/default/web")
	stop, ready := make(chan struct{}), make(chan struct{})
	pf, err := portforward.New(spdy.NewDialer(up, &http.Client{Transport: rt}, "POST", u), []string{"0:8080"}, stop, ready, io.Discard, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- pf.ForwardPorts() }()
	defer func() { close(stop); <-done }()
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("port-forward: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("port-forward not ready")
	}
	ports, _ := pf.GetPorts()
	var body string
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if body, err = httpGet(fmt.Sprintf("http://127.0.0.1:%d/", ports[0].Local)); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if body != "kubelab: pod default/web on node node-t\n" {
		t.Fatalf("through port-forward: %q %v", body, err)
	}
}

func TestKubeletAPIExecTTY(t *testing.T) {
	r := newRig(t)
	cfg, _ := startKubeletAPI(t, r)
	r.add(&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "box"}, Spec: corev1.PodSpec{Containers: []corev1.Container{
		{Name: "c", Image: "busybox", Command: []string{"sleep", "60"}}}}})
	r.waitFor("box", 10*time.Second, running)
	q := url.Values{"command": {"sh"}, "stdin": {"true"}, "stdout": {"true"}, "tty": {"true"}}
	u := cfg.Host + "/exec/default/box/c?" + q.Encode()
	ws, _ := remotecommand.NewWebSocketExecutor(cfg, "GET", u)
	pu, _ := url.Parse(u)
	sp, _ := remotecommand.NewSPDYExecutor(cfg, "POST", pu)
	for name, ex := range map[string]remotecommand.Executor{"websocket": ws, "spdy": sp} {
		var out bytes.Buffer
		err := ex.StreamWithContext(context.Background(), remotecommand.StreamOptions{Tty: true,
			Stdin: strings.NewReader("tty -s && echo term$((40+2))\nexit 5\n"), Stdout: &out})
		var ce utilexec.CodeExitError
		if !errors.As(err, &ce) || ce.Code != 5 {
			t.Errorf("%s: err = %v, want exit code 5", name, err)
		}
		if !strings.Contains(out.String(), "term42") {
			t.Errorf("%s: output %q", name, out.String())
		}
	}
}

func TestKubeletAPIPreviousLogs(t *testing.T) {
	r := newRig(t)
	cfg, _ := startKubeletAPI(t, r)
	r.add(&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "crash"}, Spec: corev1.PodSpec{Containers: []corev1.Container{
		{Name: "c", Image: "busybox", Command: []string{"sh", "-c", "echo crashed; exit 1"}}}}})
	r.waitFor("crash", 10*time.Second, func(p *corev1.Pod) bool {
		return len(p.Status.ContainerStatuses) > 0 && p.Status.ContainerStatuses[0].State.Waiting != nil &&
			p.Status.ContainerStatuses[0].State.Waiting.Reason == "CrashLoopBackOff"
	})
	for _, q := range []string{"", "?previous=true"} {
		if code, body := get(t, cfg, "/containerLogs/default/crash/c"+q); code != 200 || body != "crashed\n" {
			t.Errorf("logs%s: %d %q", q, code, body)
		}
	}
}
