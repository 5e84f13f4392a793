package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"math/rand/v2"
	"net"
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
	r         *runner
	user      int
	stream    int        // index into the runner's expectation bitmaps, -1 = none
	want      string     // the name a payload addressed to this client carries
	subTarget wireTarget // nchan: subscriber URL

	wire     *wireClient // pollbox: the connection, owned by the poll loop
	query    []byte      // pollbox: scratch for the query string
	pr       pollResult  // pollbox: the last answer, decoded
	cursor   []byte
	seen     []uint64
	released atomic.Bool // dial slot returned
	conn     atomic.Bool // first long-poll request fully written
	hasCur   atomic.Bool // pollbox: initial cursor obtained
	active   atomic.Bool // counted in expectations (ready when publishing began)
	exited   atomic.Bool

	polls, empty, early, delivered, dup, stale, foreign, bogus, misrouted, resets int64
}

// handle checks one received payload "name|seq|unixnanos". It works on the
// bytes of the reused response buffer: the string conversions below are
// only compared or parsed, so they do not allocate.
func (c *client) handle(body []byte, now int64) {
	r := c.r
	name, rest, ok1 := bytes.Cut(body, []byte("|"))
	seqS, tsS, ok2 := bytes.Cut(rest, []byte("|"))
	if !ok1 || !ok2 {
		c.foreign++
		return
	}
	seq, err1 := strconv.ParseUint(string(seqS), 10, 64)
	ts, err2 := strconv.ParseInt(string(tsS), 10, 64)
	if err1 != nil || err2 != nil {
		c.foreign++
		return
	}
	if ts < r.runStart {
		c.stale++ // left over from an earlier run
		return
	}
	if c.stream < 0 || string(name) != c.want {
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

// markConnected marks the client as connected once its first long-poll
// request has been written to the socket, and frees its dial slot.
func (c *client) markConnected() {
	if c.conn.CompareAndSwap(false, true) {
		c.r.connected.Add(1)
		c.releaseSlot()
	}
}

// onWrite returns the hook for do: markConnected until the client is
// connected, then nil.
func (c *client) onWrite() func() {
	if c.conn.Load() {
		return nil
	}
	return c.markConnected
}

func (c *client) runPollbox(ctx context.Context) {
	r := c.r
	defer r.wg.Done()
	defer c.exited.Store(true)
	defer c.releaseSlot()
	if !c.takeDialSlot(ctx) {
		return
	}
	c.wire = newWireClient(ctx)
	defer c.wire.closeConn()
	// Initial cursor: a timeout=0 poll returns at once with the stream tail.
	for len(c.cursor) == 0 {
		if ctx.Err() != nil || r.publishing() {
			return
		}
		wait, _ := c.pollboxOnce(ctx, 0, false)
		if len(c.cursor) == 0 {
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
	q := append(c.query[:0], "?timeout="...)
	q = strconv.AppendInt(q, int64(timeout), 10)
	if len(c.cursor) > 0 {
		q = append(q, "&cursor="...)
		q = appendQueryEscape(q, c.cursor)
	}
	c.query = q
	w := c.wire
	w.begin("GET", &r.pollTarget, q)
	w.header("Authorization", r.userAuth[c.user])
	var wrote func()
	if trace {
		wrote = c.onWrite()
	}
	sent := time.Now()
	resp, err := w.do(nil, r.pollTimeout, wrote)
	if err != nil {
		if ctx.Err() != nil {
			return 0, false
		}
		r.pollErrs.add(netKind(err), err.Error())
		return backoff(250 * time.Millisecond), false
	}
	if trace {
		c.polls++ // the initial timeout=0 poll is not counted
	}
	if resp.status != 200 {
		kind, detail := httpErrKind(resp)
		if ctx.Err() != nil {
			return 0, false
		}
		r.pollErrs.add(kind, detail)
		return retryAfter(resp, 250*time.Millisecond), false
	}
	pr := &c.pr
	if err := pr.parse(resp.body); err != nil {
		if ctx.Err() != nil {
			return 0, false
		}
		r.pollErrs.add("bad_json", err.Error())
		return backoff(250 * time.Millisecond), false
	}
	now := time.Now().UnixNano()
	for i := range pr.bodies {
		c.handle(pr.body(i), now)
	}
	if len(pr.bodies) == 0 && trace {
		c.empty++
		// An empty answer well before the requested timeout: the server
		// ended the wait early (shutdown, read-state change, …).
		if time.Since(sent) < time.Duration(timeout)*time.Second*9/10 {
			c.early++
		}
	}
	if pr.reset {
		c.resets++
	}
	if len(pr.cursorBytes()) == 0 {
		r.pollErrs.add("no_cursor", "200 response without cursor")
		return backoff(250 * time.Millisecond), false
	}
	c.cursor = append(c.cursor[:0], pr.cursorBytes()...)
	return 0, true
}

// appendQueryEscape appends s escaped for a query parameter value: only
// unreserved characters stay as they are.
func appendQueryEscape(dst, s []byte) []byte {
	const hex = "0123456789ABCDEF"
	for _, c := range s {
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
			c == '-' || c == '_' || c == '.' || c == '~' {
			dst = append(dst, c)
		} else {
			dst = append(dst, '%', hex[c>>4], hex[c&15])
		}
	}
	return dst
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
	w := newWireClient(ctx)
	defer w.closeConn()
	var lastMod, etag []byte
	for ctx.Err() == nil {
		if !c.active.Load() && r.publishing() {
			return
		}
		w.begin("GET", &c.subTarget, nil)
		if len(lastMod) > 0 {
			w.headerBytes("If-Modified-Since", lastMod)
		}
		if len(etag) > 0 {
			w.headerBytes("If-None-Match", etag)
		}
		resp, err := w.do(nil, r.pollTimeout, c.onWrite())
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
		switch resp.status {
		case 200:
			c.handle(resp.body, time.Now().UnixNano())
			if len(resp.lastMod) > 0 {
				lastMod = append(lastMod[:0], resp.lastMod...)
			}
			if len(resp.etag) > 0 {
				etag = append(etag[:0], resp.etag...)
			}
		case 304, 408: // Not Modified, Request Timeout: the wait ended empty
			c.empty++
		default:
			kind, detail := httpErrKind(resp)
			wait := retryAfter(resp, 250*time.Millisecond)
			if ctx.Err() != nil {
				return
			}
			r.pollErrs.add(kind, detail)
			sleepCtx(ctx, wait)
		}
	}
}

// httpErrKind names a non-2xx response: "http_429:too_many_polls".
func httpErrKind(resp *wireResp) (kind, detail string) {
	kind = "http_" + strconv.Itoa(resp.status)
	b := resp.body[:min(len(resp.body), 4096)]
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

func retryAfter(resp *wireResp, def time.Duration) time.Duration {
	if v := resp.retryAfter; len(v) > 0 {
		if s, err := strconv.Atoi(string(v)); err == nil && s >= 0 {
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
