package store

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"testing"
)

// modelObj is what the model remembers of a live key.
type modelObj struct {
	uid       string
	value     string
	createRev int64
	revision  int64
}

// TestRandomOpsAgainstModel drives the store with random writes (some of
// them failing), random compactions, and checks Get, List at random
// revisions with random page sizes, and watch replays against a simple
// in-memory model that keeps every snapshot.
func TestRandomOpsAgainstModel(t *testing.T) {
	seed := uint64(rand.Int64())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 7))
	d, _ := openTest(t, Options{HistoryMinAge: -1, HistoryMinRevisions: 40, CompactInterval: -1, CompactBatch: 9, NoSync: true})
	ctx := context.Background()

	live := map[string]modelObj{}
	snaps := []map[string]modelObj{{}} // snaps[r] = state at revision r
	type modelEvent struct {
		typ  EventType
		key  string
		prev *modelObj
		obj  modelObj
	}
	events := []modelEvent{{}} // events[r] = the write of revision r
	keyNames := []string{"/a/1", "/a/2", "/a/3", "/b/1", "/b/2", "/b/22", "/c", "/a/10", "/b/3"}

	for step := range 1500 {
		key := keyNames[rng.IntN(len(keyNames))]
		cur, exists := live[key]
		rev := int64(len(snaps) - 1)
		var pre Preconditions
		if rng.IntN(4) == 0 && exists {
			pre.Revision = cur.revision - int64(rng.IntN(2)) // sometimes stale
		}
		if rng.IntN(6) == 0 {
			pre.UID = "uid-" + fmt.Sprint(rng.IntN(3))
		}
		preOK := func() bool {
			return (pre.Revision == 0 || pre.Revision == cur.revision) && (pre.UID == "" || pre.UID == cur.uid)
		}
		val := fmt.Sprintf("v%d", step)
		var wantErr error
		var next *modelObj
		var typ EventType
		switch op := rng.IntN(3); op {
		case 0:
			uid := "uid-" + fmt.Sprint(rng.IntN(3))
			o, err := d.Create(ctx, key, uid, []byte(val))
			if exists {
				wantErr = ErrAlreadyExists
			} else {
				next, typ = &modelObj{uid: uid, value: val, createRev: rev + 1, revision: rev + 1}, Added
			}
			checkOp(t, step, "create", o, err, wantErr, next)
		case 1:
			o, err := d.Update(ctx, key, []byte(val), pre)
			switch {
			case !exists:
				wantErr = ErrNotFound
			case !preOK():
				wantErr = ErrConflict
			default:
				next, typ = &modelObj{uid: cur.uid, value: val, createRev: cur.createRev, revision: rev + 1}, Modified
			}
			checkOp(t, step, "update", o, err, wantErr, next)
		case 2:
			o, err := d.Delete(ctx, key, pre)
			switch {
			case !exists:
				wantErr = ErrNotFound
			case !preOK():
				wantErr = ErrConflict
			default:
				gone := cur
				gone.revision = rev + 1
				checkOp(t, step, "delete", o, err, nil, &gone)
				typ = Deleted
			}
			if wantErr != nil {
				checkOp(t, step, "delete", o, err, wantErr, nil)
			}
		}
		if typ != "" {
			snap := maps.Clone(live)
			ev := modelEvent{typ: typ, key: key}
			if exists {
				c := cur
				ev.prev = &c
			}
			if typ == Deleted {
				delete(snap, key)
				ev.obj = cur
				ev.obj.revision = rev + 1
			} else {
				snap[key] = *next
				ev.obj = *next
			}
			live = snap
			snaps = append(snaps, snap)
			events = append(events, ev)
		}

		if step%50 != 49 {
			continue
		}
		if rng.IntN(3) == 0 {
			if _, err := d.Compact(ctx); err != nil {
				t.Fatal(err)
			}
		}
		newest := int64(len(snaps) - 1)
		compacted := d.CompactedRevision()
		if newest > 40 && compacted != newest-40 {
			// compaction happens only when asked; just check it never overshoots
			if compacted > newest-40 {
				t.Fatalf("compacted %d beyond retention (newest %d)", compacted, newest)
			}
		}
		// Get every key.
		for _, k := range keyNames {
			o, err := d.Get(ctx, k)
			m, ok := live[k]
			if !ok {
				if !errors.Is(err, ErrNotFound) {
					t.Fatalf("step %d: get %s: %v, want not found", step, k, err)
				}
				continue
			}
			if err != nil || !sameObj(o, k, m) {
				t.Fatalf("step %d: get %s = %+v %v, want %+v", step, k, o, err, m)
			}
		}
		// Lists at random revisions, prefixes and page sizes.
		for range 5 {
			at := compacted + rng.Int64N(newest-compacted+1)
			if rng.IntN(4) == 0 {
				at = 0
			}
			prefix := []string{"", "/a/", "/b/", "/b/2", "/z"}[rng.IntN(5)]
			limit := int64(rng.IntN(4))
			want := snaps[newest]
			if at > 0 {
				want = snaps[at]
			}
			var wantKeys []string
			for k := range want {
				if len(k) >= len(prefix) && k[:len(prefix)] == prefix {
					wantKeys = append(wantKeys, k)
				}
			}
			slices.Sort(wantKeys)
			var got []*Object
			opts := ListOptions{Prefix: prefix, Revision: at, Limit: limit}
			for {
				res, err := d.List(ctx, opts)
				if err != nil {
					t.Fatalf("step %d: list %q at %d: %v", step, prefix, at, err)
				}
				got = append(got, res.Items...)
				if limit > 0 && int64(len(res.Items)) > limit {
					t.Fatalf("page of %d > limit %d", len(res.Items), limit)
				}
				if res.Continue == "" {
					break
				}
				if res.RemainingItemCount == nil || *res.RemainingItemCount != int64(len(wantKeys)-len(got)) {
					t.Fatalf("step %d: remaining %v, want %d", step, res.RemainingItemCount, len(wantKeys)-len(got))
				}
				opts.Continue = res.Continue
			}
			if len(got) != len(wantKeys) {
				t.Fatalf("step %d: list %q at %d: %v, want %v", step, prefix, at, keys(got), wantKeys)
			}
			for i, o := range got {
				if !sameObj(o, wantKeys[i], want[wantKeys[i]]) {
					t.Fatalf("step %d: list %q at %d item %d = %+v, want %+v", step, prefix, at, i, o, want[wantKeys[i]])
				}
			}
		}
		// A replay from a random kept revision matches the model's events.
		// (Revision 0 would mean "from now", so start at 1 at least.)
		from := max(compacted, 1) + rng.Int64N(newest-max(compacted, 1)+1)
		w, err := d.Watch(ctx, WatchOptions{Revision: from, Prefix: "/b/"})
		if err != nil {
			t.Fatal(err)
		}
		w.RequestProgress()
		for r := from + 1; r <= newest; r++ {
			me := events[r]
			if len(me.key) < 3 || me.key[:3] != "/b/" {
				continue
			}
			ev := nextEvent(t, w)
			if ev.Revision != r || ev.Type != me.typ || !sameObj(ev.Object, me.key, me.obj) {
				t.Fatalf("step %d: replay from %d: got %s %d %+v, want %s %d %+v", step, from, ev.Type, ev.Revision, ev.Object, me.typ, r, me.obj)
			}
			if (me.prev == nil) != (ev.Prev == nil) || (me.prev != nil && !sameObj(ev.Prev, me.key, *me.prev)) {
				t.Fatalf("step %d: replay %d prev %+v, want %+v", step, r, ev.Prev, me.prev)
			}
		}
		if ev := nextEvent(t, w); ev.Type != Progress || ev.Revision != max(newest, from) {
			t.Fatalf("step %d: after replay got %s %d, want progress %d", step, ev.Type, ev.Revision, newest)
		}
		w.Stop()
	}
	t.Logf("%d revisions, compacted to %d", len(snaps)-1, d.CompactedRevision())
	if d.CompactedRevision() == 0 {
		t.Fatal("the run never compacted")
	}
	checkConsistent(t, d.bolt)
}

func sameObj(o *Object, key string, m modelObj) bool {
	return o != nil && o.Key == key && o.UID == m.uid && string(o.Value) == m.value &&
		o.CreateRevision == m.createRev && o.Revision == m.revision
}

func checkOp(t *testing.T, step int, what string, o *Object, err, wantErr error, want *modelObj) {
	t.Helper()
	if wantErr != nil {
		if !errors.Is(err, wantErr) {
			t.Fatalf("step %d: %s: err %v, want %v", step, what, err, wantErr)
		}
		return
	}
	if err != nil {
		t.Fatalf("step %d: %s: %v", step, what, err)
	}
	if want != nil && !sameObj(o, o.Key, *want) {
		t.Fatalf("step %d: %s = %+v, want %+v", step, what, o, *want)
	}
}
