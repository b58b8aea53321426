package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

func (d *DB) compactLoop() {
	defer d.bgWG.Done()
	t := time.NewTicker(d.opts.CompactInterval)
	defer t.Stop()
	for {
		select {
		case <-d.quit:
			return
		case <-t.C:
			if _, err := d.compact(d.quit); err != nil && !errors.Is(err, ErrClosed) {
				d.log.Warn("store: history compaction failed", "err", err)
			}
		}
	}
}

// Compact removes the history entries that the retention options no longer
// require, now, and returns the new compacted revision. It runs in small
// transactions so that writers wait at most one of them.
func (d *DB) Compact(ctx context.Context) (int64, error) {
	return d.compact(ctx.Done())
}

// compactLimit is the newest revision that retention by count allows to drop.
func (d *DB) compactLimit(cur int64) (byCount, hardCap int64) {
	byCount = cur - d.opts.HistoryMinRevisions
	hardCap = 0
	if d.opts.HistoryMaxRevisions > 0 {
		hardCap = cur - d.opts.HistoryMaxRevisions
	}
	return byCount, hardCap
}

func (d *DB) compact(stop <-chan struct{}) (int64, error) {
	d.compactMu.Lock()
	defer d.compactMu.Unlock()
	removed := 0
	for {
		select {
		case <-stop:
			return d.compacted.Load(), nil
		default:
		}
		if d.closed.Load() {
			return 0, ErrClosed
		}
		cutoff := time.Now().Add(-d.opts.HistoryMinAge).UnixNano()
		var newCompacted int64
		var n int
		err := d.bolt.Update(func(tx *bolt.Tx) error {
			meta := tx.Bucket(bucketMeta)
			cur := parseRevKey(meta.Get(metaRev))
			byCount, hardCap := d.compactLimit(cur)
			compacted := parseRevKey(meta.Get(metaCompacted))
			hist := tx.Bucket(bucketHist)
			c := hist.Cursor()
			// Collect first: deleting through a cursor while iterating can
			// skip entries.
			var doomed []int64
			var last int64
			for k, v := c.Seek(revKey(compacted + 1)); k != nil && n < d.opts.CompactBatch; k, v = c.Next() {
				rev := parseRevKey(k)
				if rev > byCount {
					break
				}
				if rev > hardCap && histTime(v) > cutoff {
					break
				}
				e, err := decodeHist(v)
				if err != nil {
					return fmt.Errorf("history %d: %w", rev, err)
				}
				if e.prevRev > 0 {
					doomed = append(doomed, e.prevRev) // replaced by rev
				}
				if e.typ == histDeleted {
					doomed = append(doomed, rev)
				}
				last = rev
				n++
			}
			for _, r := range doomed {
				if err := hist.Delete(revKey(r)); err != nil {
					return err
				}
			}
			if n == 0 {
				return nil
			}
			newCompacted = last
			return putRev(meta, metaCompacted, last)
		})
		if err != nil {
			if errors.Is(err, bolt.ErrDatabaseNotOpen) {
				return 0, ErrClosed
			}
			return d.compacted.Load(), fmt.Errorf("compact history: %w", err)
		}
		if n == 0 {
			if removed > 0 {
				d.log.Debug("store: compacted history", "removed", removed, "compacted", d.compacted.Load())
			}
			return d.compacted.Load(), nil
		}
		d.compacted.Store(newCompacted)
		removed += n
	}
}
