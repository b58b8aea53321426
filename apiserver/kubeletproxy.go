package apiserver

import (
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"github.com/kubelab/kubelab/apiserver/certs"
	"github.com/kubelab/kubelab/apiserver/resources"
)

// kubeletDialer reaches node agents' kubelet API with the admin client
// certificate, trusting only the cluster CA (nodes' serving certificates
// come from the join). HTTP/1.1 only, so upgrades (exec, port-forward) pass.
type kubeletDialer struct {
	transport *http.Transport
}

func newKubeletDialer(p *certs.PKI) *kubeletDialer {
	return &kubeletDialer{transport: &http.Transport{
		TLSClientConfig: &tls.Config{
			Certificates: []tls.Certificate{p.Admin},
			RootCAs:      p.CAPool(),
			NextProtos:   []string{"http/1.1"},
			MinVersion:   tls.VersionTLS12,
		},
		DialContext:         (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSHandshakeTimeout: 10 * time.Second,
		MaxIdleConnsPerHost: 4,
		IdleConnTimeout:     90 * time.Second,
	}}
}

// nodeEndpoint is the kubelet API address of a node.
func nodeEndpoint(node *corev1.Node) (string, error) {
	var host string
	for _, t := range []corev1.NodeAddressType{corev1.NodeInternalIP, corev1.NodeExternalIP, corev1.NodeHostName} {
		for _, a := range node.Status.Addresses {
			if a.Type == t && host == "" {
				host = a.Address
			}
		}
	}
	if host == "" {
		return "", fmt.Errorf("node %q has no address", node.Name)
	}
	port := int(node.Status.DaemonEndpoints.KubeletEndpoint.Port)
	if port == 0 {
		port = 10250
	}
	return net.JoinHostPort(host, strconv.Itoa(port)), nil
}

// containerFor picks the container a log/exec/attach request targets.
func containerFor(pod *corev1.Pod, requested string) (string, error) {
	if requested != "" {
		return requested, nil
	}
	if len(pod.Spec.Containers) == 1 {
		return pod.Spec.Containers[0].Name, nil
	}
	if c := pod.Annotations["kubectl.kubernetes.io/default-container"]; c != "" {
		return c, nil
	}
	var names []string
	for _, c := range pod.Spec.Containers {
		names = append(names, c.Name)
	}
	return "", apierrors.NewBadRequest(fmt.Sprintf("a container name must be specified for pod %s, choose one of: [%s]", pod.Name, strings.Join(names, " ")))
}

// kubeletTarget maps pods/{log,exec,attach,portforward} and nodes/proxy to
// the node agent's URL.
func (s *Server) kubeletTarget(r *http.Request, q request) (*url.URL, error) {
	ctx := r.Context()
	nodesRes, _ := resources.Lookup("", "v1", "nodes")
	var nodeName, path string
	query := url.Values{}
	switch q.res.GVR.Resource {
	case "nodes":
		if q.sub != "proxy" {
			return nil, errNotFoundPath()
		}
		nodeName, path = q.name, "/"+q.subpath
		query = r.URL.Query()
	case "pods":
		obj, _, err := s.getObject(ctx, request{res: q.res, ns: q.ns, name: q.name})
		if err != nil {
			return nil, err
		}
		pod := obj.(*corev1.Pod)
		if pod.Spec.NodeName == "" {
			return nil, apierrors.NewBadRequest(fmt.Sprintf("pod %s does not have a host assigned", pod.Name))
		}
		nodeName = pod.Spec.NodeName
		in := r.URL.Query()
		switch q.sub {
		case "log":
			c, err := containerFor(pod, in.Get("container"))
			if err != nil {
				return nil, err
			}
			path = "/containerLogs/" + pod.Namespace + "/" + pod.Name + "/" + c
			for _, k := range []string{"follow", "tailLines", "previous", "timestamps", "sinceSeconds", "sinceTime", "limitBytes"} {
				if v := in.Get(k); v != "" {
					query.Set(k, v)
				}
			}
		case "exec", "attach":
			c, err := containerFor(pod, in.Get("container"))
			if err != nil {
				return nil, err
			}
			path = "/" + q.sub + "/" + pod.Namespace + "/" + pod.Name + "/" + c
			for k, vs := range in {
				if k != "container" {
					query[k] = vs
				}
			}
		case "portforward":
			path = "/portForward/" + pod.Namespace + "/" + pod.Name
			query = in
		default:
			return nil, errNotFoundPath()
		}
	default:
		return nil, apierrors.NewServiceUnavailable(fmt.Sprintf("%s/%s is not supported by kubelab", q.res.GVR.Resource, q.sub))
	}
	obj, _, err := s.getObject(ctx, request{res: nodesRes, name: nodeName})
	if err != nil {
		return nil, err
	}
	hostPort, err := nodeEndpoint(obj.(*corev1.Node))
	if err != nil {
		return nil, apierrors.NewServiceUnavailable(err.Error())
	}
	return &url.URL{Scheme: "https", Host: hostPort, Path: path, RawQuery: query.Encode()}, nil
}

// serveKubeletProxy forwards the request, upgrades included, to the node.
func (s *Server) serveKubeletProxy(w http.ResponseWriter, r *http.Request, q request) {
	target, err := s.kubeletTarget(r, q)
	if err != nil {
		writeError(w, err)
		return
	}
	forward(w, r, target, s.kubelet.transport, false, "kubelet proxy", "error trying to reach the node agent at "+target.Host)
}
