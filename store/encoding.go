package store

import (
	"encoding/binary"
	"errors"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// On-disk layout (integers big-endian or uvarint):
//
//	bucket "meta":  "format" -> formatVersion
//	                "rev" -> 8 bytes, newest committed revision
//	                "compacted" -> 8 bytes, the compaction point (below)
//	bucket "kv":    key -> uvarint(len uid) uid uvarint(createRev) uvarint(rev)
//	bucket "hist":  8-byte revision -> type byte, 8-byte unix-nano commit time,
//	                uvarint(len key) key, uvarint(len uid) uid,
//	                uvarint(createRev), uvarint(prevRev), value
//
// Values live only in history: the kv entry of a key points at the history
// entry of its last write, and each history entry points at the entry it
// replaced (prevRev, 0 for a create). A write therefore stores its value once,
// and the randomly-keyed kv bucket stays small, which keeps the pages dirtied
// (and fsynced) per commit few. A Deleted entry has no value: its object is
// the previous one with the deleting revision.
//
// Compaction to C processes the entries up to C in order: an entry that
// replaced another frees the one it replaced, and a Deleted entry frees
// itself. So every entry after C is present (watch and List-at-revision can
// start anywhere >= C and always find the previous object they need), and
// entries up to C survive only while they are a key's current value.

var (
	bucketMeta = []byte("meta")
	bucketKV   = []byte("kv")
	bucketHist = []byte("hist")

	metaRev       = []byte("rev")
	metaCompacted = []byte("compacted")
	metaFormat    = []byte("format")
)

// formatVersion names the layout below; Open refuses any other.
const formatVersion = "kubelab-store-2"

const (
	histAdded    byte = 1
	histModified byte = 2
	histDeleted  byte = 3
)

var errCorrupt = errors.New("store: corrupt record")

func revKey(rev int64) []byte {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(rev))
	return b[:]
}

func parseRevKey(b []byte) int64 {
	if len(b) != 8 {
		return 0
	}
	return int64(binary.BigEndian.Uint64(b))
}

// kvRec is the kv bucket's entry for a live key.
type kvRec struct {
	uid       string
	createRev int64
	rev       int64
}

func encodeKV(r kvRec) []byte { return appendKV(make([]byte, 0, len(r.uid)+21), r) }

func appendKV(b []byte, r kvRec) []byte {
	b = binary.AppendUvarint(b, uint64(len(r.uid)))
	b = append(b, r.uid...)
	b = binary.AppendUvarint(b, uint64(r.createRev))
	return binary.AppendUvarint(b, uint64(r.rev))
}

// kvRev reads only the revision of a kv entry.
func kvRev(b []byte) (int64, error) {
	n, k := binary.Uvarint(b)
	if k <= 0 || uint64(len(b)-k) < n {
		return 0, errCorrupt
	}
	b = b[k+int(n):]
	_, k = binary.Uvarint(b)
	if k <= 0 {
		return 0, errCorrupt
	}
	rev, k2 := binary.Uvarint(b[k:])
	if k2 <= 0 {
		return 0, errCorrupt
	}
	return int64(rev), nil
}

func decodeKV(b []byte) (kvRec, error) {
	n, k := binary.Uvarint(b)
	if k <= 0 || uint64(len(b)-k) < n {
		return kvRec{}, errCorrupt
	}
	b = b[k:]
	r := kvRec{uid: string(b[:n])}
	b = b[n:]
	cr, k := binary.Uvarint(b)
	if k <= 0 {
		return kvRec{}, errCorrupt
	}
	rev, k2 := binary.Uvarint(b[k:])
	if k2 <= 0 {
		return kvRec{}, errCorrupt
	}
	r.createRev, r.rev = int64(cr), int64(rev)
	return r, nil
}

// histEntry is a decoded history record; value aliases the input until
// copied by object().
type histEntry struct {
	typ       byte
	unixNano  int64
	key       []byte
	uid       []byte
	createRev int64
	prevRev   int64
	value     []byte
}

func encodeHist(e histEntry) []byte {
	return appendHist(make([]byte, 0, 1+8+len(e.key)+len(e.uid)+len(e.value)+40), e)
}

func appendHist(b []byte, e histEntry) []byte {
	b = append(b, e.typ)
	b = binary.BigEndian.AppendUint64(b, uint64(e.unixNano))
	b = binary.AppendUvarint(b, uint64(len(e.key)))
	b = append(b, e.key...)
	b = binary.AppendUvarint(b, uint64(len(e.uid)))
	b = append(b, e.uid...)
	b = binary.AppendUvarint(b, uint64(e.createRev))
	b = binary.AppendUvarint(b, uint64(e.prevRev))
	return append(b, e.value...)
}

func decodeHist(b []byte) (histEntry, error) {
	if len(b) < 9 {
		return histEntry{}, errCorrupt
	}
	e := histEntry{typ: b[0], unixNano: int64(binary.BigEndian.Uint64(b[1:9]))}
	b = b[9:]
	n, k := binary.Uvarint(b)
	if k <= 0 || uint64(len(b)-k) < n {
		return histEntry{}, errCorrupt
	}
	e.key = b[k : k+int(n)]
	b = b[k+int(n):]
	n, k = binary.Uvarint(b)
	if k <= 0 || uint64(len(b)-k) < n {
		return histEntry{}, errCorrupt
	}
	e.uid = b[k : k+int(n)]
	b = b[k+int(n):]
	cr, k := binary.Uvarint(b)
	if k <= 0 {
		return histEntry{}, errCorrupt
	}
	b = b[k:]
	pr, k := binary.Uvarint(b)
	if k <= 0 {
		return histEntry{}, errCorrupt
	}
	e.createRev, e.prevRev, e.value = int64(cr), int64(pr), b[k:]
	if e.typ < histAdded || e.typ > histDeleted {
		return histEntry{}, errCorrupt
	}
	return e, nil
}

// histTime reads only the commit time (for compaction).
func histTime(b []byte) int64 {
	if len(b) < 9 {
		return 0
	}
	return int64(binary.BigEndian.Uint64(b[1:9]))
}

func (e histEntry) eventType() EventType {
	switch e.typ {
	case histAdded:
		return Added
	case histDeleted:
		return Deleted
	default:
		return Modified
	}
}

// object is the value written by an Added/Modified entry at rev, copied out
// of bbolt memory (through a, when given).
func (e histEntry) object(rev int64, a *objAlloc) *Object {
	if a != nil {
		return a.object(e, rev)
	}
	val := make([]byte, len(e.value))
	copy(val, e.value)
	return &Object{Key: string(e.key), UID: string(e.uid), Value: val, CreateRevision: e.createRev, Revision: rev}
}

// objAlloc hands out objects and value bytes from larger blocks, for lists
// of thousands of objects. A block stays alive while any object from it is.
type objAlloc struct {
	objs []Object
	buf  []byte
}

func (a *objAlloc) object(e histEntry, rev int64) *Object {
	return a.objectKey(string(e.key), e, rev)
}

// objectKey is object with the key string already at hand.
func (a *objAlloc) objectKey(key string, e histEntry, rev int64) *Object {
	if len(a.objs) == cap(a.objs) {
		a.objs = make([]Object, 0, 256)
	}
	n := len(e.value)
	if cap(a.buf)-len(a.buf) < n {
		a.buf = make([]byte, 0, max(256<<10, n))
	}
	start := len(a.buf)
	a.buf = append(a.buf, e.value...)
	a.objs = append(a.objs, Object{Key: key, UID: string(e.uid), Value: a.buf[start : start+n : start+n], CreateRevision: e.createRev, Revision: rev})
	return &a.objs[len(a.objs)-1]
}

// histObject reads the object written at rev, which must be an Added or
// Modified entry.
func histObject(hist *bolt.Bucket, rev int64, a *objAlloc) (*Object, error) {
	v := hist.Get(revKey(rev))
	if v == nil {
		return nil, fmt.Errorf("%w: history entry %d missing", errCorrupt, rev)
	}
	e, err := decodeHist(v)
	if err != nil {
		return nil, fmt.Errorf("history entry %d: %w", rev, err)
	}
	if e.typ == histDeleted {
		return nil, fmt.Errorf("%w: history entry %d is a delete", errCorrupt, rev)
	}
	return e.object(rev, a), nil
}

// eventAt rebuilds the event of the history entry e written at rev.
func eventAt(hist *bolt.Bucket, e histEntry, rev int64) (Event, error) {
	ev := Event{Type: e.eventType(), Revision: rev}
	if e.prevRev > 0 {
		prev, err := histObject(hist, e.prevRev, nil)
		if err != nil {
			return ev, fmt.Errorf("previous of %d: %w", rev, err)
		}
		ev.Prev = prev
	}
	if e.typ == histDeleted {
		if ev.Prev == nil {
			return ev, fmt.Errorf("%w: delete %d without previous", errCorrupt, rev)
		}
		o := *ev.Prev
		o.Revision = rev
		ev.Object = &o
	} else {
		ev.Object = e.object(rev, nil)
	}
	return ev, nil
}

// histReader looks history entries up through one reusable cursor (bbolt's
// Bucket.Get allocates a cursor per call).
type histReader struct {
	c  *bolt.Cursor
	kb [8]byte
}

func newHistReader(hist *bolt.Bucket) *histReader { return &histReader{c: hist.Cursor()} }

func (r *histReader) get(rev int64) ([]byte, error) {
	binary.BigEndian.PutUint64(r.kb[:], uint64(rev))
	k, v := r.c.Seek(r.kb[:])
	if k == nil || string(k) != string(r.kb[:]) {
		return nil, fmt.Errorf("%w: history entry %d missing", errCorrupt, rev)
	}
	return v, nil
}

// commitArena holds the bytes one commit hands to bbolt (keys, encoded
// entries), which bbolt references until the transaction commits. The
// committer reuses it for every commit instead of allocating each piece
// of each write: the committer is the one serial step every write waits
// for, and its garbage is collected on the same cores.
type commitArena struct{ buf []byte }

// maxArena: an arena that grew past this (a huge batch) is not kept.
const maxArena = 1 << 20

func (a *commitArena) reset() {
	if cap(a.buf) > maxArena {
		a.buf = nil
	}
	a.buf = a.buf[:0]
}

// slice returns what was appended since start as its own slice. Earlier
// slices stay valid when a later append moves the buffer (they keep the
// old array).
func (a *commitArena) slice(start int) []byte { return a.buf[start:len(a.buf):len(a.buf)] }

func (a *commitArena) str(s string) []byte {
	start := len(a.buf)
	a.buf = append(a.buf, s...)
	return a.slice(start)
}

func (a *commitArena) revKey(rev int64) []byte {
	start := len(a.buf)
	a.buf = binary.BigEndian.AppendUint64(a.buf, uint64(rev))
	return a.slice(start)
}

func (a *commitArena) hist(e histEntry) []byte {
	start := len(a.buf)
	a.buf = appendHist(a.buf, e)
	return a.slice(start)
}

func (a *commitArena) kv(r kvRec) []byte {
	start := len(a.buf)
	a.buf = appendKV(a.buf, r)
	return a.slice(start)
}
