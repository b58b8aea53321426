package apiserver

import (
	"bytes"
	"sync"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/kubelab/kubelab/apiserver/resources"
	"github.com/kubelab/kubelab/store"
)

// watchCacheSize bounds each generation of the cache (two are kept).
const watchCacheSize = 512

// watchCache shares among the watchers of a resource what a store event
// costs them: decoding the stored value, and encoding the object as JSON
// or protobuf. Without it every watcher decodes and encodes every event
// itself, so the N informers watching pods pay N times for each pod
// change. Objects in the cache are shared and must not be modified.
// Entries live for two generations of watchCacheSize events; a watcher
// further behind than that decodes for itself.
type watchCache struct {
	mu       sync.Mutex
	cur, old map[watchKey]*watchObj
}

// watchKey names one stored version as one resource serves it (core and
// events.k8s.io Events share storage but not their form).
type watchKey struct {
	gvr schema.GroupVersionResource
	key string
	rev int64
}

// watchObj is one decoded stored version and its encodings, each made
// once, by whichever watcher needs it first.
type watchObj struct {
	decodeOnce sync.Once
	obj        runtime.Object
	err        error

	jsonOnce sync.Once
	json     []byte // jsonSer's output without the final newline
	jsonErr  error

	protoOnce sync.Once
	proto     []byte
	protoErr  error
}

func newWatchCache() *watchCache {
	return &watchCache{cur: map[watchKey]*watchObj{}, old: map[watchKey]*watchObj{}}
}

func (c *watchCache) get(k watchKey) *watchObj {
	c.mu.Lock()
	defer c.mu.Unlock()
	if w := c.cur[k]; w != nil {
		return w
	}
	w := c.old[k]
	if w == nil {
		w = &watchObj{}
	}
	if len(c.cur) >= watchCacheSize {
		c.old, c.cur = c.cur, make(map[watchKey]*watchObj, watchCacheSize)
	}
	c.cur[k] = w
	return w
}

// watchObject is so decoded for res, shared with the other watchers.
func (s *Server) watchObject(res resources.Resource, so *store.Object) (*watchObj, error) {
	w := s.wcache.get(watchKey{gvr: res.GVR, key: so.Key, rev: so.Revision})
	w.decodeOnce.Do(func() { w.obj, w.err = s.decode(res, so) })
	return w, w.err
}

// jsonBytes is the object as jsonSer writes it, without the newline.
func (w *watchObj) jsonBytes() ([]byte, error) {
	w.jsonOnce.Do(func() {
		var buf bytes.Buffer
		if w.jsonErr = jsonSer.Encode(w.obj, &buf); w.jsonErr == nil {
			w.json = bytes.TrimRight(buf.Bytes(), "\n")
		}
	})
	return w.json, w.jsonErr
}

// protoBytes is the object as protoSer writes it.
func (w *watchObj) protoBytes() ([]byte, error) {
	w.protoOnce.Do(func() {
		var buf bytes.Buffer
		if w.protoErr = protoSer.Encode(w.obj, &buf); w.protoErr == nil {
			w.proto = buf.Bytes()
		}
	})
	return w.proto, w.protoErr
}
