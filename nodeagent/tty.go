package nodeagent

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// openPTY allocates a pseudo-terminal pair: the master the agent relays, the
// slave the command gets as its terminal.
func openPTY() (master, slave *os.File, err error) {
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return nil, nil, err
	}
	unlock := 0
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, unlock); err != nil {
		m.Close()
		return nil, nil, fmt.Errorf("unlockpt: %w", err)
	}
	n, err := unix.IoctlGetInt(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		m.Close()
		return nil, nil, fmt.Errorf("ptsname: %w", err)
	}
	s, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		m.Close()
		return nil, nil, err
	}
	return m, s, nil
}

// termSize is the resize stream's message.
type termSize struct {
	Width  uint16 `json:"Width"`
	Height uint16 `json:"Height"`
}

func setSize(f *os.File, sz termSize) {
	ws := &unix.Winsize{Row: sz.Height, Col: sz.Width}
	_, _, _ = syscall.Syscall(syscall.SYS_IOCTL, f.Fd(), uintptr(unix.TIOCSWINSZ), uintptr(unsafe.Pointer(ws)))
}

// runTTY runs cmd on a fresh terminal wired to the streams; resize events
// come as JSON objects on resize.
func runTTY(c *containerRun, cmd *exec.Cmd, s *execStreams, resize io.Reader) (int, error) {
	master, slave, err := openPTY()
	if err != nil {
		return -1, err
	}
	defer master.Close()
	cmd.Stdin, cmd.Stdout, cmd.Stderr = slave, slave, slave
	cmd.SysProcAttr.Setpgid = false // a new session leads its own group
	cmd.SysProcAttr.Setsid = true
	cmd.SysProcAttr.Setctty = true
	cmd.SysProcAttr.Ctty = 0
	if resize != nil {
		go func() {
			dec := json.NewDecoder(resize)
			for {
				var sz termSize
				if err := dec.Decode(&sz); err != nil {
					return
				}
				setSize(master, sz)
			}
		}()
	}
	err = c.startIn(cmd)
	slave.Close()
	if err != nil {
		return -1, err
	}
	if s.stdin != nil {
		go func() { _, _ = io.Copy(master, s.stdin) }()
	}
	outDone := make(chan struct{})
	go func() {
		if s.stdout != nil {
			_, _ = io.Copy(s.stdout, master) // ends with EIO once the terminal has no users
		}
		close(outDone)
	}()
	werr := cmd.Wait()
	<-outDone
	code := exitCode(cmd.ProcessState, werr)
	if _, ok := werr.(*exec.ExitError); ok || werr == nil {
		return code, nil
	}
	return code, werr
}
