package store

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// On-disk layout (all integers big-endian or uvarint):
//
//	bucket "meta":  "rev" -> 8 bytes, newest committed revision
//	                "compacted" -> 8 bytes, every history entry <= it is gone
//	bucket "kv":    key -> object record
//	bucket "hist":  8-byte revision -> history record
//
// An object record is uvarint(len uid) uid uvarint(createRev) uvarint(rev) value.
// A history record is: type byte, 8-byte unix-nano commit time, uvarint(len key)
// key, uvarint(len obj) obj-record (0 = none), then the prev object record
// (empty = none). Deleted entries keep only prev; the event object is rebuilt
// from it with the deleting revision. Keeping prev inline costs space but lets
// List-at-revision and watch replay work from one entry, whatever was compacted.

var (
	bucketMeta = []byte("meta")
	bucketKV   = []byte("kv")
	bucketHist = []byte("hist")

	metaRev       = []byte("rev")
	metaCompacted = []byte("compacted")
)

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

func appendObject(dst []byte, o *Object) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(o.UID)))
	dst = append(dst, o.UID...)
	dst = binary.AppendUvarint(dst, uint64(o.CreateRevision))
	dst = binary.AppendUvarint(dst, uint64(o.Revision))
	return append(dst, o.Value...)
}

func encodeObject(o *Object) []byte {
	return appendObject(make([]byte, 0, len(o.UID)+len(o.Value)+24), o)
}

// decodeObject copies everything out of b, which may be bbolt-owned memory.
func decodeObject(key string, b []byte) (*Object, error) {
	n, k := binary.Uvarint(b)
	if k <= 0 || uint64(len(b)-k) < n {
		return nil, fmt.Errorf("%w: object %q", errCorrupt, key)
	}
	b = b[k:]
	uid := string(b[:n])
	b = b[n:]
	cr, k := binary.Uvarint(b)
	if k <= 0 {
		return nil, fmt.Errorf("%w: object %q", errCorrupt, key)
	}
	b = b[k:]
	rev, k := binary.Uvarint(b)
	if k <= 0 {
		return nil, fmt.Errorf("%w: object %q", errCorrupt, key)
	}
	b = b[k:]
	val := make([]byte, len(b))
	copy(val, b)
	return &Object{Key: key, UID: uid, Value: val, CreateRevision: int64(cr), Revision: int64(rev)}, nil
}

func encodeHist(typ byte, unixNano int64, key string, obj, prev *Object) []byte {
	size := 1 + 8 + 10 + len(key) + 10
	if obj != nil {
		size += len(obj.UID) + len(obj.Value) + 24
	}
	if prev != nil {
		size += len(prev.UID) + len(prev.Value) + 24
	}
	b := make([]byte, 0, size)
	b = append(b, typ)
	b = binary.BigEndian.AppendUint64(b, uint64(unixNano))
	b = binary.AppendUvarint(b, uint64(len(key)))
	b = append(b, key...)
	if obj == nil {
		b = binary.AppendUvarint(b, 0)
	} else {
		rec := encodeObject(obj)
		b = binary.AppendUvarint(b, uint64(len(rec)))
		b = append(b, rec...)
	}
	if prev != nil {
		b = appendObject(b, prev)
	}
	return b
}

// histHeader is the cheap part of a history record: enough to decide whether
// the entry matters before decoding (and copying) the objects.
type histHeader struct {
	typ      byte
	unixNano int64
	key      string
	rest     []byte // obj length + obj + prev; aliases the input
}

func decodeHistHeader(b []byte) (histHeader, error) {
	if len(b) < 9 {
		return histHeader{}, errCorrupt
	}
	h := histHeader{typ: b[0], unixNano: int64(binary.BigEndian.Uint64(b[1:9]))}
	b = b[9:]
	n, k := binary.Uvarint(b)
	if k <= 0 || uint64(len(b)-k) < n {
		return histHeader{}, errCorrupt
	}
	h.key = string(b[k : k+int(n)])
	h.rest = b[k+int(n):]
	return h, nil
}

// histTime reads only the commit time (for compaction).
func histTime(b []byte) int64 {
	if len(b) < 9 {
		return 0
	}
	return int64(binary.BigEndian.Uint64(b[1:9]))
}

// objects decodes the event object and the previous object of an entry
// written at rev.
func (h histHeader) objects(rev int64) (obj, prev *Object, err error) {
	b := h.rest
	n, k := binary.Uvarint(b)
	if k <= 0 || uint64(len(b)-k) < n {
		return nil, nil, errCorrupt
	}
	if n > 0 {
		if obj, err = decodeObject(h.key, b[k:k+int(n)]); err != nil {
			return nil, nil, err
		}
	}
	b = b[k+int(n):]
	if len(b) > 0 {
		if prev, err = decodeObject(h.key, b); err != nil {
			return nil, nil, err
		}
	}
	if h.typ == histDeleted {
		if prev == nil {
			return nil, nil, errCorrupt
		}
		c := *prev
		c.Revision = rev
		obj = &c
	}
	if obj == nil {
		return nil, nil, errCorrupt
	}
	return obj, prev, nil
}

// prevOnly decodes just the previous object (nil for an Added entry).
func (h histHeader) prevOnly() (*Object, error) {
	b := h.rest
	n, k := binary.Uvarint(b)
	if k <= 0 || uint64(len(b)-k) < n {
		return nil, errCorrupt
	}
	b = b[k+int(n):]
	if len(b) == 0 {
		return nil, nil
	}
	return decodeObject(h.key, b)
}

func (h histHeader) eventType() EventType {
	switch h.typ {
	case histAdded:
		return Added
	case histDeleted:
		return Deleted
	default:
		return Modified
	}
}
