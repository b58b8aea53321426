package store

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"sync"
	"testing"

	bolt "go.etcd.io/bbolt"
)

func openTest(t testing.TB, opts Options) (*DB, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "store.db")
	d, err := Open(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d, path
}

func mustCreate(t testing.TB, d *DB, key string) *Object {
	t.Helper()
	o, err := d.Create(context.Background(), key, "uid-"+key, []byte("v:"+key))
	if err != nil {
		t.Fatalf("create %s: %v", key, err)
	}
	return o
}

// checkConsistent runs bbolt's own check and the store's invariants.
func checkConsistent(t testing.TB, bdb *bolt.DB) {
	t.Helper()
	err := bdb.View(func(tx *bolt.Tx) error {
		for err := range tx.Check() {
			return fmt.Errorf("bbolt check: %w", err)
		}
		meta := tx.Bucket(bucketMeta)
		rev := parseRevKey(meta.Get(metaRev))
		compacted := parseRevKey(meta.Get(metaCompacted))
		hist := tx.Bucket(bucketHist)
		current := map[int64]string{}
		err := tx.Bucket(bucketKV).ForEach(func(k, v []byte) error {
			r, err := decodeKV(v)
			if err != nil {
				return err
			}
			if r.rev > rev || r.createRev > r.rev || r.createRev <= 0 {
				return fmt.Errorf("%s: revisions %d/%d, store at %d", k, r.createRev, r.rev, rev)
			}
			o, err := histObject(hist, r.rev, nil)
			if err != nil {
				return fmt.Errorf("%s: %w", k, err)
			}
			if o.Key != string(k) || o.UID != r.uid || o.CreateRevision != r.createRev {
				return fmt.Errorf("%s: history entry %d is for %s", k, r.rev, o.Key)
			}
			current[r.rev] = string(k)
			return nil
		})
		if err != nil {
			return err
		}
		// History: entries <= compacted only while current or the previous of a
		// later entry; then exactly
		// (compacted, rev], each with its previous entry present.
		hc := hist.Cursor()
		for k, v := hc.Seek(revKey(compacted + 1)); k != nil; k, v = hc.Next() {
			if e, err := decodeHist(v); err == nil && e.prevRev > 0 && e.prevRev <= compacted {
				current[e.prevRev] = string(e.key) // still needed as a previous object
			}
		}
		want := compacted + 1
		err = hist.ForEach(func(k, v []byte) error {
			r := parseRevKey(k)
			e, err := decodeHist(v)
			if err != nil {
				return fmt.Errorf("history %d: %w", r, err)
			}
			if r <= compacted {
				if current[r] != string(e.key) {
					return fmt.Errorf("history %d (%s) kept below compaction %d but neither current nor needed", r, e.key, compacted)
				}
				return nil
			}
			if r != want {
				return fmt.Errorf("history: found %d, want %d", r, want)
			}
			if _, err := eventAt(hist, e, r); err != nil {
				return fmt.Errorf("history %d: %w", r, err)
			}
			want++
			return nil
		})
		if err != nil {
			return err
		}
		if want != rev+1 {
			return fmt.Errorf("history ends at %d, store at %d", want-1, rev)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestCreateGet(t *testing.T) {
	d, _ := openTest(t, Options{})
	ctx := context.Background()
	o := mustCreate(t, d, "/pods/ns/a")
	if o.Revision != 1 || o.CreateRevision != 1 || o.UID != "uid-/pods/ns/a" || o.Key != "/pods/ns/a" {
		t.Fatalf("created %+v", o)
	}
	got, err := d.Get(ctx, "/pods/ns/a")
	if err != nil {
		t.Fatal(err)
	}
	if string(got.Value) != "v:/pods/ns/a" || got.Revision != 1 || got.UID != o.UID {
		t.Fatalf("got %+v", got)
	}
	if _, err := d.Create(ctx, "/pods/ns/a", "x", []byte("y")); !errors.Is(err, ErrAlreadyExists) {
		t.Fatalf("second create: %v", err)
	}
	if _, err := d.Get(ctx, "/pods/ns/missing"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("get missing: %v", err)
	}
	if _, err := d.Create(ctx, "", "x", nil); !errors.Is(err, ErrInvalidKey) {
		t.Fatalf("empty key: %v", err)
	}
	if d.CurrentRevision() != 1 {
		t.Fatalf("revision %d", d.CurrentRevision())
	}
}

func TestUpdate(t *testing.T) {
	d, _ := openTest(t, Options{})
	ctx := context.Background()
	a := mustCreate(t, d, "a")
	mustCreate(t, d, "b")
	if _, err := d.Update(ctx, "missing", []byte("x"), Preconditions{}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("update missing: %v", err)
	}
	if _, err := d.Update(ctx, "a", []byte("x"), Preconditions{Revision: 2}); !errors.Is(err, ErrConflict) {
		t.Fatalf("stale revision: %v", err)
	}
	if _, err := d.Update(ctx, "a", []byte("x"), Preconditions{UID: "other"}); !errors.Is(err, ErrConflict) {
		t.Fatalf("wrong uid: %v", err)
	}
	u, err := d.Update(ctx, "a", []byte("new"), Preconditions{Revision: a.Revision, UID: a.UID})
	if err != nil {
		t.Fatal(err)
	}
	if u.Revision != 3 || u.CreateRevision != 1 || u.UID != a.UID || string(u.Value) != "new" {
		t.Fatalf("updated %+v", u)
	}
	u2, err := d.Update(ctx, "a", []byte("newer"), Preconditions{})
	if err != nil || u2.Revision != 4 {
		t.Fatalf("unconditional update: %+v %v", u2, err)
	}
	got, _ := d.Get(ctx, "a")
	if string(got.Value) != "newer" || got.Revision != 4 {
		t.Fatalf("get after update %+v", got)
	}
}

func TestDelete(t *testing.T) {
	d, _ := openTest(t, Options{})
	ctx := context.Background()
	a := mustCreate(t, d, "a")
	if _, err := d.Delete(ctx, "missing", Preconditions{}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("delete missing: %v", err)
	}
	if _, err := d.Delete(ctx, "a", Preconditions{UID: "nope"}); !errors.Is(err, ErrConflict) {
		t.Fatalf("delete wrong uid: %v", err)
	}
	if _, err := d.Delete(ctx, "a", Preconditions{Revision: 7}); !errors.Is(err, ErrConflict) {
		t.Fatalf("delete wrong rev: %v", err)
	}
	o, err := d.Delete(ctx, "a", Preconditions{UID: a.UID, Revision: a.Revision})
	if err != nil {
		t.Fatal(err)
	}
	if o.Revision != 2 || string(o.Value) != "v:a" || o.UID != a.UID {
		t.Fatalf("deleted %+v", o)
	}
	if _, err := d.Get(ctx, "a"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("get deleted: %v", err)
	}
	// Recreate: a fresh create revision.
	b := mustCreate(t, d, "a")
	if b.CreateRevision != 3 {
		t.Fatalf("recreated %+v", b)
	}
}

func TestGuaranteedUpdate(t *testing.T) {
	d, _ := openTest(t, Options{})
	ctx := context.Background()
	if _, err := d.Create(ctx, "n", "u", []byte("0")); err != nil {
		t.Fatal(err)
	}
	// Concurrent increments: retries on conflict make every one count.
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 20 {
				_, err := d.GuaranteedUpdate(ctx, "n", func(cur *Object) ([]byte, error) {
					n, _ := strconv.Atoi(string(cur.Value))
					return []byte(strconv.Itoa(n + 1)), nil
				})
				if err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	got, _ := d.Get(ctx, "n")
	if string(got.Value) != "160" {
		t.Fatalf("counter %s", got.Value)
	}
	// Same bytes: no write.
	rev := d.CurrentRevision()
	o, err := d.GuaranteedUpdate(ctx, "n", func(cur *Object) ([]byte, error) { return cur.Value, nil })
	if err != nil || o.Revision != got.Revision || d.CurrentRevision() != rev {
		t.Fatalf("no-op update wrote: %+v %v rev %d->%d", o, err, rev, d.CurrentRevision())
	}
	// tryUpdate's error aborts.
	boom := errors.New("boom")
	if _, err := d.GuaranteedUpdate(ctx, "n", func(*Object) ([]byte, error) { return nil, boom }); !errors.Is(err, boom) {
		t.Fatalf("abort: %v", err)
	}
	if _, err := d.GuaranteedUpdate(ctx, "missing", func(*Object) ([]byte, error) { return nil, nil }); !errors.Is(err, ErrNotFound) {
		t.Fatalf("missing: %v", err)
	}
}

// submitTogether queues ops under one lock so the committer takes them as
// one batch.
func submitTogether(d *DB, ops []*op) {
	for _, o := range ops {
		o.done = make(chan struct{})
	}
	d.qmu.Lock()
	d.queue = append(d.queue, ops...)
	d.qmu.Unlock()
	select {
	case d.wake <- struct{}{}:
	default:
	}
	for _, o := range ops {
		<-o.done
	}
}

func TestBatchWritesFailAlone(t *testing.T) {
	d, path := openTest(t, Options{})
	mustCreate(t, d, "exists")
	ops := []*op{
		{kind: opCreate, key: "x", uid: "1", value: []byte("first")},
		{kind: opCreate, key: "x", uid: "2", value: []byte("second")}, // sees the first
		{kind: opUpdate, key: "x", value: []byte("upd"), pre: Preconditions{Revision: 2}},
		{kind: opCreate, key: "exists", value: []byte("dup")},
		{kind: opUpdate, key: "x", value: []byte("stale"), pre: Preconditions{Revision: 2}}, // x is at 3 now
		{kind: opDelete, key: "gone"},
		{kind: opCreate, key: "y", value: []byte("y")},
		{kind: opDelete, key: "y", pre: Preconditions{UID: "zz"}},
		{kind: opDelete, key: "y"},
	}
	submitTogether(d, ops)
	wantErr := []error{nil, ErrAlreadyExists, nil, ErrAlreadyExists, ErrConflict, ErrNotFound, nil, ErrConflict, nil}
	wantRev := []int64{2, 0, 3, 0, 0, 0, 4, 0, 5}
	for i, o := range ops {
		if (wantErr[i] == nil) != (o.err == nil) || (wantErr[i] != nil && !errors.Is(o.err, wantErr[i])) {
			t.Errorf("op %d: err %v, want %v", i, o.err, wantErr[i])
		}
		if o.err == nil && o.obj.Revision != wantRev[i] {
			t.Errorf("op %d: revision %d, want %d", i, o.obj.Revision, wantRev[i])
		}
	}
	x, err := d.Get(context.Background(), "x")
	if err != nil || string(x.Value) != "upd" || x.UID != "1" {
		t.Fatalf("x = %+v %v", x, err)
	}
	if d.CurrentRevision() != 5 {
		t.Fatalf("revision %d", d.CurrentRevision())
	}
	d.Close()
	bdb, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer bdb.Close()
	checkConsistent(t, bdb)
}

func TestReopenKeepsRevision(t *testing.T) {
	path := filepath.Join(t.TempDir(), "store.db")
	d, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	mustCreate(t, d, "a")
	mustCreate(t, d, "b")
	if _, err := d.Delete(context.Background(), "a", Preconditions{}); err != nil {
		t.Fatal(err)
	}
	d.Close()
	if _, err := d.Get(context.Background(), "b"); !errors.Is(err, ErrClosed) {
		t.Fatalf("get after close: %v", err)
	}
	if _, err := d.Create(context.Background(), "c", "", nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("create after close: %v", err)
	}
	d2, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer d2.Close()
	if d2.CurrentRevision() != 3 {
		t.Fatalf("revision after reopen %d", d2.CurrentRevision())
	}
	c := mustCreate(t, d2, "c")
	if c.Revision != 4 {
		t.Fatalf("next revision %d", c.Revision)
	}
	// History survives the restart: watch from 0-after-create replays.
	w, err := d2.Watch(context.Background(), WatchOptions{Revision: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	for _, want := range []int64{2, 3, 4} {
		ev := <-w.Events()
		if ev.Revision != want {
			t.Fatalf("replayed %d, want %d", ev.Revision, want)
		}
	}
}

func TestOpenRefusesOtherFormat(t *testing.T) {
	path := filepath.Join(t.TempDir(), "store.db")
	bdb, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	bdb.Update(func(tx *bolt.Tx) error {
		m, _ := tx.CreateBucket(bucketMeta)
		m.Put(metaFormat, []byte("something-else"))
		return putRev(m, metaRev, 7)
	})
	bdb.Close()
	if d, err := Open(path, Options{}); err == nil {
		d.Close()
		t.Fatal("opened a file in another format")
	}
}
