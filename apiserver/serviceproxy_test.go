package apiserver_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/rest"

	"github.com/kubelab/kubelab/apiserver/apitest"
)

// hostIP is a non-loopback IPv4 address of this host: Endpoints may not
// hold loopback addresses, and the test server listens on it.
func hostIP(t *testing.T) string {
	t.Helper()
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil && !n.IP.IsLoopback() && !n.IP.IsLinkLocalUnicast() {
			return n.IP.String()
		}
	}
	t.Fatal("no non-loopback IPv4 address on this host for the test endpoint")
	return ""
}

// TestServiceProxy drives services/NAME[:PORT]/proxy/PATH to a plain HTTP
// server standing in for a pod: port by name and by number, any method
// with its body and query, no credentials passed on, and kube-apiserver's
// errors when nothing can serve.
func TestServiceProxy(t *testing.T) {
	inst := apitest.Start(t)
	ctx := context.Background()
	ip := hostIP(t)
	l, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("X-Backend", "yes")
		w.WriteHeader(http.StatusTeapot)
		fmt.Fprintf(w, "%s %s?%s auth=%q body=%s", r.Method, r.URL.Path, r.URL.RawQuery, r.Header.Get("Authorization"), body)
	})}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })

	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "web"}, Spec: corev1.ServiceSpec{
		Selector: map[string]string{"app": "web"},
		Ports:    []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(int32(port))}},
	}}
	if _, err := inst.Client.CoreV1().Services("default").Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// One ready address (the server) and a not-ready one that must never
	// be chosen (nothing listens there).
	eps := &corev1.Endpoints{ObjectMeta: metav1.ObjectMeta{Name: "web"}, Subsets: []corev1.EndpointSubset{{
		Addresses:         []corev1.EndpointAddress{{IP: ip}},
		NotReadyAddresses: []corev1.EndpointAddress{{IP: "192.0.2.254"}},
		Ports:             []corev1.EndpointPort{{Name: "http", Port: int32(port)}},
	}}}
	if _, err := inst.Client.CoreV1().Endpoints("default").Create(ctx, eps, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	hc, err := rest.HTTPClientFor(inst.Config)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"web:http", "web:80", "http:web:http"} {
		for i := 0; i < 3; i++ {
			resp, err := hc.Post(inst.URL()+"/api/v1/namespaces/default/services/"+name+"/proxy/a/b?x=1", "text/plain", strings.NewReader("hello"))
			if err != nil {
				t.Fatal(err)
			}
			raw, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusTeapot || resp.Header.Get("X-Backend") != "yes" || string(raw) != `POST /a/b?x=1 auth="" body=hello` {
				t.Fatalf("%s: %d %v %q", name, resp.StatusCode, resp.Header, raw)
			}
		}
	}
	// kubectl get --raw prints an error for the 418, with the body.
	_, errOut, _ := inst.Kubectl(t, "get", "--raw", "/api/v1/namespaces/default/services/web:http/proxy/k")
	if !strings.Contains(errOut, "418") {
		t.Fatalf("kubectl get --raw: %q", errOut)
	}
	rc := inst.Client.CoreV1().RESTClient()
	// Discovery advertises the subresource as kube-apiserver does.
	rl, err := inst.Client.Discovery().ServerResourcesForGroupVersion("v1")
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, r := range rl.APIResources {
		if r.Name == "services/proxy" {
			found = r.Kind == "ServiceProxyOptions" && strings.Join(r.Verbs, ",") == "create,delete,get,patch,update"
		}
	}
	if !found {
		t.Error("discovery: services/proxy missing or not as kube-apiserver lists it")
	}
	for _, c := range []struct{ name, want string }{
		{"web", `no endpoints available for service "web"`},
		{"web:81", `no service port 81 found for service "web"`},
		// As kube-apiserver: a named port goes straight to the Endpoints.
		{"nope:http", `endpoints "nope" not found`},
		{"nope:80", `services "nope" not found`},
		{"ftp:web:http", `invalid service request "ftp:web:http"`},
	} {
		err := rc.Get().AbsPath("/api/v1/namespaces/default/services/" + c.name + "/proxy/").Do(ctx).Error()
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", c.name, err, c.want)
		}
	}
	if err := rc.Get().AbsPath("/api/v1/namespaces/default/services/web/proxy/").Do(ctx).Error(); !apierrors.IsServiceUnavailable(err) {
		t.Errorf("no endpoint: %v", err)
	}
}
