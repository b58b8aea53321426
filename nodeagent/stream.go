package nodeagent

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"strconv"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/streaming/pkg/httpstream"
	"k8s.io/streaming/pkg/httpstream/spdy"
	"k8s.io/streaming/pkg/httpstream/wsstream"
)

// Remote command stream protocols, newest first. v5 (websocket only) adds the
// client's stdin half-close, which wsstream handles.
var (
	wsExecProtocols   = []string{"v5.channel.k8s.io", "v4.channel.k8s.io"}
	spdyExecProtocols = []string{"v4.channel.k8s.io", "v3.channel.k8s.io", "v2.channel.k8s.io", "channel.k8s.io"}
)

const streamCreationTimeout = 30 * time.Second

// execStreams are the client's streams of one exec session.
type execStreams struct {
	stdin          io.ReadCloser
	stdout, stderr io.WriteCloser
	errW           io.WriteCloser
	resize         io.Reader
	statusJSON     bool // v4+: the error stream carries a metav1.Status
	close          func()
}

func (h *kubeletAPI) exec(w http.ResponseWriter, r *http.Request) {
	_, c, ok := h.lookup(w, r)
	if !ok {
		return
	}
	q := r.URL.Query()
	argv := q["command"]
	if len(argv) == 0 {
		writeStatus(w, http.StatusBadRequest, metav1.StatusReasonBadRequest, "you must specify at least 1 command")
		return
	}
	wantIn, wantOut, wantErr, tty := boolParam(q.Get("stdin")), boolParam(q.Get("stdout")), boolParam(q.Get("stderr")), boolParam(q.Get("tty"))
	if tty {
		wantErr = false // a terminal merges stderr into stdout
	}
	var s *execStreams
	var err error
	if wsstream.IsWebSocketRequest(r) {
		s, err = wsExec(w, r, wantIn, wantOut, wantErr, tty)
	} else if httpstream.IsUpgradeRequest(r) {
		s, err = spdyExec(w, r, wantIn, wantOut, wantErr, tty)
	} else {
		writeStatus(w, http.StatusBadRequest, metav1.StatusReasonBadRequest, "exec needs a websocket or SPDY upgrade")
		return
	}
	if err != nil {
		return // the upgrade code has answered
	}
	defer s.close()
	cmd, err := c.execCmd(argv)
	if err != nil {
		s.fail(err, -1)
		return
	}
	var code int
	if tty {
		code, err = runTTY(c, cmd, s, s.resize)
	} else {
		code, err = runExec(c, cmd, s, tty)
	}
	s.fail(err, code)
}

// runExec runs cmd in the container's namespace wired to the streams.
func runExec(c *containerRun, cmd *exec.Cmd, s *execStreams, tty bool) (int, error) {
	if s.stdout != nil {
		cmd.Stdout = s.stdout
	}
	if s.stderr != nil {
		cmd.Stderr = s.stderr
	} else if tty && s.stdout != nil {
		cmd.Stderr = s.stdout
	}
	var in io.WriteCloser
	if s.stdin != nil {
		p, err := cmd.StdinPipe()
		if err != nil {
			return -1, err
		}
		in = p
	}
	cmd.WaitDelay = 2 * time.Second
	if err := c.startIn(cmd); err != nil {
		return -1, err
	}
	if in != nil {
		go func() { _, _ = io.Copy(in, s.stdin); in.Close() }()
	}
	err := cmd.Wait()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return exitCode(cmd.ProcessState, err), nil
	}
	return exitCode(cmd.ProcessState, err), err
}

// fail reports the outcome on the error stream: nothing/Success for exit 0,
// NonZeroExitCode with the code, or the error text.
func (s *execStreams) fail(err error, code int) {
	if s.errW == nil {
		return
	}
	st := metav1.Status{Status: metav1.StatusSuccess}
	switch {
	case err != nil:
		st = metav1.Status{Status: metav1.StatusFailure, Reason: metav1.StatusReasonInternalError, Message: err.Error()}
	case code != 0:
		st = metav1.Status{Status: metav1.StatusFailure, Reason: "NonZeroExitCode",
			Message: fmt.Sprintf("command terminated with non-zero exit code: error executing command, exit status %d", code),
			Details: &metav1.StatusDetails{Causes: []metav1.StatusCause{{Type: "ExitCode", Message: strconv.Itoa(code)}}}}
	}
	if s.statusJSON {
		b, _ := json.Marshal(st)
		_, _ = s.errW.Write(b)
	} else if st.Status != metav1.StatusSuccess {
		_, _ = s.errW.Write([]byte(st.Message))
	}
}

func wsExec(w http.ResponseWriter, r *http.Request, in, out, errs, tty bool) (*execStreams, error) {
	ch := func(want bool, t wsstream.ChannelType) wsstream.ChannelType {
		if want {
			return t
		}
		return wsstream.IgnoreChannel
	}
	channels := []wsstream.ChannelType{ch(in, wsstream.ReadChannel), ch(out, wsstream.WriteChannel),
		ch(errs, wsstream.WriteChannel), wsstream.WriteChannel, ch(tty, wsstream.ReadChannel)}
	protos := map[string]wsstream.ChannelProtocolConfig{}
	for _, p := range wsExecProtocols {
		protos[p] = wsstream.ChannelProtocolConfig{Binary: true, Channels: channels}
	}
	conn := wsstream.NewConn(protos)
	conn.SetIdleTimeout(4 * time.Hour)
	_, rw, err := conn.Open(w, r)
	if err != nil {
		return nil, err
	}
	s := &execStreams{errW: rw[3], statusJSON: true, close: func() { _ = conn.Close() }}
	if in {
		s.stdin = rw[0]
	}
	if out {
		s.stdout = rw[1]
	}
	if errs {
		s.stderr = rw[2]
	}
	if tty {
		s.resize = rw[4]
	}
	return s, nil
}

func spdyExec(w http.ResponseWriter, r *http.Request, in, out, errs, tty bool) (*execStreams, error) {
	proto, err := httpstream.Handshake(r, w, spdyExecProtocols)
	if err != nil {
		writeStatus(w, http.StatusForbidden, metav1.StatusReasonForbidden, err.Error())
		return nil, err
	}
	streams := make(chan httpstream.Stream, 8)
	conn := spdy.NewResponseUpgraderWithPings(30*time.Second).UpgradeResponse(w, r, func(st httpstream.Stream, _ <-chan struct{}) error {
		streams <- st
		return nil
	})
	if conn == nil {
		return nil, errors.New("spdy upgrade failed")
	}
	conn.SetIdleTimeout(4 * time.Hour)
	s := &execStreams{statusJSON: proto == "v4.channel.k8s.io", close: func() { _ = conn.Close() }}
	want := 1
	for _, b := range []bool{in, out, errs, tty} {
		if b {
			want++
		}
	}
	if proto == "channel.k8s.io" || proto == "v2.channel.k8s.io" {
		want = 0 // old clients create streams lazily; take what comes for a moment
	}
	timeout := time.After(streamCreationTimeout)
	got := 0
collect:
	for want == 0 || got < want {
		select {
		case st := <-streams:
			got++
			switch st.Headers().Get("streamType") {
			case "error":
				s.errW = st
			case "stdin":
				s.stdin = st
			case "stdout":
				s.stdout = st
			case "stderr":
				s.stderr = st
			case "resize":
				s.resize = st
			}
		case <-timeout:
			if want == 0 {
				return s, nil
			}
			conn.Close()
			return nil, errors.New("timed out waiting for client streams")
		}
		if want == 0 && s.errW != nil && got >= 2 {
			break collect
		}
	}
	return s, nil
}

// portForward connects client streams to ports of the pod (SPDY
// portforward.k8s.io). Websocket requests are refused so kubectl falls back.
func (h *kubeletAPI) portForward(w http.ResponseWriter, r *http.Request) {
	pw, _, ok := h.lookup(w, r)
	if !ok {
		return
	}
	if wsstream.IsWebSocketRequest(r) || !httpstream.IsUpgradeRequest(r) {
		writeStatus(w, http.StatusBadRequest, metav1.StatusReasonBadRequest, "port-forward needs an SPDY upgrade")
		return
	}
	if _, err := httpstream.Handshake(r, w, []string{"portforward.k8s.io"}); err != nil {
		writeStatus(w, http.StatusForbidden, metav1.StatusReasonForbidden, err.Error())
		return
	}
	type pair struct{ data, errs httpstream.Stream }
	var mu sync.Mutex
	pairs := map[string]*pair{}
	done := make(chan struct{})
	var conn httpstream.Connection
	conn = spdy.NewResponseUpgraderWithPings(30*time.Second).UpgradeResponse(w, r, func(st httpstream.Stream, replySent <-chan struct{}) error {
		id := st.Headers().Get("requestID")
		mu.Lock()
		p := pairs[id]
		if p == nil {
			p = &pair{}
			pairs[id] = p
		}
		switch st.Headers().Get("streamType") {
		case "data":
			p.data = st
		case "error":
			p.errs = st
		}
		complete := p.data != nil && p.errs != nil
		if complete {
			delete(pairs, id)
		}
		mu.Unlock()
		if complete {
			go func() {
				<-replySent
				h.forward(pw, p.data, p.errs)
				if conn != nil {
					conn.RemoveStreams(p.data, p.errs)
				}
			}()
		}
		return nil
	})
	if conn == nil {
		return
	}
	conn.SetIdleTimeout(4 * time.Hour)
	go func() { <-conn.CloseChan(); close(done) }()
	<-done
}

func (h *kubeletAPI) forward(pw *podWorker, data, errs httpstream.Stream) {
	defer data.Close()
	defer errs.Close()
	port := data.Headers().Get("port")
	sb := pw.sandboxInfo()
	if sb == nil {
		_, _ = fmt.Fprintf(errs, "pod %s has no network", pw.key)
		return
	}
	c, err := net.DialTimeout("tcp", net.JoinHostPort(sb.IP.String(), port), 5*time.Second)
	if err != nil {
		_, _ = fmt.Fprintf(errs, "error forwarding port %s to pod %s: %v", port, pw.key, err)
		return
	}
	defer c.Close()
	copied := make(chan struct{}, 2)
	go func() {
		_, _ = io.Copy(c, data)
		if tc, ok := c.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
		}
		copied <- struct{}{}
	}()
	go func() { _, _ = io.Copy(data, c); copied <- struct{}{} }()
	<-copied
	<-copied
}
