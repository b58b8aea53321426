package apiserver_test

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/kubelab/kubelab/apiserver"
	"github.com/kubelab/kubelab/apiserver/apitest"
	"github.com/kubelab/kubelab/store"
)

var releaseFollow = make(chan struct{})

// startKubelet runs an HTTPS server with a node certificate obtained from
// the join endpoint, answering the kubelet paths the API server forwards.
func startKubelet(t *testing.T, inst *apitest.Instance) *net.TCPAddr {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	csr, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}}, key)
	body, _ := json.Marshal(apiserver.JoinRequest{NodeName: "node-1", CSR: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csr}))})
	tok, _ := os.ReadFile(filepath.Join(inst.DataDir, "node-token"))
	resp, rb := doReq(t, httpClient(t, inst, false), "POST", inst.Server.URL()+"/kubelab/v1/join", "application/json", body, "Authorization", "Bearer "+strings.TrimSpace(string(tok)))
	if resp.StatusCode != 200 {
		t.Fatalf("join: %d %s", resp.StatusCode, rb)
	}
	var jr apiserver.JoinResponse
	_ = json.Unmarshal(rb, &jr)
	keyDER, _ := x509.MarshalECPrivateKey(key)
	kp, err := tls.X509KeyPair([]byte(jr.Certificate), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM([]byte(jr.CA))
	mux := http.NewServeMux()
	mux.HandleFunc("/containerLogs/{ns}/{pod}/{c}", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("follow") == "true" {
			// One line now, the next only when the test says so: the first
			// must reach the client before the stream ends.
			fmt.Fprintln(w, "first line")
			w.(http.Flusher).Flush()
			select {
			case <-releaseFollow:
			case <-r.Context().Done():
				return
			}
			fmt.Fprintln(w, "second line")
			return
		}
		who := r.TLS.PeerCertificates[0].Subject.CommonName
		fmt.Fprintf(w, "log of %s/%s/%s tail=%s client=%s\n", r.PathValue("ns"), r.PathValue("pod"), r.PathValue("c"), r.URL.Query().Get("tailLines"), who)
	})
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "kubelet ok") })
	mux.HandleFunc("/exec/{ns}/{pod}/{c}", func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") != "test-echo" {
			http.Error(w, "want upgrade", 400)
			return
		}
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		fmt.Fprintf(brw, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: test-echo\r\nConnection: Upgrade\r\n\r\n")
		_ = brw.Flush()
		line, _ := brw.ReadString('\n')
		fmt.Fprintf(brw, "echo %s cmd=%s", line, strings.Join(r.URL.Query()["command"], ","))
		_ = brw.Flush()
	})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: mux, TLSConfig: &tls.Config{Certificates: []tls.Certificate{kp}, ClientCAs: pool, ClientAuth: tls.RequireAndVerifyClientCert}}
	go func() { _ = srv.ServeTLS(l, "", "") }()
	t.Cleanup(func() { _ = srv.Close() })
	return l.Addr().(*net.TCPAddr)
}

func TestKubeletForwarding(t *testing.T) {
	inst := apitest.Start(t)
	ctx := context.Background()
	addr := startKubelet(t, inst)
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-1"}}
	node, err := inst.Client.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	node.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "127.0.0.1"}}
	node.Status.DaemonEndpoints.KubeletEndpoint.Port = int32(addr.Port)
	if _, err := inst.Client.CoreV1().Nodes().UpdateStatus(ctx, node, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	p, err := inst.Client.CoreV1().Pods("default").Create(ctx, newPod("web-1", "node-1"), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p.Status.Phase = corev1.PodRunning
	if _, err := inst.Client.CoreV1().Pods("default").UpdateStatus(ctx, p, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	out := inst.MustKubectl(t, "logs", "web-1", "--tail=5")
	if !strings.Contains(out, "log of default/web-1/c tail=5 client=kubernetes-admin") {
		t.Fatalf("kubectl logs: %q", out)
	}
	// logs -f streams: the first line arrives while the kubelet holds the stream open.
	cmd := exec.Command(apitest.KubectlPath(t, ""), "--cache-dir", t.TempDir(), "logs", "-f", "web-1")
	cmd.Env = append(cmd.Environ(), "KUBECONFIG="+inst.Kubeconfig)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(stdout)
	got := make(chan string, 2)
	go func() {
		for sc.Scan() {
			got <- sc.Text()
		}
		close(got)
	}()
	select {
	case l := <-got:
		if l != "first line" {
			t.Fatalf("logs -f first line %q", l)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("logs -f: first line not streamed")
	}
	close(releaseFollow)
	if l := <-got; l != "second line" {
		t.Fatalf("logs -f second line %q", l)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("logs -f: %v", err)
	}
	c := httpClient(t, inst, true)
	resp, body := doReq(t, c, "GET", inst.Server.URL()+"/api/v1/nodes/node-1/proxy/healthz", "", nil)
	if resp.StatusCode != 200 || string(body) != "kubelet ok" {
		t.Fatalf("node proxy: %d %s", resp.StatusCode, body)
	}
	// An upgraded connection passes through both ways.
	kp, _ := tls.LoadX509KeyPair(filepath.Join(inst.DataDir, "pki", "admin.crt"), filepath.Join(inst.DataDir, "pki", "admin.key"))
	ca, _ := os.ReadFile(filepath.Join(inst.DataDir, "pki", "ca.crt"))
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca)
	conn, err := tls.Dial("tcp", strings.TrimPrefix(inst.Server.URL(), "https://"), &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{kp}, NextProtos: []string{"http/1.1"}})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "POST /api/v1/namespaces/default/pods/web-1/exec?command=ls&command=-l&stdout=true HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: test-echo\r\n\r\n")
	br := bufio.NewReader(conn)
	resp, err = http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 101 {
		t.Fatalf("upgrade: %v %v", err, resp)
	}
	fmt.Fprintf(conn, "hello\n")
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	rest, _ := io.ReadAll(br)
	if string(rest) != "echo hello\n cmd=ls,-l" {
		t.Fatalf("upgraded stream: %q", rest)
	}
	// An unbound pod has no logs.
	if _, err := inst.Client.CoreV1().Pods("default").Create(ctx, newPod("pending", ""), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	_, errOut, err := inst.Kubectl(t, "logs", "pending")
	if err == nil || !strings.Contains(errOut, "BadRequest") {
		t.Fatalf("logs of unbound pod: %v %s", err, errOut)
	}
}

func TestWatchExpiredAndBookmarks(t *testing.T) {
	dir := t.TempDir()
	db, err := store.Open(filepath.Join(dir, "store.db"), store.Options{HistoryMinAge: -1, HistoryMinRevisions: 1, CompactInterval: -1, NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	inst := apitest.Start(t, apitest.WithDataDir(dir), apitest.WithConfig(func(c *apiserver.Config) { c.Store = db }))
	ctx := context.Background()
	cms := inst.Client.CoreV1().ConfigMaps("default")
	cm, err := cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "a"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	old := cm.ResourceVersion
	for i := 0; i < 5; i++ {
		cm.Data = map[string]string{"i": fmt.Sprint(i)}
		if cm, err = cms.Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := db.Compact(ctx); err != nil {
		t.Fatal(err)
	}
	w, err := cms.Watch(ctx, metav1.ListOptions{ResourceVersion: old})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case ev := <-w.ResultChan():
		st, ok := ev.Object.(*metav1.Status)
		if ev.Type != watch.Error || !ok || st.Code != 410 || st.Reason != metav1.StatusReasonExpired || !strings.Contains(st.Message, "too old resource version: "+old) {
			t.Fatalf("expired watch: %s %+v", ev.Type, ev.Object)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no ERROR event")
	}
	w.Stop()
	w, err = cms.Watch(ctx, metav1.ListOptions{ResourceVersion: cm.ResourceVersion, AllowWatchBookmarks: true})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	select {
	case ev := <-w.ResultChan():
		m, _ := ev.Object.(metav1.Object)
		if ev.Type != watch.Bookmark || m == nil || m.GetResourceVersion() == "" {
			t.Fatalf("bookmark: %s %+v", ev.Type, ev.Object)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no BOOKMARK event")
	}
}
