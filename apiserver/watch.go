package apiserver

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/kubelab/kubelab/apiserver/printers"
	"github.com/kubelab/kubelab/store"
)

// eventWriter streams watch events as newline-separated JSON objects,
// flushing each one, as Tables when the client asked for them.
type eventWriter struct {
	w           http.ResponseWriter
	flusher     http.Flusher
	table       bool
	include     metav1.IncludeObjectPolicy
	partial     bool
	sentColumns bool
}

func (e *eventWriter) send(typ string, obj runtime.Object) error {
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
	if _, err := e.w.Write(b); err != nil {
		return err
	}
	e.flusher.Flush()
	return nil
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
	ew := &eventWriter{w: w, flusher: flusher, table: a.table, include: a.includeObject, partial: a.partial}
	w.Header().Set("Content-Type", mediaJSON)
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
				}
				return
			}
			typ, obj := s.translate(q, sel, ev)
			if typ == "" {
				continue
			}
			if typ == "BOOKMARK" && !bookmarks {
				continue
			}
			if ew.send(typ, obj) != nil {
				return
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

// translate maps a store event to the watch event this watcher sees.
func (s *Server) translate(q request, sel selector, ev store.Event) (string, runtime.Object) {
	switch ev.Type {
	case store.Progress:
		return "BOOKMARK", s.bookmark(q, ev.Revision)
	case store.Added, store.Deleted:
		obj, err := s.decode(q.res, ev.Object)
		if err != nil || !sel.matches(obj) {
			return "", nil
		}
		return string(ev.Type), obj
	case store.Modified:
		obj, err := s.decode(q.res, ev.Object)
		if err != nil {
			return "", nil
		}
		now := sel.matches(obj)
		before := true
		if !sel.empty() && ev.Prev != nil {
			if prev, err := s.decode(q.res, ev.Prev); err == nil {
				before = sel.matches(prev)
			}
		}
		switch {
		case now && before:
			return "MODIFIED", obj
		case now:
			return "ADDED", obj
		case before:
			return "DELETED", obj
		}
	}
	return "", nil
}
