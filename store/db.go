package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
)

// More typed errors (in addition to those in store.go).
var (
	// ErrFutureRevision: a List asked for a revision newer than the newest
	// write (API: 504 "Too large resource version" / 500).
	ErrFutureRevision = errors.New("store: revision is in the future")
	// ErrWatchTooSlow ends a watch whose consumer fell more than
	// Options.WatchBuffer events behind; the client should re-watch or re-list.
	ErrWatchTooSlow = errors.New("store: watcher fell too far behind")
	// ErrInvalidKey: empty or oversized key.
	ErrInvalidKey = errors.New("store: invalid key")
)

// Options tunes a DB. Zero values select the defaults.
type Options struct {
	// HistoryMinAge: history entries younger than this are kept (default 5m;
	// negative: no age floor).
	HistoryMinAge time.Duration
	// HistoryMinRevisions: the newest this-many revisions are kept whatever
	// their age (default 10,000; negative: none).
	HistoryMinRevisions int64
	// HistoryMaxRevisions, when > 0, caps history at that many revisions even
	// if younger than HistoryMinAge, so the file stays bounded under any
	// write rate. Default 0: no cap.
	HistoryMaxRevisions int64
	// CompactInterval is how often history is compacted (default 1m;
	// negative: never automatically, see (*DB).Compact).
	CompactInterval time.Duration
	// CompactBatch is the number of history entries removed per transaction,
	// which bounds how long compaction holds the write lock (default 2,000).
	CompactBatch int
	// WatchBuffer is the number of events a watcher may have queued before
	// its watch is ended with ErrWatchTooSlow (default 10,000).
	WatchBuffer int
	// MaxBatch caps the writes grouped into one transaction (default 4,096).
	MaxBatch int
	// BatchWait bounds how long the committer waits, once writes are
	// queued, for as many writes as its previous commit grouped (default
	// 1ms; negative: commit at once). See (*DB).awaitBatch.
	BatchWait time.Duration
	// OpenTimeout bounds the wait for the file lock (default 10s).
	OpenTimeout time.Duration
	// NoSync skips fsync. Only for tests that do not care about durability.
	NoSync bool
	// Logger for rare events (compaction, errors); default slog.Default().
	Logger *slog.Logger
}

func (o Options) withDefaults() Options {
	if o.HistoryMinAge == 0 {
		o.HistoryMinAge = 5 * time.Minute
	} else if o.HistoryMinAge < 0 {
		o.HistoryMinAge = 0
	}
	if o.HistoryMinRevisions == 0 {
		o.HistoryMinRevisions = 10000
	} else if o.HistoryMinRevisions < 0 {
		o.HistoryMinRevisions = 0
	}
	if o.CompactInterval == 0 {
		o.CompactInterval = time.Minute
	}
	if o.CompactBatch <= 0 {
		o.CompactBatch = 2000
	}
	if o.WatchBuffer <= 0 {
		o.WatchBuffer = 10000
	}
	if o.MaxBatch <= 0 {
		o.MaxBatch = 4096
	}
	if o.BatchWait == 0 {
		o.BatchWait = time.Millisecond
	}
	if o.OpenTimeout <= 0 {
		o.OpenTimeout = 10 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o
}

// DB is the bbolt-backed Interface implementation.
type DB struct {
	bolt *bolt.DB
	opts Options
	log  *slog.Logger

	rev       atomic.Int64 // newest durable revision
	compacted atomic.Int64 // history entries <= this are gone

	// write queue, drained by the single committer goroutine
	qmu     sync.Mutex
	queue   []*op
	spare   []*op
	closing bool
	wake    chan struct{}
	// target is the batch size the committer waits for (the size of its
	// previous batch); submit wakes it when the queue reaches it.
	target int

	hub hub

	// arena is the committer's scratch space for the current commit.
	arena commitArena

	// publishHook, when set (by benchmarks, before any write), sees each
	// durable batch just before the watchers do.
	publishHook func([]Event)

	statCommits     atomic.Int64
	statWrites      atomic.Int64
	statCommitNanos atomic.Int64

	closeOnce sync.Once
	closed    atomic.Bool
	quit      chan struct{} // closed by Close: stop background work
	commitWG  sync.WaitGroup
	bgWG      sync.WaitGroup
	watchWG   sync.WaitGroup
	compactMu sync.Mutex // one compaction pass at a time
}

var _ Interface = (*DB)(nil)

// Open opens (creating if needed) the database file at path and starts the
// committer and the compactor.
func Open(path string, opts Options) (*DB, error) {
	opts = opts.withDefaults()
	bdb, err := bolt.Open(path, 0o600, &bolt.Options{
		Timeout: opts.OpenTimeout,
		// The freelist is rebuilt on open instead of written on every commit:
		// fewer pages per fsync.
		NoFreelistSync: true,
		FreelistType:   bolt.FreelistMapType,
		// Pre-size the mapping so growth rarely needs a remap, which waits
		// for every open read transaction.
		InitialMmapSize: 256 << 20,
		NoSync:          opts.NoSync,
	})
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	d := &DB{
		bolt: bdb,
		opts: opts,
		log:  opts.Logger,
		wake: make(chan struct{}, 1),
		quit: make(chan struct{}),
	}
	d.hub.watchers = make(map[*watcher]struct{})
	err = bdb.Update(func(tx *bolt.Tx) error {
		for _, name := range [][]byte{bucketMeta, bucketKV, bucketHist} {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return err
			}
		}
		m := tx.Bucket(bucketMeta)
		switch f := m.Get(metaFormat); {
		case f == nil && m.Get(metaRev) == nil:
			if err := m.Put(metaFormat, []byte(formatVersion)); err != nil {
				return err
			}
		case string(f) != formatVersion:
			return fmt.Errorf("on-disk format %q, this build reads %q", f, formatVersion)
		}
		d.rev.Store(parseRevKey(m.Get(metaRev)))
		d.compacted.Store(parseRevKey(m.Get(metaCompacted)))
		return nil
	})
	if err != nil {
		bdb.Close()
		return nil, fmt.Errorf("open store %s: init: %w", path, err)
	}
	d.hub.rev = d.rev.Load()
	d.commitWG.Add(1)
	go d.commitLoop()
	if opts.CompactInterval > 0 {
		d.bgWG.Add(1)
		go d.compactLoop()
	}
	return d, nil
}

// Close stops accepting writes, commits what is already queued, ends every
// watch with ErrClosed and closes the file.
func (d *DB) Close() error {
	var err error
	d.closeOnce.Do(func() {
		d.qmu.Lock()
		d.closing = true
		d.qmu.Unlock()
		close(d.quit)
		d.commitWG.Wait()
		d.bgWG.Wait()
		d.hub.close()
		d.watchWG.Wait()
		d.closed.Store(true)
		err = d.bolt.Close()
	})
	return err
}

// CurrentRevision is the revision of the newest durable write.
func (d *DB) CurrentRevision() int64 { return d.rev.Load() }

// Stats are cumulative counters of the group committer (for metrics).
type Stats struct {
	// Commits is the number of bbolt transactions the committer ran.
	Commits int64
	// Writes is the number of writes submitted to them (failed ones too).
	Writes int64
	// CommitTime is the total time spent in those transactions, fsync included.
	CommitTime time.Duration
}

// Stats returns the committer's counters.
func (d *DB) Stats() Stats {
	return Stats{
		Commits:    d.statCommits.Load(),
		Writes:     d.statWrites.Load(),
		CommitTime: time.Duration(d.statCommitNanos.Load()),
	}
}

// CompactedRevision is the newest revision removed from history: watches and
// lists must start at or after it.
func (d *DB) CompactedRevision() int64 { return d.compacted.Load() }

func (d *DB) view(fn func(tx *bolt.Tx) error) error {
	if d.closed.Load() {
		return ErrClosed
	}
	err := d.bolt.View(fn)
	if errors.Is(err, bolt.ErrDatabaseNotOpen) {
		return ErrClosed
	}
	return err
}

// Get returns the object under key or ErrNotFound.
func (d *DB) Get(ctx context.Context, key string) (*Object, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var obj *Object
	err := d.view(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketKV).Get([]byte(key))
		if v == nil {
			return fmt.Errorf("get %s: %w", key, ErrNotFound)
		}
		r, err := decodeKV(v)
		if err != nil {
			return fmt.Errorf("get %s: %w", key, err)
		}
		obj, err = histObject(tx.Bucket(bucketHist), r.rev, nil)
		return err
	})
	if err != nil {
		return nil, err
	}
	return obj, nil
}

// ---- writes: group commit ----

type opKind uint8

const (
	opCreate opKind = iota + 1
	opUpdate
	opDelete
)

type op struct {
	kind  opKind
	key   string
	uid   string
	value []byte
	pre   Preconditions

	// set by the committer
	obj  *Object
	ev   *Event
	err  error
	done chan struct{}
}

const maxKeySize = 4096

func (d *DB) submit(ctx context.Context, o *op) (*Object, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if o.key == "" || len(o.key) > maxKeySize {
		return nil, fmt.Errorf("%w: %q", ErrInvalidKey, o.key)
	}
	o.done = make(chan struct{})
	d.qmu.Lock()
	if d.closing {
		d.qmu.Unlock()
		return nil, ErrClosed
	}
	d.queue = append(d.queue, o)
	n := len(d.queue)
	wake := n == 1 || n >= d.target
	d.qmu.Unlock()
	if wake {
		select {
		case d.wake <- struct{}{}:
		default:
		}
	}
	// Once queued the write will be decided within one commit; waiting for
	// it (rather than returning on ctx) keeps the outcome unambiguous.
	<-o.done
	return o.obj, o.err
}

// Create stores a new key; ErrAlreadyExists if it exists.
func (d *DB) Create(ctx context.Context, key, uid string, value []byte) (*Object, error) {
	return d.submit(ctx, &op{kind: opCreate, key: key, uid: uid, value: bytes.Clone(value)})
}

// Update replaces the value of an existing key (ErrNotFound), checking the
// preconditions (ErrConflict). UID and CreateRevision are kept.
func (d *DB) Update(ctx context.Context, key string, value []byte, pre Preconditions) (*Object, error) {
	return d.submit(ctx, &op{kind: opUpdate, key: key, value: bytes.Clone(value), pre: pre})
}

// Delete removes a key (ErrNotFound), checking the preconditions
// (ErrConflict). It returns the last value with Revision set to the deleting
// revision.
func (d *DB) Delete(ctx context.Context, key string, pre Preconditions) (*Object, error) {
	return d.submit(ctx, &op{kind: opDelete, key: key, pre: pre})
}

// GuaranteedUpdate is a read-modify-write loop that retries on conflict. A
// missing key gives ErrNotFound without calling tryUpdate.
func (d *DB) GuaranteedUpdate(ctx context.Context, key string, tryUpdate func(cur *Object) ([]byte, error)) (*Object, error) {
	for {
		cur, err := d.Get(ctx, key)
		if err != nil {
			return nil, err
		}
		val, err := tryUpdate(cur)
		if err != nil {
			return nil, err
		}
		if bytes.Equal(val, cur.Value) {
			return cur, nil
		}
		obj, err := d.Update(ctx, key, val, Preconditions{UID: cur.UID, Revision: cur.Revision})
		if errors.Is(err, ErrConflict) {
			continue
		}
		return obj, err
	}
}

func (d *DB) commitLoop() {
	defer d.commitWG.Done()
	for {
		select {
		case <-d.wake:
		case <-d.quit:
			// Commit whatever was queued before Close; submit refuses new work.
			for d.drainOnce() {
			}
			return
		}
		for d.drainOnce() {
		}
	}
}

// awaitBatch holds a commit back, at most BatchWait, until as many writes
// are queued as the previous commit grouped. Concurrent writers keep
// submitting while a commit runs, but not all at once: committing whatever
// is queued the moment the last commit ends splits them into more, smaller
// commits, each paying for its fsyncs and wake-ups. Waiting for the
// previous batch size adapts to the concurrency: a lone writer (previous
// batch of one) never waits, and a burst that ends costs one wait of at most
// BatchWait. Writes are still acknowledged only once committed.
func (d *DB) awaitBatch() {
	d.qmu.Lock()
	n, target := len(d.queue), d.target
	d.qmu.Unlock()
	if n == 0 || n >= target || d.opts.BatchWait <= 0 {
		return
	}
	timer := time.NewTimer(d.opts.BatchWait)
	defer timer.Stop()
	for {
		select {
		case <-d.wake:
		case <-timer.C:
			return
		case <-d.quit:
			return
		}
		d.qmu.Lock()
		n := len(d.queue)
		d.qmu.Unlock()
		if n >= target {
			return
		}
	}
}

// drainOnce takes everything queued (up to MaxBatch), commits it in one
// transaction, publishes and acknowledges. It reports whether it did work.
func (d *DB) drainOnce() bool {
	d.awaitBatch()
	d.qmu.Lock()
	batch := d.queue
	if len(batch) == 0 {
		d.qmu.Unlock()
		return false
	}
	if len(batch) > d.opts.MaxBatch {
		rest := batch[d.opts.MaxBatch:]
		batch = batch[:d.opts.MaxBatch]
		d.queue = append(d.spare[:0], rest...)
	} else {
		d.queue = d.spare[:0]
	}
	if d.opts.BatchWait > 0 {
		d.target = min(len(batch), d.opts.MaxBatch)
	}
	d.qmu.Unlock()
	d.commitBatch(batch)
	for i := range batch {
		batch[i] = nil
	}
	d.spare = batch[:0]
	return true
}

// errApply marks a bbolt failure inside one write, as opposed to a failed
// precondition; it aborts the whole transaction.
type errApply struct{ err error }

func (e errApply) Error() string { return e.err.Error() }
func (e errApply) Unwrap() error { return e.err }

func (d *DB) commitBatch(batch []*op) {
	t0 := time.Now()
	now := t0.UnixNano()
	var last int64
	err := d.bolt.Update(func(tx *bolt.Tx) error {
		var err error
		last, err = d.applyAll(tx, batch, now)
		return err
	})
	d.statCommits.Add(1)
	d.statWrites.Add(int64(len(batch)))
	d.statCommitNanos.Add(int64(time.Since(t0)))
	if err != nil {
		var ae errApply
		if errors.As(err, &ae) && len(batch) > 1 {
			// One write broke bbolt (not a precondition): retry each alone so
			// it fails by itself.
			for _, o := range batch {
				d.commitBatch([]*op{o})
			}
			return
		}
		for _, o := range batch {
			o.obj, o.ev = nil, nil
			o.err = fmt.Errorf("store commit: %w", err)
			close(o.done)
		}
		return
	}
	events := make([]Event, 0, len(batch))
	for _, o := range batch {
		if o.ev != nil {
			events = append(events, *o.ev)
		}
	}
	if len(events) > 0 {
		d.rev.Store(last)
		if d.publishHook != nil {
			d.publishHook(events)
		}
		d.hub.publish(events, last)
	}
	for _, o := range batch {
		close(o.done)
	}
}

// applyAll applies each write against the transaction's state (which
// includes earlier writes of the same batch) and returns the last revision.
func (d *DB) applyAll(tx *bolt.Tx, batch []*op, now int64) (int64, error) {
	meta := tx.Bucket(bucketMeta)
	kv := tx.Bucket(bucketKV)
	hist := tx.Bucket(bucketHist)
	hist.FillPercent = 1 // append-only keys: pack pages full
	rev := parseRevKey(meta.Get(metaRev))
	start := rev
	a := &d.arena
	a.reset()
	for _, o := range batch {
		o.obj, o.ev, o.err = nil, nil, nil
		kb := a.str(o.key)
		var cur *Object
		if v := kv.Get(kb); v != nil {
			r, err := decodeKV(v)
			if err == nil {
				cur, err = histObject(hist, r.rev, nil)
			}
			if err != nil {
				o.err = fmt.Errorf("%s: %w", o.key, err)
				continue
			}
		}
		next := rev + 1
		var ev Event
		var e histEntry
		uid := o.uid // of the object after this write
		switch o.kind {
		case opCreate:
			if cur != nil {
				o.err = fmt.Errorf("create %s: %w", o.key, ErrAlreadyExists)
				continue
			}
			obj := &Object{Key: o.key, UID: o.uid, Value: o.value, CreateRevision: next, Revision: next}
			e = histEntry{typ: histAdded, uid: a.str(uid), createRev: next, value: o.value}
			ev = Event{Type: Added, Revision: next, Object: obj}
		case opUpdate, opDelete:
			verb := "update"
			if o.kind == opDelete {
				verb = "delete"
			}
			if cur == nil {
				o.err = fmt.Errorf("%s %s: %w", verb, o.key, ErrNotFound)
				continue
			}
			if err := checkPre(cur, o.pre); err != nil {
				o.err = fmt.Errorf("%s %s: %w", verb, o.key, err)
				continue
			}
			uid = cur.UID
			if o.kind == opUpdate {
				obj := &Object{Key: o.key, UID: cur.UID, Value: o.value, CreateRevision: cur.CreateRevision, Revision: next}
				e = histEntry{typ: histModified, uid: a.str(uid), createRev: cur.CreateRevision, prevRev: cur.Revision, value: o.value}
				ev = Event{Type: Modified, Revision: next, Object: obj, Prev: cur}
			} else {
				obj := *cur
				obj.Revision = next
				e = histEntry{typ: histDeleted, uid: a.str(uid), createRev: cur.CreateRevision, prevRev: cur.Revision}
				ev = Event{Type: Deleted, Revision: next, Object: &obj, Prev: cur}
			}
		default:
			o.err = fmt.Errorf("store: unknown op %d", o.kind)
			continue
		}
		e.unixNano, e.key = now, kb
		if err := hist.Put(a.revKey(next), a.hist(e)); err != nil {
			return 0, errApply{err}
		}
		var err error
		if o.kind == opDelete {
			err = kv.Delete(kb)
		} else {
			err = kv.Put(kb, a.kv(kvRec{uid: uid, createRev: e.createRev, rev: next}))
		}
		if err != nil {
			return 0, errApply{err}
		}
		rev = next
		o.ev = &ev
		o.obj = ev.Object
	}
	if rev != start {
		if err := meta.Put(metaRev, revKey(rev)); err != nil {
			return 0, errApply{err}
		}
	}
	return rev, nil
}

func checkPre(cur *Object, pre Preconditions) error {
	if pre.UID != "" && pre.UID != cur.UID {
		return fmt.Errorf("%w: uid precondition %s, stored %s", ErrConflict, pre.UID, cur.UID)
	}
	if pre.Revision != 0 && pre.Revision != cur.Revision {
		return fmt.Errorf("%w: revision precondition %d, stored %d", ErrConflict, pre.Revision, cur.Revision)
	}
	return nil
}

func putRev(b *bolt.Bucket, k []byte, rev int64) error {
	var v [8]byte
	binary.BigEndian.PutUint64(v[:], uint64(rev))
	return b.Put(k, v[:])
}
