package apiserver

import (
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
)

// TestWorkers: requests are served on pooled goroutines (concurrently, each
// with its own request), and a handler's panic reaches net/http on the
// request's goroutine as usual (the connection is dropped, the server
// lives on) instead of crashing the process.
func TestWorkers(t *testing.T) {
	p := newWorkers()
	defer p.stop()
	release := make(chan struct{})
	var entered sync.WaitGroup
	srv := httptest.NewServer(p.wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/panic":
			panic("boom")
		case "/abort":
			panic(http.ErrAbortHandler)
		case "/wait":
			entered.Done()
			<-release
		}
		_, _ = io.WriteString(w, r.URL.Path)
	})))
	defer srv.Close()
	srv.Config.ErrorLog = nil

	get := func(path string) (string, error) {
		resp, err := srv.Client().Get(srv.URL + path)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return string(b), err
	}
	// Requests in progress at the same time each get their own worker.
	const n = 8
	entered.Add(n)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if body, err := get("/wait"); err != nil || body != "/wait" {
				t.Errorf("/wait: %q, %v", body, err)
			}
		}()
	}
	entered.Wait()
	close(release)
	wg.Wait()

	for _, path := range []string{"/panic", "/abort"} {
		if _, err := get(path); err == nil {
			t.Errorf("%s: want a dropped connection", path)
		}
	}
	for i := 0; i < 3; i++ {
		if body, err := get("/after"); err != nil || body != "/after" {
			t.Fatalf("after panics: %q, %v", body, err)
		}
	}
}
