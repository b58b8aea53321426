package store

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// The kill test re-executes this test binary as a writer child: TestMain sees
// the environment variable and runs runKillChild instead of the tests.
const killChildEnv = "KUBELAB_STORE_KILL_CHILD"

func TestMain(m *testing.M) {
	if spec := os.Getenv(killChildEnv); spec != "" {
		runKillChild(spec)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// runKillChild writes forever from 16 goroutines (creates, and updates of a
// per-goroutine counter) and prints one line per acknowledged write:
// "C key rev" or "U key value rev". Each line is one write(2) to a pipe, so
// a line the parent reads was printed whole before the kill.
func runKillChild(spec string) {
	path, round, _ := strings.Cut(spec, "|")
	d, err := Open(path, Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, "child open:", err)
		os.Exit(2)
	}
	var mu sync.Mutex
	emit := func(s string) {
		mu.Lock()
		os.Stdout.WriteString(s)
		mu.Unlock()
	}
	val := make([]byte, 2000)
	for i := range val {
		val[i] = byte('a' + i%26)
	}
	ctx := context.Background()
	var wg sync.WaitGroup
	for g := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctr := fmt.Sprintf("/kill/ctr/%s/%d", round, g)
			if _, err := d.Create(ctx, ctr, "u", []byte("0")); err != nil {
				fmt.Fprintln(os.Stderr, "child:", err)
				os.Exit(2)
			}
			for i := 0; ; i++ {
				if i%4 == 3 {
					o, err := d.Update(ctx, ctr, []byte(strconv.Itoa(i)), Preconditions{})
					if err != nil {
						fmt.Fprintln(os.Stderr, "child:", err)
						os.Exit(2)
					}
					emit(fmt.Sprintf("U %s %d %d\n", ctr, i, o.Revision))
					continue
				}
				key := fmt.Sprintf("/kill/%s/%d/%d", round, g, i)
				o, err := d.Create(ctx, key, "u", val)
				if err != nil {
					fmt.Fprintln(os.Stderr, "child:", err)
					os.Exit(2)
				}
				emit(fmt.Sprintf("C %s %d\n", key, o.Revision))
			}
		}()
	}
	wg.Wait()
}

func TestKillMidWriteKeepsAcknowledgedWrites(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "store.db")
	var maxRev int64
	for round := range 3 {
		cmd := exec.Command(exe, "-test.run=^$")
		cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%s|%d", killChildEnv, path, round))
		cmd.Stderr = os.Stderr
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		killAfter := 300 + rand.IntN(1500)
		created := map[string]int64{}
		counters := map[string]int{} // highest acknowledged value
		lines := 0
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			switch {
			case len(f) == 3 && f[0] == "C":
				rev, _ := strconv.ParseInt(f[2], 10, 64)
				created[f[1]] = rev
				maxRev = max(maxRev, rev)
			case len(f) == 4 && f[0] == "U":
				v, _ := strconv.Atoi(f[2])
				rev, _ := strconv.ParseInt(f[3], 10, 64)
				counters[f[1]] = max(counters[f[1]], v)
				maxRev = max(maxRev, rev)
			default:
				t.Fatalf("bad child line %q", sc.Text())
			}
			lines++
			if lines == killAfter {
				// Keep reading afterwards: lines already in the pipe were
				// acknowledged before the kill.
				cmd.Process.Signal(syscall.SIGKILL)
			}
		}
		err = cmd.Wait()
		if lines < killAfter {
			t.Fatalf("round %d: child ended after %d lines: %v", round, lines, err)
		}
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
			t.Fatalf("round %d: child was not killed: %v", round, err)
		}
		t.Logf("round %d: killed after %d acknowledged writes (read %d lines)", round, killAfter, lines)

		// Raw consistency first, then through the store.
		bdb, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 5 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		checkConsistent(t, bdb)
		bdb.Close()

		d, err := Open(path, Options{})
		if err != nil {
			t.Fatal(err)
		}
		if d.CurrentRevision() < maxRev {
			t.Fatalf("round %d: revision %d < acknowledged %d", round, d.CurrentRevision(), maxRev)
		}
		ctx := context.Background()
		for k, rev := range created {
			o, err := d.Get(ctx, k)
			if err != nil {
				t.Fatalf("round %d: acknowledged %s: %v", round, k, err)
			}
			if o.Revision != rev || len(o.Value) != 2000 {
				t.Fatalf("round %d: %s at %d, acknowledged at %d", round, k, o.Revision, rev)
			}
		}
		for k, v := range counters {
			o, err := d.Get(ctx, k)
			if err != nil {
				t.Fatalf("round %d: counter %s: %v", round, k, err)
			}
			got, _ := strconv.Atoi(string(o.Value))
			if got < v {
				t.Fatalf("round %d: counter %s = %d, acknowledged %d", round, k, got, v)
			}
		}
		// The history is usable after a crash: replay the acknowledged tail.
		w, err := d.Watch(ctx, WatchOptions{Revision: max(maxRev-50, 0)})
		if err != nil {
			t.Fatal(err)
		}
		for want := max(maxRev-50, 0) + 1; want <= maxRev; want++ {
			ev := <-w.Events()
			if ev.Revision != want {
				t.Fatalf("round %d: replayed %d, want %d (%v)", round, ev.Revision, want, w.Err())
			}
		}
		w.Stop()
		if err := d.Close(); err != nil {
			t.Fatal(err)
		}
	}
}
