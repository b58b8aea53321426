package workload

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

const testPage = "kubelab: pod ns/p on node node-1\n"

// startHTTP serves the page on a real listener for one test.
func startHTTP(t *testing.T) (addr string, log *syncBuf) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	log = &syncBuf{}
	done := make(chan struct{})
	go func() { defer close(done); serveHTTP(l, testPage, &logger{w: log}) }()
	t.Cleanup(func() { l.Close(); <-done })
	return l.Addr().String(), log
}

// exchange writes raw request bytes and reads responses off one connection.
func exchange(t *testing.T, addr, raw string, responses int) ([]*http.Response, []string, error) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	go func() { _, _ = io.WriteString(c, raw) }() // the server may answer (and close) before reading it all
	br := bufio.NewReader(c)
	var resps []*http.Response
	var bodies []string
	for range responses {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			return resps, bodies, err
		}
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			return resps, bodies, err
		}
		resps, bodies = append(resps, resp), append(bodies, string(b))
	}
	// Whatever the server sends next: nothing (kept alive) or EOF (closed).
	_ = c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if _, err := br.ReadByte(); err == io.EOF {
		return resps, bodies, io.EOF
	}
	return resps, bodies, nil
}

func TestHTTPWithGoClient(t *testing.T) {
	addr, log := startHTTP(t)
	tr := &http.Transport{MaxConnsPerHost: 1}
	defer tr.CloseIdleConnections()
	cl := &http.Client{Transport: tr, Timeout: 5 * time.Second}
	for i, do := range []func() (*http.Response, error){
		func() (*http.Response, error) { return cl.Get("http://" + addr + "/a?b=c") },
		func() (*http.Response, error) {
			return cl.Post("http://"+addr+"/form", "text/plain", strings.NewReader(strings.Repeat("x", 100000)))
		},
		func() (*http.Response, error) { return cl.Head("http://" + addr + "/") },
	} {
		resp, err := do()
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		wantBody := testPage
		if resp.Request.Method == "HEAD" {
			wantBody = ""
		}
		if resp.StatusCode != 200 || string(b) != wantBody || resp.ContentLength != int64(len(testPage)) ||
			resp.Header.Get("Content-Type") != "text/plain; charset=utf-8" {
			t.Errorf("request %d: %d %q length %d type %q", i, resp.StatusCode, b, resp.ContentLength, resp.Header.Get("Content-Type"))
		}
	}
	lines := strings.Split(strings.TrimSpace(log.String()), "\n")
	if len(lines) != 3 || !strings.Contains(lines[0], " GET /a?b=c Go-http-client/1.1") ||
		!strings.Contains(lines[1], " POST /form ") || !strings.Contains(lines[2], " HEAD / ") {
		t.Errorf("request log:\n%s", log.String())
	}
}

func TestHTTPConnectionHandling(t *testing.T) {
	addr, _ := startHTTP(t)
	for _, tc := range []struct {
		name      string
		raw       string
		responses int
		status    []int
		closed    bool
	}{
		{"HTTP/1.1 keeps the connection: two pipelined requests",
			"GET / HTTP/1.1\r\nHost: x\r\n\r\nGET /2 HTTP/1.1\r\nHost: x\r\n\r\n", 2, []int{200, 200}, false},
		{"Connection: close is honoured",
			"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 1, []int{200}, true},
		{"HTTP/1.0 closes by default",
			"GET / HTTP/1.0\r\n\r\n", 1, []int{200}, true},
		{"HTTP/1.0 with keep-alive stays",
			"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", 1, []int{200}, false},
		{"a body by length is skipped, the next request read",
			"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nhelloGET / HTTP/1.1\r\n\r\n", 2, []int{200, 200}, false},
		{"a chunked body with trailers is skipped",
			"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n2\r\nde\r\n0\r\nT: 1\r\n\r\nGET / HTTP/1.1\r\n\r\n", 2, []int{200, 200}, false},
		{"Expect: 100-continue gets its interim answer first",
			"POST / HTTP/1.1\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\nhi", 2, []int{100, 200}, false},
		{"a malformed request line: 400 and close",
			"NONSENSE\r\n\r\n", 1, []int{400}, true},
		{"a bad length: 400 and close",
			"POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 1, []int{400}, true},
		{"an unknown transfer coding: 400 and close",
			"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", 1, []int{400}, true},
	} {
		resps, bodies, err := exchange(t, addr, tc.raw, tc.responses)
		if len(resps) != tc.responses {
			t.Errorf("%s: %d responses (%v), want %d", tc.name, len(resps), err, tc.responses)
			continue
		}
		for i, r := range resps {
			if r.StatusCode != tc.status[i] {
				t.Errorf("%s: response %d is %d, want %d", tc.name, i, r.StatusCode, tc.status[i])
			}
			if r.StatusCode == 200 && bodies[i] != testPage {
				t.Errorf("%s: response %d body %q", tc.name, i, bodies[i])
			}
		}
		if closed := err == io.EOF; closed != tc.closed {
			t.Errorf("%s: connection closed=%v, want %v", tc.name, closed, tc.closed)
		}
	}
}

// TestHTTPHeadTooLarge: a head past maxHead ends the connection (with a 400
// when the client still reads it) instead of being buffered without bound.
func TestHTTPHeadTooLarge(t *testing.T) {
	addr, _ := startHTTP(t)
	raw := "GET / HTTP/1.1\r\nX: " + strings.Repeat("a", 2*maxHead) + "\r\n\r\n"
	start := time.Now()
	resps, _, err := exchange(t, addr, raw, 1)
	if len(resps) == 1 && resps[0].StatusCode != 400 {
		t.Errorf("a head over %d bytes: %d", maxHead, resps[0].StatusCode)
	}
	if len(resps) == 0 && time.Since(start) > 4*time.Second {
		t.Errorf("the connection stayed open: %v", err)
	}
}
