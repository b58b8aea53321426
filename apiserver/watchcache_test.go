package apiserver_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/rest"

	"github.com/kubelab/kubelab/apiserver/apitest"
)

// TestWatchersShareEvents: several watchers of one resource, in JSON and
// in protobuf, with and without a selector, each get every change they
// should, with the object's own data and resourceVersion (the decoded and
// encoded events are shared between them).
func TestWatchersShareEvents(t *testing.T) {
	inst := apitest.Start(t)
	ctx := context.Background()
	jcfg := rest.CopyConfig(inst.Config)
	jcfg.ContentType = "application/json"
	clients := map[string]*rest.Config{"protobuf": inst.Config, "json": jcfg}
	cms := inst.Client.CoreV1().ConfigMaps("default")
	start, err := cms.List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	type result struct {
		name string
		want int
		seen map[string]int
		err  error
	}
	const n = 20
	results := make(chan result, 8)
	var ready sync.WaitGroup
	for name, cfg := range clients {
		for _, selector := range []string{"", "odd=true"} {
			for copyN := 0; copyN < 2; copyN++ {
				r := result{name: fmt.Sprintf("%s/%q/%d", name, selector, copyN), want: n, seen: map[string]int{}}
				if selector != "" {
					r.want = n / 2
				}
				w, err := mustClientset(t, cfg).CoreV1().ConfigMaps("default").Watch(ctx, metav1.ListOptions{ResourceVersion: start.ResourceVersion, LabelSelector: selector})
				if err != nil {
					t.Fatal(err)
				}
				ready.Add(1)
				go func() {
					defer w.Stop()
					ready.Done()
					deadline := time.After(30 * time.Second)
					for r.seen[string(watch.Deleted)] < r.want && r.err == nil {
						select {
						case ev, ok := <-w.ResultChan():
							cm, isCM := ev.Object.(*corev1.ConfigMap)
							switch {
							case !ok:
								r.err = fmt.Errorf("watch closed after %v", r.seen)
							case !isCM:
								r.err = fmt.Errorf("%s: %#v", ev.Type, ev.Object)
							case cm.Data["name"] != cm.Name || cm.ResourceVersion == "" || (selector != "" && cm.Labels["odd"] != "true"):
								r.err = fmt.Errorf("%s event with %s rv=%q data=%v labels=%v", ev.Type, cm.Name, cm.ResourceVersion, cm.Data, cm.Labels)
							default:
								r.seen[string(ev.Type)]++
							}
						case <-deadline:
							r.err = fmt.Errorf("timed out with %v", r.seen)
						}
					}
					results <- r
				}()
			}
		}
	}
	ready.Wait()
	for i := 0; i < n; i++ {
		name := fmt.Sprint("shared-", i)
		if _, err := cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"odd": fmt.Sprint(i%2 == 1)}}, Data: map[string]string{"name": name}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < n; i++ {
		name := fmt.Sprint("shared-", i)
		cm, err := cms.Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		cm.Annotations = map[string]string{"touched": "yes"}
		if _, err := cms.Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		if err := cms.Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 8; i++ {
		r := <-results
		if r.err != nil {
			t.Errorf("%s: %v", r.name, r.err)
			continue
		}
		if r.seen["ADDED"] != r.want || r.seen["MODIFIED"] != r.want || r.seen["DELETED"] != r.want {
			t.Errorf("%s: events %v, want %d of each", r.name, r.seen, r.want)
		}
	}
}
