package controller

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
)

// eventOrder records, from one watch per kind, the order in which objects
// were deleted.
type eventOrder struct {
	mu      sync.Mutex
	deleted []string
}

func (o *eventOrder) follow(t *testing.T, kind string, w watch.Interface) {
	t.Cleanup(w.Stop)
	go func() {
		for ev := range w.ResultChan() {
			if ev.Type != watch.Deleted {
				continue
			}
			if m, ok := ev.Object.(metav1.Object); ok {
				o.mu.Lock()
				o.deleted = append(o.deleted, kind+"/"+m.GetName())
				o.mu.Unlock()
			}
		}
	}()
}

func (o *eventOrder) snapshot() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]string(nil), o.deleted...)
}

func TestOrphanAndForegroundDeletion(t *testing.T) {
	inst := startControllersWith(t, func(*Options) {})
	client := inst.Client
	ctx := context.Background()
	if _, err := client.AppsV1().Deployments("default").Create(ctx, webDeployment("default", 3), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var rsName string
	waitFor(t, "a ReplicaSet with 3 pods", func() error {
		rss, err := client.AppsV1().ReplicaSets("default").List(ctx, metav1.ListOptions{LabelSelector: "app=web"})
		if err != nil || len(rss.Items) != 1 {
			return fmt.Errorf("%v ReplicaSets (%v)", rss, err)
		}
		rsName = rss.Items[0].Name
		if n, err := countPods(ctx, client, "default"); err != nil || n != 3 {
			return fmt.Errorf("%d pods (%v)", n, err)
		}
		return nil
	})

	// Orphan: the Deployment goes, its ReplicaSet and pods stay, unowned.
	inst.MustKubectl(t, "delete", "deployment", "web", "--cascade=orphan")
	waitFor(t, "Deployment gone, ReplicaSet orphaned", func() error {
		if _, err := client.AppsV1().Deployments("default").Get(ctx, "web", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			return fmt.Errorf("deployment still there (%v)", err)
		}
		rs, err := client.AppsV1().ReplicaSets("default").Get(ctx, rsName, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if len(rs.OwnerReferences) != 0 {
			return fmt.Errorf("ReplicaSet still owned: %+v", rs.OwnerReferences)
		}
		return nil
	})
	// Give a wrongly-acting collector the time to take the pods anyway.
	time.Sleep(time.Second)
	if n, err := countPods(ctx, client, "default"); err != nil || n != 3 {
		t.Fatalf("%d pods after orphaning (%v), want 3", n, err)
	}

	// Foreground: the pods go first, then the ReplicaSet.
	order := &eventOrder{}
	rv := func(l metav1.ListInterface, err error) string {
		if err != nil {
			t.Fatal(err)
		}
		return l.GetResourceVersion()
	}
	pw, err := client.CoreV1().Pods("default").Watch(ctx, metav1.ListOptions{ResourceVersion: rv(client.CoreV1().Pods("default").List(ctx, metav1.ListOptions{}))})
	if err != nil {
		t.Fatal(err)
	}
	order.follow(t, "pod", pw)
	rw, err := client.AppsV1().ReplicaSets("default").Watch(ctx, metav1.ListOptions{ResourceVersion: rv(client.AppsV1().ReplicaSets("default").List(ctx, metav1.ListOptions{}))})
	if err != nil {
		t.Fatal(err)
	}
	order.follow(t, "replicaset", rw)

	inst.MustKubectl(t, "delete", "replicaset", rsName, "--cascade=foreground", "--wait=false")
	rs, err := client.AppsV1().ReplicaSets("default").Get(ctx, rsName, metav1.GetOptions{})
	if err == nil {
		// Seen before the collector finished: marked, not gone.
		if rs.DeletionTimestamp == nil {
			t.Errorf("foreground-deleted ReplicaSet has no deletionTimestamp")
		}
	} else if !apierrors.IsNotFound(err) {
		t.Fatal(err)
	}
	waitFor(t, "pods, then the ReplicaSet, deleted", func() error {
		got := order.snapshot()
		if len(got) < 4 {
			return fmt.Errorf("deletions so far %v", got)
		}
		if got[len(got)-1] != "replicaset/"+rsName {
			t.Fatalf("deletion order %v: the ReplicaSet did not go last", got)
		}
		return nil
	})

	// A foreground-deleted Deployment unwinds from the leaves: pods, then
	// its ReplicaSet (itself deleted in the foreground), then the Deployment.
	chain := webDeployment("default", 2)
	chain.Name = "chain"
	chain.Spec.Selector.MatchLabels = map[string]string{"app": "chain"}
	chain.Spec.Template.Labels = map[string]string{"app": "chain"}
	if _, err := client.AppsV1().Deployments("default").Create(ctx, chain, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "chain's 2 pods", func() error {
		pods, err := client.CoreV1().Pods("default").List(ctx, metav1.ListOptions{LabelSelector: "app=chain"})
		if err != nil || len(pods.Items) != 2 {
			return fmt.Errorf("%v (%v)", pods, err)
		}
		return nil
	})
	dw, err := client.AppsV1().Deployments("default").Watch(ctx, metav1.ListOptions{ResourceVersion: rv(client.AppsV1().Deployments("default").List(ctx, metav1.ListOptions{}))})
	if err != nil {
		t.Fatal(err)
	}
	order.follow(t, "deployment", dw)
	before := len(order.snapshot())
	// kubectl waits here until the Deployment is gone.
	inst.MustKubectl(t, "delete", "deployment", "chain", "--cascade=foreground", "--timeout=60s")
	waitFor(t, "the Deployment deleted last", func() error {
		got := order.snapshot()[before:]
		if len(got) < 4 {
			return fmt.Errorf("deletions so far %v", got)
		}
		if got[len(got)-1] != "deployment/chain" || !strings.HasPrefix(got[len(got)-2], "replicaset/chain-") {
			t.Fatalf("deletion order %v: want pods, then the ReplicaSet, then the Deployment", got)
		}
		return nil
	})
}
