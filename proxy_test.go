package main

// Proxy tests: pollbox behind real intermediaries from Debian's packages,
// each started on a free loopback port with its own configuration. squid as
// a forward proxy and nginx as a reverse proxy cut a poll that waits longer
// than their read timeout; the browser client must learn to ask for less
// and deliver everything without ever reporting an error. A plain HTTP/1.0
// client loop through squid, and a poll cut by squid's client_lifetime,
// must lose and repeat nothing.

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"pollbox/internal/redistest"
)

const (
	// proxyCut is the read timeout of the intermediaries in the browser
	// tests: a poll waiting longer is cut.
	proxyCut = 10 * time.Second
	// adaptCycles is how many polls the client may spend before it asks
	// for a wait below proxyCut.
	adaptCycles = 3
	// proxiedMessages are published one every proxiedEvery.
	proxiedMessages = 30
	proxiedEvery    = 2 * time.Second
	// proxiedDelayLimit bounds publish sent → onMessage once adapted.
	proxiedDelayLimit = 3 * time.Second
)

// Chromium reaches pollbox through squid as its forward proxy (loopback
// included); squid cuts any exchange whose server is silent for 10 s.
func TestBrowserThroughSquid(t *testing.T) {
	t.Parallel()
	squid := requireSquid(t)
	env, secret := proxyEnv(t)
	in := startInstance(t, env)
	sq := startSquid(t, squid, squidOptions{ports: []int{portOf(t, in.base)}, readTimeout: proxyCut})
	b := newBrowser(t,
		chromedp.ProxyServer("http://"+sq.addr),
		// Chromium never proxies loopback unless told to.
		chromedp.Flag("proxy-bypass-list", "<-loopback>"))
	r := runProxiedClient(t, b, in.base, in.base, in.base, secret)
	if !strings.Contains(sq.tail("access.log", 1<<20), "/v1/poll?") {
		t.Errorf("squid's access log shows no poll: the browser did not use the proxy")
	}
	t.Logf("through squid: %s", r)
}

// Chromium loads the page and polls through nginx in front of one pollbox,
// with proxy_buffering on and a 10 s proxy_read_timeout.
func TestBrowserThroughNginx(t *testing.T) {
	t.Parallel()
	nginx := requireNginx(t)
	env, secret := proxyEnv(t)
	in := startInstance(t, env)
	ngx := startReverseNginx(t, nginx, strings.TrimPrefix(in.base, "http://"), `
        proxy_buffering on;
        proxy_read_timeout 10s;`)
	b := newBrowser(t)
	r := runProxiedClient(t, b, ngx.base, ngx.base, in.base, secret)
	if !strings.Contains(ngx.tail("access.log", 1<<20), "/v1/poll?") {
		t.Errorf("nginx's access log shows no poll: the browser did not go through it")
	}
	t.Logf("through nginx: %s", r)
}

func proxyEnv(t *testing.T) (map[string]string, []byte) {
	t.Helper()
	secret := newSecret(t)
	// Info level: a failure report then shows pollbox's recent requests.
	return baseEnv(secret, redistest.Prefix(t), "POLLBOX_REDIS_URL", redistest.URL(t), "POLLBOX_LOG_LEVEL", "info"), secret
}

// portOf returns the port of a base URL.
func portOf(t *testing.T, base string) int {
	t.Helper()
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	p, err := strconv.Atoi(u.Port())
	if err != nil {
		t.Fatalf("%s: %v", base, err)
	}
	return p
}

// jsProxiedClient loads client.js from base into the page and connects it
// (one tab, no sharing, no history). It records, on the page's clock (unix
// ms), every onMessage, onError and onState call, and every poll request
// the client sends: the wait it asks for, when it started and ended, and
// its status (0: network error, cut, or aborted).
const jsProxiedClient = `(function (base, token) {
  var s = window.__px = {msgs: [], errors: [], states: [], polls: [], loaded: false, loadError: false};
  var X = window.XMLHttpRequest, open = X.prototype.open, send = X.prototype.send;
  X.prototype.open = function (m, u) { this.__pxURL = String(u); return open.apply(this, arguments); };
  X.prototype.send = function () {
    var x = this, u = x.__pxURL || '', w;
    if (u.indexOf('/v1/poll') >= 0) {
      w = /[?&]timeout=(\d+)/.exec(u);
      var p = {wait: w ? +w[1] : -1, start: Date.now(), end: 0, status: -1};
      s.polls.push(p);
      x.addEventListener('loadend', function () { p.end = Date.now(); p.status = x.status; });
    }
    return send.apply(this, arguments);
  };
  var el = document.createElement('script');
  el.src = base + '/client.js';
  el.onload = function () {
    s.client = Pollbox.connect({url: base, token: token, shared: false, timeout: 25, historyLimit: 0,
      onMessage: function (m) { s.msgs.push({id: m.id, at: Date.now()}); },
      onError: function (e) {
        s.errors.push({at: Date.now(), status: e.status, error: e.error, message: e.message});
      },
      onState: function (st) { s.states.push({at: Date.now(), role: st.role, ok: st.ok, wait: st.wait}); }});
    s.loaded = true;
  };
  el.onerror = function () { s.loadError = true; };
  document.head.appendChild(el);
  return true;
})`

// jsProxiedState returns window.__px without the client, and the client's state.
const jsProxiedState = `(function () {
  var s = window.__px || {}, c = s.client, st = c ? c.state() : null;
  return {msgs: s.msgs || [], errors: s.errors || [], states: s.states || [], polls: s.polls || [],
    loaded: !!s.loaded, loadError: !!s.loadError, role: st ? st.role : '', ok: !!(st && st.ok),
    wait: st && typeof st.wait === 'number' ? st.wait : -1};
})()`

type proxiedPoll struct {
	Wait   int   `json:"wait"`
	Start  int64 `json:"start"`
	End    int64 `json:"end"`
	Status int   `json:"status"`
}

type proxiedState struct {
	Msgs []struct {
		ID string `json:"id"`
		At int64  `json:"at"`
	} `json:"msgs"`
	Errors []map[string]any `json:"errors"`
	States []struct {
		At   int64   `json:"at"`
		Role string  `json:"role"`
		OK   bool    `json:"ok"`
		Wait float64 `json:"wait"`
	} `json:"states"`
	Polls     []proxiedPoll `json:"polls"`
	Loaded    bool          `json:"loaded"`
	LoadError bool          `json:"loadError"`
	Role      string        `json:"role"`
	OK        bool          `json:"ok"`
	Wait      float64       `json:"wait"` // c.state().wait; -1 when the client does not report it
}

// pollLog renders the poll requests for failure messages.
func (st proxiedState) pollLog(since int64) string {
	var b strings.Builder
	for i, p := range st.Polls {
		end := "open"
		if p.End > 0 {
			end = fmt.Sprintf("after %.1fs status %d", float64(p.End-p.Start)/1000, p.Status)
		}
		fmt.Fprintf(&b, "\n  poll %d: wait=%d at +%.1fs, %s", i+1, p.Wait, float64(p.Start-since)/1000, end)
	}
	return b.String()
}

// proxiedResult is what a browser test measured.
type proxiedResult struct {
	cycles   int           // polls sent before the first that asked for less than proxyCut
	cut      int           // of those, how many ended without a 200
	wait     float64       // c.state().wait once adapted
	adapted  time.Duration // page load → first short poll
	maxDelay time.Duration // longest publish sent → onMessage
	maxID    string
	total    time.Duration
}

func (r proxiedResult) String() string {
	return fmt.Sprintf("adapted after %d poll cycles (%d cut), %v after connecting; wait then %v s; "+
		"longest publish→onMessage delay %v (message %s); run %v",
		r.cycles, r.cut, r.adapted.Round(100*time.Millisecond), r.wait, r.maxDelay.Round(time.Millisecond), r.maxID,
		r.total.Round(time.Second))
}

// runProxiedClient loads pageBase+"/healthz" in a tab, connects client.js
// served from clientBase to clientBase, and checks that the client adapts
// its wait below the proxy's cut within adaptCycles polls, that messages
// published directly to pollbox (at direct) one every proxiedEvery are each
// delivered once, soon, and that no error and no ok:false ever shows
// after adapting (and no error at all).
func runProxiedClient(t *testing.T, b *testBrowser, pageBase, clientBase, direct string, secret []byte) proxiedResult {
	t.Helper()
	began := time.Now()
	hc := newHTTPClient(t)
	user := smpeToken(secret, "42", "user:list")
	admin := smpeToken(secret, "1", "admin")
	tb := &pageTab{name: "page", ctx: b.ctx}
	tb.do(t, 30*time.Second, "loading "+pageBase+"/healthz", chromedp.Navigate(pageBase+"/healthz"))
	args, _ := json.Marshal([]string{clientBase, user})
	evalJS[bool](t, tb, jsProxiedClient+".apply(null, "+string(args)+")")
	state := func() proxiedState { return evalJS[proxiedState](t, tb, jsProxiedState) }
	mustWaitFor[bool](t, tb, 15*time.Second, "client.js to load",
		`function () { var s = window.__px; return !!(s && (s.loaded || s.loadError)); }`)
	if st := state(); st.LoadError {
		t.Fatalf("%s/client.js did not load", clientBase)
	}
	connected := time.Now()

	// Adaptation: a poll asking for less than the cut, within adaptCycles
	// polls (each cut after proxyCut), plus slack.
	var st proxiedState
	short := -1
	deadline := time.Now().Add(time.Duration(adaptCycles+1)*proxyCut + 10*time.Second)
	for short < 0 {
		st = state()
		for i, p := range st.Polls {
			if p.Wait > 0 && time.Duration(p.Wait)*time.Second < proxyCut {
				short = i
				break
			}
		}
		if short >= 0 {
			break
		}
		if time.Now().After(deadline) || len(st.Polls) > adaptCycles+1 {
			t.Fatalf("no poll asked for less than %v within %v (%d polls); state().wait %v, errors %v, states %+v:%s",
				proxyCut, time.Since(connected).Round(time.Second), len(st.Polls), st.Wait, st.Errors, st.States,
				st.pollLog(connected.UnixMilli()))
		}
		time.Sleep(200 * time.Millisecond)
	}
	r := proxiedResult{cycles: short, adapted: time.UnixMilli(st.Polls[short].Start).Sub(connected), wait: st.Wait}
	for _, p := range st.Polls[:short] {
		if p.Status != http.StatusOK {
			r.cut++
		}
	}
	adaptedAt := st.Polls[short].Start
	t.Logf("adapted: %d polls before the first short one; state() %s ok=%v wait=%v:%s",
		r.cycles, st.Role, st.OK, st.Wait, st.pollLog(connected.UnixMilli()))
	if r.cycles > adaptCycles {
		t.Errorf("the client needed %d poll cycles to ask for less than %v, want ≤ %d", r.cycles, proxyCut, adaptCycles)
	}
	if w := time.Duration(st.Wait * float64(time.Second)); w < 5*time.Second || w >= proxyCut {
		t.Errorf("state().wait is %v s once adapted, want in [5, %v)", st.Wait, proxyCut.Seconds())
	}

	// Messages, one every proxiedEvery, published directly.
	sent := map[string]time.Time{}
	var ids []string
	tick := time.NewTicker(proxiedEvery)
	for i := range proxiedMessages {
		if i > 0 {
			<-tick.C
		}
		at := time.Now()
		id := mustPublish(t, hc, direct, admin, []string{"42"}, "proxied "+strconv.Itoa(i))[0]
		sent[id] = at
		ids = append(ids, id)
	}
	tick.Stop()
	mustWaitFor[bool](t, tb, 20*time.Second, "every message to reach onMessage",
		`function (n) { var s = window.__px; return !!s && s.msgs.length >= n; }`, len(ids))
	st = state()

	count := map[string]int{}
	for _, m := range st.Msgs {
		count[m.ID]++
		at, ok := sent[m.ID]
		if !ok {
			t.Errorf("onMessage got %s, which was not published", m.ID)
			continue
		}
		if d := time.UnixMilli(m.At).Sub(at); count[m.ID] == 1 && d > r.maxDelay {
			r.maxDelay, r.maxID = d, m.ID
		}
	}
	for _, id := range ids {
		if count[id] != 1 {
			t.Errorf("message %s reached onMessage %d times, want once", id, count[id])
		}
	}
	if r.maxDelay > proxiedDelayLimit {
		t.Errorf("message %s reached onMessage %v after its publish was sent, want ≤ %v",
			r.maxID, r.maxDelay.Round(time.Millisecond), proxiedDelayLimit)
	}
	if len(st.Errors) > 0 {
		t.Errorf("onError was called %d times, want never: %v", len(st.Errors), st.Errors)
	}
	for _, s := range st.States {
		if !s.OK && s.Role != "connecting" {
			when := "before"
			if s.At >= adaptedAt {
				when = "after"
			}
			if when == "after" {
				t.Errorf("onState reported ok:false %s adapting: %+v", when, s)
			} else {
				t.Logf("onState reported ok:false %s adapting: %+v", when, s)
			}
		}
	}
	if !st.OK {
		t.Errorf("state() ends with ok=false (role %s)", st.Role)
	}
	for i, p := range st.Polls[short:] {
		if p.End > 0 && p.Status != http.StatusOK {
			t.Errorf("poll %d, after adapting, ended with status %d after %.1fs (wait %d)",
				short+i+1, p.Status, float64(p.End-p.Start)/1000, p.Wait)
		}
	}
	if t.Failed() {
		t.Logf("polls:%s", st.pollLog(connected.UnixMilli()))
	}
	r.total = time.Since(began)
	return r
}

// An HTTP/1.0 client loop through squid (read_timeout 10 s) that polls
// with timeout=8 gets 20 messages, published while a poll waits, between
// polls, in bursts and after an empty cycle, each once and in order.
func TestSquidHTTP10PollLoop(t *testing.T) {
	t.Parallel()
	squid := requireSquid(t)
	env, secret := proxyEnv(t)
	in := startInstance(t, env)
	sq := startSquid(t, squid, squidOptions{ports: []int{portOf(t, in.base)}, readTimeout: proxyCut})
	hc := newHTTPClient(t)
	user := smpeToken(secret, "7", "user:list")
	admin := smpeToken(secret, "1", "admin")

	cursor := mustRawPoll(t, sq.addr, in.base, user, "", 0).Cursor
	var published, got []string
	pub := func(n int, gap time.Duration) {
		for i := range n {
			if i > 0 {
				time.Sleep(gap) // spacing is the point: some land mid-poll, some between
			}
			published = append(published, mustPublish(t, hc, in.base, admin, []string{"7"}, "m"+strconv.Itoa(len(published)))...)
		}
	}
	take := func(pr pollResult) {
		for _, m := range pr.Messages {
			got = append(got, m.ID)
		}
		cursor = pr.Cursor
	}
	// waiting publishes n messages while a poll waits in pollbox.
	waiting := func(n int, gap time.Duration) {
		type answer struct {
			pr  pollResult
			a   rawAnswer
			err error
		}
		ch := make(chan answer, 1)
		c := cursor
		go func() {
			pr, a, err := rawPoll(sq.addr, in.base, user, c, 8)
			ch <- answer{pr, a, err}
		}()
		var ans answer
		select { // the poll must wait: an early answer is a failure
		case ans = <-ch:
			t.Fatalf("a poll from the newest cursor answered before any publish: %v %q", ans.err, ans.a.raw)
		case <-waitingPolls(hc, in.base, 1):
		case <-time.After(10 * time.Second):
			t.Fatal("the poll through squid did not wait in pollbox within 10 s")
		}
		pub(n, gap)
		ans = <-ch
		if ans.err != nil || ans.a.status != http.StatusOK {
			t.Fatalf("waiting poll through squid: %v %q", ans.err, ans.a.raw)
		}
		if len(ans.pr.Messages) == 0 {
			t.Fatalf("a poll that waited while %d messages were published answered none", n)
		}
		take(ans.pr)
		// What a burst left for later comes at once.
		for range n {
			if len(got) >= len(published) {
				break
			}
			take(mustRawPoll(t, sq.addr, in.base, user, cursor, 8))
		}
	}
	between := func(n int) { pub(n, 0); take(mustRawPoll(t, sq.addr, in.base, user, cursor, 8)) }

	between(2)
	waiting(1, 0)
	waiting(3, 200*time.Millisecond)
	// A cycle with nothing: pollbox answers at its 8 s, before squid's 10 s.
	begin := time.Now()
	empty := mustRawPoll(t, sq.addr, in.base, user, cursor, 8)
	if d := time.Since(begin); len(empty.Messages) != 0 || d < 7*time.Second {
		t.Fatalf("empty cycle: %d messages after %v, want none after about 8 s", len(empty.Messages), d)
	}
	take(empty)
	between(3)
	waiting(1, 0)
	waiting(4, 300*time.Millisecond)
	between(2)
	waiting(2, time.Second)
	waiting(2, 0)
	if len(published) != 20 {
		t.Fatalf("published %d messages, want 20", len(published))
	}
	if last := mustRawPoll(t, sq.addr, in.base, user, cursor, 1); len(last.Messages) != 0 {
		t.Errorf("a poll after the last message got %d more", len(last.Messages))
	}
	if strings.Join(got, " ") != strings.Join(published, " ") {
		t.Errorf("received (in order)\n  %v\nwant each published message once, in order\n  %v", got, published)
	}
}

// A poll longer than squid's client_lifetime (5 s) is cut; a message
// published right after the cut is seen, while pollbox may still hold the
// cut poll, comes to the next poll from the same cursor; pollbox counts
// cut polls and how long they waited.
func TestSquidClientLifetimeCutsPoll(t *testing.T) {
	t.Parallel()
	squid := requireSquid(t)
	env, secret := proxyEnv(t)
	in := startInstance(t, env)
	const lifetime = 5 * time.Second
	sq := startSquid(t, squid, squidOptions{ports: []int{portOf(t, in.base)}, readTimeout: time.Minute,
		clientLifetime: lifetime})
	hc := newHTTPClient(t)
	user := smpeToken(secret, "9", "user:list")
	admin := smpeToken(secret, "1", "admin")
	const cutCount, cutWaitCount, cutWaitSum = `pollbox_polls_total{outcome="cut"}`,
		"pollbox_poll_cut_wait_seconds_count", "pollbox_poll_cut_wait_seconds_sum"
	before := metricsOf(t, hc, in.base, cutCount, cutWaitCount, cutWaitSum)

	cursor := mustRawPoll(t, sq.addr, in.base, user, "", 0).Cursor
	cut := func(what string) {
		t.Helper()
		begin := time.Now()
		_, a, err := rawPoll(sq.addr, in.base, user, cursor, 20)
		d := time.Since(begin)
		t.Logf("%s: a 20 s poll through squid ended after %v: %v, %q", what, d.Round(time.Millisecond), err, a.raw)
		if err == nil && a.status == http.StatusOK {
			t.Fatalf("%s: the poll was answered 200 after %v: squid did not cut it", what, d)
		}
		if d < lifetime-time.Second || d > lifetime+5*time.Second {
			t.Fatalf("%s: the poll ended after %v, want about squid's client_lifetime %v", what, d, lifetime)
		}
	}
	cut("first cut")
	id := mustPublish(t, hc, in.base, admin, []string{"9"}, "after the cut")[0]
	begin := time.Now()
	next := mustRawPoll(t, sq.addr, in.base, user, cursor, 20)
	if len(next.Messages) != 1 || next.Messages[0].ID != id {
		t.Fatalf("the poll after the cut, from the same cursor, got %+v, want only %s", next.Messages, id)
	}
	if d := time.Since(begin); d > 2*time.Second {
		t.Errorf("the message published after the cut came %v into the next poll, want at once", d)
	}
	// The cut poll above may have been answered into the void when the
	// message woke it first; this one has nothing to answer.
	cursor = next.Cursor
	cut("second cut")

	var after map[string]float64
	eventually(t, 10*time.Second, func() bool {
		after = metricsOf(t, hc, in.base, cutCount, cutWaitCount, cutWaitSum)
		return after[cutCount] >= before[cutCount]+1
	}, func() string { return fmt.Sprintf("%s to rise from %v (now %v)", cutCount, before, after) })
	n := after[cutWaitCount] - before[cutWaitCount]
	if n < 1 || n != after[cutCount]-before[cutCount] {
		t.Errorf("%s rose by %v and %s by %v: want the same, ≥ 1", cutCount, after[cutCount]-before[cutCount], cutWaitCount, n)
	}
	if n > 0 {
		if avg := (after[cutWaitSum] - before[cutWaitSum]) / n; avg < (lifetime-time.Second).Seconds() || avg > lifetime.Seconds()+5 {
			t.Errorf("cut polls waited %.1f s on average, want about squid's client_lifetime %v", avg, lifetime)
		}
	}
	t.Logf("cut polls counted: %v (histogram count %v)", after[cutCount]-before[cutCount], n)
}

// waitingPolls is closed once exactly n polls wait on the instance at
// base; it gives up (stays open) after 15 s.
func waitingPolls(hc *http.Client, base string, n int) <-chan struct{} {
	ch := make(chan struct{})
	go func() {
		for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
			if v, err := metric(hc, base, "pollbox_polls_waiting"); err == nil && v == float64(n) {
				close(ch)
				return
			}
		}
	}()
	return ch
}
