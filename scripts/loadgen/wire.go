package main

// A minimal HTTP/1.1 client for the load generator's hot paths.
//
// The load generator shares the machine with the server under test, so every
// cycle it spends is taken from the server. net/http's Transport costs two
// goroutines per connection, a channel hand-off per request and a fair amount
// of allocation (Request, Header maps, context, trace hooks). Here each client
// goroutine owns one keep-alive connection, writes each request with a single
// Write from a reused buffer and reads the response with a bufio.Reader into
// a reused body buffer: no extra goroutines and next to no garbage.

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strconv"
	"time"
)

const (
	// wireMaxBody bounds a response body; a poll answer of 1000 messages of
	// 64 KiB each, JSON-escaped, stays below it.
	wireMaxBody = 64 << 20
	// wireKeepBody is the largest body buffer kept between requests; a
	// client that once received a huge answer does not hold on to it.
	wireKeepBody = 1 << 20
	// wireMaxIdle: a connection idle for longer is redialled instead of
	// reused. Both pollbox and the benchmark's nginx close idle keep-alive
	// connections after 120 s (nginx's default is 75 s); without a reader
	// goroutine a closed idle connection is only noticed when a request
	// fails on it, and a failed POST is not retried.
	wireMaxIdle = 30 * time.Second
	// wireDialTimeout is the time allowed to establish a connection.
	wireDialTimeout = 5 * time.Second
)

// wireTarget is an http:// URL on a loopback host, split once for reuse.
type wireTarget struct {
	addr string // host:port to dial
	host string // Host header value
	uri  string // request-target: path and query
}

// parseTarget splits a loopback http:// URL. HTTPS is not supported: the
// load generator only talks to servers on the same machine.
func parseTarget(raw string) (wireTarget, error) {
	if err := checkLoopback(raw); err != nil {
		return wireTarget{}, err
	}
	u, err := url.Parse(raw)
	if err != nil {
		return wireTarget{}, err
	}
	if u.Scheme != "http" {
		return wireTarget{}, fmt.Errorf("%q: only http:// URLs are supported", raw)
	}
	port := u.Port()
	if port == "" {
		port = "80"
	}
	return wireTarget{addr: net.JoinHostPort(u.Hostname(), port), host: u.Host, uri: u.RequestURI()}, nil
}

// wireResp is the part of a response the load generator looks at. Its
// slices are reused by the next request on the same client.
type wireResp struct {
	status     int
	body       []byte
	retryAfter []byte
	lastMod    []byte // Last-Modified
	etag       []byte // Etag
	close      bool   // the server closes the connection after this response
}

// wireClient is one keep-alive HTTP/1.1 connection, used by one goroutine,
// one request at a time. Cancelling its context closes the connection, which
// aborts a request in progress.
type wireClient struct {
	ctx      context.Context
	addr     string // the address conn is connected to
	conn     net.Conn
	br       *bufio.Reader
	stop     func() bool // unregisters the close-on-cancel hook of conn
	lastUsed time.Time   // end of the last response on conn
	used     bool        // conn has already carried a request
	written  bool        // the current attempt's request was written

	method string
	req    []byte
	resp   wireResp
}

func newWireClient(ctx context.Context) *wireClient {
	return &wireClient{ctx: ctx, req: make([]byte, 0, 1024)}
}

// begin starts a request: the request line (t.uri followed by query, which
// the caller has already escaped) and the Host header.
func (w *wireClient) begin(method string, t *wireTarget, query []byte) {
	if w.addr != t.addr {
		w.closeConn() // a different server: never send to the wrong one
		w.addr = t.addr
	}
	w.method = method
	b := append(w.req[:0], method...)
	b = append(b, ' ')
	b = append(b, t.uri...)
	b = append(b, query...)
	b = append(b, " HTTP/1.1\r\nHost: "...)
	b = append(b, t.host...)
	w.req = append(b, "\r\n"...)
}

// header adds a request header; the values used here never contain CR/LF.
func (w *wireClient) header(name, value string) {
	w.req = append(append(append(append(w.req, name...), ": "...), value...), "\r\n"...)
}

func (w *wireClient) headerBytes(name string, value []byte) {
	w.req = append(append(append(append(w.req, name...), ": "...), value...), "\r\n"...)
}

// do sends the request built with begin and header, with body (nil: none),
// and reads the response. The whole exchange must finish within timeout.
// wrote, if not nil, is called once the request has been written. An
// idempotent request that fails on a reused connection before any response
// byte arrives (the server closed the idle connection) is retried once on a
// new connection, as net/http does.
func (w *wireClient) do(body []byte, timeout time.Duration, wrote func()) (*wireResp, error) {
	if body != nil || w.method == "POST" || w.method == "PUT" {
		w.req = append(w.req, "Content-Length: "...)
		w.req = strconv.AppendInt(w.req, int64(len(body)), 10)
		w.req = append(w.req, "\r\n"...)
	}
	w.req = append(w.req, "\r\n"...)
	w.req = append(w.req, body...)
	for attempt := 0; ; attempt++ {
		reused, early, err := w.roundTrip(timeout, wrote)
		if err == nil {
			return &w.resp, nil
		}
		w.closeConn()
		if attempt > 0 || !reused || !early || w.method != "GET" || w.ctx.Err() != nil {
			return nil, err
		}
		if w.written {
			wrote = nil // reported once is enough
		}
	}
}

// roundTrip writes w.req and reads the response. reused says the request
// went over a connection that had carried one before; early says the
// failure happened before any response byte was read.
func (w *wireClient) roundTrip(timeout time.Duration, wrote func()) (reused, early bool, err error) {
	if err := w.ctx.Err(); err != nil {
		return false, true, err
	}
	now := time.Now()
	if w.conn != nil && now.Sub(w.lastUsed) > wireMaxIdle {
		w.closeConn()
	}
	if w.conn == nil {
		if err := w.dial(); err != nil {
			return false, true, err
		}
	}
	reused = w.used
	w.used = true
	w.written = false
	if err := w.conn.SetDeadline(now.Add(timeout)); err != nil {
		return reused, true, err
	}
	if _, err := w.conn.Write(w.req); err != nil {
		return reused, true, err
	}
	w.written = true
	if wrote != nil {
		wrote()
	}
	early, err = readResponse(w.br, &w.resp)
	if err != nil {
		return reused, early, err
	}
	// Bytes beyond the response were not asked for: the connection is out
	// of step with the server and cannot be trusted for the next request.
	if w.resp.close || w.br.Buffered() > 0 {
		w.closeConn()
	} else {
		w.lastUsed = time.Now()
	}
	return reused, false, nil
}

func (w *wireClient) dial() error {
	d := net.Dialer{Timeout: wireDialTimeout, KeepAlive: 30 * time.Second}
	conn, err := d.DialContext(w.ctx, "tcp", w.addr)
	if err != nil {
		return err
	}
	w.conn = conn
	// Closing the connection is the one way to interrupt a blocked Read
	// without a watcher goroutine per request.
	w.stop = context.AfterFunc(w.ctx, func() { _ = conn.Close() })
	if w.br == nil {
		w.br = bufio.NewReaderSize(conn, 4096)
	} else {
		w.br.Reset(conn)
	}
	w.used = false
	return nil
}

// closeConn drops the connection; the next request dials a new one.
func (w *wireClient) closeConn() {
	if w.conn == nil {
		return
	}
	w.stop()
	_ = w.conn.Close()
	w.conn = nil
}

var (
	errMalformed   = errors.New("malformed HTTP response")
	errBodyTooBig  = errors.New("response body too large")
	errUnsupported = errors.New("unsupported Transfer-Encoding")
)

// readResponse reads one response into resp, skipping 1xx interim
// responses. early reports that the error came before any byte of it.
func readResponse(br *bufio.Reader, resp *wireResp) (early bool, err error) {
	for first := true; ; first = false {
		line, err := readLine(br)
		if err != nil {
			return first && len(line) == 0, err
		}
		keepAlive, err := parseStatusLine(line, resp)
		if err != nil {
			return false, err
		}
		length, chunked, err := readHeaders(br, resp, keepAlive)
		if err != nil {
			return false, err
		}
		switch {
		case resp.status >= 100 && resp.status < 200:
			if resp.status == 101 {
				return false, fmt.Errorf("%w: unexpected 101 Switching Protocols", errMalformed)
			}
			continue // interim response; the real one follows
		case resp.status == 204 || resp.status == 304:
			resp.body = resp.body[:0]
		case chunked:
			err = readChunked(br, resp)
		case length >= 0:
			err = readFixed(br, resp, length)
		default:
			// No length: the body runs until the server closes.
			resp.close = true
			err = readToEOF(br, resp)
		}
		return false, err
	}
}

// readLine returns one line without its line ending. The slice points into
// br's buffer and is valid until the next read.
func readLine(br *bufio.Reader) ([]byte, error) {
	line, err := br.ReadSlice('\n')
	if err == bufio.ErrBufferFull {
		return line, fmt.Errorf("%w: line longer than %d bytes", errMalformed, br.Size())
	}
	if err == io.EOF && len(line) > 0 {
		err = io.ErrUnexpectedEOF
	}
	if err != nil {
		return line, err
	}
	line = line[:len(line)-1]
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	return line, nil
}

// readMore is readLine past the status line, where the end of the stream
// means a truncated response.
func readMore(br *bufio.Reader) ([]byte, error) {
	line, err := readLine(br)
	return line, noEOF(err)
}

func readFull(br *bufio.Reader, dst []byte) error {
	_, err := io.ReadFull(br, dst)
	return noEOF(err)
}

func noEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// parseStatusLine reads "HTTP/1.1 200 OK" and resets resp. keepAlive is the
// version's default: HTTP/1.0 closes unless told otherwise.
func parseStatusLine(line []byte, resp *wireResp) (keepAlive bool, err error) {
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) || line[8] != ' ' ||
		(len(line) > 12 && line[12] != ' ') {
		return false, fmt.Errorf("%w: status line %q", errMalformed, line)
	}
	status := 0
	for _, c := range line[9:12] {
		if c < '0' || c > '9' {
			return false, fmt.Errorf("%w: status line %q", errMalformed, line)
		}
		status = status*10 + int(c-'0')
	}
	resp.status = status
	if cap(resp.body) > wireKeepBody {
		resp.body = nil // let a one-off huge buffer go
	}
	resp.body = resp.body[:0]
	resp.retryAfter = resp.retryAfter[:0]
	resp.lastMod = resp.lastMod[:0]
	resp.etag = resp.etag[:0]
	resp.close = false
	return line[7] != '0', nil
}

// readHeaders reads the header block up to the empty line. length is the
// Content-Length, -1 when absent.
func readHeaders(br *bufio.Reader, resp *wireResp, keepAlive bool) (length int64, chunked bool, err error) {
	length = -1
	for {
		line, err := readMore(br)
		if err != nil {
			return 0, false, err
		}
		if len(line) == 0 {
			break
		}
		if line[0] == ' ' || line[0] == '\t' {
			continue // obsolete line folding of a header we do not use
		}
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 {
			return 0, false, fmt.Errorf("%w: header line %q", errMalformed, line)
		}
		name, value := line[:colon], bytes.TrimSpace(line[colon+1:])
		switch {
		case headerIs(name, "Content-Length"):
			n, err := strconv.ParseInt(string(value), 10, 64)
			if err != nil || n < 0 || (length >= 0 && n != length) {
				return 0, false, fmt.Errorf("%w: Content-Length %q", errMalformed, value)
			}
			length = n
		case headerIs(name, "Transfer-Encoding"):
			// Only "chunked" is ever used without Accept-Encoding; anything
			// else would need decoding the load generator cannot do.
			if !bytes.EqualFold(value, []byte("chunked")) {
				return 0, false, fmt.Errorf("%w %q", errUnsupported, value)
			}
			chunked = true
		case headerIs(name, "Connection"):
			for tok := range bytes.SplitSeq(value, []byte(",")) {
				tok = bytes.TrimSpace(tok)
				if bytes.EqualFold(tok, []byte("close")) {
					keepAlive = false
				} else if bytes.EqualFold(tok, []byte("keep-alive")) {
					keepAlive = true
				}
			}
		case headerIs(name, "Retry-After") && len(resp.retryAfter) == 0:
			resp.retryAfter = append(resp.retryAfter, value...)
		case headerIs(name, "Last-Modified") && len(resp.lastMod) == 0:
			resp.lastMod = append(resp.lastMod, value...)
		case headerIs(name, "Etag") && len(resp.etag) == 0:
			resp.etag = append(resp.etag, value...)
		}
	}
	resp.close = !keepAlive
	return length, chunked, nil
}

// headerIs compares a header name case-insensitively without allocating.
func headerIs(name []byte, want string) bool {
	if len(name) != len(want) {
		return false
	}
	for i := range len(name) {
		a, b := name[i], want[i]
		if 'A' <= a && a <= 'Z' {
			a += 'a' - 'A'
		}
		if 'A' <= b && b <= 'Z' {
			b += 'a' - 'A'
		}
		if a != b {
			return false
		}
	}
	return true
}

// growBody makes room for n more body bytes and returns the slice to fill.
func growBody(resp *wireResp, n int64) ([]byte, error) {
	have := int64(len(resp.body))
	if have+n > wireMaxBody {
		return nil, fmt.Errorf("%w: more than %d bytes", errBodyTooBig, wireMaxBody)
	}
	if need := have + n; need > int64(cap(resp.body)) {
		nb := make([]byte, have, max(need, 2*int64(cap(resp.body)), 512))
		copy(nb, resp.body)
		resp.body = nb
	}
	resp.body = resp.body[:have+n]
	return resp.body[have:], nil
}

func readFixed(br *bufio.Reader, resp *wireResp, n int64) error {
	dst, err := growBody(resp, n)
	if err != nil {
		return err
	}
	return readFull(br, dst)
}

// readChunked reads a chunked body: hex size lines (extensions ignored),
// data followed by CRLF, a zero-size chunk and optional trailers.
func readChunked(br *bufio.Reader, resp *wireResp) error {
	for {
		line, err := readMore(br)
		if err != nil {
			return err
		}
		if i := bytes.IndexByte(line, ';'); i >= 0 {
			line = line[:i]
		}
		line = bytes.TrimSpace(line)
		size, err := strconv.ParseUint(string(line), 16, 63)
		if err != nil || len(line) == 0 {
			return fmt.Errorf("%w: chunk size %q", errMalformed, line)
		}
		if size == 0 {
			break
		}
		dst, err := growBody(resp, int64(size))
		if err != nil {
			return err
		}
		if err := readFull(br, dst); err != nil {
			return err
		}
		if line, err := readMore(br); err != nil || len(line) != 0 {
			return cmp.Or(err, fmt.Errorf("%w: no CRLF after chunk data", errMalformed))
		}
	}
	for { // trailers, up to the final empty line
		if line, err := readMore(br); err != nil || len(line) == 0 {
			return err
		}
	}
}

func readToEOF(br *bufio.Reader, resp *wireResp) error {
	for {
		if len(resp.body) == cap(resp.body) {
			if _, err := growBody(resp, 4096); err != nil {
				return err
			}
			resp.body = resp.body[:len(resp.body)-4096]
		}
		n, err := br.Read(resp.body[len(resp.body):cap(resp.body)])
		resp.body = resp.body[:len(resp.body)+n]
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}
