package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
)

// chromiumNames are the browser binaries the browser tests look for, in order.
var chromiumNames = []string{"/usr/bin/chromium", "chromium", "chromium-browser", "google-chrome"}

var skipBanner sync.Once

// chromiumPath returns the browser binary to drive, or "" when there is none.
func chromiumPath() string {
	for _, name := range chromiumNames {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// testBrowser is one headless Chromium with one profile, owned by one test.
type testBrowser struct {
	ctx    context.Context // context of the browser's first (blank) tab
	output *syncBuffer     // the browser's stdout and stderr, for failure reports
}

// newBrowser starts a headless Chromium with a fresh profile for this test and
// stops it when the test ends. Without a Chromium binary the test is
// skipped, except in CI (CI=true), where .ci/run should have installed one
// and a missing browser fails the test.
func newBrowser(t *testing.T, extra ...chromedp.ExecAllocatorOption) *testBrowser {
	t.Helper()
	path := chromiumPath()
	if path == "" {
		if os.Getenv("CI") == "true" {
			t.Fatalf("no chromium binary found (looked for %s): .ci/run should have installed Debian's chromium",
				strings.Join(chromiumNames, ", "))
		}
		msg := "SKIPPING BROWSER TESTS: no chromium binary found (looked for " +
			strings.Join(chromiumNames, ", ") + "); install Debian's chromium package"
		skipBanner.Do(func() { fmt.Fprintf(os.Stderr, "\n*** %s ***\n\n", msg) })
		t.Skip(msg)
	}
	b := &testBrowser{output: newSyncBuffer()}
	profile := t.TempDir() // registered first, so it is removed after the browser stopped
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.Headless,
		chromedp.NoSandbox, // the tests run as root in CI containers
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-quic", true),
		chromedp.UserDataDir(profile),
		chromedp.WindowSize(1280, 800),
		chromedp.CombinedOutput(b.output),
	)
	opts = append(opts, extra...)
	// Everything the browser does is bounded, so a hang fails the test
	// instead of the whole binary.
	root, cancelRoot := context.WithTimeout(context.Background(), 3*time.Minute)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(root, opts...)
	ctx, cancel := chromedp.NewContext(allocCtx)
	t.Cleanup(func() {
		cancel()
		cancelAlloc()
		cancelRoot()
		if t.Failed() {
			t.Logf("chromium output:\n%s", b.log())
		}
	})
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("starting %s: %v\n%s", path, err, b.log())
	}
	b.ctx = ctx
	return b
}

// log returns the end of the browser's output without the D-Bus complaints
// of a machine that has no D-Bus.
func (b *testBrowser) log() string {
	var keep []string
	for _, line := range strings.Split(b.output.String(), "\n") {
		if line != "" && !strings.Contains(line, "dbus") {
			keep = append(keep, line)
		}
	}
	if len(keep) > 40 {
		keep = keep[len(keep)-40:]
	}
	return strings.Join(keep, "\n")
}

// pageProbe is installed in every document a test tab loads, before the
// page's own scripts. It records, on the page's clock (unix ms):
//   - shown[id]: when li.msg[data-id=id] was first inserted into the DOM;
//   - unread: the #unread badge's latest text and when it was set;
//   - leaderAt: when the status last turned to "connected (leader)";
//   - delivered[id]: how often client.js handed message id to onMessage
//     (the demo drops duplicates from its list, so the list alone cannot
//     show a duplicate delivery).
const pageProbe = `(function () {
  if (window.__pbTest) { return; }
  var s = window.__pbTest = {delivered: {}, shown: {}, unread: null, leaderAt: 0};
  var real;
  Object.defineProperty(window, 'Pollbox', {
    configurable: true,
    get: function () { return real; },
    set: function (v) {
      if (v && typeof v.connect === 'function' && !v.__counted) {
        var connect = v.connect;
        v.connect = function (o) {
          var on = o && o.onMessage;
          if (typeof on === 'function') {
            o.onMessage = function (m) {
              if (m && m.id != null) { s.delivered[m.id] = (s.delivered[m.id] || 0) + 1; }
              return on.apply(this, arguments);
            };
          }
          return connect.call(this, o);
        };
        v.__counted = true;
      }
      real = v;
    }
  });
  function added(el, now) {
    if (el.nodeType !== 1) { return; }
    var list = el.matches('li.msg[data-id]') ? [el] : el.querySelectorAll('li.msg[data-id]');
    for (var i = 0; i < list.length; i++) {
      var id = list[i].getAttribute('data-id');
      if (!s.shown[id]) { s.shown[id] = now; }
    }
  }
  new MutationObserver(function (recs) {
    var now = Date.now();
    for (var i = 0; i < recs.length; i++) {
      var r = recs[i], tg = r.target.nodeType === 3 ? r.target.parentNode : r.target;
      if (tg && tg.id === 'unread') { s.unread = {v: tg.textContent, at: now}; }
      if (tg && tg.id === 'status' && tg.textContent === 'connected (leader)') { s.leaderAt = now; }
      for (var j = 0; j < r.addedNodes.length; j++) { added(r.addedNodes[j], now); }
    }
  }).observe(document, {childList: true, subtree: true, characterData: true});
})();`

// tab is one page of a browser.
type pageTab struct {
	name string
	ctx  context.Context
	stop context.CancelFunc
}

// openTabs opens one tab per name, all at once, each a new target in the
// browser's profile (tabs of one window, the last one in front), installs
// pageProbe in each and loads url.
func (b *testBrowser) openTabs(t *testing.T, url string, names ...string) []*pageTab {
	t.Helper()
	tabs := make([]*pageTab, len(names))
	errs := make([]error, len(names))
	var wg sync.WaitGroup
	for i, name := range names {
		ctx, cancel := chromedp.NewContext(b.ctx, chromedp.WithNewWindow(false))
		t.Cleanup(cancel)
		tabs[i] = &pageTab{name: name, ctx: ctx, stop: cancel}
		wg.Go(func() {
			probe := chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
				_, err := cdp.Call(ctx, tg, page.AddScriptToEvaluateOnNewDocument,
					page.AddScriptToEvaluateOnNewDocumentParams{Source: pageProbe})
				return err
			})
			errs[i] = chromedp.Do(ctx, probe, chromedp.Navigate(url))
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("%s: opening %s: %v", names[i], url, err)
		}
	}
	return tabs
}

// front brings the tab to the front of its window, as a click on it would.
func (tb *pageTab) front(t *testing.T) {
	t.Helper()
	tb.do(t, 10*time.Second, "bringing the tab to the front", chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		_, err := cdp.Call(ctx, tg, page.BringToFront, cdp.Empty{})
		return err
	}))
}

// do runs actions on the tab, bounded by timeout.
func (tb *pageTab) do(t *testing.T, timeout time.Duration, what string, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, timeout)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		t.Fatalf("%s: %s: %v", tb.name, what, err)
	}
}

// eval evaluates a JavaScript expression in the tab and decodes its value.
func evalJS[T any](t *testing.T, tb *pageTab, expr string) T {
	t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, 10*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		t.Fatalf("%s: evaluating %.80s: %v", tb.name, expr, err)
	}
	return v
}

// waitFor checks the JavaScript function fn(args...) in the page every 50 ms
// until it returns a truthy value, which it returns. After timeout it
// returns chromedp.ErrPollingTimeout.
func waitFor[T any](tb *pageTab, timeout time.Duration, fn string, args ...any) (T, error) {
	// The context only guards against a browser that stops answering; the
	// page itself gives up after timeout.
	ctx, cancel := context.WithTimeout(tb.ctx, timeout+15*time.Second)
	defer cancel()
	return chromedp.Run(ctx, chromedp.PollFunction[T](fn,
		chromedp.WithPollingInterval(50*time.Millisecond),
		chromedp.WithPollingTimeout(timeout),
		chromedp.WithPollingArgs(args...)))
}

// mustWaitFor is waitFor that fails the test on a timeout.
func mustWaitFor[T any](t *testing.T, tb *pageTab, timeout time.Duration, what, fn string, args ...any) T {
	t.Helper()
	v, err := waitFor[T](tb, timeout, fn, args...)
	if err != nil {
		t.Fatalf("%s: waiting %v for %s: %v\npage: %s", tb.name, timeout, what, err, describeTab(tb))
	}
	return v
}

const (
	// jsShownAt answers when message id was first listed, or 0.
	jsShownAt = `function (id) { var s = window.__pbTest; return (s && s.shown[id]) || 0; }`
	// jsUnreadAt answers when the badge last changed to want, or 0 while it shows something else.
	jsUnreadAt = `function (want) {
		var s = window.__pbTest, b = document.getElementById('unread');
		return s && s.unread && s.unread.v === want && b.textContent === want ? s.unread.at : 0;
	}`
	// jsConnected answers the status line once it says "connected…".
	jsConnected = `function () {
		var st = document.getElementById('status').textContent;
		return /^connected/.test(st) ? st : '';
	}`
	// jsStatusLike answers the status line once it matches the pattern.
	jsStatusLike = `function (re) {
		var st = document.getElementById('status').textContent;
		return new RegExp(re).test(st) ? st : '';
	}`
)

// pageState is what a tab shows and what its client did.
type pageState struct {
	IDs       []string       `json:"ids"`       // data-id of each listed message, top to bottom
	Unread    []string       `json:"unreadIDs"` // data-id of each message marked unread
	Delivered map[string]int `json:"delivered"` // onMessage calls per message id
	Badge     string         `json:"badge"`     // #unread text
	Status    string         `json:"status"`    // #status text
	Leader    bool           `json:"leader"`    // pollboxClient.isLeader()
	HasClient bool           `json:"hasClient"` // the demo exposes its client
	LeaderAt  int64          `json:"leaderAt"`  // unix ms when the status last said "connected (leader)"
}

const jsState = `(function () {
	var s = window.__pbTest || {}, ids = [], unread = [], lis = document.querySelectorAll('#messages li.msg[data-id]'), i;
	for (i = 0; i < lis.length; i++) {
		ids.push(lis[i].getAttribute('data-id'));
		if (lis[i].classList.contains('unread')) { unread.push(lis[i].getAttribute('data-id')); }
	}
	var c = window.pollboxClient;
	return {ids: ids, unreadIDs: unread, delivered: s.delivered || {},
		badge: document.getElementById('unread').textContent,
		status: document.getElementById('status').textContent,
		leader: !!(c && c.isLeader()), hasClient: !!c, leaderAt: s.leaderAt || 0};
})()`

func tabState(t *testing.T, tb *pageTab) pageState {
	t.Helper()
	return evalJS[pageState](t, tb, jsState)
}

// describeTab summarises a tab for failure messages; it never fails.
func describeTab(tb *pageTab) string {
	ctx, cancel := context.WithTimeout(tb.ctx, 5*time.Second)
	defer cancel()
	st, err := chromedp.Run(ctx, chromedp.Evaluate[pageState](jsState))
	if err != nil {
		return "(state unreadable: " + err.Error() + ")"
	}
	b, _ := json.Marshal(st)
	return string(b)
}

// countID returns how often id occurs in ids.
func countID(ids []string, id string) int {
	n := 0
	for _, x := range ids {
		if x == id {
			n++
		}
	}
	return n
}

// checkListedOnce fails unless the tab lists exactly the messages want, each
// once, and its client delivered none of them more than once.
func checkListedOnce(t *testing.T, tb *pageTab, want []string) {
	t.Helper()
	st := tabState(t, tb)
	for _, id := range want {
		if n := countID(st.IDs, id); n != 1 {
			t.Errorf("%s: message %s listed %d times, want once; list %v", tb.name, id, n, st.IDs)
		}
	}
	if len(st.IDs) != len(want) {
		t.Errorf("%s: lists %d messages %v, want exactly %v", tb.name, len(st.IDs), st.IDs, want)
	}
	for id, n := range st.Delivered {
		if n > 1 {
			t.Errorf("%s: client.js delivered message %s to onMessage %d times", tb.name, id, n)
		}
	}
}

// arrival is when a tab first listed a message, relative to a start time.
type arrival struct {
	tab   string
	after time.Duration
	err   error
}

// waitShown waits, in every tab at once, until message id is listed, and
// returns for each tab how long after since that happened (on the page's
// clock, which is this machine's clock). A tab that does not list it within
// timeout reports an error.
func waitShown(tabs []*pageTab, id string, since time.Time, timeout time.Duration) []arrival {
	out := make([]arrival, len(tabs))
	var wg sync.WaitGroup
	for i, tb := range tabs {
		wg.Go(func() {
			at, err := waitFor[int64](tb, timeout, jsShownAt, id)
			out[i] = arrival{tab: tb.name, err: err}
			if err == nil {
				out[i].after = time.UnixMilli(at).Sub(since)
			}
		})
	}
	wg.Wait()
	return out
}

// checkArrivals fails the test for a tab that missed the message or listed
// it later than limit, and logs every latency.
func checkArrivals(t *testing.T, what string, as []arrival, limit time.Duration, tabs []*pageTab) {
	t.Helper()
	parts := make([]string, 0, len(as))
	for i, a := range as {
		if a.err != nil {
			t.Errorf("%s: %s: not listed: %v\npage: %s", a.tab, what, a.err, describeTab(tabs[i]))
			continue
		}
		parts = append(parts, fmt.Sprintf("%s %v", a.tab, a.after.Round(time.Millisecond)))
		if a.after > limit {
			t.Errorf("%s: %s listed %v after the publish returned, want ≤ %v", a.tab, what, a.after.Round(time.Millisecond), limit)
		}
	}
	t.Logf("%s: listed after %s", what, strings.Join(parts, ", "))
}

// publishAt publishes one message and returns its id and when the publish returned.
func publishAt(t *testing.T, hc *http.Client, base, token, user, title string) (string, time.Time) {
	t.Helper()
	id := mustPublish(t, hc, base, token, []string{user}, title)[0]
	return id, time.Now()
}
