package workload

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestParsePort(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Port
		kind string
		err  bool
	}{
		{"80", Port{80, "TCP", ""}, "http", false},
		{"8080/TCP/", Port{8080, "TCP", ""}, "http", false},
		{"53/udp/dns", Port{53, "UDP", "dns"}, "udp-echo", false},
		{"7/TCP/tcp-echo", Port{7, "TCP", "tcp-echo"}, "tcp-echo", false},
		{"9000/TCP/echo", Port{9000, "TCP", "echo"}, "tcp-echo", false},
		{"0", Port{}, "", true}, {"70000", Port{}, "", true}, {"80/SCTP", Port{}, "", true}, {"x", Port{}, "", true},
	} {
		p, err := ParsePort(tc.in)
		if (err != nil) != tc.err {
			t.Errorf("%q: err %v", tc.in, err)
			continue
		}
		if !tc.err && (p != tc.want || p.Kind() != tc.kind) {
			t.Errorf("%q: %+v kind %s", tc.in, p, p.Kind())
		}
		if !tc.err {
			if back, _ := ParsePort(p.String()); back != p {
				t.Errorf("round trip %q -> %q", tc.in, p.String())
			}
		}
	}
}

func freePort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

func TestServesHTTPAndEcho(t *testing.T) {
	httpPort, echoPort, udpPort := freePort(t), freePort(t), freePort(t)
	var log syncBuf
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Config{Pod: "ns/p", Node: "node-1", UID: -1, Out: &log, Ports: []Port{
			{httpPort, "TCP", "http"}, {echoPort, "TCP", "tcp-echo"}, {udpPort, "UDP", "u"}}})
	}()
	defer func() { cancel(); <-done }()
	addr := func(p int) string { return net.JoinHostPort("127.0.0.1", itoa(p)) }
	var body string
	deadline := time.Now().Add(5 * time.Second)
	for {
		resp, err := http.Get("http://" + addr(httpPort) + "/x")
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			body = string(b)
			break
		}
		if time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if body != "kubelab: pod ns/p on node node-1\n" {
		t.Fatalf("page %q", body)
	}
	c, err := net.Dial("tcp", addr(echoPort))
	if err != nil {
		t.Fatal(err)
	}
	_, _ = c.Write([]byte("abc"))
	buf := make([]byte, 3)
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "abc" {
		t.Fatalf("tcp echo %q %v", buf, err)
	}
	c.Close()
	u, err := net.Dial("udp", addr(udpPort))
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	_ = u.SetDeadline(time.Now().Add(2 * time.Second))
	_, _ = u.Write([]byte("xyz"))
	if n, err := u.Read(buf); err != nil || string(buf[:n]) != "xyz" {
		t.Fatalf("udp echo %q %v", buf[:n], err)
	}
	if !strings.Contains(log.String(), "GET /x") || !strings.Contains(log.String(), "tcp-echo") || !strings.Contains(log.String(), "udp-echo 3 bytes") {
		t.Fatalf("request log %q", log.String())
	}
}

func itoa(n int) string { return strconv.Itoa(n) }
