package store

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	bolt "go.etcd.io/bbolt"
)

// continueToken pins a paginated list to its revision and resumes at Start.
type continueToken struct {
	Rev    int64  `json:"r"`
	Start  string `json:"s"`
	Prefix string `json:"p"`
}

func encodeContinue(t continueToken) string {
	b, _ := json.Marshal(t)
	return base64.RawURLEncoding.EncodeToString(b)
}

func decodeContinue(s string) (continueToken, error) {
	var t continueToken
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return t, fmt.Errorf("%w: %v", ErrInvalidContinue, err)
	}
	if err := json.Unmarshal(b, &t); err != nil {
		return t, fmt.Errorf("%w: %v", ErrInvalidContinue, err)
	}
	if t.Rev <= 0 || !strings.HasPrefix(t.Start, t.Prefix) {
		return t, fmt.Errorf("%w: bad fields", ErrInvalidContinue)
	}
	return t, nil
}

// List returns the objects under opts.Prefix as of opts.Revision (0 =
// latest), in key order, one page at a time when opts.Limit > 0.
func (d *DB) List(ctx context.Context, opts ListOptions) (*ListResult, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	prefix := opts.Prefix
	start := prefix
	atRev := opts.Revision
	if opts.Continue != "" {
		t, err := decodeContinue(opts.Continue)
		if err != nil {
			return nil, err
		}
		if t.Prefix != prefix {
			return nil, fmt.Errorf("%w: token is for prefix %q, not %q", ErrInvalidContinue, t.Prefix, prefix)
		}
		start, atRev = t.Start, t.Rev
	}
	res := &ListResult{}
	err := d.view(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		cur := parseRevKey(meta.Get(metaRev))
		compacted := parseRevKey(meta.Get(metaCompacted))
		if atRev == 0 {
			atRev = cur
		}
		if atRev > cur {
			return fmt.Errorf("list at %d (newest %d): %w", atRev, cur, ErrFutureRevision)
		}
		if atRev < compacted {
			return fmt.Errorf("list at %d (compacted %d): %w", atRev, compacted, ErrTooOld)
		}
		res.Revision = atRev
		it, err := newListIter(tx, prefix, start, atRev, cur)
		if err != nil {
			return err
		}
		hr := newHistReader(tx.Bucket(bucketHist))
		alloc := &objAlloc{}
		var lastKey string
		for {
			if opts.Limit > 0 && int64(len(res.Items)) >= opts.Limit {
				break
			}
			key, rev, ok, err := it.next()
			if err != nil {
				return err
			}
			if !ok {
				return nil // everything read: no continue
			}
			v, err := hr.get(rev)
			if err != nil {
				return fmt.Errorf("list %s: %w", key, err)
			}
			e, err := decodeHist(v)
			if err != nil || e.typ == histDeleted {
				return fmt.Errorf("list %s: history %d: %w", key, rev, errCorrupt)
			}
			obj := alloc.objectKey(key, e, rev)
			lastKey = key
			if opts.Filter != nil && !opts.Filter(obj) {
				continue
			}
			res.Items = append(res.Items, obj)
		}
		// The page is full; is there anything after it?
		var remaining int64
		for {
			_, _, ok, err := it.next()
			if err != nil {
				return err
			}
			if !ok {
				break
			}
			remaining++
			if opts.Filter != nil {
				break // counting would mean decoding and filtering the rest
			}
		}
		if remaining > 0 {
			res.Continue = encodeContinue(continueToken{Rev: atRev, Start: lastKey + "\x00", Prefix: prefix})
			if opts.Filter == nil {
				res.RemainingItemCount = &remaining
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return res, nil
}

// listIter walks the keys under a prefix as they were at revision atRev: the
// current kv bucket, corrected by an overlay built from the history entries
// written after atRev (each key takes the state before its first later
// write). It yields the revision whose history entry holds each value.
type listIter struct {
	c      *bolt.Cursor
	prefix []byte
	ck, cv []byte

	overlayKeys []string
	overlay     map[string]int64 // 0: key absent at atRev
	oi          int
}

func newListIter(tx *bolt.Tx, prefix, start string, atRev, cur int64) (*listIter, error) {
	it := &listIter{prefix: []byte(prefix)}
	if atRev < cur {
		it.overlay = make(map[string]int64)
		hc := tx.Bucket(bucketHist).Cursor()
		for k, v := hc.Seek(revKey(atRev + 1)); k != nil; k, v = hc.Next() {
			e, err := decodeHist(v)
			if err != nil {
				return nil, fmt.Errorf("history %d: %w", parseRevKey(k), err)
			}
			if !bytes.HasPrefix(e.key, it.prefix) || string(e.key) < start {
				continue
			}
			if _, seen := it.overlay[string(e.key)]; seen {
				continue
			}
			key := string(e.key)
			it.overlay[key] = e.prevRev
			it.overlayKeys = append(it.overlayKeys, key)
		}
		sort.Strings(it.overlayKeys)
	}
	it.c = tx.Bucket(bucketKV).Cursor()
	it.ck, it.cv = it.c.Seek([]byte(start))
	it.clampCursor()
	return it, nil
}

func (it *listIter) clampCursor() {
	if it.ck != nil && !bytes.HasPrefix(it.ck, it.prefix) {
		it.ck, it.cv = nil, nil
	}
}

// next returns the next key present at atRev and the revision of its value.
func (it *listIter) next() (key string, rev int64, ok bool, err error) {
	for {
		haveO := it.oi < len(it.overlayKeys)
		if it.ck == nil && !haveO {
			return "", 0, false, nil
		}
		if haveO {
			ok := it.overlayKeys[it.oi]
			if it.ck == nil || ok <= string(it.ck) {
				if it.ck != nil && ok == string(it.ck) {
					it.ck, it.cv = it.c.Next()
					it.clampCursor()
				}
				it.oi++
				if r := it.overlay[ok]; r > 0 {
					return ok, r, true, nil
				}
				continue
			}
		}
		k := string(it.ck)
		r, err := kvRev(it.cv)
		if err != nil {
			return "", 0, false, fmt.Errorf("kv %s: %w", k, err)
		}
		it.ck, it.cv = it.c.Next()
		it.clampCursor()
		return k, r, true, nil
	}
}
