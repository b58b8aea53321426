package nodeagent

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/kubelab/kubelab/nodeagent/labnet"
)

// Volumes. configMap, secret and emptyDir volumes are real directories, one
// per pod volume, under VolumeRoot/<pod uid>/<volume>: files written from the
// ConfigMap or Secret (keys or items, with their modes), or an empty
// directory anyone may write to, as the kubelet's emptyDir.
//
// What kubelab cannot do honestly is put them at their mountPath: containers
// are host processes without a mount namespace of their own, so a directory
// at /etc/config would be the host's /etc/config, shared by every pod and the
// host. The agent does not create it. Instead each volumeMount gives the
// container the variable KUBELAB_MOUNT_<VOLUME> (upper case, other characters
// as '_') holding the directory (joined with subPath), and the pod gets a
// Warning event saying where each volume is. Contents are written when the
// pod starts and not refreshed afterwards; every pod's files are readable by
// the unprivileged user all containers share by default (no user namespaces
// either), so Secrets are not private between pods of one node.

// volumeRootFor is where a node's pod volumes live: outside the agent's data
// dir, which holds the node's key and is root-only, so that containers
// running as nobody can reach their files.
func volumeRootFor(cfg *Config) string {
	return filepath.Join(labnet.VolumeRoot, strings.TrimSuffix(cfg.NetnsPrefix, "-"))
}

func podVolumeDir(cfg *Config, uid string) string { return filepath.Join(volumeRootFor(cfg), uid) }

// mountEnvName is the variable naming a volume's directory.
func mountEnvName(volume string) string {
	b := []byte(strings.ToUpper(volume))
	for i, c := range b {
		if !(c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			b[i] = '_'
		}
	}
	return "KUBELAB_MOUNT_" + string(b)
}

// volumeEnv is the KUBELAB_MOUNT_* variables of a container's volumeMounts.
func volumeEnv(cfg *Config, pod *corev1.Pod, c *corev1.Container) []string {
	var out []string
	for _, m := range c.VolumeMounts {
		out = append(out, mountEnvName(m.Name)+"="+filepath.Join(podVolumeDir(cfg, string(pod.UID)), m.Name, m.SubPath))
	}
	return out
}

// volumeFiles computes the files of a configMap or secret volume: relative
// path -> content and mode; pure. ok is false when an optional source is
// missing (an empty directory then).
func volumeFiles(data map[string]string, items []corev1.KeyToPath, defaultMode *int32) (map[string]string, map[string]os.FileMode, error) {
	mode := os.FileMode(0o644)
	if defaultMode != nil {
		mode = os.FileMode(*defaultMode) & 0o777
	}
	files, modes := map[string]string{}, map[string]os.FileMode{}
	if len(items) == 0 {
		for k, v := range data {
			files[k], modes[k] = v, mode
		}
		return files, modes, nil
	}
	for _, it := range items {
		v, ok := data[it.Key]
		if !ok {
			return nil, nil, configError{fmt.Errorf("configmap or secret references non-existent key %s", it.Key)}
		}
		p := filepath.Clean(it.Path)
		if filepath.IsAbs(p) || p == ".." || strings.HasPrefix(p, "../") {
			return nil, nil, configError{fmt.Errorf("item path %q must be relative and stay inside the volume", it.Path)}
		}
		files[p], modes[p] = v, mode
		if it.Mode != nil {
			modes[p] = os.FileMode(*it.Mode) & 0o777
		}
	}
	return files, modes, nil
}

// prepareVolumes writes a pod's configMap, secret and emptyDir volumes and
// returns, for the event, where each one is. Other volume kinds are left out.
func prepareVolumes(cfg *Config, pod *corev1.Pod, objs objectSource) ([]string, error) {
	root := podVolumeDir(cfg, string(pod.UID))
	if len(pod.Spec.Volumes) == 0 {
		return nil, nil
	}
	if err := os.MkdirAll(root, 0o711); err != nil {
		return nil, err
	}
	_ = os.Chmod(filepath.Dir(root), 0o711) // traversable, not listable
	var where []string
	for _, v := range pod.Spec.Volumes {
		dir := filepath.Join(root, v.Name)
		var data map[string]string
		var items []corev1.KeyToPath
		var mode *int32
		var ok bool
		var err error
		switch {
		case v.EmptyDir != nil:
			if err := os.MkdirAll(dir, 0o777); err != nil {
				return nil, err
			}
			if err := os.Chmod(dir, 0o777); err != nil {
				return nil, err
			}
			where = append(where, v.Name+"="+dir)
			continue
		case v.ConfigMap != nil:
			items, mode = v.ConfigMap.Items, v.ConfigMap.DefaultMode
			data, ok, err = sourceData(objs, pod.Namespace, &v.ConfigMap.LocalObjectReference, nil, v.ConfigMap.Optional)
		case v.Secret != nil:
			items, mode = v.Secret.Items, v.Secret.DefaultMode
			data, ok, err = sourceData(objs, pod.Namespace, nil, &corev1.LocalObjectReference{Name: v.Secret.SecretName}, v.Secret.Optional)
		default:
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("volume %s: %w", v.Name, err)
		}
		files, modes, err := volumeFiles(data, items, mode)
		if err != nil {
			return nil, fmt.Errorf("volume %s: %w", v.Name, err)
		}
		if !ok {
			files = nil
		}
		// Written beside, then swapped in whole.
		tmp := dir + ".new"
		_ = os.RemoveAll(tmp)
		if err := os.MkdirAll(tmp, 0o755); err != nil {
			return nil, err
		}
		names := make([]string, 0, len(files))
		for p := range files {
			names = append(names, p)
		}
		sort.Strings(names)
		for _, p := range names {
			full := filepath.Join(tmp, p)
			if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
				return nil, err
			}
			if err := os.WriteFile(full, []byte(files[p]), modes[p]); err != nil {
				return nil, err
			}
			if err := os.Chmod(full, modes[p]); err != nil { // past the umask
				return nil, err
			}
		}
		_ = os.RemoveAll(dir)
		if err := os.Rename(tmp, dir); err != nil {
			return nil, err
		}
		where = append(where, v.Name+"="+dir)
	}
	return where, nil
}
