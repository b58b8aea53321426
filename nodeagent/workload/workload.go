// Package workload is kubelab's built-in container: what runs for any
// container whose command is not a host executable (images are never
// pulled). It answers HTTP on each declared port with a page naming its pod
// and node, echoes TCP or UDP on ports declared as such, and logs one line
// per request to stdout, which becomes the container's log.
package workload

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Port is one listener.
type Port struct {
	Number   int
	Protocol string // TCP or UDP
	Name     string
}

// Kind says what a port serves: "http", "tcp-echo" or "udp-echo".
func (p Port) Kind() string {
	if strings.EqualFold(p.Protocol, "UDP") {
		return "udp-echo"
	}
	if strings.Contains(p.Name, "echo") || strings.HasPrefix(p.Name, "tcp") {
		return "tcp-echo"
	}
	return "http"
}

// Config describes one workload process.
type Config struct {
	Pod   string // namespace/name
	Node  string
	Ports []Port
	// UID, when >= 0 and the process is root, is switched to after binding,
	// so the workload serves low ports yet runs unprivileged.
	UID int
	// ParentPID, when set, is the agent that started the workload: the
	// parent-death signal is re-armed after the user switch (which clears
	// it), so the workload never outlives that agent.
	ParentPID int
	Out       io.Writer // request log; stdout when nil
}

// Page is the HTTP answer.
func Page(pod, node string) string { return fmt.Sprintf("kubelab: pod %s on node %s\n", pod, node) }

// ParsePort reads "80", "80/TCP" or "5353/UDP/dns".
func ParsePort(s string) (Port, error) {
	parts := strings.SplitN(s, "/", 3)
	n, err := strconv.Atoi(parts[0])
	if err != nil || n < 1 || n > 65535 {
		return Port{}, fmt.Errorf("bad port %q", s)
	}
	p := Port{Number: n, Protocol: "TCP"}
	if len(parts) > 1 && parts[1] != "" {
		p.Protocol = strings.ToUpper(parts[1])
	}
	if len(parts) > 2 {
		p.Name = parts[2]
	}
	if p.Protocol != "TCP" && p.Protocol != "UDP" {
		return Port{}, fmt.Errorf("bad protocol in %q", s)
	}
	return p, nil
}

// String is the inverse of ParsePort.
func (p Port) String() string { return fmt.Sprintf("%d/%s/%s", p.Number, p.Protocol, p.Name) }

// Main is the hidden `kubelab workload` command: flags --pod, --node,
// --port (repeatable, ParsePort syntax) and --uid; it runs until SIGTERM.
func Main(args []string) error {
	fs := flag.NewFlagSet("workload", flag.ContinueOnError)
	var cfg Config
	var ports multi
	fs.StringVar(&cfg.Pod, "pod", "", "namespace/name of the pod")
	fs.StringVar(&cfg.Node, "node", "", "node name")
	fs.IntVar(&cfg.UID, "uid", 65534, "user to switch to after binding (-1: stay)")
	fs.IntVar(&cfg.ParentPID, "parent-pid", 0, "exit when this parent process (the node agent) dies")
	fs.Var(&ports, "port", "port to serve: N[/TCP|UDP[/name]] (repeatable; default 80)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	for _, s := range ports {
		p, err := ParsePort(s)
		if err != nil {
			return err
		}
		cfg.Ports = append(cfg.Ports, p)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	return Run(ctx, cfg)
}

type multi []string

func (m *multi) String() string     { return strings.Join(*m, ",") }
func (m *multi) Set(s string) error { *m = append(*m, s); return nil }

// Run serves until ctx ends.
func Run(ctx context.Context, cfg Config) error {
	if len(cfg.Ports) == 0 {
		cfg.Ports = []Port{{Number: 80, Protocol: "TCP"}}
	}
	out := cfg.Out
	if out == nil {
		out = os.Stdout
	}
	lg := &logger{w: out}
	var closers []io.Closer
	var serve []func()
	for _, p := range cfg.Ports {
		p := p
		switch p.Kind() {
		case "udp-echo":
			c, err := net.ListenPacket("udp", fmt.Sprintf(":%d", p.Number))
			if err != nil {
				return fmt.Errorf("listen udp %d: %w", p.Number, err)
			}
			closers = append(closers, c)
			serve = append(serve, func() { udpEcho(c, lg) })
		case "tcp-echo":
			l, err := net.Listen("tcp", fmt.Sprintf(":%d", p.Number))
			if err != nil {
				return fmt.Errorf("listen tcp %d: %w", p.Number, err)
			}
			closers = append(closers, l)
			serve = append(serve, func() { tcpEcho(l, lg) })
		default:
			l, err := net.Listen("tcp", fmt.Sprintf(":%d", p.Number))
			if err != nil {
				return fmt.Errorf("listen tcp %d: %w", p.Number, err)
			}
			srv := &http.Server{Handler: handler(cfg, lg), ReadHeaderTimeout: 10 * time.Second}
			closers = append(closers, srv)
			serve = append(serve, func() { _ = srv.Serve(l) })
		}
	}
	if cfg.UID >= 0 && os.Getuid() == 0 {
		if err := dropTo(cfg.UID); err != nil {
			return err
		}
	}
	if cfg.ParentPID > 0 {
		if err := unix.Prctl(unix.PR_SET_PDEATHSIG, uintptr(syscall.SIGKILL), 0, 0, 0); err != nil {
			return fmt.Errorf("parent-death signal: %w", err)
		}
		if os.Getppid() != cfg.ParentPID { // the parent died before the signal was armed
			return errors.New("parent exited")
		}
	}
	lg.printf("kubelab workload: pod %s on node %s serving %v", cfg.Pod, cfg.Node, cfg.Ports)
	var wg sync.WaitGroup
	for _, s := range serve {
		wg.Add(1)
		go func() { defer wg.Done(); s() }()
	}
	<-ctx.Done()
	for _, c := range closers {
		_ = c.Close()
	}
	wg.Wait()
	return nil
}

func dropTo(uid int) error {
	if err := syscall.Setgroups(nil); err != nil {
		return fmt.Errorf("setgroups: %w", err)
	}
	if err := syscall.Setgid(uid); err != nil {
		return fmt.Errorf("setgid: %w", err)
	}
	if err := syscall.Setuid(uid); err != nil {
		return fmt.Errorf("setuid: %w", err)
	}
	return nil
}

type logger struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *logger) printf(format string, a ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	fmt.Fprintf(l.w, format+"\n", a...)
}

func handler(cfg Config, lg *logger) http.Handler {
	page := Page(cfg.Pod, cfg.Node)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		lg.printf("%s %s %s %s", r.RemoteAddr, r.Method, r.URL.RequestURI(), r.UserAgent())
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = io.WriteString(w, page)
	})
}

func tcpEcho(l net.Listener, lg *logger) {
	for {
		c, err := l.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		lg.printf("%s tcp-echo %s", c.RemoteAddr(), l.Addr())
		go func() { defer c.Close(); _, _ = io.Copy(c, c) }()
	}
}

func udpEcho(c net.PacketConn, lg *logger) {
	buf := make([]byte, 65535)
	for {
		n, addr, err := c.ReadFrom(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		lg.printf("%s udp-echo %d bytes", addr, n)
		_, _ = c.WriteTo(buf[:n], addr)
	}
}
