package store

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func nextEvent(t *testing.T, w Watcher) Event {
	t.Helper()
	select {
	case ev, ok := <-w.Events():
		if !ok {
			t.Fatalf("watch ended: %v", w.Err())
		}
		return ev
	case <-time.After(10 * time.Second):
		t.Fatal("no event within 10s")
	}
	return Event{}
}

func expectNoEvent(t *testing.T, w Watcher) {
	t.Helper()
	select {
	case ev, ok := <-w.Events():
		if ok {
			t.Fatalf("unexpected event %s %d %+v", ev.Type, ev.Revision, ev.Object)
		}
		t.Fatalf("watch ended: %v", w.Err())
	case <-time.After(50 * time.Millisecond):
	}
}

func TestWatchReplayThenLive(t *testing.T) {
	d, _ := openTest(t, Options{})
	ctx := context.Background()
	mustCreate(t, d, "/p/a")                             // 1
	d.Update(ctx, "/p/a", []byte("a2"), Preconditions{}) // 2
	mustCreate(t, d, "/q/x")                             // 3
	d.Delete(ctx, "/p/a", Preconditions{})               // 4

	w, err := d.Watch(ctx, WatchOptions{Prefix: "/p/", Revision: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	ev := nextEvent(t, w)
	if ev.Type != Modified || ev.Revision != 2 || string(ev.Object.Value) != "a2" || ev.Prev == nil || string(ev.Prev.Value) != "v:/p/a" || ev.Prev.Revision != 1 {
		t.Fatalf("replayed %+v", ev)
	}
	ev = nextEvent(t, w)
	if ev.Type != Deleted || ev.Revision != 4 || ev.Object.Revision != 4 || string(ev.Object.Value) != "a2" || ev.Prev.Revision != 2 {
		t.Fatalf("replayed delete %+v obj %+v", ev, ev.Object)
	}
	mustCreate(t, d, "/q/y") // 5, other prefix
	mustCreate(t, d, "/p/b") // 6
	ev = nextEvent(t, w)
	if ev.Type != Added || ev.Revision != 6 || ev.Prev != nil || ev.Object.Key != "/p/b" {
		t.Fatalf("live %+v", ev)
	}
	expectNoEvent(t, w)

	// Revision 0: from now, nothing old.
	w2, err := d.Watch(ctx, WatchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer w2.Stop()
	expectNoEvent(t, w2)
	mustCreate(t, d, "/z") // 7
	if ev := nextEvent(t, w2); ev.Revision != 7 {
		t.Fatalf("from-now watch got %d", ev.Revision)
	}
	// A future revision skips everything up to it.
	w3, err := d.Watch(ctx, WatchOptions{Revision: 8})
	if err != nil {
		t.Fatal(err)
	}
	defer w3.Stop()
	mustCreate(t, d, "/z8") // 8
	mustCreate(t, d, "/z9") // 9
	if ev := nextEvent(t, w3); ev.Revision != 9 {
		t.Fatalf("future watch got %d", ev.Revision)
	}
}

func TestWatchFilterSeesObjectsLeaving(t *testing.T) {
	d, _ := openTest(t, Options{})
	ctx := context.Background()
	red := func(o *Object) bool { return string(o.Value) == "red" }
	w, err := d.Watch(ctx, WatchOptions{Filter: red})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	d.Create(ctx, "a", "", []byte("blue"))              // 1: no
	d.Update(ctx, "a", []byte("red"), Preconditions{})  // 2: enters
	d.Update(ctx, "a", []byte("red2"), Preconditions{}) // 3: leaves (prev matched)
	d.Update(ctx, "a", []byte("blue"), Preconditions{}) // 4: no
	d.Create(ctx, "b", "", []byte("red"))               // 5
	d.Delete(ctx, "b", Preconditions{})                 // 6
	for _, want := range []int64{2, 3, 5, 6} {
		if ev := nextEvent(t, w); ev.Revision != want {
			t.Fatalf("got %d, want %d", ev.Revision, want)
		}
	}
	expectNoEvent(t, w)
}

func TestWatchProgress(t *testing.T) {
	d, _ := openTest(t, Options{})
	ctx := context.Background()
	mustCreate(t, d, "/other/1") // 1
	w, err := d.Watch(ctx, WatchOptions{Prefix: "/mine/"})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	mustCreate(t, d, "/other/2") // 2
	mustCreate(t, d, "/mine/1")  // 3
	mustCreate(t, d, "/other/3") // 4
	w.RequestProgress()
	if ev := nextEvent(t, w); ev.Type != Added || ev.Revision != 3 {
		t.Fatalf("event %+v", ev)
	}
	if ev := nextEvent(t, w); ev.Type != Progress || ev.Revision != 4 || ev.Object != nil {
		t.Fatalf("progress %+v", ev)
	}
	// Progress during a replay comes after the replayed events.
	w2, err := d.Watch(ctx, WatchOptions{Revision: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer w2.Stop()
	w2.RequestProgress()
	for _, want := range []int64{2, 3, 4} {
		if ev := nextEvent(t, w2); ev.Type == Progress || ev.Revision != want {
			t.Fatalf("got %s %d, want event %d", ev.Type, ev.Revision, want)
		}
	}
	if ev := nextEvent(t, w2); ev.Type != Progress || ev.Revision != 4 {
		t.Fatalf("progress %+v", ev)
	}
}

// TestWatchConcurrentWriters starts watchers at random points while 32
// writers create, update and delete, and checks that each one sees every
// revision after its start exactly once, in order (run with -race).
func TestWatchConcurrentWriters(t *testing.T) {
	d, _ := openTest(t, Options{NoSync: testing.Short()})
	ctx := context.Background()
	const writers, perWriter = 32, 60
	var wg sync.WaitGroup
	for i := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range perWriter {
				key := fmt.Sprintf("/k/%d/%d", i, j%7)
				var err error
				switch {
				case j < 7:
					_, err = d.Create(ctx, key, "", []byte("c"))
				case j%5 == 0:
					_, err = d.Delete(ctx, key, Preconditions{})
					if err == nil {
						_, err = d.Create(ctx, key, "", []byte("again"))
					}
				default:
					_, err = d.Update(ctx, key, []byte(fmt.Sprint(j)), Preconditions{})
				}
				if err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	type result struct {
		from int64
		revs []int64
		err  error
	}
	results := make(chan result, 64)
	var wwg sync.WaitGroup
	stopAll := make(chan struct{})
	var finalRev atomic.Int64
	for i := range 16 {
		time.Sleep(time.Duration(rand.IntN(20)) * time.Millisecond)
		// Even watchers start at the newest durable revision (the hand-off
		// edge), odd ones up to 100 revisions back (replay, then live).
		from := max(d.CurrentRevision(), 1)
		if i%2 == 1 {
			from = max(d.CurrentRevision()-int64(rand.IntN(100)), 1)
		}
		w, err := d.Watch(ctx, WatchOptions{Revision: from})
		if err != nil {
			t.Fatal(err)
		}
		wwg.Add(1)
		go func() {
			defer wwg.Done()
			r := result{from: from}
			for {
				select {
				case ev, ok := <-w.Events():
					if !ok {
						r.err = fmt.Errorf("ended: %v", w.Err())
						results <- r
						return
					}
					r.revs = append(r.revs, ev.Revision)
				case <-stopAll:
					// Writers are done: read up to the final revision.
					timeout := time.After(20 * time.Second)
					last := func() int64 {
						if len(r.revs) == 0 {
							return r.from
						}
						return r.revs[len(r.revs)-1]
					}
					for last() < finalRev.Load() {
						select {
						case ev, ok := <-w.Events():
							if !ok {
								r.err = fmt.Errorf("ended: %v", w.Err())
								results <- r
								return
							}
							r.revs = append(r.revs, ev.Revision)
						case <-timeout:
							r.err = fmt.Errorf("watcher from %d stuck at %d", r.from, last())
							results <- r
							return
						}
					}
					w.Stop()
					results <- r
					return
				}
			}
		}()
	}
	wg.Wait()
	final := d.CurrentRevision()
	finalRev.Store(final)
	close(stopAll)
	wwg.Wait()
	close(results)
	for r := range results {
		if r.err != nil {
			t.Fatal(r.err)
		}
		want := r.from + 1
		for _, got := range r.revs {
			if got != want {
				t.Fatalf("watcher from %d: got revision %d, want %d (%d events)", r.from, got, want, len(r.revs))
			}
			want++
		}
		if max(want-1, r.from) != final {
			t.Fatalf("watcher from %d ended at %d, store at %d", r.from, want-1, final)
		}
	}
}

func TestWatchSlowConsumerDoesNotBlockWriters(t *testing.T) {
	d, _ := openTest(t, Options{WatchBuffer: 50, NoSync: true})
	ctx := context.Background()
	w, err := d.Watch(ctx, WatchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// Never read: 128 in the channel + 50 queued, then the watch must end.
	done := make(chan error)
	go func() {
		for i := range 500 {
			if _, err := d.Create(ctx, fmt.Sprint(i), "", nil); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("writers blocked by a slow watcher")
	}
	n := int64(0)
	for ev := range w.Events() {
		n++
		if ev.Revision != n {
			t.Fatalf("event %d has revision %d", n, ev.Revision)
		}
	}
	if !errors.Is(w.Err(), ErrWatchTooSlow) {
		t.Fatalf("err = %v", w.Err())
	}
	if n == 0 || n >= 500 {
		t.Fatalf("delivered %d events", n)
	}
}

func TestWatchStopAndClose(t *testing.T) {
	d, _ := openTest(t, Options{})
	ctx, cancel := context.WithCancel(context.Background())
	w1, _ := d.Watch(ctx, WatchOptions{})
	w2, _ := d.Watch(context.Background(), WatchOptions{})
	w3, _ := d.Watch(context.Background(), WatchOptions{})
	w1.RequestProgress()
	nextEvent(t, w1)
	cancel()
	for range w1.Events() {
	}
	if w1.Err() != nil {
		t.Fatalf("cancelled watch err %v", w1.Err())
	}
	w2.Stop()
	w2.Stop()
	for range w2.Events() {
	}
	if w2.Err() != nil {
		t.Fatalf("stopped watch err %v", w2.Err())
	}
	d.Close()
	for range w3.Events() {
	}
	if !errors.Is(w3.Err(), ErrClosed) {
		t.Fatalf("closed store watch err %v", w3.Err())
	}
	if _, err := d.Watch(context.Background(), WatchOptions{}); !errors.Is(err, ErrClosed) {
		t.Fatalf("watch after close: %v", err)
	}
}

func TestCompactionAndTooOld(t *testing.T) {
	d, path := openTest(t, Options{HistoryMinAge: -1, HistoryMinRevisions: 10, CompactInterval: -1, CompactBatch: 7})
	ctx := context.Background()
	for i := range 50 {
		mustCreate(t, d, fmt.Sprintf("/k/%02d", i))
	}
	for i := range 50 {
		if _, err := d.Update(ctx, fmt.Sprintf("/k/%02d", i), []byte("u"), Preconditions{}); err != nil {
			t.Fatal(err)
		}
	}
	c, err := d.Compact(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if c != 90 || d.CompactedRevision() != 90 {
		t.Fatalf("compacted to %d", c)
	}
	if _, err := d.Watch(ctx, WatchOptions{Revision: 89}); !errors.Is(err, ErrTooOld) {
		t.Fatalf("watch from 89: %v", err)
	}
	if _, err := d.List(ctx, ListOptions{Revision: 89}); !errors.Is(err, ErrTooOld) {
		t.Fatalf("list at 89: %v", err)
	}
	res, err := d.List(ctx, ListOptions{Revision: 95})
	if err != nil || len(res.Items) != 50 {
		t.Fatalf("list at 95: %v", err)
	}
	for i, o := range res.Items {
		if (i < 45) != (string(o.Value) == "u") {
			t.Fatalf("at 95 item %d = %s", i, o.Value)
		}
	}
	w, err := d.Watch(ctx, WatchOptions{Revision: 90})
	if err != nil {
		t.Fatal(err)
	}
	for want := int64(91); want <= 100; want++ {
		if ev := nextEvent(t, w); ev.Revision != want || ev.Type != Modified || ev.Prev == nil {
			t.Fatalf("got %+v, want %d", ev, want)
		}
	}
	w.Stop()
	// A paginated list pinned at a revision that gets compacted expires.
	page, err := d.List(ctx, ListOptions{Limit: 5})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		d.Update(ctx, fmt.Sprintf("/k/%02d", i), []byte("again"), Preconditions{})
	}
	if _, err := d.Compact(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := d.List(ctx, ListOptions{Limit: 5, Continue: page.Continue}); !errors.Is(err, ErrTooOld) {
		t.Fatalf("expired continue: %v", err)
	}
	// Age floor: nothing young goes, whatever the count.
	d.Close()
	d2, err := Open(path, Options{HistoryMinAge: time.Hour, HistoryMinRevisions: 1, CompactInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer d2.Close()
	before := d2.CompactedRevision()
	if c, _ := d2.Compact(ctx); c != before {
		t.Fatalf("age floor ignored: %d -> %d", before, c)
	}
	// ...unless the hard cap says so.
	d2.opts.HistoryMaxRevisions = 3
	if c, _ := d2.Compact(ctx); c != d2.CurrentRevision()-3 {
		t.Fatalf("cap: compacted %d, current %d", c, d2.CurrentRevision())
	}
	checkConsistent(t, d2.bolt)
}

func TestAutomaticCompaction(t *testing.T) {
	d, _ := openTest(t, Options{HistoryMinAge: -1, HistoryMinRevisions: 5, CompactInterval: 10 * time.Millisecond, NoSync: true})
	for i := range 30 {
		mustCreate(t, d, fmt.Sprint(i))
	}
	deadline := time.Now().Add(10 * time.Second)
	for d.CompactedRevision() != 25 {
		if time.Now().After(deadline) {
			t.Fatalf("compacted %d, want 25", d.CompactedRevision())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// A replay that falls behind compaction ends with ErrTooOld instead of
// skipping the compacted revisions.
func TestWatchReplayOvertakenByCompaction(t *testing.T) {
	d, _ := openTest(t, Options{HistoryMinAge: -1, HistoryMinRevisions: 1, CompactInterval: -1, NoSync: true})
	ctx := context.Background()
	for i := range 3 * replayChunk {
		mustCreate(t, d, fmt.Sprint(i))
	}
	w, err := d.Watch(ctx, WatchOptions{Revision: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	if ev := nextEvent(t, w); ev.Revision != 2 {
		t.Fatalf("first replayed %d", ev.Revision)
	}
	// The first chunk is in memory now; compact everything behind it.
	if _, err := d.Compact(ctx); err != nil {
		t.Fatal(err)
	}
	want := int64(3)
	for ev := range w.Events() {
		if ev.Revision != want {
			t.Fatalf("replayed %d, want %d", ev.Revision, want)
		}
		want++
	}
	if !errors.Is(w.Err(), ErrTooOld) {
		t.Fatalf("err %v after %d events", w.Err(), want-2)
	}
	if want > replayChunk+2 {
		t.Fatalf("replayed past the compaction: up to %d", want-1)
	}
}

// Compaction, writers and watchers at once (for -race), then the file is
// consistent and every watcher saw a gapless stream.
func TestCompactionConcurrentWithWritersAndWatchers(t *testing.T) {
	d, _ := openTest(t, Options{HistoryMinAge: -1, HistoryMinRevisions: 200, CompactInterval: time.Millisecond, CompactBatch: 50, NoSync: true})
	ctx := context.Background()
	w, err := d.Watch(ctx, WatchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 300 {
				key := fmt.Sprintf("/c/%d/%d", g, i%10)
				if i < 10 {
					mustCreate(t, d, key)
				} else if _, err := d.Update(ctx, key, []byte(fmt.Sprint(i)), Preconditions{}); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	final := d.CurrentRevision()
	want := int64(1)
	for want <= final {
		ev := nextEvent(t, w)
		if ev.Revision != want {
			t.Fatalf("got %d, want %d", ev.Revision, want)
		}
		if ev.Type == Modified && (ev.Prev == nil || ev.Prev.Key != ev.Object.Key) {
			t.Fatalf("event %d without its previous object", ev.Revision)
		}
		want++
	}
	w.Stop()
	if _, err := d.Compact(ctx); err != nil {
		t.Fatal(err)
	}
	if c := d.CompactedRevision(); c != final-200 {
		t.Fatalf("compacted %d, want %d", c, final-200)
	}
	checkConsistent(t, d.bolt)
}
