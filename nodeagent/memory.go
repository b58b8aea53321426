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
// uses. Writable mappings are never touched: dropping them would lose data.
// Returns the bytes unmapped.
func releaseStartupPages() int64 {
	exe, err := os.Executable()
	if err != nil {
		return 0
	}
	f, err := os.Open("/proc/self/maps")
	if err != nil {
		return 0
	}
	defer f.Close()
	var total int64
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// start-end perms offset dev inode path
		fs := strings.Fields(sc.Text())
		if len(fs) < 6 || fs[5] != exe || (fs[1] != "r-xp" && fs[1] != "r--p") {
			continue
		}
		lo, hi, ok := strings.Cut(fs[0], "-")
		if !ok {
			continue
		}
		start, err1 := strconv.ParseUint(lo, 16, 64)
		end, err2 := strconv.ParseUint(hi, 16, 64)
		if err1 != nil || err2 != nil || end <= start {
			continue
		}
		if _, _, e := unix.Syscall(unix.SYS_MADVISE, uintptr(start), uintptr(end-start), unix.MADV_DONTNEED); e == 0 {
			total += int64(end - start)
		}
	}
	return total
}
