package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// mintToken signs an HS256 user token.
func mintToken(secret, sub string, groups []string) (string, error) {
	now := time.Now()
	claims := jwt.MapClaims{
		"sub": sub,
		"iat": now.Unix(),
		"exp": now.Add(3 * time.Hour).Unix(),
	}
	if groups != nil {
		claims["groups"] = groups
	}
	return jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString([]byte(secret))
}

// publisherAuth returns the Authorization header value for publishing.
// A JWT is sent as is; an API key written as name:secret is sent as its
// secret; nothing given means an admin token minted with -secret.
func publisherAuth(cfg *config) (string, error) {
	t := strings.TrimSpace(cfg.pubToken)
	if t == "" {
		tok, err := mintToken(cfg.secret, "loadgen-admin", []string{"admin"})
		if err != nil {
			return "", err
		}
		return "Bearer " + tok, nil
	}
	if strings.Count(t, ".") != 2 {
		if _, secret, ok := strings.Cut(t, ":"); ok {
			t = secret
		}
	}
	return "Bearer " + t, nil
}

// appendPayload writes "name|seq|unixnanos".
func appendPayload(dst []byte, name string, seq uint64, ts int64) []byte {
	dst = append(dst, name...)
	dst = append(dst, '|')
	dst = strconv.AppendUint(dst, seq, 10)
	dst = append(dst, '|')
	return strconv.AppendInt(dst, ts, 10)
}

// pubResult is what one publish call reported.
type pubResult struct {
	ok     bool
	status int
	body   []byte // the 2xx response body; valid until w's next request
}

// publishRaw POSTs body to the pollbox publish endpoint or an Nchan channel
// over w. The whole call must finish within timeout.
func (r *runner) publishRaw(w *wireClient, target *wireTarget, body []byte, timeout time.Duration) pubResult {
	w.begin("POST", target, nil)
	if r.cfg.protocol == "pollbox" {
		w.header("Content-Type", "application/json")
		w.header("Authorization", r.pubAuth)
	} else {
		w.header("Content-Type", "text/plain")
	}
	resp, err := w.do(body, timeout, nil)
	if err != nil {
		r.pubErrs.add(netKind(err), err.Error())
		return pubResult{}
	}
	if resp.status < 200 || resp.status > 299 {
		kind, detail := httpErrKind(resp)
		r.pubErrs.add(kind, detail)
		return pubResult{status: resp.status}
	}
	return pubResult{ok: true, status: resp.status, body: resp.body}
}

// markPublished records that seq was acknowledged for stream s.
func (r *runner) markPublished(s int, seq uint64) {
	r.pubOK[s*r.seqWords+int(seq/64)].Or(uint64(1) << (seq % 64))
	r.okCount[s].Add(1)
	r.published.Add(1)
}

// publishUsers paces single-recipient publishes at cfg.rate for cfg.duration.
// A dispatcher hands out send slots every millisecond; when the publishers
// fall behind, the missing slots are handed out as soon as they catch up
// (until the time is over). It returns the time from the first call to the
// last response.
func (r *runner) publishUsers(ctx context.Context) time.Duration {
	cfg := r.cfg
	total := int64(math.Round(cfg.rate * cfg.duration.Seconds()))
	jobs := make(chan struct{}, cfg.publishers*4)
	start := time.Now()
	var wg sync.WaitGroup
	var lastMu sync.Mutex
	last := start
	for i := 0; i < cfg.publishers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w := newWireClient(ctx) // one keep-alive connection per publisher
			defer w.closeConn()
			payload := make([]byte, 0, 64)
			body := make([]byte, 0, 256)
			for range jobs {
				n := r.nextSeq.Add(1) - 1
				u := int(n % int64(cfg.users))
				seq := uint64(n / int64(cfg.users))
				name := r.userNames[u]
				ts := time.Now()
				payload = appendPayload(payload[:0], name, seq, ts.UnixNano())
				var target *wireTarget
				if cfg.protocol == "pollbox" {
					target = &r.publishTarget
					body = append(body[:0], `{"to":["`...)
					body = append(body, name...)
					body = append(body, `"],"title":"load","body":"`...)
					body = append(body, payload...)
					body = append(body, `"}`...)
				} else {
					target = &r.nchanPubTargets[u]
					body = append(body[:0], payload...)
				}
				res := r.publishRaw(w, target, body, 10*time.Second)
				end := time.Now()
				r.pubLat.record(end.Sub(ts))
				if res.ok {
					r.markPublished(u, seq)
				} else {
					r.pubFailed.Add(1)
				}
				lastMu.Lock()
				if end.After(last) {
					last = end
				}
				lastMu.Unlock()
			}
		}()
	}

	deadline := start.Add(cfg.duration)
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	var issued int64
dispatch:
	for issued < total {
		select {
		case <-ctx.Done():
			break dispatch
		case now := <-tick.C:
			if now.After(deadline.Add(50 * time.Millisecond)) {
				break dispatch
			}
			target := int64(now.Sub(start).Seconds()*cfg.rate) + 1
			if target > total {
				target = total
			}
			for issued < target {
				select {
				case jobs <- struct{}{}:
					issued++
				case <-ctx.Done():
					break dispatch
				case <-tick.C:
					if time.Now().After(deadline.Add(50 * time.Millisecond)) {
						break dispatch
					}
				}
			}
		}
	}
	close(jobs)
	wg.Wait()
	r.pubIssued = issued
	r.pubTarget = total
	return last.Sub(start)
}

// publishOne sends the single broadcast or batch publish and returns how
// long the call took.
func (r *runner) publishOne(ctx context.Context) (time.Duration, error) {
	cfg := r.cfg
	ts := time.Now()
	payload := appendPayload(nil, "all", 0, ts.UnixNano())
	target := &r.publishTarget
	var body []byte
	switch {
	case cfg.protocol == "nchan":
		t, err := parseTarget(fmt.Sprintf(cfg.nchanPub, nchanAllChannel))
		if err != nil {
			return 0, err
		}
		target = &t
		body = payload
	case cfg.mode == "broadcast":
		body = []byte(`{"broadcast":true,"title":"load","body":"` + string(payload) + `"}`)
	default: // batch
		var b bytes.Buffer
		b.Grow(cfg.users*10 + 128)
		b.WriteString(`{"to":[`)
		for i, name := range r.userNames {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteByte('"')
			b.WriteString(name)
			b.WriteByte('"')
		}
		b.WriteString(`],"title":"load","body":"`)
		b.Write(payload)
		b.WriteString(`"}`)
		body = b.Bytes()
	}
	w := newWireClient(ctx)
	defer w.closeConn()
	res := r.publishRaw(w, target, body, 90*time.Second)
	d := time.Since(ts)
	r.pubLat.record(d)
	r.pubIssued, r.pubTarget = 1, 1
	if !res.ok {
		r.pubFailed.Add(1)
		return d, fmt.Errorf("publish failed (status %d): %s", res.status, formatKinds(r.pubErrsSnapshot()))
	}
	if cfg.protocol == "pollbox" {
		var out struct {
			Count int `json:"count"`
		}
		if json.Unmarshal(res.body, &out) == nil {
			r.batchCount = out.Count
		}
	}
	r.markPublished(0, 0)
	return d, nil
}

func (r *runner) pubErrsSnapshot() map[string]int64 {
	m, _ := r.pubErrs.snapshot()
	return m
}
