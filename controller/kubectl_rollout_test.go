package controller

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/kubelab/kubelab/apiserver/apitest"
)

// playKubelet stands in for the node agents of a cluster without nodes:
// every pod of the namespace is bound, started and reported ready, and a
// pod in graceful deletion is finished off, as a kubelet would.
func playKubelet(t *testing.T, client kubernetes.Interface, ns string) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	t.Cleanup(func() { cancel(); <-done })
	go func() {
		defer close(done)
		ip := 10
		for ctx.Err() == nil {
			pods, err := client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
			if err == nil {
				for i := range pods.Items {
					p := &pods.Items[i]
					if p.DeletionTimestamp != nil {
						_ = client.CoreV1().Pods(ns).Delete(ctx, p.Name, metav1.DeleteOptions{GracePeriodSeconds: new(int64)})
						continue
					}
					if c := podReadyCondition(p); c != nil && c.Status == corev1.ConditionTrue {
						continue
					}
					if p.Spec.NodeName == "" {
						b := &corev1.Binding{ObjectMeta: metav1.ObjectMeta{Name: p.Name}, Target: corev1.ObjectReference{Kind: "Node", Name: "node-1"}}
						if err := client.CoreV1().Pods(ns).Bind(ctx, b, metav1.CreateOptions{}); err != nil {
							continue
						}
						if p, err = client.CoreV1().Pods(ns).Get(ctx, p.Name, metav1.GetOptions{}); err != nil {
							continue
						}
					}
					ip++
					now := metav1.Now()
					p.Status.Phase = corev1.PodRunning
					p.Status.PodIP = fmt.Sprintf("10.244.1.%d", ip%250+2)
					p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: now}}
					_, _ = client.CoreV1().Pods(ns).UpdateStatus(ctx, p, metav1.UpdateOptions{})
				}
			}
			select {
			case <-ctx.Done():
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
}

func kubectlContains(t *testing.T, inst *apitest.Instance, want string, args ...string) string {
	t.Helper()
	out := inst.MustKubectl(t, args...)
	if !strings.Contains(out, want) {
		t.Fatalf("kubectl %s: %q does not contain %q", strings.Join(args, " "), out, want)
	}
	return out
}

// replicaSetsByRevision maps revision annotations to spec.replicas.
func replicaSetsByRevision(t *testing.T, client kubernetes.Interface) map[string]int32 {
	t.Helper()
	rss, err := client.AppsV1().ReplicaSets("default").List(context.Background(), metav1.ListOptions{LabelSelector: "app=web"})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int32{}
	for _, rs := range rss.Items {
		out[rs.Annotations["deployment.kubernetes.io/revision"]] = *rs.Spec.Replicas
	}
	return out
}

func TestKubectlScaleRolloutRestartAndUndo(t *testing.T) {
	inst := startControllersWith(t, func(*Options) {})
	client := inst.Client
	ctx := context.Background()
	playKubelet(t, client, "default")

	kubectlContains(t, inst, "deployment.apps/web created", "create", "deployment", "web", "--image=nginx", "--replicas=2")
	kubectlContains(t, inst, "successfully rolled out", "rollout", "status", "deployment/web", "--timeout=60s")

	kubectlContains(t, inst, "deployment.apps/web scaled", "scale", "deployment", "web", "--replicas=3")
	kubectlContains(t, inst, "successfully rolled out", "rollout", "status", "deployment/web", "--timeout=60s")
	waitFor(t, "3 ready replicas", func() error {
		d, err := client.AppsV1().Deployments("default").Get(ctx, "web", metav1.GetOptions{})
		if err != nil || d.Status.ReadyReplicas != 3 {
			return fmt.Errorf("ready %v (%v)", d.Status.ReadyReplicas, err)
		}
		return nil
	})

	kubectlContains(t, inst, "deployment.apps/web restarted", "rollout", "restart", "deployment/web")
	kubectlContains(t, inst, "successfully rolled out", "rollout", "status", "deployment/web", "--timeout=60s")
	waitFor(t, "revision 2 holds every replica", func() error {
		if got := replicaSetsByRevision(t, client); len(got) != 2 || got["1"] != 0 || got["2"] != 3 {
			return fmt.Errorf("replicas by revision %v", got)
		}
		return nil
	})
	d, err := client.AppsV1().Deployments("default").Get(ctx, "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if d.Spec.Template.Annotations["kubectl.kubernetes.io/restartedAt"] == "" {
		t.Fatalf("restart left no restartedAt annotation: %v", d.Spec.Template.Annotations)
	}
	history := inst.MustKubectl(t, "rollout", "history", "deployment/web")
	for _, rev := range []string{"\n1 ", "\n2 "} {
		if !strings.Contains(history, rev) {
			t.Errorf("history lacks revision %q:\n%s", strings.TrimSpace(rev), history)
		}
	}

	kubectlContains(t, inst, "deployment.apps/web rolled back", "rollout", "undo", "deployment/web")
	kubectlContains(t, inst, "successfully rolled out", "rollout", "status", "deployment/web", "--timeout=60s")
	waitFor(t, "revision 1's template is back as revision 3", func() error {
		got := replicaSetsByRevision(t, client)
		if len(got) != 2 || got["3"] != 3 || got["2"] != 0 {
			return fmt.Errorf("replicas by revision %v", got)
		}
		return nil
	})
	d, err = client.AppsV1().Deployments("default").Get(ctx, "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := d.Spec.Template.Annotations["kubectl.kubernetes.io/restartedAt"]; ok {
		t.Errorf("undo kept the restart annotation: %v", d.Spec.Template.Annotations)
	}
	if d.Annotations["deployment.kubernetes.io/revision"] != "3" {
		t.Errorf("deployment revision %q, want 3", d.Annotations["deployment.kubernetes.io/revision"])
	}
	cond := func(ct appsv1.DeploymentConditionType) string {
		for _, c := range d.Status.Conditions {
			if c.Type == ct {
				return string(c.Status) + "/" + c.Reason
			}
		}
		return "none"
	}
	waitFor(t, "conditions settle", func() error {
		d, err = client.AppsV1().Deployments("default").Get(ctx, "web", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if cond(appsv1.DeploymentAvailable) != "True/MinimumReplicasAvailable" || cond(appsv1.DeploymentProgressing) != "True/NewReplicaSetAvailable" {
			return fmt.Errorf("Available %s Progressing %s", cond(appsv1.DeploymentAvailable), cond(appsv1.DeploymentProgressing))
		}
		return nil
	})
	kubectlContains(t, inst, "3/3", "get", "deployment", "web")
}
