package nodeagent

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Container logs live in DataDir/pods/<uid>/<container>/<instance>.log, one
// file per run (instance = restart count), a line each:
//
//	<RFC3339Nano time> <stdout|stderr> <text>
//
// A file is capped at logMaxBytes: past it the current file is moved to
// <instance>.log.1 (replacing an older one) and a new one begun. Only the
// current and previous instance are kept, so a container's logs are bounded
// by 4*logMaxBytes.
const logMaxBytes = 5 << 20

func logDir(dataDir, uid, container string) string {
	return filepath.Join(dataDir, "pods", uid, container)
}

func logPath(dir string, instance int32) string {
	return filepath.Join(dir, strconv.Itoa(int(instance))+".log")
}

// logWriter appends timestamped lines from a container's streams.
type logWriter struct {
	mu   sync.Mutex
	path string
	f    *os.File
	size int64
}

func openLog(dir string, instance int32) (*logWriter, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	// Keep only the previous instance.
	if instance >= 2 {
		old := logPath(dir, instance-2)
		_ = os.Remove(old)
		_ = os.Remove(old + ".1")
	}
	p := logPath(dir, instance)
	f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	st, _ := f.Stat()
	return &logWriter{path: p, f: f, size: st.Size()}, nil
}

func (w *logWriter) line(stream string, text []byte) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.f == nil {
		return
	}
	if w.size > logMaxBytes {
		_ = w.f.Close()
		_ = os.Rename(w.path, w.path+".1")
		f, err := os.OpenFile(w.path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
		if err != nil {
			w.f = nil
			return
		}
		w.f, w.size = f, 0
	}
	var b bytes.Buffer
	b.WriteString(time.Now().UTC().Format(time.RFC3339Nano))
	b.WriteByte(' ')
	b.WriteString(stream)
	b.WriteByte(' ')
	b.Write(text)
	b.WriteByte('\n')
	n, _ := w.f.Write(b.Bytes())
	w.size += int64(n)
}

// pump copies one stream into the log, a line at a time.
func (w *logWriter) pump(stream string, r io.Reader, done func()) {
	defer done()
	br := bufio.NewReaderSize(r, 64<<10)
	for {
		l, err := br.ReadSlice('\n')
		if len(l) > 0 {
			w.line(stream, bytes.TrimRight(l, "\n"))
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		if err != nil {
			return
		}
	}
}

func (w *logWriter) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.f == nil {
		return nil
	}
	err := w.f.Close()
	w.f = nil
	return err
}

// LogOptions are containerLogs' query parameters.
type LogOptions struct {
	Follow     bool
	TailLines  *int64
	Timestamps bool
	Since      time.Time
	LimitBytes *int64
}

// logRecord is one parsed line.
type logRecord struct {
	ts   string
	text string
}

func parseLogLine(l string) (logRecord, bool) {
	ts, rest, ok := strings.Cut(l, " ")
	if !ok {
		return logRecord{}, false
	}
	_, text, ok := strings.Cut(rest, " ")
	if !ok {
		return logRecord{}, false
	}
	return logRecord{ts: ts, text: text}, true
}

// formatLog renders records for a client; pure.
func formatLog(recs []logRecord, o LogOptions) []byte {
	if o.TailLines != nil && int64(len(recs)) > *o.TailLines {
		recs = recs[int64(len(recs))-*o.TailLines:]
	}
	var b bytes.Buffer
	for _, r := range recs {
		if !o.Since.IsZero() {
			if t, err := time.Parse(time.RFC3339Nano, r.ts); err == nil && t.Before(o.Since) {
				continue
			}
		}
		if o.Timestamps {
			b.WriteString(r.ts)
			b.WriteByte(' ')
		}
		b.WriteString(r.text)
		b.WriteByte('\n')
	}
	return b.Bytes()
}

func readRecords(path string) ([]logRecord, os.FileInfo, int64) {
	var recs []logRecord
	parse := func(b []byte) {
		for _, l := range strings.Split(strings.TrimSuffix(string(b), "\n"), "\n") {
			if r, ok := parseLogLine(l); ok {
				recs = append(recs, r)
			}
		}
	}
	// The current file is opened first and read through that descriptor:
	// the writer may rotate or append at any moment, and a follower must go
	// on from exactly what was read, in exactly that file.
	cur, err := os.Open(path)
	var st os.FileInfo
	if err == nil {
		defer cur.Close()
		st, _ = cur.Stat()
	}
	if old, err := os.Open(path + ".1"); err == nil {
		// Skipped when it is the file just opened, rotated meanwhile.
		if ost, _ := old.Stat(); st == nil || ost == nil || !os.SameFile(ost, st) {
			b, _ := io.ReadAll(old)
			parse(b)
		}
		old.Close()
	}
	if cur == nil {
		return recs, nil, 0
	}
	b, _ := io.ReadAll(cur)
	// A line still being written is left for the follower to read whole.
	if i := bytes.LastIndexByte(b, '\n'); i >= 0 {
		b = b[:i+1]
	} else {
		b = nil
	}
	parse(b)
	return recs, st, int64(len(b))
}

// streamLog writes a log file to w and, when following, keeps writing new
// lines until ctx ends or stillRunning says the instance has ended.
func streamLog(ctx context.Context, w io.Writer, path string, o LogOptions, stillRunning func() bool) error {
	recs, following, off := readRecords(path)
	out := formatLog(recs, o)
	var written int64
	write := func(b []byte) (bool, error) {
		if o.LimitBytes != nil && written+int64(len(b)) > *o.LimitBytes {
			b = b[:*o.LimitBytes-written]
		}
		n, err := w.Write(b)
		written += int64(n)
		if f, ok := w.(interface{ Flush() }); ok {
			f.Flush()
		}
		return o.LimitBytes != nil && written >= *o.LimitBytes, err
	}
	if stop, err := write(out); err != nil || stop || !o.Follow {
		return err
	}
	var partial string
	// emit writes the complete lines of b (after what was left over).
	emit := func(b []byte) (bool, error) {
		lines := strings.Split(partial+string(b), "\n")
		partial = lines[len(lines)-1]
		var rs []logRecord
		for _, l := range lines[:len(lines)-1] {
			if r, ok := parseLogLine(l); ok {
				rs = append(rs, r)
			}
		}
		if len(rs) == 0 {
			return false, nil
		}
		oo := o
		oo.TailLines = nil
		return write(formatLog(rs, oo))
	}
	// following is the file read so far; when path names another file,
	// the writer rotated it to path.1, whose unread tail comes first.
	for {
		// Asked before reading: once the instance has ended, this pass
		// reads what it wrote last, and then the stream ends.
		running := stillRunning()
		f, err := os.Open(path)
		if err == nil {
			st, _ := f.Stat()
			if st != nil && following != nil && !os.SameFile(st, following) {
				if old, err := os.Open(path + ".1"); err == nil {
					if ost, _ := old.Stat(); ost != nil && os.SameFile(ost, following) {
						if _, err := old.Seek(off, io.SeekStart); err == nil {
							b, _ := io.ReadAll(old)
							if stop, err := emit(b); err != nil || stop {
								old.Close()
								f.Close()
								return err
							}
						}
					}
					old.Close()
				}
				off, partial = 0, ""
			}
			if st != nil {
				following = st
			}
			if _, err := f.Seek(off, io.SeekStart); err == nil {
				b, _ := io.ReadAll(f)
				off += int64(len(b))
				if stop, err := emit(b); err != nil || stop {
					f.Close()
					return err
				}
			}
			f.Close()
		}
		if !running {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func errContainerWaiting(container, pod, reason string) error {
	return fmt.Errorf("container %q in pod %q is waiting to start: %s", container, pod, reason)
}
