package main

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"pollbox/internal/redistest"
)

// cuttingProxy is a reverse proxy in front of pollbox that, while cutting
// is on, answers 504 to any poll still waiting after cutAfter, as a proxy
// with a short read timeout does. It records the wait each poll asked for.
type cuttingProxy struct {
	cutAfter time.Duration
	cutting  atomic.Bool
	mu       sync.Mutex
	asked    []int // timeout query of each poll, in arrival order
	cuts     int
}

func (p *cuttingProxy) handler(target *url.URL) http.Handler {
	rp := httputil.NewSingleHostReverseProxy(target)
	rp.ErrorHandler = func(w http.ResponseWriter, r *http.Request, err error) {
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(http.StatusGatewayTimeout)
		_, _ = w.Write([]byte("<html><body>Gateway Timeout</body></html>"))
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v1/poll" {
			n, _ := strconv.Atoi(r.URL.Query().Get("timeout"))
			p.mu.Lock()
			p.asked = append(p.asked, n)
			p.mu.Unlock()
			if p.cutting.Load() {
				ctx, cancel := context.WithTimeout(r.Context(), p.cutAfter)
				defer cancel()
				r = r.WithContext(ctx)
				defer func() {
					if ctx.Err() == context.DeadlineExceeded {
						p.mu.Lock()
						p.cuts++
						p.mu.Unlock()
					}
				}()
			}
		}
		rp.ServeHTTP(w, r)
	})
}

func (p *cuttingProxy) polls() ([]int, int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]int(nil), p.asked...), p.cuts
}

// TestBrowserClientLearnsProxyCut: behind a proxy that cuts polls at 6 s
// with a 504, client.js (asking for 8 s) takes two cuts to learn a shorter
// wait (5 s), then polls without cuts, never reports an error and delivers
// every message once. When the learnt wait is due for its probe and the
// proxy no longer cuts, one poll with the full wait succeeds and the
// client forgets what it learnt.
func TestBrowserClientLearnsProxyCut(t *testing.T) {
	t.Parallel()
	b := newBrowser(t)
	rs := redistest.Start(t, redistest.Options{})
	secret := newSecret(t)
	in := startInstance(t, baseEnv(secret, redistest.Prefix(t), "POLLBOX_REDIS_URL", rs.URL()))
	target, err := url.Parse(in.base)
	if err != nil {
		t.Fatal(err)
	}
	px := &cuttingProxy{cutAfter: 6 * time.Second}
	px.cutting.Store(true)
	front := httptest.NewServer(px.handler(target))
	t.Cleanup(front.Close)
	hc := newHTTPClient(t)
	user := smpeToken(secret, "42", "user:list")
	admin := smpeToken(secret, "1", "admin")

	tab := b.openTabs(t, front.URL+"/healthz", "tab")[0]
	evalJS[bool](t, tab, `(function () {
		var s = document.createElement('script'); s.src = '/client.js'; document.head.appendChild(s); return true;
	})()`)
	mustWaitFor[bool](t, tab, 10*time.Second, "client.js to load", `function () { return !!window.Pollbox; }`)
	evalJS[bool](t, tab, `(function () {
		var r = window.__adapt = {errors: [], states: [], got: {}};
		window.__c = Pollbox.connect({url: '', token: `+strconv.Quote(user)+`, shared: false, historyLimit: 0, timeout: 8,
			onError: function (e) { r.errors.push(e); },
			onState: function (s) { r.states.push(s); },
			onMessage: function (m) { r.got[m.id] = (r.got[m.id] || 0) + 1; }});
		return true;
	})()`)

	// Two cuts at 6 s, then a wait of 5 s (80 % of 6, floored at 5).
	mustWaitFor[bool](t, tab, 20*time.Second, "the client's wait to drop to 5 s",
		`function () { return window.__c.state().wait === 5; }`)
	asked, cuts := px.polls()
	t.Logf("polls asked for %v; %d cut", asked, cuts)
	if cuts != 2 {
		t.Errorf("%d polls were cut before the client adapted, want 2", cuts)
	}
	// The next poll asks for 5 s and is not cut.
	deadline := time.Now().Add(15 * time.Second)
	for {
		asked, _ = px.polls()
		if len(asked) > 0 && asked[len(asked)-1] == 5 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no poll asked for 5 s: %v", asked)
		}
		time.Sleep(50 * time.Millisecond)
	}
	id, _ := publishAt(t, hc, in.base, admin, "42", "behind a cutting proxy")
	mustWaitFor[bool](t, tab, 5*time.Second, "the message", `function (id) { return window.__adapt.got[id] === 1; }`, id)

	// The proxy goes; the learnt wait falls due for its probe.
	px.cutting.Store(false)
	evalJS[bool](t, tab, `(function () {
		for (var i = 0; i < localStorage.length; i++) {
			var k = localStorage.key(i);
			if (k.indexOf('pollbox:wait:') === 0) { var v = JSON.parse(localStorage.getItem(k)); v.p = 0; localStorage.setItem(k, JSON.stringify(v)); }
		}
		return true;
	})()`)
	mustWaitFor[bool](t, tab, 20*time.Second, "the probe to restore the full wait", `function () {
		for (var i = 0; i < localStorage.length; i++) {
			if (localStorage.key(i).indexOf('pollbox:wait:') === 0) { return false; }
		}
		return window.__c.state().wait === 8;
	}`)

	type report struct {
		Errors []map[string]any `json:"errors"`
		States []map[string]any `json:"states"`
		Got    map[string]int   `json:"got"`
	}
	r := evalJS[report](t, tab, `window.__adapt`)
	if len(r.Errors) > 0 {
		t.Errorf("onError was called for proxy cuts: %v", r.Errors)
	}
	for _, s := range r.States {
		if s["ok"] != true {
			t.Errorf("the status left ok: %v", r.States)
			break
		}
	}
	if r.Got[id] != 1 || len(r.Got) != 1 {
		t.Errorf("messages delivered %v, want %s once", r.Got, id)
	}
	asked, cuts = px.polls()
	t.Logf("polls asked for %v; %d cut", asked, cuts)
	if cuts != 2 {
		t.Errorf("%d polls were cut, want 2", cuts)
	}
}
