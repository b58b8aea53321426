package workload

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/textproto"
	"strconv"
	"strings"
	"time"
)

// The built-in workload answers every HTTP request with one fixed page, so
// it speaks just the HTTP/1.x a fixed page needs (keep-alive, HEAD, request
// bodies read and dropped, 100-continue) instead of linking net/http: a
// burst of pods starts a hundred of these processes, and net/http's
// initialisation and serving machinery cost each one about a hundred page
// faults and ~7 ms of CPU at start on a small virtual machine, more than the
// rest of the workload together.

const (
	// idleTimeout closes a kept-alive connection nobody uses.
	idleTimeout = 2 * time.Minute
	// headTimeout bounds reading one request's head once it began.
	headTimeout = 10 * time.Second
	// maxHead bounds a request line plus headers, as net/http's default.
	maxHead = 1 << 20
)

func serveHTTP(l net.Listener, page string, lg *logger) {
	for {
		c, err := l.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		go serveConn(c, page, lg)
	}
}

// limitedReader lets a request head be at most maxHead bytes.
type limitedReader struct {
	r io.Reader
	n int64
}

func (l *limitedReader) Read(p []byte) (int, error) {
	if l.n <= 0 {
		return 0, errors.New("request head too large")
	}
	if int64(len(p)) > l.n {
		p = p[:l.n]
	}
	n, err := l.r.Read(p)
	l.n -= int64(n)
	return n, err
}

func serveConn(c net.Conn, page string, lg *logger) {
	defer c.Close()
	lim := &limitedReader{r: c}
	br := bufio.NewReader(lim)
	tp := textproto.NewReader(br)
	for {
		lim.n = maxHead
		_ = c.SetReadDeadline(time.Now().Add(idleTimeout))
		if _, err := br.Peek(1); err != nil {
			return // closed or idle
		}
		_ = c.SetReadDeadline(time.Now().Add(headTimeout))
		req, err := readRequest(tp)
		if err != nil {
			_ = writeResponse(c, "HTTP/1.1", "400 Bad Request", "", false, true)
			return
		}
		_ = c.SetReadDeadline(time.Time{})
		lg.printf("%s %s %s %s", c.RemoteAddr(), req.method, req.uri, req.header.Get("User-Agent"))
		if req.expectContinue && req.hasBody {
			if _, err := io.WriteString(c, "HTTP/1.1 100 Continue\r\n\r\n"); err != nil {
				return
			}
		}
		lim.n = 1 << 62 // the body is not part of the head
		if err := discardBody(br, tp, req); err != nil {
			_ = writeResponse(c, req.proto, "400 Bad Request", "", false, true)
			return
		}
		if err := writeResponse(c, req.proto, "200 OK", page, req.method != "HEAD", !req.keepAlive); err != nil || !req.keepAlive {
			return
		}
	}
}

type request struct {
	method, uri, proto string
	header             textproto.MIMEHeader
	keepAlive          bool
	expectContinue     bool
	hasBody            bool
	chunked            bool
	length             int64
}

func readRequest(tp *textproto.Reader) (*request, error) {
	line, err := tp.ReadLine()
	if err != nil {
		return nil, err
	}
	method, rest, ok1 := strings.Cut(line, " ")
	uri, proto, ok2 := strings.Cut(rest, " ")
	if !ok1 || !ok2 || method == "" || uri == "" || (proto != "HTTP/1.1" && proto != "HTTP/1.0") {
		return nil, errors.New("malformed request line")
	}
	h, err := tp.ReadMIMEHeader()
	if err != nil {
		return nil, err
	}
	r := &request{method: method, uri: uri, proto: proto, header: h}
	conn := strings.ToLower(strings.Join(h.Values("Connection"), ","))
	if proto == "HTTP/1.1" {
		r.keepAlive = !hasToken(conn, "close")
	} else {
		r.keepAlive = hasToken(conn, "keep-alive")
	}
	r.expectContinue = hasToken(strings.ToLower(h.Get("Expect")), "100-continue")
	if te := strings.ToLower(strings.Join(h.Values("Transfer-Encoding"), ",")); te != "" {
		if strings.TrimSpace(te) != "chunked" {
			return nil, errors.New("unsupported transfer encoding")
		}
		r.chunked, r.hasBody = true, true
	} else if cl := h.Values("Content-Length"); len(cl) > 0 {
		n, err := strconv.ParseInt(strings.TrimSpace(cl[0]), 10, 64)
		if err != nil || n < 0 {
			return nil, errors.New("bad content length")
		}
		for _, v := range cl[1:] {
			if strings.TrimSpace(v) != strings.TrimSpace(cl[0]) {
				return nil, errors.New("conflicting content lengths")
			}
		}
		r.length, r.hasBody = n, n > 0
	}
	return r, nil
}

func hasToken(list, token string) bool {
	for _, t := range strings.Split(list, ",") {
		if strings.TrimSpace(t) == token {
			return true
		}
	}
	return false
}

// discardBody reads the request body, whose content the page ignores.
func discardBody(br *bufio.Reader, tp *textproto.Reader, r *request) error {
	if !r.chunked {
		_, err := io.CopyN(io.Discard, br, r.length)
		return err
	}
	for {
		line, err := tp.ReadLine()
		if err != nil {
			return err
		}
		size, _, _ := strings.Cut(line, ";")
		n, err := strconv.ParseInt(strings.TrimSpace(size), 16, 64)
		if err != nil || n < 0 {
			return errors.New("bad chunk size")
		}
		if n == 0 {
			_, err := tp.ReadMIMEHeader() // trailers, up to the empty line
			return err
		}
		if _, err := io.CopyN(io.Discard, br, n); err != nil {
			return err
		}
		if crlf, err := tp.ReadLine(); err != nil || crlf != "" {
			return errors.New("bad chunk end")
		}
	}
}

// writeResponse writes one response carrying body (its length always, the
// bytes only withBody: a HEAD answer), closing announces the end of the
// connection.
func writeResponse(w io.Writer, proto, status, body string, withBody, closing bool) error {
	var b strings.Builder
	b.WriteString(proto)
	b.WriteByte(' ')
	b.WriteString(status)
	b.WriteString("\r\nDate: ")
	b.WriteString(time.Now().UTC().Format("Mon, 02 Jan 2006 15:04:05 GMT"))
	b.WriteString("\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: ")
	b.WriteString(strconv.Itoa(len(body)))
	if closing {
		b.WriteString("\r\nConnection: close")
	} else if proto == "HTTP/1.0" {
		b.WriteString("\r\nConnection: keep-alive")
	}
	b.WriteString("\r\n\r\n")
	if withBody {
		b.WriteString(body)
	}
	_, err := io.WriteString(w, b.String())
	return err
}
