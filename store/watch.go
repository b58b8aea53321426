package store

import (
	"context"
	"fmt"
	"strings"
	"sync"

	bolt "go.etcd.io/bbolt"
)

// The hand-off between history replay and live events: the committer
// publishes a batch to the hub only after its transaction is durable, and it
// does so under hub.mu together with advancing hub.rev. A new watcher is
// registered under the same lock and notes hub.rev as R: every revision <= R
// is already committed (so a read transaction opened afterwards sees it) and
// every revision > R will be pushed to the watcher. It replays (from, R] from
// bbolt, then drains what was pushed meanwhile: no gap, no duplicate.

type hub struct {
	mu       sync.Mutex
	rev      int64
	watchers map[*watcher]struct{}
	closed   bool
}

func (h *hub) publish(events []Event, rev int64) {
	h.mu.Lock()
	for w := range h.watchers {
		w.push(events)
	}
	h.rev = rev
	h.mu.Unlock()
}

func (h *hub) close() {
	h.mu.Lock()
	h.closed = true
	ws := h.watchers
	h.watchers = map[*watcher]struct{}{}
	h.mu.Unlock()
	for w := range ws {
		w.end(ErrClosed)
	}
}

func (h *hub) remove(w *watcher) {
	h.mu.Lock()
	delete(h.watchers, w)
	h.mu.Unlock()
}

type watcher struct {
	d      *DB
	ctx    context.Context
	prefix string
	filter Filter
	from   int64 // deliver revisions > from
	out    chan Event

	mu       sync.Mutex
	pending  []Event // pushed by the hub, not yet taken by run
	overflow bool
	// live: replay is over; busy: run holds events it has not sent yet.
	// When live, not busy and nothing is pending, push sends straight into
	// out (without waking run): one goroutine hop less per event.
	live    bool
	busy    bool
	stopErr error
	stopped bool
	err     error // final, set before out is closed

	wake   chan struct{} // cap 1: pending changed or overflow
	stopCh chan struct{}
}

// Watch streams every change under opts.Prefix after opts.Revision (0: from
// now) that the filter accepts for the new or the previous object.
// Event objects are shared between watchers: treat them as read-only.
func (d *DB) Watch(ctx context.Context, opts WatchOptions) (Watcher, error) {
	if d.closed.Load() {
		return nil, ErrClosed
	}
	if opts.Revision < 0 {
		return nil, fmt.Errorf("watch from %d: negative revision", opts.Revision)
	}
	if opts.Revision > 0 && opts.Revision < d.compacted.Load() {
		return nil, fmt.Errorf("watch from %d (compacted %d): %w", opts.Revision, d.compacted.Load(), ErrTooOld)
	}
	w := &watcher{
		d:      d,
		ctx:    ctx,
		prefix: opts.Prefix,
		filter: opts.Filter,
		out:    make(chan Event, 128),
		wake:   make(chan struct{}, 1),
		stopCh: make(chan struct{}),
	}
	d.hub.mu.Lock()
	if d.hub.closed {
		d.hub.mu.Unlock()
		return nil, ErrClosed
	}
	live := d.hub.rev
	w.from = opts.Revision
	if w.from == 0 {
		w.from = live
	}
	d.hub.watchers[w] = struct{}{}
	d.watchWG.Add(1)
	d.hub.mu.Unlock()
	go w.run(live)
	return w, nil
}

func (w *watcher) Events() <-chan Event { return w.out }

func (w *watcher) Err() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

func (w *watcher) Stop() { w.end(nil) }

// RequestProgress queues a Progress marker behind every event already
// published, so it arrives in order.
func (w *watcher) RequestProgress() {
	h := &w.d.hub
	// Under hub.mu, like publish: every event with a revision <= h.rev is
	// already pending ahead of the marker, and none after it is.
	h.mu.Lock()
	w.mu.Lock()
	if !w.stopped && !w.overflow {
		w.pending = append(w.pending, Event{Type: Progress, Revision: h.rev})
	}
	w.mu.Unlock()
	h.mu.Unlock()
	w.signal()
}

func (w *watcher) signal() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// push is called by the hub with hub.mu held; it must never block.
func (w *watcher) push(events []Event) {
	w.mu.Lock()
	if w.stopped || w.overflow {
		w.mu.Unlock()
		return
	}
	i := 0
	if w.live && !w.busy && len(w.pending) == 0 && w.filter == nil {
	direct:
		for ; i < len(events); i++ {
			ev := events[i]
			if ev.Revision <= w.from || !strings.HasPrefix(ev.Object.Key, w.prefix) {
				continue
			}
			select {
			case w.out <- ev:
			default:
				break direct // out is full: queue the rest for run
			}
		}
		if i == len(events) {
			w.mu.Unlock()
			return
		}
	}
	for _, ev := range events[i:] {
		if ev.Revision > w.from && strings.HasPrefix(ev.Object.Key, w.prefix) {
			w.pending = append(w.pending, ev)
		}
	}
	if len(w.pending) > w.d.opts.WatchBuffer {
		w.overflow = true
		w.pending = nil
	}
	w.mu.Unlock()
	w.signal()
}

func (w *watcher) end(err error) {
	w.mu.Lock()
	if !w.stopped {
		w.stopped = true
		w.stopErr = err
		close(w.stopCh)
	}
	w.mu.Unlock()
}

func (w *watcher) matches(ev *Event) bool {
	if w.filter == nil {
		return true
	}
	if w.filter(ev.Object) {
		return true
	}
	return ev.Prev != nil && w.filter(ev.Prev)
}

func (w *watcher) run(live int64) {
	err := w.loop(live)
	w.d.hub.remove(w)
	w.mu.Lock()
	if err == nil && w.stopped {
		err = w.stopErr
	}
	w.err = err
	w.stopped = true
	w.pending = nil
	w.mu.Unlock()
	close(w.out)
	w.d.watchWG.Done()
}

// errStop ends the loop without an error for the caller.
var errStop = fmt.Errorf("stopped")

// send delivers one event, giving up when the watch is stopped or overflowed.
func (w *watcher) send(ev Event) error {
	for {
		select {
		case w.out <- ev:
			return nil
		case <-w.stopCh:
			return errStop
		case <-w.ctx.Done():
			return errStop
		case <-w.wake:
			w.mu.Lock()
			ov := w.overflow
			w.mu.Unlock()
			if ov {
				return ErrWatchTooSlow
			}
		}
	}
}

func (w *watcher) loop(live int64) error {
	if w.from < live {
		if err := w.replay(w.from, live); err != nil {
			return unstop(err)
		}
	}
	for {
		w.mu.Lock()
		batch := w.pending
		w.pending = nil
		ov := w.overflow
		w.live = true
		w.busy = len(batch) > 0
		w.mu.Unlock()
		if ov {
			return ErrWatchTooSlow
		}
		if len(batch) == 0 {
			select {
			case <-w.wake:
			case <-w.stopCh:
				return nil
			case <-w.ctx.Done():
				return nil
			}
			continue
		}
		for i := range batch {
			ev := batch[i]
			if ev.Type == Progress {
				ev.Revision = max(ev.Revision, w.from)
			} else if !w.matches(&ev) {
				continue
			}
			if err := w.send(ev); err != nil {
				return unstop(err)
			}
		}
	}
}

func unstop(err error) error {
	if err == errStop {
		return nil
	}
	return err
}

const replayChunk = 512

// replay sends the history entries in (from, to], a chunk per read
// transaction so that a slow consumer never holds one open.
func (w *watcher) replay(from, to int64) error {
	next := from + 1
	for next <= to {
		var evs []Event
		err := w.d.view(func(tx *bolt.Tx) error {
			compacted := parseRevKey(tx.Bucket(bucketMeta).Get(metaCompacted))
			if compacted >= next {
				return fmt.Errorf("watch replay at %d (compacted %d): %w", next, compacted, ErrTooOld)
			}
			hist := tx.Bucket(bucketHist)
			c := hist.Cursor()
			n := 0
			for k, v := c.Seek(revKey(next)); ; k, v = c.Next() {
				if k == nil {
					// Should not happen: every revision <= to is committed.
					return fmt.Errorf("watch replay: history ends before %d", to)
				}
				rev := parseRevKey(k)
				if rev != next {
					return fmt.Errorf("watch replay: history gap at %d (found %d)", next, rev)
				}
				e, err := decodeHist(v)
				if err != nil {
					return fmt.Errorf("history %d: %w", rev, err)
				}
				next = rev + 1
				if strings.HasPrefix(string(e.key), w.prefix) {
					ev, err := eventAt(hist, e, rev)
					if err != nil {
						return err
					}
					if w.matches(&ev) {
						evs = append(evs, ev)
					}
				}
				n++
				if next > to || n >= replayChunk {
					return nil
				}
			}
		})
		if err != nil {
			return err
		}
		for _, ev := range evs {
			if err := w.send(ev); err != nil {
				return err
			}
		}
	}
	return nil
}
