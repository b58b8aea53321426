package apiserver

import (
	"log/slog"
	"net/http"
	"runtime/debug"
	"sync"
	"sync/atomic"
)

// maxIdleWorkers bounds the request goroutines kept waiting for work.
const maxIdleWorkers = 256

// workers runs request handlers on long-lived goroutines. net/http starts
// a new goroutine, with a small stack, for every HTTP/2 request; a create
// then grows that stack several times on its way down (routing, decoding,
// validation, protobuf and JSON encoding), and each growth copies the
// stack. A worker keeps the stack it grew for the next request (until the
// garbage collector shrinks an idle one), so a request costs two goroutine
// switches instead of those copies. The pool grows with concurrency: a
// request that finds no idle worker starts one (long requests such as
// watches simply keep theirs).
type workers struct {
	tasks chan *task
	quit  chan struct{}
	idle  atomic.Int32
	once  sync.Once
}

type task struct {
	w    http.ResponseWriter
	r    *http.Request
	next http.Handler
	done chan struct{}

	panicked bool
	pv       any
}

var taskPool = sync.Pool{New: func() any { return &task{done: make(chan struct{}, 1)} }}

func newWorkers() *workers {
	return &workers{tasks: make(chan *task), quit: make(chan struct{})}
}

// stop ends idle workers; busy ones end after their request.
func (p *workers) stop() { p.once.Do(func() { close(p.quit) }) }

// wrap serves every request of next on a worker.
func (p *workers) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t := taskPool.Get().(*task)
		t.w, t.r, t.next = w, r, next
		select {
		case p.tasks <- t:
		default:
			go p.work(t)
		}
		<-t.done
		panicked, pv := t.panicked, t.pv
		*t = task{done: t.done}
		taskPool.Put(t)
		if panicked {
			// Re-raise on the request's own goroutine, where net/http
			// handles it (ErrAbortHandler, logging, resetting the stream).
			panic(pv)
		}
	})
}

func (p *workers) work(t *task) {
	for {
		t.run()
		if p.idle.Add(1) > maxIdleWorkers {
			p.idle.Add(-1)
			return
		}
		select {
		case t = <-p.tasks:
			p.idle.Add(-1)
		case <-p.quit:
			p.idle.Add(-1)
			return
		}
	}
}

func (t *task) run() {
	defer func() {
		if v := recover(); v != nil {
			if v != http.ErrAbortHandler {
				slog.Error("panic serving request", "method", t.r.Method, "path", t.r.URL.Path, "panic", v, "stack", string(debug.Stack()))
			}
			t.panicked, t.pv = true, v
		}
		t.done <- struct{}{}
	}()
	t.next.ServeHTTP(t.w, t.r)
}
