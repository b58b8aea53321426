package apiserver

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer/protobuf"
	"k8s.io/client-go/kubernetes/scheme"

	"github.com/kubelab/kubelab/apiserver/printers"
	"github.com/kubelab/kubelab/store"
)

// eventWriter streams watch events as newline-separated JSON objects (as
// Tables when the client asked for them), or, for a client that prefers
// protobuf, as length-prefixed protobuf WatchEvents, kube-apiserver's
// "application/vnd.kubernetes.protobuf;stream=watch". The caller flushes.
type eventWriter struct {
	w           http.ResponseWriter
	flusher     http.Flusher
	table       bool
	include     metav1.IncludeObjectPolicy
	partial     bool
	protobuf    bool
	sentColumns bool
}

// mediaProtobufWatch is the Content-Type of a protobuf watch stream.
const mediaProtobufWatch = mediaProtobuf + ";stream=watch"

// rawProto encodes a WatchEvent without the envelope (the frame is the
// message itself; the object inside carries its own).
var rawProto = protobuf.NewRawSerializer(scheme.Scheme, scheme.Scheme)

func (e *eventWriter) flush() { e.flusher.Flush() }

// sendProto writes one length-prefixed protobuf WatchEvent; shared, when
// set, holds obj's encoding.
func (e *eventWriter) sendProto(typ string, obj runtime.Object, shared *watchObj) error {
	var raw []byte
	if shared != nil {
		b, err := shared.protoBytes()
		if err != nil {
			return err
		}
		raw = b
	} else {
		var inner bytes.Buffer
		if err := protoSer.Encode(obj, &inner); err != nil {
			return err
		}
		raw = inner.Bytes()
	}
	var buf bytes.Buffer
	buf.Write([]byte{0, 0, 0, 0})
	ev := &metav1.WatchEvent{Type: typ, Object: runtime.RawExtension{Raw: raw}}
	if err := rawProto.Encode(ev, &buf); err != nil {
		return err
	}
	b := buf.Bytes()
	binary.BigEndian.PutUint32(b[:4], uint32(len(b)-4))
	_, err := e.w.Write(b)
	return err
}

func (e *eventWriter) send(typ string, obj runtime.Object) error {
	return e.sendShared(typ, obj, nil)
}

// sendShared sends an event whose object comes from the watch cache
// (shared, when not nil, is its entry): the object's encoding is then
// made once for all watchers.
func (e *eventWriter) sendShared(typ string, obj runtime.Object, shared *watchObj) error {
	if e.protobuf {
		return e.sendProto(typ, obj, shared)
	}
	if shared != nil && !e.table && !e.partial {
		b, err := shared.jsonBytes()
		if err != nil {
			return err
		}
		out := make([]byte, 0, len(b)+len(typ)+24)
		out = append(out, `{"type":"`...)
		out = append(out, typ...)
		out = append(out, `","object":`...)
		out = append(out, b...)
		out = append(out, '}', '\n')
		_, err = e.w.Write(out)
		return err
	}
	if e.table && (typ == "ADDED" || typ == "MODIFIED" || typ == "DELETED") {
		t, err := printers.ToTable(obj, printers.Options{IncludeObject: e.include, NoHeaders: e.sentColumns})
		if err == nil {
			e.sentColumns = true
			obj = t
		}
	}
	if e.partial && !e.table && typ != "ERROR" {
		if p, err := toPartial(obj); err == nil {
			obj = p
		}
	}
	var buf bytes.Buffer
	buf.WriteString(`{"type":"`)
	buf.WriteString(typ)
	buf.WriteString(`","object":`)
	if err := jsonSer.Encode(obj, &buf); err != nil {
		return err
	}
	// jsonSer ends objects with a newline; close the event on the same line.
	b := bytes.TrimRight(buf.Bytes(), "\n")
	b = append(b, '}', '\n')
	_, err := e.w.Write(b)
	return err
}

func expired(rv, current int64) *metav1.Status {
	st := apierrors.NewResourceExpired(fmt.Sprintf("too old resource version: %d (%d)", rv, current)).Status()
	st.Kind, st.APIVersion = "Status", "v1"
	return &st
}

// handleWatch implements list-then-watch semantics: resourceVersion "" or
// "0" starts with synthetic ADDED events for the current state; a specific
// version replays every later change, or ends with a 410 Expired ERROR
// event when that history is gone. An object that stops matching the
// selectors is reported DELETED to this watcher, one that starts matching
// ADDED.
func (s *Server) handleWatch(w http.ResponseWriter, r *http.Request, q request) {
	query := r.URL.Query()
	sel, err := parseSelector(query.Get("labelSelector"), query.Get("fieldSelector"), q.res.New())
	if err != nil {
		writeError(w, err)
		return
	}
	flusher, ok := w.(http.Flusher)
	if !ok {
		writeError(w, errors.New("streaming unsupported"))
		return
	}
	ctx := r.Context()
	if ts := query.Get("timeoutSeconds"); ts != "" {
		n, err := strconv.ParseInt(ts, 10, 64)
		if err != nil || n < 0 {
			writeError(w, apierrors.NewBadRequest("invalid timeoutSeconds"))
			return
		}
		if n > 0 {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, time.Duration(n)*time.Second)
			defer cancel()
		}
	}
	bookmarks := query.Get("allowWatchBookmarks") == "true"
	rvStr := query.Get("resourceVersion")
	prefix := collectionPrefix(q.res, q.ns)

	var initial []runtime.Object
	var start int64
	if rvStr == "" || rvStr == "0" {
		if query.Get("sendInitialEvents") != "false" {
			list, err := s.list(ctx, q.res, store.ListOptions{Prefix: prefix}, sel)
			if err != nil {
				writeError(w, storeErr(err, q.gr(), ""))
				return
			}
			initial, _ = meta.ExtractList(list)
			lm, _ := meta.ListAccessor(list)
			start, _ = strconv.ParseInt(lm.GetResourceVersion(), 10, 64)
		} else {
			start = s.store.CurrentRevision()
		}
	} else if start, err = strconv.ParseInt(rvStr, 10, 64); err != nil || start < 0 {
		writeError(w, apierrors.NewBadRequest(fmt.Sprintf("invalid resource version %q", rvStr)))
		return
	}
	a := parseAccept(r)
	ew := &eventWriter{w: w, flusher: flusher, table: a.table, include: a.includeObject, partial: a.partial,
		protobuf: a.protobuf && !a.table && !a.partial}
	if ew.protobuf {
		w.Header().Set("Content-Type", mediaProtobufWatch)
	} else {
		w.Header().Set("Content-Type", mediaJSON)
	}
	w.Header().Set("Cache-Control", "no-cache, private")
	watcher, werr := s.store.Watch(ctx, store.WatchOptions{Prefix: prefix, Revision: start})
	w.WriteHeader(http.StatusOK)
	flusher.Flush()
	if werr != nil {
		if errors.Is(werr, store.ErrTooOld) {
			_ = ew.send("ERROR", expired(start, s.store.CurrentRevision()))
		} else if ctx.Err() == nil {
			_ = ew.send("ERROR", toStatus(storeErr(werr, q.gr(), "")))
		}
		ew.flush()
		return
	}
	defer watcher.Stop()
	for _, obj := range initial {
		if ew.send("ADDED", obj) != nil {
			return
		}
	}
	if bookmarks && query.Get("sendInitialEvents") == "true" {
		b := s.bookmark(q, start)
		m, _ := meta.Accessor(b)
		m.SetAnnotations(map[string]string{metav1.InitialEventsAnnotationKey: "true"})
		if ew.send("BOOKMARK", b) != nil {
			return
		}
	}
	ew.flush()
	var tick <-chan time.Time
	if bookmarks {
		t := time.NewTicker(s.cfg.BookmarkInterval)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick:
			watcher.RequestProgress()
		case ev, ok := <-watcher.Events():
			if !ok {
				if err := watcher.Err(); errors.Is(err, store.ErrTooOld) {
					_ = ew.send("ERROR", expired(start, s.store.CurrentRevision()))
					ew.flush()
				}
				return
			}
			typ, obj, shared := s.translate(q, sel, ev)
			if typ == "" || (typ == "BOOKMARK" && !bookmarks) {
				if len(watcher.Events()) == 0 {
					ew.flush()
				}
				continue
			}
			if ew.sendShared(typ, obj, shared) != nil {
				return
			}
			// A burst of events (a hundred pods created) goes out in as
			// few frames as the client can take; the last one flushes.
			if len(watcher.Events()) == 0 {
				ew.flush()
			}
		}
	}
}

// bookmark is an empty object of the watched kind carrying only a
// resourceVersion.
func (s *Server) bookmark(q request, rev int64) runtime.Object {
	obj := q.res.New()
	obj.GetObjectKind().SetGroupVersionKind(q.res.GVK())
	if m, err := meta.Accessor(obj); err == nil {
		m.SetResourceVersion(strconv.FormatInt(rev, 10))
	}
	return obj
}

// translate maps a store event to the watch event this watcher sees; the
// object comes from the watch cache (shared is its entry) and must not be
// modified.
func (s *Server) translate(q request, sel selector, ev store.Event) (typ string, obj runtime.Object, shared *watchObj) {
	switch ev.Type {
	case store.Progress:
		return "BOOKMARK", s.bookmark(q, ev.Revision), nil
	case store.Added, store.Deleted:
		w, err := s.watchObject(q.res, ev.Object)
		if err != nil || !sel.matches(w.obj) {
			return "", nil, nil
		}
		return string(ev.Type), w.obj, w
	case store.Modified:
		w, err := s.watchObject(q.res, ev.Object)
		if err != nil {
			return "", nil, nil
		}
		now := sel.matches(w.obj)
		before := true
		if !sel.empty() && ev.Prev != nil {
			if prev, err := s.watchObject(q.res, ev.Prev); err == nil {
				before = sel.matches(prev.obj)
			}
		}
		switch {
		case now && before:
			return "MODIFIED", w.obj, w
		case now:
			return "ADDED", w.obj, w
		case before:
			return "DELETED", w.obj, w
		}
	}
	return "", nil, nil
}
