package store

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"
)

// queued is the number of writes waiting for the committer.
func (d *DB) queued() int {
	d.qmu.Lock()
	defer d.qmu.Unlock()
	return len(d.queue)
}

func waitQueued(t *testing.T, d *DB, n int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for d.queued() < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d writes queued, want %d", d.queued(), n)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestBatchWaitGroupsWrites: once a commit grouped four writes, the
// committer holds the next commit until four are queued again, and they
// share one commit.
func TestBatchWaitGroupsWrites(t *testing.T) {
	d, _ := openTest(t, Options{BatchWait: time.Hour})
	mustCreate(t, d, "/k/first")
	d.qmu.Lock()
	d.target = 4 // as after a commit of four
	d.qmu.Unlock()
	before := d.Stats()
	var wg sync.WaitGroup
	create := func(i int) {
		defer wg.Done()
		if _, err := d.Create(context.Background(), fmt.Sprintf("/k/%d", i), "u", []byte("v")); err != nil {
			t.Error(err)
		}
	}
	for i := 0; i < 3; i++ {
		wg.Add(1)
		go create(i)
	}
	waitQueued(t, d, 3)
	if got := d.Stats().Commits - before.Commits; got != 0 {
		t.Fatalf("%d commits with three of four writes queued, want 0", got)
	}
	wg.Add(1)
	go create(3)
	wg.Wait()
	st := d.Stats()
	if c, w := st.Commits-before.Commits, st.Writes-before.Writes; c != 1 || w != 4 {
		t.Fatalf("%d commits of %d writes, want 1 of 4", c, w)
	}
}

// TestBatchWaitLoneWriter: a writer on its own never waits for company
// (with a BatchWait of an hour, a hundred sequential writes would
// otherwise never finish), also after a burst of concurrent writes.
func TestBatchWaitLoneWriter(t *testing.T) {
	d, _ := openTest(t, Options{BatchWait: time.Hour})
	for i := 0; i < 100; i++ {
		mustCreate(t, d, fmt.Sprintf("/seq/%d", i))
	}
	if st := d.Stats(); st.Commits != st.Writes {
		t.Fatalf("sequential writes: %d commits for %d writes", st.Commits, st.Writes)
	}

	d2, _ := openTest(t, Options{BatchWait: 50 * time.Millisecond})
	var wg sync.WaitGroup
	for i := 0; i < 16; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			mustCreate(t, d2, fmt.Sprintf("/burst/%d", i))
		}()
	}
	wg.Wait()
	// The first write after the burst waits at most BatchWait; later ones
	// none (the wait resets the target to one).
	for i := 0; i < 100; i++ {
		mustCreate(t, d2, fmt.Sprintf("/after/%d", i))
	}
}

// TestBatchWaitClose: Close commits queued writes at once instead of
// waiting for the batch to fill.
func TestBatchWaitClose(t *testing.T) {
	d, _ := openTest(t, Options{BatchWait: time.Hour})
	mustCreate(t, d, "/k/first")
	d.qmu.Lock()
	d.target = 10
	d.qmu.Unlock()
	errs := make(chan error, 2)
	for i := 0; i < 2; i++ {
		go func() {
			_, err := d.Create(context.Background(), fmt.Sprintf("/k/%d", i), "u", []byte("v"))
			errs <- err
		}()
	}
	waitQueued(t, d, 2)
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		if err := <-errs; err != nil {
			t.Errorf("queued write: %v", err)
		}
	}
}
