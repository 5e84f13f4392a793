package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestReadResponse(t *testing.T) {
	cases := []struct {
		name, in          string
		status            int
		body              string
		close             bool
		lastMod, etag, ra string
		err               bool
		early             bool
		rest              string // bytes left for the next response
	}{
		{name: "content-length", in: "HTTP/1.1 200 OK\r\nContent-Length: 5\r\ncontent-type: text/plain\r\n\r\nhelloNEXT",
			status: 200, body: "hello", rest: "NEXT"},
		{name: "chunked", in: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n1A\r\n" +
			strings.Repeat("x", 26) + "\r\n0\r\nTrailer: t\r\n\r\nNEXT",
			status: 200, body: "hello" + strings.Repeat("x", 26), rest: "NEXT"},
		{name: "chunked wins over length", in: "HTTP/1.1 200 OK\r\nContent-Length: 99\r\nTransfer-Encoding: Chunked\r\n\r\n2\r\nab\r\n0\r\n\r\n",
			status: 200, body: "ab"},
		{name: "connection close", in: "HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nRetry-After: 2\r\nContent-Length: 2\r\n\r\n{}",
			status: 503, body: "{}", close: true, ra: "2"},
		{name: "connection token list", in: "HTTP/1.1 200 OK\r\nConnection: foo, Close\r\nContent-Length: 0\r\n\r\n",
			status: 200, close: true},
		{name: "nchan headers", in: "HTTP/1.1 200 OK\r\nLast-Modified:  Tue, 01 Jan 2030 00:00:00 GMT \r\nETAG: 0\r\nContent-Length: 1\r\n\r\nm",
			status: 200, body: "m", lastMod: "Tue, 01 Jan 2030 00:00:00 GMT", etag: "0"},
		{name: "http/1.0 closes", in: "HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\nx", status: 200, body: "x", close: true},
		{name: "http/1.0 keep-alive", in: "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\nx", status: 200, body: "x"},
		{name: "no body on 304", in: "HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\nNEXT", status: 304, rest: "NEXT"},
		{name: "no body on 204", in: "HTTP/1.1 204 No Content\r\n\r\n", status: 204},
		{name: "interim 100", in: "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok", status: 201, body: "ok"},
		{name: "until close", in: "HTTP/1.1 200 OK\r\n\r\n" + strings.Repeat("y", 10000), status: 200, body: strings.Repeat("y", 10000), close: true},
		{name: "bare LF", in: "HTTP/1.1 200 OK\nContent-Length: 1\n\nz", status: 200, body: "z"},
		{name: "no reason", in: "HTTP/1.1 408\r\nContent-Length: 0\r\n\r\n", status: 408},
		{name: "empty", in: "", err: true, early: true},
		{name: "truncated status", in: "HTTP/1.1 2", err: true},
		{name: "truncated headers", in: "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n", err: true},
		{name: "truncated body", in: "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhel", err: true},
		{name: "truncated chunk", in: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel", err: true},
		{name: "no last chunk", in: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n", err: true},
		{name: "bad chunk size", in: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", err: true},
		{name: "chunk without CRLF", in: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nab\r\n0\r\n\r\n", err: true},
		{name: "gzip", in: "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", err: true},
		{name: "two lengths", in: "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab", err: true},
		{name: "negative length", in: "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", err: true},
		{name: "not http", in: "SSH-2.0-OpenSSH\r\n\r\n", err: true},
		{name: "bad status", in: "HTTP/1.1 2x0 OK\r\n\r\n", err: true},
		{name: "header without colon", in: "HTTP/1.1 200 OK\r\nbogus\r\n\r\n", err: true},
		{name: "line too long", in: "HTTP/1.1 200 OK\r\nX: " + strings.Repeat("a", 5000) + "\r\n\r\n", err: true},
	}
	var resp wireResp
	for _, c := range cases {
		br := bufio.NewReaderSize(strings.NewReader(c.in), 4096)
		early, err := readResponse(br, &resp)
		if (err != nil) != c.err || early != c.early {
			t.Errorf("%s: err = %v, early = %v; want error %v, early %v", c.name, err, early, c.err, c.early)
			continue
		}
		if err != nil {
			continue
		}
		rest, _ := io.ReadAll(br)
		if resp.status != c.status || string(resp.body) != c.body || resp.close != c.close ||
			string(resp.lastMod) != c.lastMod || string(resp.etag) != c.etag || string(resp.retryAfter) != c.ra ||
			string(rest) != c.rest {
			t.Errorf("%s: got status %d body %.40q close %v lastMod %q etag %q retry-after %q rest %q",
				c.name, resp.status, resp.body, resp.close, resp.lastMod, resp.etag, resp.retryAfter, rest)
		}
	}
}

func TestReadResponseAllocs(t *testing.T) {
	in := []byte("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nEtag: 1\r\nContent-Length: 300\r\n\r\n" + strings.Repeat("b", 300) +
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n12C\r\n" + strings.Repeat("c", 300) + "\r\n0\r\n\r\n")
	rd := bytes.NewReader(in)
	br := bufio.NewReaderSize(rd, 4096)
	var resp wireResp
	read := func() {
		rd.Reset(in)
		br.Reset(rd)
		for range 2 {
			if _, err := readResponse(br, &resp); err != nil || len(resp.body) != 300 {
				t.Fatalf("err %v, body %d bytes", err, len(resp.body))
			}
		}
	}
	read()
	if n := testing.AllocsPerRun(100, read); n != 0 {
		t.Errorf("readResponse allocates %v times, want 0", n)
	}
}

// newCountingServer starts an httptest server that counts its connections.
func newCountingServer(t *testing.T, h http.HandlerFunc) (*httptest.Server, *atomic.Int64) {
	var conns atomic.Int64
	ts := httptest.NewUnstartedServer(h)
	ts.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	ts.Start()
	t.Cleanup(ts.Close)
	return ts, &conns
}

func mustTarget(t *testing.T, raw string) *wireTarget {
	t.Helper()
	tg, err := parseTarget(raw)
	if err != nil {
		t.Fatal(err)
	}
	return &tg
}

// TestWireClientKeepAlive runs requests against net/http's server: bodies
// with Content-Length and chunked, a POST, and Connection: close.
func TestWireClientKeepAlive(t *testing.T) {
	big := strings.Repeat("0123456789", 10000) // beyond any buffer size
	ts, conns := newCountingServer(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/length":
			w.Header().Set("Etag", "e1")
			_, _ = io.WriteString(w, "short") // buffered: sent with Content-Length
		case "/chunked":
			_, _ = io.WriteString(w, big[:50000])
			w.(http.Flusher).Flush() // forces chunked encoding
			_, _ = io.WriteString(w, big[50000:])
		case "/echo":
			b, _ := io.ReadAll(r.Body)
			_, _ = io.WriteString(w, r.Method+" "+r.URL.RawQuery+" "+r.Host+" "+r.Header.Get("Authorization")+" "+
				r.Header.Get("Content-Type")+" "+string(b))
		case "/close":
			w.Header().Set("Connection", "close")
			w.WriteHeader(http.StatusTooManyRequests)
			_, _ = io.WriteString(w, `{"error":"too_many_polls","message":"slow down"}`)
		}
	})
	w := newWireClient(context.Background())
	defer w.closeConn()
	get := func(path string, query []byte) *wireResp {
		t.Helper()
		w.begin("GET", mustTarget(t, ts.URL+path), query)
		resp, err := w.do(nil, 5*time.Second, nil)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		return resp
	}
	if resp := get("/length", nil); resp.status != 200 || string(resp.body) != "short" || string(resp.etag) != "e1" {
		t.Fatalf("/length: %d %q etag %q", resp.status, resp.body, resp.etag)
	}
	if resp := get("/chunked", nil); resp.status != 200 || string(resp.body) != big {
		t.Fatalf("/chunked: %d, %d bytes", resp.status, len(resp.body))
	}
	w.begin("POST", mustTarget(t, ts.URL+"/echo?a=1"), nil)
	w.header("Authorization", "Bearer x")
	w.header("Content-Type", "text/plain")
	resp, err := w.do([]byte("payload"), 5*time.Second, nil)
	if err != nil || string(resp.body) != "POST a=1 "+strings.TrimPrefix(ts.URL, "http://")+" Bearer x text/plain payload" {
		t.Fatalf("POST: %v %q", err, resp.body)
	}
	if resp := get("/echo", appendQueryEscape([]byte("?cursor="), []byte("1-0 +&/é"))); string(resp.body) != "GET cursor=1-0%20%2B%26%2F%C3%A9 "+strings.TrimPrefix(ts.URL, "http://")+"   " {
		t.Fatalf("GET with query: %q", resp.body)
	}
	if n := conns.Load(); n != 1 {
		t.Fatalf("%d connections for 4 keep-alive requests, want 1", n)
	}
	resp = get("/close", nil)
	if kind, detail := httpErrKind(resp); resp.status != 429 || !resp.close || kind != "http_429:too_many_polls" || detail != "slow down" {
		t.Fatalf("/close: %d close=%v %s %s", resp.status, resp.close, kind, detail)
	}
	if w.conn != nil {
		t.Fatal("connection kept after Connection: close")
	}
	get("/length", nil)
	if n := conns.Load(); n != 2 {
		t.Fatalf("%d connections after Connection: close, want 2", n)
	}
}

func TestAppendQueryEscape(t *testing.T) {
	in := "1700000000000-0.u+b/g x&y=z%é\x00"
	got := string(appendQueryEscape(nil, []byte(in)))
	if back, err := url.QueryUnescape(got); err != nil || back != in || strings.ContainsAny(got, "+&= /") {
		t.Fatalf("escaped %q as %q (back: %q, %v)", in, got, back, err)
	}
}

// rawServer answers each request with resp and then, if closeAfter, closes
// the connection without saying so, as a server whose idle timeout fired.
func rawServer(t *testing.T, resp string, closeAfter bool) (addr string, accepted *atomic.Int64) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	accepted = new(atomic.Int64)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				for {
					req, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					_, _ = io.Copy(io.Discard, req.Body)
					if _, err := io.WriteString(c, resp); err != nil || closeAfter {
						return
					}
				}
			}()
		}
	}()
	return "http://" + ln.Addr().String(), accepted
}

// TestWireClientStaleConnection: a GET that fails on a reused connection
// before any response byte is retried on a new one; a POST is not.
func TestWireClientStaleConnection(t *testing.T) {
	base, accepted := rawServer(t, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", true)
	w := newWireClient(context.Background())
	defer w.closeConn()
	for i := range 3 {
		w.begin("GET", mustTarget(t, base+"/"), nil)
		if resp, err := w.do(nil, 5*time.Second, nil); err != nil || string(resp.body) != "ok" {
			t.Fatalf("GET %d: %v", i, err)
		}
		time.Sleep(20 * time.Millisecond) // let the close arrive
	}
	if n := accepted.Load(); n != 3 {
		t.Fatalf("%d connections, want 3", n)
	}
	w.begin("POST", mustTarget(t, base+"/"), nil)
	_, err := w.do([]byte("x"), 5*time.Second, nil)
	if k := netKind(err); k != "net_eof" && k != "net_reset" {
		t.Fatalf("POST on a closed connection: %v (%s), want an EOF or reset error", err, k)
	}
}

func TestWireClientCancelAndTimeout(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	ts, _ := newCountingServer(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	tg := mustTarget(t, ts.URL+"/wait")

	w := newWireClient(context.Background())
	w.begin("GET", tg, nil)
	wrote := false
	start := time.Now()
	_, err := w.do(nil, 200*time.Millisecond, func() { wrote = true })
	if netKind(err) != "net_timeout" || !wrote || time.Since(start) > 2*time.Second {
		t.Fatalf("timeout: err %v (%s), wrote %v after %s", err, netKind(err), wrote, time.Since(start))
	}

	ctx, cancel := context.WithCancel(context.Background())
	w = newWireClient(ctx)
	w.begin("GET", tg, nil)
	time.AfterFunc(100*time.Millisecond, cancel)
	start = time.Now()
	if _, err := w.do(nil, time.Minute, nil); err == nil || ctx.Err() == nil || time.Since(start) > 2*time.Second {
		t.Fatalf("cancel: err %v after %s", err, time.Since(start))
	}
	w.begin("GET", tg, nil)
	if _, err := w.do(nil, time.Minute, nil); !errors.Is(err, context.Canceled) {
		t.Fatalf("request after cancel: %v", err)
	}
}

func TestParseTarget(t *testing.T) {
	tg, err := parseTarget("http://localhost:8081/sub/u1?x=1")
	if err != nil || tg.addr != "localhost:8081" || tg.host != "localhost:8081" || tg.uri != "/sub/u1?x=1" {
		t.Fatalf("%+v %v", tg, err)
	}
	if tg, err := parseTarget("http://127.0.0.1"); err != nil || tg.addr != "127.0.0.1:80" || tg.uri != "/" {
		t.Fatalf("%+v %v", tg, err)
	}
	for _, bad := range []string{"https://127.0.0.1/", "http://10.0.0.1/", "127.0.0.1:80"} {
		if _, err := parseTarget(bad); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
}
