package store

import (
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// podValue is a ~2 KB JSON document shaped like a real Pod.
var podValue = func() []byte {
	b := []byte(`{"apiVersion":"v1","kind":"Pod","metadata":{"name":"web-7c5ddbdf54-x2x9q","generateName":"web-7c5ddbdf54-","namespace":"default","uid":"6a1f6f7e-3f0e-4c6c-9d1e-0b8f6b3f2a11","labels":{"app":"web","pod-template-hash":"7c5ddbdf54"},"ownerReferences":[{"apiVersion":"apps/v1","kind":"ReplicaSet","name":"web-7c5ddbdf54","uid":"0d0d3c8e-1f7a-4b2e-8a55-7d9b1f1e2c33","controller":true,"blockOwnerDeletion":true}]},"spec":{"containers":[{"name":"nginx","image":"nginx","ports":[{"containerPort":80,"protocol":"TCP"}],"resources":{},"terminationMessagePath":"/dev/termination-log","terminationMessagePolicy":"File","imagePullPolicy":"Always"}],"restartPolicy":"Always","terminationGracePeriodSeconds":30,"dnsPolicy":"ClusterFirst","serviceAccountName":"default","serviceAccount":"default","nodeName":"node-2","securityContext":{},"schedulerName":"default-scheduler","tolerations":[{"key":"node.kubernetes.io/not-ready","operator":"Exists","effect":"NoExecute","tolerationSeconds":300},{"key":"node.kubernetes.io/unreachable","operator":"Exists","effect":"NoExecute","tolerationSeconds":300}],"priority":0,"enableServiceLinks":true,"preemptionPolicy":"PreemptLowerPriority"},"status":{"phase":"Running","conditions":[{"type":"Initialized","status":"True","lastProbeTime":null,"lastTransitionTime":"2026-11-25T06:00:00Z"},{"type":"Ready","status":"True","lastProbeTime":null,"lastTransitionTime":"2026-11-25T06:00:02Z"},{"type":"ContainersReady","status":"True","lastProbeTime":null,"lastTransitionTime":"2026-11-25T06:00:02Z"},{"type":"PodScheduled","status":"True","lastProbeTime":null,"lastTransitionTime":"2026-11-25T06:00:00Z"}],"hostIP":"10.200.0.2","podIP":"10.244.2.7","podIPs":[{"ip":"10.244.2.7"}],"startTime":"2026-11-25T06:00:00Z","containerStatuses":[{"name":"nginx","state":{"running":{"startedAt":"2026-11-25T06:00:01Z"}},"lastState":{},"ready":true,"restartCount":0,"image":"nginx","imageID":"","containerID":"kubelab://6a1f6f7e","started":true}],"qosClass":"BestEffort"}}`)
	for len(b) < 2048 {
		b = append(b, ' ')
	}
	return b
}()

func podKey(i int) string { return fmt.Sprintf("/registry/pods/ns-%d/pod-%06d", i%10, i) }

// runWriters runs fn(i) for i in [0,n) spread over w goroutines.
func runWriters(b *testing.B, w, n int, fn func(i int) error) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for range w {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				if err := fn(i); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
}

// BenchmarkCreate: durable (fsync) pod-sized creates with 1 and 32 writers.
func BenchmarkCreate(b *testing.B) {
	for _, writers := range []int{1, 32} {
		b.Run(fmt.Sprintf("writers=%d", writers), func(b *testing.B) {
			d, _ := openTest(b, Options{})
			ctx := context.Background()
			b.SetBytes(int64(len(podValue)))
			b.ResetTimer()
			start := time.Now()
			runWriters(b, writers, b.N, func(i int) error {
				_, err := d.Create(ctx, podKey(i), "uid", podValue)
				return err
			})
			el := time.Since(start)
			b.ReportMetric(float64(b.N)/el.Seconds(), "creates/s")
			reportBatching(b, d)
		})
	}
}

// BenchmarkCreateBusyWriters: 32 writers that each spend 100µs of CPU
// before and after a create (decoding, validating, answering, as API
// requests do), with the committer's BatchWait on (default) and off. Busy
// writers reach the store spread out; waiting for the previous batch size
// groups them into fewer commits.
func BenchmarkCreateBusyWriters(b *testing.B) {
	for _, bw := range []time.Duration{0, -1} {
		name := "batchwait=default"
		if bw < 0 {
			name = "batchwait=off"
		}
		b.Run(name, func(b *testing.B) {
			d, _ := openTest(b, Options{BatchWait: bw})
			ctx := context.Background()
			busy := func() {
				for t0 := time.Now(); time.Since(t0) < 100*time.Microsecond; {
				}
			}
			b.ResetTimer()
			start := time.Now()
			runWriters(b, 32, b.N, func(i int) error {
				busy()
				_, err := d.Create(ctx, podKey(i), "uid", podValue)
				busy()
				return err
			})
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "creates/s")
			reportBatching(b, d)
		})
	}
}

// BenchmarkBaselineBolt is the yardstick for BenchmarkCreate, measured on
// the same disk at the same moment: plain bbolt, one durable db.Update per
// write (1 writer), and bbolt's own db.Batch (32 writers).
func BenchmarkBaselineBolt(b *testing.B) {
	for _, mode := range []string{"update/writers=1", "batch/writers=32"} {
		b.Run(mode, func(b *testing.B) {
			bdb, err := bolt.Open(filepath.Join(b.TempDir(), "raw.db"), 0o600, nil)
			if err != nil {
				b.Fatal(err)
			}
			defer bdb.Close()
			name := []byte("b")
			bdb.Update(func(tx *bolt.Tx) error { _, err := tx.CreateBucket(name); return err })
			put := func(i int) func(tx *bolt.Tx) error {
				return func(tx *bolt.Tx) error { return tx.Bucket(name).Put([]byte(podKey(i)), podValue) }
			}
			b.ResetTimer()
			start := time.Now()
			if mode == "update/writers=1" {
				runWriters(b, 1, b.N, func(i int) error { return bdb.Update(put(i)) })
			} else {
				runWriters(b, 32, b.N, func(i int) error { return bdb.Batch(put(i)) })
			}
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "creates/s")
		})
	}
}

// BenchmarkList10kPods lists 10,000 pods (all namespaces) at the latest revision.
func BenchmarkList10kPods(b *testing.B) {
	d, _ := openTest(b, Options{NoSync: true}) // setup speed only; List does not sync
	ctx := context.Background()
	runWriters(b, 32, 10000, func(i int) error {
		_, err := d.Create(ctx, podKey(i), "uid", podValue)
		return err
	})
	b.ResetTimer()
	for range b.N {
		res, err := d.List(ctx, ListOptions{Prefix: "/registry/pods/"})
		if err != nil || len(res.Items) != 10000 {
			b.Fatalf("list: %d items, %v", len(res.Items), err)
		}
	}
}

// BenchmarkWatchFanout100: one durable write at a time, 100 watchers.
// p99-ms is from the start of the write call (so it includes the commit and
// its fsyncs) to each watcher receiving the event; fanout-p99-ms is from the
// moment the committed batch is handed to the watchers.
func BenchmarkWatchFanout100(b *testing.B) {
	d, _ := openTest(b, Options{})
	ctx := context.Background()
	const watchers = 100
	published := make([]atomic.Int64, b.N+1) // by revision
	d.publishHook = func(evs []Event) {
		now := time.Now().UnixNano()
		for _, ev := range evs {
			if ev.Revision <= int64(b.N) {
				published[ev.Revision].Store(now)
			}
		}
	}
	lat := make([][]time.Duration, watchers)
	fan := make([][]time.Duration, watchers)
	var wg sync.WaitGroup
	for i := range watchers {
		w, err := d.Watch(ctx, WatchOptions{Prefix: "/registry/pods/"})
		if err != nil {
			b.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer w.Stop()
			for n := 0; n < b.N; n++ {
				ev, ok := <-w.Events()
				if !ok {
					b.Errorf("watch ended: %v", w.Err())
					return
				}
				now := time.Now()
				t0 := time.Unix(0, int64(binary.BigEndian.Uint64(ev.Object.Value)))
				lat[i] = append(lat[i], now.Sub(t0))
				fan[i] = append(fan[i], now.Sub(time.Unix(0, published[ev.Revision].Load())))
			}
		}()
	}
	val := slices.Clone(podValue)
	b.ResetTimer()
	for n := range b.N {
		binary.BigEndian.PutUint64(val, uint64(time.Now().UnixNano()))
		if _, err := d.Create(ctx, podKey(n), "uid", val); err != nil {
			b.Fatal(err)
		}
	}
	wg.Wait()
	b.StopTimer()
	q := func(l [][]time.Duration, p float64) float64 {
		all := slices.Concat(l...)
		if len(all) == 0 {
			return 0
		}
		slices.Sort(all)
		return float64(all[int(p*float64(len(all)-1))]) / float64(time.Millisecond)
	}
	b.ReportMetric(q(lat, 0.50), "p50-ms")
	b.ReportMetric(q(lat, 0.99), "p99-ms")
	b.ReportMetric(q(fan, 0.50), "fanout-p50-ms")
	b.ReportMetric(q(fan, 0.99), "fanout-p99-ms")
}

// BenchmarkDBSize100kUpdates: 100 objects updated 100,000 times by 32
// writers with compaction on (every 200ms, keeping the last 10,000
// revisions, no age floor so the count rule decides); reports the file size
// after 50,000 and after 100,000 updates. The size must not keep growing.
func BenchmarkDBSize100kUpdates(b *testing.B) {
	for range b.N {
		d, path := openTest(b, Options{HistoryMinAge: -1, HistoryMinRevisions: 10000, CompactInterval: 200 * time.Millisecond})
		ctx := context.Background()
		for i := range 100 {
			if _, err := d.Create(ctx, podKey(i), "uid", podValue); err != nil {
				b.Fatal(err)
			}
		}
		size := func() float64 {
			st, err := os.Stat(path)
			if err != nil {
				b.Fatal(err)
			}
			return float64(st.Size()) / (1 << 20)
		}
		update := func(i int) error {
			_, err := d.Update(ctx, podKey(i%100), podValue, Preconditions{})
			return err
		}
		start := time.Now()
		runWriters(b, 32, 50000, update)
		if _, err := d.Compact(ctx); err != nil {
			b.Fatal(err)
		}
		at50 := size()
		runWriters(b, 32, 50000, update)
		if _, err := d.Compact(ctx); err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(100000)/time.Since(start).Seconds(), "updates/s")
		b.ReportMetric(at50, "MB@50k")
		b.ReportMetric(size(), "MB@100k")
		b.ReportMetric(float64(d.CurrentRevision()-d.CompactedRevision()), "history-revs")
		d.Close()
	}
}

func reportBatching(b *testing.B, d *DB) {
	st := d.Stats()
	if st.Commits > 0 {
		b.ReportMetric(float64(st.Writes)/float64(st.Commits), "writes/commit")
		b.ReportMetric(float64(st.CommitTime.Microseconds())/float64(st.Commits)/1000, "ms/commit")
	}
}
