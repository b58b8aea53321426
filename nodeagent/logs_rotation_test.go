package nodeagent

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
)

// filler pads each line so that a few thousand lines cross logMaxBytes.
var filler = strings.Repeat("x", 1000)

func seqLine(i int) []byte { return []byte(fmt.Sprintf("seq=%07d %s", i, filler)) }

// seqs parses the sequence numbers of the lines a log reader produced.
func seqs(t *testing.T, out string) []int {
	t.Helper()
	var got []int
	for _, l := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		f := strings.Fields(l)
		if len(f) == 0 || !strings.HasPrefix(f[0], "seq=") {
			t.Fatalf("unexpected log line %q", l)
		}
		n, err := strconv.Atoi(strings.TrimPrefix(f[0], "seq="))
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, n)
	}
	return got
}

// TestLogRotationIsBounded: a chatty container's log is cut at logMaxBytes
// into <instance>.log and <instance>.log.1, the newest lines stay readable
// in order, and only the current and previous instances are kept.
func TestLogRotationIsBounded(t *testing.T) {
	dir := t.TempDir()
	w, err := openLog(dir, 0)
	if err != nil {
		t.Fatal(err)
	}
	n := int(3*logMaxBytes) / len(seqLine(0))
	for i := 0; i < n; i++ {
		w.line("stdout", seqLine(i))
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	entries, _ := os.ReadDir(dir)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
		info, _ := e.Info()
		if max := int64(logMaxBytes) + 2*int64(len(seqLine(0))); info.Size() > max {
			t.Errorf("%s is %d bytes, over the cap %d", e.Name(), info.Size(), max)
		}
	}
	sort.Strings(names)
	if strings.Join(names, " ") != "0.log 0.log.1" {
		t.Fatalf("files %v, want 0.log and 0.log.1", names)
	}
	recs, _, _ := readRecords(logPath(dir, 0))
	got := seqs(t, string(formatLog(recs, LogOptions{})))
	if got[len(got)-1] != n-1 {
		t.Errorf("last line %d, want %d", got[len(got)-1], n-1)
	}
	for i := 1; i < len(got); i++ {
		if got[i] != got[i-1]+1 {
			t.Fatalf("lines out of order or missing at %d: %d after %d", i, got[i], got[i-1])
		}
	}
	if len(got) < int(logMaxBytes)/len(seqLine(0)) {
		t.Errorf("only %d lines kept, want at least one full file", len(got))
	}

	for instance := int32(1); instance <= 2; instance++ {
		w, err := openLog(dir, instance)
		if err != nil {
			t.Fatal(err)
		}
		w.line("stdout", []byte("hello"))
		w.Close()
	}
	for _, gone := range []string{"0.log", "0.log.1"} {
		if _, err := os.Stat(filepath.Join(dir, gone)); !os.IsNotExist(err) {
			t.Errorf("%s kept after two restarts (%v)", gone, err)
		}
	}
	for _, kept := range []string{"1.log", "2.log"} {
		if _, err := os.Stat(filepath.Join(dir, kept)); err != nil {
			t.Errorf("%s: %v", kept, err)
		}
	}
}

// TestFollowAcrossRotation: `kubectl logs -f` sees every line exactly once
// and in order when the file rotates between two of the follower's polls.
func TestFollowAcrossRotation(t *testing.T) {
	dir := t.TempDir()
	w, err := openLog(dir, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	for i := 0; i < 10; i++ {
		w.line("stdout", seqLine(i))
	}
	var running atomic.Bool
	running.Store(true)
	var out bytes.Buffer
	done := make(chan error, 1)
	go func() {
		done <- streamLog(context.Background(), &out, logPath(dir, 0), LogOptions{Follow: true}, running.Load)
	}()
	// Far more than logMaxBytes at once: the file rotates long before the
	// follower's next poll.
	n := int(logMaxBytes)/len(seqLine(0)) + 2000
	for i := 10; i < n; i++ {
		w.line("stdout", seqLine(i))
	}
	running.Store(false)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	got := seqs(t, out.String())
	if len(got) != n {
		t.Fatalf("followed %d lines, want %d", len(got), n)
	}
	for i, s := range got {
		if s != i {
			t.Fatalf("line %d is seq %d", i, s)
		}
	}
}
