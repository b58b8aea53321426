package nodeagent

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/utils/ptr"
)

// mapObjects serves ConfigMaps and Secrets from maps (pure tests only; the
// runtime test below reads them through the API).
type mapObjects struct {
	cms  map[string]*corev1.ConfigMap
	secs map[string]*corev1.Secret
}

func (m mapObjects) configMap(ns, name string) (*corev1.ConfigMap, error) {
	if o := m.cms[ns+"/"+name]; o != nil {
		return o, nil
	}
	return nil, apierrors.NewNotFound(schema.GroupResource{Resource: "configmaps"}, name)
}

func (m mapObjects) secret(ns, name string) (*corev1.Secret, error) {
	if o := m.secs[ns+"/"+name]; o != nil {
		return o, nil
	}
	return nil, apierrors.NewNotFound(schema.GroupResource{Resource: "secrets"}, name)
}

func TestContainerEnvFromConfigMapsAndSecrets(t *testing.T) {
	pod := testPod()
	objs := mapObjects{
		cms:  map[string]*corev1.ConfigMap{"shop/cfg": {Data: map[string]string{"MODE": "fast", "LEVEL": "3", "1BAD": "x", "bad key": "y"}}},
		secs: map[string]*corev1.Secret{"shop/creds": {Data: map[string][]byte{"password": []byte("s3cret"), "USER": []byte("ann")}}},
	}
	ref := func(name string) corev1.LocalObjectReference { return corev1.LocalObjectReference{Name: name} }
	c := &corev1.Container{
		EnvFrom: []corev1.EnvFromSource{
			{ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: ref("cfg")}},
			{Prefix: "DB_", SecretRef: &corev1.SecretEnvSource{LocalObjectReference: ref("creds")}},
			{ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: ref("absent"), Optional: ptr.To(true)}},
		},
		Env: []corev1.EnvVar{
			{Name: "LEVEL", Value: "9"}, // env wins over envFrom
			{Name: "M", ValueFrom: &corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{LocalObjectReference: ref("cfg"), Key: "MODE"}}},
			{Name: "PW", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: ref("creds"), Key: "password"}}},
			{Name: "OPT", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: ref("creds"), Key: "nope", Optional: ptr.To(true)}}},
			{Name: "URL", Value: "db://$(DB_USER):$(PW)@x"},
		},
	}
	_, vals, err := containerEnv(pod, c, "10.244.2.5", "10.200.0.2", objs)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"MODE": "fast", "LEVEL": "9", "DB_password": "s3cret", "DB_USER": "ann", "M": "fast", "PW": "s3cret",
		"URL": "db://ann:s3cret@x"}
	for k, v := range want {
		if vals[k] != v {
			t.Errorf("%s = %q, want %q", k, vals[k], v)
		}
	}
	for _, k := range []string{"1BAD", "bad key", "OPT"} {
		if _, ok := vals[k]; ok {
			t.Errorf("%s set", k)
		}
	}
	for name, e := range map[string]corev1.EnvVar{
		"missing configmap": {Name: "X", ValueFrom: &corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{LocalObjectReference: ref("absent"), Key: "k"}}},
		"missing key":       {Name: "X", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: ref("creds"), Key: "k"}}},
	} {
		_, _, err := containerEnv(pod, &corev1.Container{Env: []corev1.EnvVar{e}}, "", "", objs)
		if ce := (configError{}); !errors.As(err, &ce) {
			t.Errorf("%s: error %v, want a configError", name, err)
		}
	}
}

// A container whose ConfigMap does not exist yet waits with
// CreateContainerConfigError, counting no restart, and starts with the
// values once the ConfigMap is created.
func TestContainerWaitsForConfigMap(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	p := r.add(&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "cfg"}, Spec: corev1.PodSpec{RestartPolicy: corev1.RestartPolicyNever,
		Containers: []corev1.Container{{Name: "c", Image: "busybox", Command: []string{"sh", "-c", `echo "mode=$MODE pw=$PW"; exec sleep 60`},
			EnvFrom: []corev1.EnvFromSource{{ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "settings"}}}},
			Env: []corev1.EnvVar{{Name: "PW", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
				LocalObjectReference: corev1.LocalObjectReference{Name: "creds"}, Key: "pw"}}}}}}}})
	r.waitFor("cfg", 5*time.Second, func(p *corev1.Pod) bool {
		if len(p.Status.ContainerStatuses) != 1 {
			return false
		}
		w := p.Status.ContainerStatuses[0].State.Waiting
		return w != nil && w.Reason == "CreateContainerConfigError" && strings.Contains(w.Message, `configmap "settings" not found`)
	})
	if _, err := r.cs.CoreV1().ConfigMaps("default").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "settings", Namespace: "default"},
		Data: map[string]string{"MODE": "blue"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.cs.CoreV1().Secrets("default").Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "creds", Namespace: "default"},
		Data: map[string][]byte{"pw": []byte("hunter2")}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	got := r.waitFor("cfg", 30*time.Second, running)
	if n := got.Status.ContainerStatuses[0].RestartCount; n != 0 {
		t.Errorf("restartCount %d: waiting for config counted as restarts", n)
	}
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(r.logOf(p, "c", 0), "mode=blue pw=hunter2") {
		if time.Now().After(deadline) {
			t.Fatalf("log %q", r.logOf(p, "c", 0))
		}
		time.Sleep(50 * time.Millisecond)
	}
}
