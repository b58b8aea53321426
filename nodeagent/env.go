package nodeagent

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// fieldValue resolves the downward-API fields the agent supports.
func fieldValue(pod *corev1.Pod, podIP, hostIP, path string) (string, error) {
	switch path {
	case "metadata.name":
		return pod.Name, nil
	case "metadata.namespace":
		return pod.Namespace, nil
	case "metadata.uid":
		return string(pod.UID), nil
	case "spec.nodeName":
		return pod.Spec.NodeName, nil
	case "spec.serviceAccountName":
		return pod.Spec.ServiceAccountName, nil
	case "status.podIP", "status.podIPs":
		return podIP, nil
	case "status.hostIP", "status.hostIPs":
		return hostIP, nil
	}
	if strings.HasPrefix(path, "metadata.labels['") && strings.HasSuffix(path, "']") {
		return pod.Labels[strings.TrimSuffix(strings.TrimPrefix(path, "metadata.labels['"), "']")], nil
	}
	if strings.HasPrefix(path, "metadata.annotations['") && strings.HasSuffix(path, "']") {
		return pod.Annotations[strings.TrimSuffix(strings.TrimPrefix(path, "metadata.annotations['"), "']")], nil
	}
	return "", fmt.Errorf("unsupported fieldRef %q", path)
}

// objectSource fetches the ConfigMaps and Secrets a pod refers to (env,
// envFrom, volumes); get returns a NotFound API error for a missing object.
type objectSource interface {
	configMap(ns, name string) (*corev1.ConfigMap, error)
	secret(ns, name string) (*corev1.Secret, error)
}

// apiObjects reads them from the API server at container start, as the
// kubelet's Get strategy does; no cache, so an idle agent holds none of them.
type apiObjects struct {
	ctx    context.Context
	client kubernetes.Interface
}

func (a apiObjects) configMap(ns, name string) (*corev1.ConfigMap, error) {
	return a.client.CoreV1().ConfigMaps(ns).Get(a.ctx, name, metav1.GetOptions{})
}

func (a apiObjects) secret(ns, name string) (*corev1.Secret, error) {
	return a.client.CoreV1().Secrets(ns).Get(a.ctx, name, metav1.GetOptions{})
}

// configError is a container configuration the agent cannot satisfy yet (a
// missing ConfigMap, Secret or key): the container waits with
// CreateContainerConfigError and is retried, without counting a restart.
type configError struct{ err error }

func (e configError) Error() string { return e.err.Error() }
func (e configError) Unwrap() error { return e.err }

// sourceData returns a ConfigMap's or Secret's data as strings, or ok=false
// when it is missing and optional.
func sourceData(objs objectSource, ns string, cm *corev1.LocalObjectReference, sec *corev1.LocalObjectReference, optional *bool) (map[string]string, bool, error) {
	opt := optional != nil && *optional
	if objs == nil {
		return nil, false, configError{errors.New("no API access for ConfigMaps and Secrets")}
	}
	out := map[string]string{}
	if cm != nil {
		o, err := objs.configMap(ns, cm.Name)
		if apierrors.IsNotFound(err) && opt {
			return nil, false, nil
		}
		if err != nil {
			if apierrors.IsNotFound(err) {
				return nil, false, configError{fmt.Errorf("configmap %q not found", cm.Name)}
			}
			return nil, false, configError{err}
		}
		for k, v := range o.Data {
			out[k] = v
		}
		for k, v := range o.BinaryData {
			out[k] = string(v)
		}
		return out, true, nil
	}
	o, err := objs.secret(ns, sec.Name)
	if apierrors.IsNotFound(err) && opt {
		return nil, false, nil
	}
	if err != nil {
		if apierrors.IsNotFound(err) {
			return nil, false, configError{fmt.Errorf("secret %q not found", sec.Name)}
		}
		return nil, false, configError{err}
	}
	for k, v := range o.Data {
		out[k] = string(v)
	}
	for k, v := range o.StringData {
		out[k] = v
	}
	return out, true, nil
}

// validEnvName is the C identifier rule the kubelet applies to envFrom keys
// (letters, digits, '_', '-', '.'; not starting with a digit).
func validEnvName(s string) bool {
	if s == "" || (s[0] >= '0' && s[0] <= '9') {
		return false
	}
	for _, r := range s {
		if !(r == '_' || r == '-' || r == '.' || (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z') || (r >= '0' && r <= '9')) {
			return false
		}
	}
	return true
}

// containerEnv builds a container's environment as the kubelet does: envFrom
// sources first (in order, each key prefixed), then env in declaration order
// with $(VAR) references to earlier variables expanded; env wins over
// envFrom. objs may be nil when the container refers to no ConfigMap or Secret.
func containerEnv(pod *corev1.Pod, c *corev1.Container, podIP, hostIP string, objs objectSource) ([]string, map[string]string, error) {
	vals := map[string]string{}
	var order []string
	set := func(k, v string) {
		if _, ok := vals[k]; !ok {
			order = append(order, k)
		}
		vals[k] = v
	}
	set("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
	set("HOSTNAME", pod.Name)
	set("HOME", "/")
	for _, from := range c.EnvFrom {
		var data map[string]string
		var ok bool
		var err error
		switch {
		case from.ConfigMapRef != nil:
			data, ok, err = sourceData(objs, pod.Namespace, &from.ConfigMapRef.LocalObjectReference, nil, from.ConfigMapRef.Optional)
		case from.SecretRef != nil:
			data, ok, err = sourceData(objs, pod.Namespace, nil, &from.SecretRef.LocalObjectReference, from.SecretRef.Optional)
		}
		if err != nil {
			return nil, nil, err
		}
		if !ok {
			continue
		}
		keys := make([]string, 0, len(data))
		for k := range data {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			if name := from.Prefix + k; validEnvName(name) { // invalid names are skipped, as by the kubelet
				set(name, data[k])
			}
		}
	}
	for _, e := range c.Env {
		switch {
		case e.ValueFrom == nil:
			set(e.Name, expand(e.Value, vals))
		case e.ValueFrom.FieldRef != nil:
			v, err := fieldValue(pod, podIP, hostIP, e.ValueFrom.FieldRef.FieldPath)
			if err != nil {
				return nil, nil, fmt.Errorf("env %s: %w", e.Name, err)
			}
			set(e.Name, v)
		case e.ValueFrom.ConfigMapKeyRef != nil || e.ValueFrom.SecretKeyRef != nil:
			var data map[string]string
			var ok bool
			var err error
			var key, kind, name string
			var optional *bool
			if r := e.ValueFrom.ConfigMapKeyRef; r != nil {
				key, kind, name, optional = r.Key, "ConfigMap", r.Name, r.Optional
				data, ok, err = sourceData(objs, pod.Namespace, &r.LocalObjectReference, nil, r.Optional)
			} else {
				r := e.ValueFrom.SecretKeyRef
				key, kind, name, optional = r.Key, "Secret", r.Name, r.Optional
				data, ok, err = sourceData(objs, pod.Namespace, nil, &r.LocalObjectReference, r.Optional)
			}
			if err != nil {
				return nil, nil, err
			}
			if !ok {
				continue
			}
			v, found := data[key]
			if !found {
				if optional != nil && *optional {
					continue
				}
				return nil, nil, configError{fmt.Errorf("couldn't find key %s in %s %s/%s", key, kind, pod.Namespace, name)}
			}
			set(e.Name, v)
		default:
			// resourceFieldRef: not supported; left unset.
		}
	}
	out := make([]string, 0, len(order))
	for _, k := range order {
		out = append(out, k+"="+vals[k])
	}
	return out, vals, nil
}

// expand replaces $(NAME) with its value when NAME is known; $$ escapes $.
func expand(s string, vals map[string]string) string {
	if !strings.Contains(s, "$") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '$' || i+1 >= len(s) {
			b.WriteByte(s[i])
			continue
		}
		switch s[i+1] {
		case '$':
			b.WriteByte('$')
			i++
		case '(':
			end := strings.IndexByte(s[i+2:], ')')
			if end < 0 {
				b.WriteString(s[i:])
				return b.String()
			}
			name := s[i+2 : i+2+end]
			if v, ok := vals[name]; ok {
				b.WriteString(v)
			} else {
				b.WriteString(s[i : i+3+end])
			}
			i += 2 + end
		default:
			b.WriteByte('$')
		}
	}
	return b.String()
}

func expandAll(args []string, vals map[string]string) []string {
	out := make([]string, len(args))
	for i, a := range args {
		out[i] = expand(a, vals)
	}
	return out
}

// containerPorts lists a container's ports in workload flag syntax, 80/TCP when none.
func containerPorts(c *corev1.Container) []string {
	if len(c.Ports) == 0 {
		return []string{"80/TCP/"}
	}
	var out []string
	for _, p := range c.Ports {
		proto := string(p.Protocol)
		if proto == "" {
			proto = "TCP"
		}
		out = append(out, fmt.Sprintf("%d/%s/%s", p.ContainerPort, proto, p.Name))
	}
	sort.Strings(out)
	return out
}
