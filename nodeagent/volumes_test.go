package nodeagent

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

func TestVolumeFiles(t *testing.T) {
	data := map[string]string{"a": "1", "b": "2"}
	files, modes, err := volumeFiles(data, nil, ptr.To[int32](0o600))
	if err != nil || len(files) != 2 || files["a"] != "1" || modes["b"] != 0o600 {
		t.Errorf("all keys: %v %v %v", files, modes, err)
	}
	files, modes, err = volumeFiles(data, []corev1.KeyToPath{{Key: "b", Path: "sub/b.txt", Mode: ptr.To[int32](0o400)}}, nil)
	if err != nil || len(files) != 1 || files["sub/b.txt"] != "2" || modes["sub/b.txt"] != 0o400 {
		t.Errorf("items: %v %v %v", files, modes, err)
	}
	for _, bad := range []corev1.KeyToPath{{Key: "zz", Path: "x"}, {Key: "a", Path: "../x"}, {Key: "a", Path: "/etc/x"}} {
		if _, _, err := volumeFiles(data, []corev1.KeyToPath{bad}, nil); !errors.As(err, &configError{}) {
			t.Errorf("item %+v: %v, want a configError", bad, err)
		}
	}
	if got := mountEnvName("my-config.v1"); got != "KUBELAB_MOUNT_MY_CONFIG_V1" {
		t.Errorf("mountEnvName = %s", got)
	}
}

// configMap, secret and emptyDir volumes: files a container running as
// nobody reads (and, for emptyDir, writes) at $KUBELAB_MOUNT_<VOLUME>.
func TestVolumes(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	if _, err := r.cs.CoreV1().ConfigMaps("default").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "web-config", Namespace: "default"},
		Data: map[string]string{"app.ini": "color=green", "other": "x"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.cs.CoreV1().Secrets("default").Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "creds", Namespace: "default"},
		Data: map[string][]byte{"pw": []byte("hunter2")}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	script := `cat $KUBELAB_MOUNT_CFG/conf/app.ini; echo; cat $KUBELAB_MOUNT_CREDS/pw; echo; ` +
		`echo written > $KUBELAB_MOUNT_SCRATCH/f && cat $KUBELAB_MOUNT_SCRATCH/f; stat -c mode=%a $KUBELAB_MOUNT_CFG/conf/app.ini; ` +
		`test -e $KUBELAB_MOUNT_CFG/other || echo no-other; id -u; exec sleep 60`
	p := r.add(&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "vols"}, Spec: corev1.PodSpec{
		Volumes: []corev1.Volume{
			{Name: "cfg", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
				LocalObjectReference: corev1.LocalObjectReference{Name: "web-config"},
				Items:                []corev1.KeyToPath{{Key: "app.ini", Path: "conf/app.ini", Mode: ptr.To[int32](0o444)}}}}},
			{Name: "creds", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "creds"}}},
			{Name: "scratch", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
		},
		Containers: []corev1.Container{{Name: "c", Image: "busybox", Command: []string{"sh", "-c", script},
			VolumeMounts: []corev1.VolumeMount{{Name: "cfg", MountPath: "/etc/web"}, {Name: "creds", MountPath: "/secrets"},
				{Name: "scratch", MountPath: "/scratch"}}}}}})
	r.waitFor("vols", 10*time.Second, running)
	want := "color=green\nhunter2\nwritten\nmode=444\nno-other\n65534\n"
	deadline := time.Now().Add(5 * time.Second)
	var got string
	for {
		var lines []string
		for _, l := range strings.Split(strings.TrimSpace(r.logOf(p, "c", 0)), "\n") {
			if f := strings.SplitN(l, " ", 3); len(f) == 3 {
				lines = append(lines, f[2])
			}
		}
		got = strings.Join(lines, "\n") + "\n"
		if got == want || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if got != want {
		t.Errorf("container saw:\n%s\nwant:\n%s\nraw log: %q", got, want, r.logOf(p, "c", 0))
	}
	if _, err := os.Stat("/etc/web"); err == nil {
		t.Error("/etc/web exists on the host")
	}
	dir := podVolumeDir(r.cfg, string(p.UID))
	if err := r.cs.CoreV1().Pods("default").Delete(ctx, "vols", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	r.pm.handlers().OnDelete(p)
	deadline = time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat(dir); os.IsNotExist(err) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("volume dir %s left after the pod went", dir)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
