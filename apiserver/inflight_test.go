package apiserver_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"

	"github.com/kubelab/kubelab/apiserver"
	"github.com/kubelab/kubelab/apiserver/apitest"
	"github.com/kubelab/kubelab/store"
)

// gatedStore is a real store whose creates of keys containing "/held-"
// wait until the gate opens, so a test can keep a request in progress.
type gatedStore struct {
	store.Interface
	gate    chan struct{}
	entered chan string
}

func (g *gatedStore) Create(ctx context.Context, key, uid string, value []byte) (*store.Object, error) {
	if strings.Contains(key, "/held-") {
		g.entered <- key
		<-g.gate
	}
	return g.Interface.Create(ctx, key, uid, value)
}

// TestInflightLimit: with one mutating seat, a second write waits (parked,
// counted in apiserver_current_inqueue_requests) while reads go on, is
// served once the seat frees, and a write that waits longer than
// InflightQueueWait gets 429 TooManyRequests with Retry-After.
func TestInflightLimit(t *testing.T) {
	dir := t.TempDir()
	db, err := store.Open(filepath.Join(dir, "store.db"), store.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	gs := &gatedStore{Interface: db, gate: make(chan struct{}), entered: make(chan string, 4)}
	inst := apitest.Start(t, apitest.WithDataDir(dir), apitest.WithConfig(func(c *apiserver.Config) {
		c.Store = gs
		c.MaxMutatingInflight = 1
		c.InflightQueueWait = 2 * time.Second
	}))
	ctx := context.Background()
	cms := inst.Client.CoreV1().ConfigMaps("default")
	hc, err := rest.HTTPClientFor(inst.Config)
	if err != nil {
		t.Fatal(err)
	}
	post := func(name string) (*http.Response, []byte) {
		body, _ := json.Marshal(&corev1.ConfigMap{TypeMeta: metav1.TypeMeta{Kind: "ConfigMap", APIVersion: "v1"}, ObjectMeta: metav1.ObjectMeta{Name: name}})
		resp, err := hc.Post(inst.Config.Host+"/api/v1/namespaces/default/configmaps", "application/json", bytes.NewReader(body))
		if err != nil {
			t.Error(err)
			return nil, nil
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, b
	}

	// The first write holds the only seat.
	var wg sync.WaitGroup
	codes := make(chan int, 2)
	wg.Add(1)
	go func() {
		defer wg.Done()
		if resp, _ := post("held-1"); resp != nil {
			codes <- resp.StatusCode
		}
	}()
	<-gs.entered
	// The second waits for it.
	wg.Add(1)
	go func() {
		defer wg.Done()
		if resp, _ := post("queued"); resp != nil {
			codes <- resp.StatusCode
		}
	}()
	waitMetric(t, hc, inst.Config.Host, `apiserver_current_inqueue_requests{request_kind="mutating"} 1`)
	// Reads have their own seats.
	if _, err := inst.Client.CoreV1().Namespaces().Get(ctx, "default", metav1.GetOptions{}); err != nil {
		t.Fatalf("get while writes queue: %v", err)
	}
	if _, err := cms.List(ctx, metav1.ListOptions{}); err != nil {
		t.Fatalf("list while writes queue: %v", err)
	}
	close(gs.gate)
	wg.Wait()
	close(codes)
	for c := range codes {
		if c != http.StatusCreated {
			t.Errorf("queued write: status %d, want 201", c)
		}
	}
	if _, err := cms.Get(ctx, "queued", metav1.GetOptions{}); err != nil {
		t.Fatalf("the queued write was not stored: %v", err)
	}

	// A write that waits longer than InflightQueueWait is refused.
	gs.gate = make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		post("held-2")
	}()
	<-gs.entered
	resp, body := post("too-late")
	close(gs.gate)
	<-done
	if resp == nil {
		t.FailNow()
	}
	if resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("status %d, want 429: %s", resp.StatusCode, body)
	}
	if ra := resp.Header.Get("Retry-After"); ra != "1" {
		t.Errorf("Retry-After %q, want 1", ra)
	}
	var st metav1.Status
	if err := json.Unmarshal(body, &st); err != nil {
		t.Fatal(err)
	}
	if st.Kind != "Status" || st.Reason != metav1.StatusReasonTooManyRequests || st.Code != 429 || st.Details == nil || st.Details.RetryAfterSeconds != 1 {
		t.Errorf("status body %+v", st)
	}
	waitMetric(t, hc, inst.Config.Host, `apiserver_dropped_requests_total{request_kind="mutating"} 1`)
}

// waitMetric polls /metrics until it has the line.
func waitMetric(t *testing.T, hc *http.Client, host, line string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := hc.Get(host + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if bytes.Contains(b, []byte("\n"+line+"\n")) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("metrics never showed %q", line)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
