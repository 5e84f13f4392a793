package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

// client is one long-poll loop (one browser tab). Its counters are written by
// its own goroutine only and read after the goroutine has exited.
type client struct {
	r      *runner
	user   int
	stream int    // index into the runner's expectation bitmaps, -1 = none
	want   string // the name a payload addressed to this client carries
	subURL string // nchan: subscriber URL

	cursor   string
	seen     []uint64
	released atomic.Bool // dial slot returned
	conn     atomic.Bool // first long-poll request fully written
	hasCur   atomic.Bool // pollbox: initial cursor obtained
	active   atomic.Bool // counted in expectations (ready when publishing began)
	exited   atomic.Bool

	polls, empty, early, delivered, dup, stale, foreign, bogus, misrouted, resets int64
}

type pollResponse struct {
	Messages []struct {
		ID   string `json:"id"`
		Body string `json:"body"`
	} `json:"messages"`
	Cursor string `json:"cursor"`
	More   bool   `json:"more"`
	Reset  bool   `json:"reset"`
}

// handle checks one received payload "name|seq|unixnanos".
func (c *client) handle(body string, now int64) {
	r := c.r
	name, rest, ok1 := strings.Cut(body, "|")
	seqS, tsS, ok2 := strings.Cut(rest, "|")
	if !ok1 || !ok2 {
		c.foreign++
		return
	}
	seq, err1 := strconv.ParseUint(seqS, 10, 64)
	ts, err2 := strconv.ParseInt(tsS, 10, 64)
	if err1 != nil || err2 != nil {
		c.foreign++
		return
	}
	if ts < r.runStart {
		c.stale++ // left over from an earlier run
		return
	}
	if c.stream < 0 || name != c.want {
		c.misrouted++
		return
	}
	if seq >= uint64(r.seqBits) {
		c.bogus++
		return
	}
	w, b := seq/64, uint64(1)<<(seq%64)
	if c.seen[w]&b != 0 {
		c.dup++
		r.dups.Add(1)
		return
	}
	c.seen[w] |= b
	c.delivered++
	r.unique.Add(1)
	r.delivLat.record(time.Duration(now - ts))
}

func (c *client) releaseSlot() {
	if c.released.CompareAndSwap(false, true) {
		<-c.r.dialSem
	}
}

// firstTrace marks the client as connected once its first long-poll request
// has been written to the socket, and frees its dial slot.
func (c *client) firstTrace(ctx context.Context) context.Context {
	if c.conn.Load() {
		return ctx
	}
	return httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
		WroteRequest: func(info httptrace.WroteRequestInfo) {
			if info.Err == nil && c.conn.CompareAndSwap(false, true) {
				c.r.connected.Add(1)
				c.releaseSlot()
			}
		},
	})
}

func (c *client) runPollbox(ctx context.Context) {
	r := c.r
	defer r.wg.Done()
	defer c.exited.Store(true)
	defer c.releaseSlot()
	if !c.takeDialSlot(ctx) {
		return
	}
	// Initial cursor: a timeout=0 poll returns at once with the stream tail.
	for c.cursor == "" {
		if ctx.Err() != nil || r.publishing() {
			return
		}
		wait, _ := c.pollboxOnce(ctx, 0, false)
		if c.cursor == "" {
			sleepCtx(ctx, wait)
		}
	}
	c.hasCur.Store(true)
	for ctx.Err() == nil {
		if !c.active.Load() && r.publishing() {
			return // not ready in time: excluded from the results
		}
		wait, _ := c.pollboxOnce(ctx, r.cfg.timeout, true)
		c.releaseSlot()
		if wait > 0 {
			sleepCtx(ctx, wait)
		}
	}
}

// pollboxOnce performs one GET /v1/poll. It returns a back-off delay after
// errors.
func (c *client) pollboxOnce(ctx context.Context, timeout int, trace bool) (time.Duration, bool) {
	r := c.r
	u := r.pollURL + "?timeout=" + strconv.Itoa(timeout)
	if c.cursor != "" {
		u += "&cursor=" + url.QueryEscape(c.cursor)
	}
	rctx := ctx
	if trace {
		rctx = c.firstTrace(ctx)
	}
	req, err := http.NewRequestWithContext(rctx, http.MethodGet, u, nil)
	if err != nil {
		r.pollErrs.add("request", err.Error())
		return time.Second, false
	}
	req.Header.Set("Authorization", r.userAuth[c.user])
	sent := time.Now()
	resp, err := r.hc.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return 0, false
		}
		r.pollErrs.add(netKind(err), err.Error())
		return backoff(250 * time.Millisecond), false
	}
	defer drainClose(resp.Body)
	if trace {
		c.polls++ // the initial timeout=0 poll is not counted
	}
	if resp.StatusCode != http.StatusOK {
		kind, detail := httpErrKind(resp)
		if ctx.Err() != nil {
			return 0, false
		}
		r.pollErrs.add(kind, detail)
		return retryAfter(resp, 250*time.Millisecond), false
	}
	var pr pollResponse
	if err := json.NewDecoder(resp.Body).Decode(&pr); err != nil {
		if ctx.Err() != nil {
			return 0, false
		}
		r.pollErrs.add("bad_json", err.Error())
		return backoff(250 * time.Millisecond), false
	}
	now := time.Now().UnixNano()
	for i := range pr.Messages {
		c.handle(pr.Messages[i].Body, now)
	}
	if len(pr.Messages) == 0 && trace {
		c.empty++
		// An empty answer well before the requested timeout: the server
		// ended the wait early (shutdown, read-state change, …).
		if time.Since(sent) < time.Duration(timeout)*time.Second*9/10 {
			c.early++
		}
	}
	if pr.Reset {
		c.resets++
	}
	if pr.Cursor == "" {
		r.pollErrs.add("no_cursor", "200 response without cursor")
		return backoff(250 * time.Millisecond), false
	}
	c.cursor = pr.Cursor
	return 0, true
}

// runNchan is a long-poll subscriber that echoes Last-Modified / Etag as
// If-Modified-Since / If-None-Match. Each 200 response carries one raw
// message.
func (c *client) runNchan(ctx context.Context) {
	r := c.r
	defer r.wg.Done()
	defer c.exited.Store(true)
	defer c.releaseSlot()
	if !c.takeDialSlot(ctx) {
		return
	}
	var lastMod, etag string
	buf := make([]byte, 0, 512)
	for ctx.Err() == nil {
		if !c.active.Load() && r.publishing() {
			return
		}
		req, err := http.NewRequestWithContext(c.firstTrace(ctx), http.MethodGet, c.subURL, nil)
		if err != nil {
			r.pollErrs.add("request", err.Error())
			return
		}
		if lastMod != "" {
			req.Header.Set("If-Modified-Since", lastMod)
		}
		if etag != "" {
			req.Header.Set("If-None-Match", etag)
		}
		resp, err := r.hc.Do(req)
		c.releaseSlot()
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			r.pollErrs.add(netKind(err), err.Error())
			sleepCtx(ctx, backoff(250*time.Millisecond))
			continue
		}
		c.polls++
		switch resp.StatusCode {
		case http.StatusOK:
			buf, err = readAllInto(buf[:0], resp.Body, 1<<20)
			resp.Body.Close()
			if err != nil {
				if ctx.Err() == nil {
					r.pollErrs.add("read_body", err.Error())
				}
				continue
			}
			c.handle(string(buf), time.Now().UnixNano())
			if v := resp.Header.Get("Last-Modified"); v != "" {
				lastMod = v
			}
			if v := resp.Header.Get("Etag"); v != "" {
				etag = v
			}
		case http.StatusNotModified, http.StatusRequestTimeout:
			drainClose(resp.Body)
			c.empty++
		default:
			kind, detail := httpErrKind(resp)
			wait := retryAfter(resp, 250*time.Millisecond)
			drainClose(resp.Body)
			if ctx.Err() != nil {
				return
			}
			r.pollErrs.add(kind, detail)
			sleepCtx(ctx, wait)
		}
	}
}

func readAllInto(buf []byte, rd io.Reader, limit int) ([]byte, error) {
	lr := io.LimitReader(rd, int64(limit))
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := lr.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
	}
}

func drainClose(b io.ReadCloser) {
	_, _ = io.Copy(io.Discard, io.LimitReader(b, 64<<10))
	_ = b.Close()
}

// httpErrKind names a non-2xx response: "http_429:too_many_polls".
func httpErrKind(resp *http.Response) (kind, detail string) {
	kind = "http_" + strconv.Itoa(resp.StatusCode)
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	var e struct {
		Error   string `json:"error"`
		Message string `json:"message"`
	}
	if json.Unmarshal(b, &e) == nil && e.Error != "" {
		kind += ":" + e.Error
		return kind, e.Message
	}
	return kind, strings.TrimSpace(string(b))
}

func retryAfter(resp *http.Response, def time.Duration) time.Duration {
	if v := resp.Header.Get("Retry-After"); v != "" {
		if s, err := strconv.Atoi(v); err == nil && s >= 0 {
			d := time.Duration(s) * time.Second
			if d > 5*time.Second {
				d = 5 * time.Second
			}
			return backoff(d)
		}
	}
	return backoff(def)
}

// backoff adds up to 50% jitter so that failing clients do not retry in step.
func backoff(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return d + rand.N(d/2+1)
}

func netKind(err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return "net_refused"
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return "net_reset"
	case errors.Is(err, syscall.EADDRNOTAVAIL):
		return "net_no_local_port"
	case errors.Is(err, syscall.EMFILE), errors.Is(err, syscall.ENFILE):
		return "net_too_many_files"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "net_eof"
	case errors.Is(err, os.ErrDeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return "net_timeout"
	}
	return "net_other"
}

func sleepCtx(ctx context.Context, d time.Duration) {
	if d <= 0 {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// takeDialSlot waits for a turn to connect (bounding simultaneous dials);
// false when ctx ended first.
func (c *client) takeDialSlot(ctx context.Context) bool {
	select {
	case c.r.dialSem <- struct{}{}:
		return true
	case <-ctx.Done():
		c.released.Store(true)
		return false
	}
}
