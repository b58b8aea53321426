package apiserver_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer/protobuf"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"

	"github.com/kubelab/kubelab/apiserver"
	"github.com/kubelab/kubelab/apiserver/apitest"
	"github.com/kubelab/kubelab/store"
)

// TestMain doubles as a bare API server process for BenchmarkIdleRSS.
func TestMain(m *testing.M) {
	if dir := os.Getenv("KUBELAB_APISERVER_CHILD"); dir != "" {
		srv, err := apiserver.New(apiserver.Config{DataDir: dir, Listen: []string{"127.0.0.1:0"}})
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
		defer stop()
		go func() { <-srv.Ready(); fmt.Println("READY", srv.URL()) }()
		if err := srv.Run(ctx); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

const benchClients = 32

// getEvery paces the latency probe of BenchmarkCreateHTTPS (200 GETs/s,
// about what a few watching kubectl clients and controllers add).
const getEvery = 5 * time.Millisecond

// BenchmarkCreateHTTPS creates ConfigMaps through HTTPS with 32 concurrent
// clients (one shared HTTP/2 connection pool, as client-go does) while a
// reader GETs one object every getEvery; it reports creates/s and the GET
// latency. The reader is paced: an unpaced one (a 33rd client issuing
// thousands of GETs a second on the same cores) would measure a mixed
// read/write load, not creates comparable with BenchmarkStoreCreate.
//
// Right after, the same number of creates goes straight into a fresh store
// (as BenchmarkStoreCreate) so that the ratio compares the two under the
// same machine load: store-creates/s and https-vs-store-% are that pair.
// cpu-us/create is the process CPU (client and server, both in this
// process) per HTTPS create, which varies far less than throughput on a
// shared machine.
func BenchmarkCreateHTTPS(b *testing.B) { createHTTPS(b, "") }

// BenchmarkCreateHTTPSJSON is BenchmarkCreateHTTPS with the 32 writers
// forced to JSON request and response bodies. client-go's typed clients
// for built-in kinds (v0.37) send protobuf unless the configuration names
// a content type, so BenchmarkCreateHTTPS, with client-go's defaults,
// speaks protobuf; this one measures clients configured for JSON. The
// reader is the same in both.
func BenchmarkCreateHTTPSJSON(b *testing.B) { createHTTPS(b, "application/json") }

func createHTTPS(b *testing.B, contentType string) {
	inst := apitest.Start(b)
	ctx := context.Background()
	// No client-side rate limit; the reader gets its own connection (a
	// different transport), as a separate client such as kubectl would.
	wcfg := *inst.Config
	wcfg.QPS = -1
	rcfg := wcfg
	rcfg.DisableCompression = true
	if contentType != "" {
		wcfg.ContentType = contentType
	}
	cms := mustClientsetB(b, &wcfg).CoreV1().ConfigMaps("default")
	reader := mustClientsetB(b, &rcfg).CoreV1().ConfigMaps("default")
	if _, err := cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "probe"}}, metav1.CreateOptions{}); err != nil {
		b.Fatal(err)
	}
	stop := make(chan struct{})
	var lat []time.Duration
	var rwg sync.WaitGroup
	rwg.Add(1)
	go func() {
		defer rwg.Done()
		tick := time.NewTicker(getEvery)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			t0 := time.Now()
			if _, err := reader.Get(ctx, "probe", metav1.GetOptions{}); err != nil {
				b.Error(err)
				return
			}
			lat = append(lat, time.Since(t0))
		}
	}()
	var n atomic.Int64
	b.ResetTimer()
	cpu0 := processCPU()
	start := time.Now()
	var wg sync.WaitGroup
	for c := 0; c < benchClients; c++ {
		wg.Add(1)
		go func(c int) {
			defer wg.Done()
			for {
				i := n.Add(1)
				if i > int64(b.N) {
					return
				}
				cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("cm-%d", i)}, Data: map[string]string{"k": "v"}}
				if _, err := cms.Create(ctx, cm, metav1.CreateOptions{}); err != nil {
					b.Error(err)
					return
				}
			}
		}(c)
	}
	wg.Wait()
	el := time.Since(start)
	cpu := processCPU() - cpu0
	b.StopTimer()
	close(stop)
	rwg.Wait()
	rate := float64(b.N) / el.Seconds()
	b.ReportMetric(rate, "creates/s")
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-us/create")
	storeRate := storeCreates(b, b.N)
	b.ReportMetric(storeRate, "store-creates/s")
	b.ReportMetric(100*rate/storeRate, "https-vs-store-%")
	if len(lat) > 0 {
		sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
		b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "get-p99-ms")
		b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "get-p50-ms")
		b.ReportMetric(float64(len(lat))/el.Seconds(), "gets/s")
	}
}

func mustClientsetB(b *testing.B, cfg *rest.Config) kubernetes.Interface {
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		b.Fatal(err)
	}
	return cs
}

// BenchmarkStoreCreate is the store's own create throughput with 32
// concurrent writers and the same values the API server stores, for
// comparison with BenchmarkCreateHTTPS.
func BenchmarkStoreCreate(b *testing.B) {
	b.ReportMetric(storeCreates(b, b.N), "creates/s")
}

// processCPU is the user+system CPU time this process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// storeCreates runs n creates from 32 goroutines against a fresh store in
// a temporary directory and returns creates/s.
func storeCreates(b *testing.B, n int) float64 {
	db, err := store.Open(filepath.Join(b.TempDir(), "store.db"), store.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	val := make([]byte, 200)
	var next atomic.Int64
	start := time.Now()
	var wg sync.WaitGroup
	for c := 0; c < benchClients; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1)
				if i > int64(n) {
					return
				}
				if _, err := db.Create(context.Background(), fmt.Sprintf("/core/configmaps/default/cm-%d", i), strconv.FormatInt(i, 10), val); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	return float64(n) / time.Since(start).Seconds()
}

// BenchmarkStartToReady measures New+Run until /readyz answers 200, on a
// fresh data directory (PKI generated) and on a restart (PKI reused).
func BenchmarkStartToReady(b *testing.B) {
	for _, restart := range []bool{false, true} {
		name := "fresh"
		if restart {
			name = "restart"
		}
		b.Run(name, func(b *testing.B) {
			dir := b.TempDir()
			var total time.Duration
			for i := 0; i < b.N; i++ {
				if !restart {
					dir = b.TempDir()
				}
				t0 := time.Now()
				srv, err := apiserver.New(apiserver.Config{DataDir: dir, Listen: []string{"127.0.0.1:0"}})
				if err != nil {
					b.Fatal(err)
				}
				ctx, cancel := context.WithCancel(context.Background())
				done := make(chan error, 1)
				go func() { done <- srv.Run(ctx) }()
				<-srv.Ready()
				c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
				for {
					resp, err := c.Get(srv.URL() + "/readyz")
					if err == nil {
						resp.Body.Close()
						if resp.StatusCode == 200 {
							break
						}
					}
					time.Sleep(time.Millisecond)
				}
				total += time.Since(t0)
				cancel()
				<-done
			}
			b.ReportMetric(float64(total.Microseconds())/1000/float64(b.N), "ms-to-readyz")
		})
	}
}

// BenchmarkIdleRSS starts a bare API server process (this test binary in
// server mode), waits until it is ready and idle, and reports its RSS.
func BenchmarkIdleRSS(b *testing.B) {
	for i := 0; i < b.N; i++ {
		cmd := exec.Command(os.Args[0])
		cmd.Env = append(os.Environ(), "KUBELAB_APISERVER_CHILD="+b.TempDir())
		out, err := cmd.StdoutPipe()
		if err != nil {
			b.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		sc := bufio.NewScanner(out)
		for sc.Scan() && !strings.HasPrefix(sc.Text(), "READY") {
		}
		time.Sleep(5 * time.Second)
		status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", cmd.Process.Pid))
		if err != nil {
			b.Fatal(err)
		}
		for _, l := range strings.Split(string(status), "\n") {
			if strings.HasPrefix(l, "VmRSS:") {
				f := strings.Fields(l)
				kb, _ := strconv.Atoi(f[1])
				b.ReportMetric(float64(kb)/1024, "idle-RSS-MB")
			}
		}
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
	}
}

// BenchmarkWatchFanout: 20 informer-style watchers (client-go defaults,
// protobuf) of ConfigMaps while one client creates them; cpu-us/event is
// the process CPU (server and clients) per create, all 20 deliveries
// included.
func BenchmarkWatchFanout(b *testing.B) {
	const watchers = 20
	inst := apitest.Start(b)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cfg := *inst.Config
	cfg.QPS = -1
	cms := mustClientsetB(b, &cfg).CoreV1().ConfigMaps("default")
	list, err := cms.List(ctx, metav1.ListOptions{})
	if err != nil {
		b.Fatal(err)
	}
	var got sync.WaitGroup
	for w := 0; w < watchers; w++ {
		wi, err := mustClientsetB(b, &cfg).CoreV1().ConfigMaps("default").Watch(ctx, metav1.ListOptions{ResourceVersion: list.ResourceVersion})
		if err != nil {
			b.Fatal(err)
		}
		defer wi.Stop()
		got.Add(1)
		go func() {
			defer got.Done()
			for n := 0; n < b.N; n++ {
				if _, ok := <-wi.ResultChan(); !ok {
					b.Error("watch closed")
					return
				}
			}
		}()
	}
	b.ResetTimer()
	cpu0 := processCPU()
	for i := 0; i < b.N; i++ {
		cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("fan-%d", i)}, Data: map[string]string{"k": "v"}}
		if _, err := cms.Create(ctx, cm, metav1.CreateOptions{}); err != nil {
			b.Fatal(err)
		}
	}
	got.Wait()
	b.ReportMetric(float64((processCPU()-cpu0).Microseconds())/float64(b.N), "cpu-us/event")
}

// BenchmarkCreateHandler is the server's own share of a protobuf create,
// without HTTP/2, TLS or a client: the handler (authentication, decoding,
// validation, encoding, the store write and the response) called directly
// from 32 goroutines. The store skips fsync here: this measures the
// handler's CPU and allocations per create, not durability (BenchmarkCreateHTTPS
// does that).
func BenchmarkCreateHandler(b *testing.B) {
	inst := apitest.Start(b, apitest.WithConfig(func(c *apiserver.Config) { c.StoreOptions.NoSync = true }))
	h := inst.Server.Handler()
	token := inst.Server.LoopbackConfig().BearerToken
	ser := protobuf.NewSerializer(scheme.Scheme, scheme.Scheme)
	var n atomic.Int64
	b.ReportAllocs()
	b.SetParallelism(benchClients / max(1, runtime.GOMAXPROCS(0)))
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			cm := &corev1.ConfigMap{TypeMeta: metav1.TypeMeta{Kind: "ConfigMap", APIVersion: "v1"}, ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("cm-%d", n.Add(1))}, Data: map[string]string{"k": "v"}}
			body, err := k8sruntime.Encode(ser, cm)
			if err != nil {
				b.Error(err)
				return
			}
			req, err := http.NewRequest(http.MethodPost, "https://kubelab/api/v1/namespaces/default/configmaps", bytes.NewReader(body))
			if err != nil {
				b.Error(err)
				return
			}
			req.Header.Set("Authorization", "Bearer "+token)
			req.Header.Set("Content-Type", "application/vnd.kubernetes.protobuf")
			req.Header.Set("Accept", "application/vnd.kubernetes.protobuf, */*")
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != http.StatusCreated {
				b.Errorf("create: %d %s", rec.Code, rec.Body.String())
				return
			}
		}
	})
}
