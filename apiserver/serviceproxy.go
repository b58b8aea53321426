package apiserver

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"github.com/kubelab/kubelab/apiserver/resources"
)

// newServiceTransport is how the API server reaches Service endpoints for
// services/proxy: plain HTTP, or HTTPS without verification (pods have no
// certificates the cluster vouches for), never the admin credential.
func newServiceTransport() *http.Transport {
	return &http.Transport{
		TLSClientConfig:     &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12}, //nolint:gosec // as kube-apiserver's proxy transport
		DialContext:         (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSHandshakeTimeout: 10 * time.Second,
		MaxIdleConnsPerHost: 4,
		IdleConnTimeout:     90 * time.Second,
	}
}

// splitSchemeNamePort parses a services/proxy name: "name", "name:port" or
// "scheme:name:port" (scheme http or https; port a name or a number).
func splitSchemeNamePort(id string) (scheme, name, port string, ok bool) {
	parts := strings.Split(id, ":")
	switch len(parts) {
	case 1:
		name = parts[0]
	case 2:
		name, port = parts[0], parts[1]
	case 3:
		scheme, name, port = parts[0], parts[1], parts[2]
	default:
		return "", "", "", false
	}
	if name == "" || (scheme != "" && scheme != "http" && scheme != "https") {
		return "", "", "", false
	}
	return scheme, name, port, true
}

// pickEndpoint chooses a ready address of the Service's Endpoints that
// serves the named port, as kube-apiserver does (a random one, starting
// from a random subset). port is a Service port name ("" for an unnamed
// port).
func pickEndpoint(eps *corev1.Endpoints, port string) (string, bool) {
	n := len(eps.Subsets)
	if n == 0 {
		return "", false
	}
	start := rand.IntN(n)
	for i := 0; i < n; i++ {
		ss := eps.Subsets[(start+i)%n]
		if len(ss.Addresses) == 0 {
			continue
		}
		for _, p := range ss.Ports {
			if p.Name == port {
				a := ss.Addresses[rand.IntN(len(ss.Addresses))]
				return net.JoinHostPort(a.IP, strconv.Itoa(int(p.Port))), true
			}
		}
	}
	return "", false
}

// serviceTarget resolves services/{id}/proxy/{path} to an endpoint URL.
func (s *Server) serviceTarget(ctx context.Context, q request, rawQuery string) (*url.URL, error) {
	scheme, name, port, ok := splitSchemeNamePort(q.name)
	if !ok {
		return nil, apierrors.NewBadRequest(fmt.Sprintf("invalid service request %q", q.name))
	}
	if num, err := strconv.ParseInt(port, 10, 32); err == nil {
		obj, _, err := s.getObject(ctx, request{res: q.res, ns: q.ns, name: name})
		if err != nil {
			return nil, err
		}
		found := false
		for _, sp := range obj.(*corev1.Service).Spec.Ports {
			if int64(sp.Port) == num {
				port, found = sp.Name, true
				break
			}
		}
		if !found {
			return nil, apierrors.NewServiceUnavailable(fmt.Sprintf("no service port %d found for service %q", num, name))
		}
	}
	epRes, _ := resources.Lookup("", "v1", "endpoints")
	obj, _, err := s.getObject(ctx, request{res: epRes, ns: q.ns, name: name})
	if err != nil {
		return nil, err
	}
	hostPort, ok := pickEndpoint(obj.(*corev1.Endpoints), port)
	if !ok {
		return nil, apierrors.NewServiceUnavailable(fmt.Sprintf("no endpoints available for service %q", q.name))
	}
	if scheme == "" {
		scheme = "http"
	}
	return &url.URL{Scheme: scheme, Host: hostPort, Path: "/" + q.subpath, RawQuery: rawQuery}, nil
}

// serveServiceProxy forwards any method (and upgrades) to an endpoint of
// the Service. The caller's credentials are not passed on.
func (s *Server) serveServiceProxy(w http.ResponseWriter, r *http.Request, q request) {
	target, err := s.serviceTarget(r.Context(), q, r.URL.RawQuery)
	if err != nil {
		writeError(w, err)
		return
	}
	forward(w, r, target, s.svcTransport, true, "service proxy", "error trying to reach service")
}

// forward proxies the request, upgrades included, to target without the
// caller's credentials. setForwarded adds the X-Forwarded headers; the
// node agent is not told who the client was. A failure to connect is a 503
// saying what could not be reached.
func forward(w http.ResponseWriter, r *http.Request, target *url.URL, transport http.RoundTripper, setForwarded bool, what, unreachable string) {
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL = target
			pr.Out.Host = target.Host
			pr.Out.Header.Del("Authorization")
			if setForwarded {
				pr.SetXForwarded()
			} else {
				pr.Out.Header.Del("X-Forwarded-For")
			}
		},
		Transport:     transport,
		FlushInterval: -1,
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			slog.Debug(what, "target", target.String(), "err", err)
			writeError(w, apierrors.NewServiceUnavailable(fmt.Sprintf("%s: %v", unreachable, err)))
		},
	}
	rp.ServeHTTP(w, r)
}
