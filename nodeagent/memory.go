package nodeagent

import (
	"bufio"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// releaseStartupPages drops this process's mappings of read-only pages of its
// own executable (code and constant data), which package initialisation and
// start-up touched but an idle agent mostly never uses again. The pages stay
// in the page cache (shared by every agent and `kubelab up`, which run the
// same binary); the agent maps back, by minor faults, only what it really
// uses. Only clean file pages are dropped: writable mappings, and read-only
// ones holding private (anonymous) pages, such as a RELRO segment the dynamic
// loader relocated, are left alone, since dropping them would lose data.
// Returns the bytes unmapped.
func releaseStartupPages() int64 {
	exe, err := os.Executable()
	if err != nil {
		return 0
	}
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		return 0
	}
	defer f.Close()
	type mapping struct {
		start, end uint64
		anon       bool
	}
	var cands []mapping
	var cur *mapping
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) == 0 {
			continue
		}
		if strings.Contains(fs[0], "-") && !strings.HasSuffix(fs[0], ":") {
			// A mapping header: start-end perms offset dev inode path.
			cur = nil
			if len(fs) < 6 || fs[5] != exe || (fs[1] != "r-xp" && fs[1] != "r--p") {
				continue
			}
			lo, hi, _ := strings.Cut(fs[0], "-")
			start, err1 := strconv.ParseUint(lo, 16, 64)
			end, err2 := strconv.ParseUint(hi, 16, 64)
			if err1 != nil || err2 != nil || end <= start {
				continue
			}
			cands = append(cands, mapping{start: start, end: end})
			cur = &cands[len(cands)-1]
			continue
		}
		if cur != nil && fs[0] == "Anonymous:" && len(fs) >= 2 && fs[1] != "0" {
			cur.anon = true
		}
	}
	var total int64
	for _, m := range cands {
		if m.anon {
			continue
		}
		if _, _, e := unix.Syscall(unix.SYS_MADVISE, uintptr(m.start), uintptr(m.end-m.start), unix.MADV_DONTNEED); e == 0 {
			total += int64(m.end - m.start)
		}
	}
	return total
}
