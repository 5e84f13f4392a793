package main

// Helpers of the framework tests (frameworks_test.go): the framework builds
// from npm, a front server per stack that serves a page mounting an example
// next to a proxied pollbox, and what a page shows.

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"html/template"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// npmSpecs are the framework builds the examples are tested with; npm
// aliases let several Vue versions share one node_modules. .ci/run installs
// the same list.
var npmSpecs = []string{"vue26@npm:vue@2.6", "vue27@npm:vue@2.7", "vue3@npm:vue@3",
	"element-ui@2", "react@18", "react-dom@18"}

// npmWant maps each installed package to the version prefix it must have.
var npmWant = map[string]string{"vue26": "2.6.", "vue27": "2.7.", "vue3": "3.",
	"element-ui": "2.", "react": "18.", "react-dom": "18."}

var (
	npmOnce sync.Once
	npmDir  string // holds node_modules with npmSpecs
	npmErr  error
)

// npmDirCandidates are where the builds may already be: POLLBOX_TEST_NPM_DIR
// (.ci/run sets it), then the cache of earlier runs.
func npmDirCandidates() []string {
	var out []string
	if d := os.Getenv("POLLBOX_TEST_NPM_DIR"); d != "" {
		out = append(out, d)
	}
	if d, err := os.UserCacheDir(); err == nil {
		out = append(out, filepath.Join(d, "pollbox-npm"))
	} else {
		out = append(out, filepath.Join(os.TempDir(), "pollbox-npm"))
	}
	return out
}

// npmInstalled tells whether dir holds every package at its wanted version.
func npmInstalled(dir string) error {
	for name, prefix := range npmWant {
		b, err := os.ReadFile(filepath.Join(dir, "node_modules", name, "package.json"))
		if err != nil {
			return err
		}
		var p struct{ Version string }
		if err := json.Unmarshal(b, &p); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		if !strings.HasPrefix(p.Version, prefix) {
			return fmt.Errorf("%s is %s, want %s*", name, p.Version, prefix)
		}
	}
	return nil
}

// frameworkBuilds returns a directory whose node_modules holds the builds,
// installing them with npm (outside the repository) when needed. Without
// npm the test is skipped, except in CI (CI=true), where it fails.
func frameworkBuilds(t *testing.T) string {
	t.Helper()
	npmOnce.Do(func() {
		cands := npmDirCandidates()
		for _, d := range cands {
			if npmInstalled(d) == nil {
				npmDir = d
				return
			}
		}
		npm, err := exec.LookPath("npm")
		if err != nil {
			npmErr = fmt.Errorf("npm not found: %w", err)
			return
		}
		dir := cands[0]
		if err := os.MkdirAll(dir, 0o755); err != nil {
			npmErr = err
			return
		}
		args := append([]string{"install", "--prefix", dir, "--no-audit", "--no-fund", "--loglevel=error"}, npmSpecs...)
		cmd := exec.Command(npm, args...)
		if out, err := cmd.CombinedOutput(); err != nil {
			npmErr = fmt.Errorf("npm %s: %v\n%s", strings.Join(args, " "), err, out)
			return
		}
		if err := npmInstalled(dir); err != nil {
			npmErr = fmt.Errorf("after npm install into %s: %w", dir, err)
			return
		}
		npmDir = dir
	})
	if npmErr != nil {
		if os.Getenv("CI") != "true" && strings.HasPrefix(npmErr.Error(), "npm not found") {
			t.Skipf("SKIPPING FRAMEWORK TESTS: %v (install Node.js)", npmErr)
		}
		t.Fatalf("framework builds: %v", npmErr)
	}
	return npmDir
}

// fwStack is one front-end stack: the builds a page loads, the example it
// mounts and how.
type fwStack struct {
	name    string
	css     []string // under node_modules
	scripts []string // under node_modules, loaded after /client.js
	example string   // path in the repository
	mount   string   // JavaScript that mounts the example into #app; `token` is set
	badge   string   // CSS selector of the unread badge
	open    string   // CSS selector to click (with the mouse) to show the list, if hidden
}

var fwStacks = []fwStack{
	{name: "plain", example: "examples/plain/bell.js", badge: ".badge",
		mount: `window.inbox = pollboxBell(document.getElementById('app'), {url: '', token: token});`},
	{name: "vue2.6-element", css: []string{"element-ui/lib/theme-chalk/index.css"},
		scripts: []string{"vue26/dist/vue.js", "element-ui/lib/index.js"},
		example: "examples/vue2-eladmin/PollboxBell.js", badge: ".el-badge__content", open: ".el-badge",
		mount: `new Vue({el: '#app', template: '<pollbox-bell url="" :get-token="getToken" />',
			methods: {getToken: function (cb) { cb(token); }}});`},
	{name: "vue2.7-element", css: []string{"element-ui/lib/theme-chalk/index.css"},
		scripts: []string{"vue27/dist/vue.js", "element-ui/lib/index.js"},
		example: "examples/vue2-eladmin/PollboxBell.js", badge: ".el-badge__content", open: ".el-badge",
		mount: `new Vue({el: '#app', template: '<pollbox-bell url="" :get-token="getToken" />',
			methods: {getToken: function (cb) { cb(token); }}});`},
	{name: "vue3", scripts: []string{"vue3/dist/vue.global.js"},
		example: "examples/vue3/usePollbox.js", badge: ".badge",
		mount: `Vue.createApp({components: {PollboxBell: PollboxBell}, template: '<pollbox-bell :get-token="getToken" />',
			methods: {getToken: function (cb) { cb(token); }}}).mount('#app');`},
	{name: "react18", scripts: []string{"react/umd/react.development.js", "react-dom/umd/react-dom.development.js"},
		example: "examples/react/usePollbox.js", badge: ".badge",
		mount: `var inbox = Pollbox.connect({url: '', getToken: function (cb) { cb(token); }});
			ReactDOM.createRoot(document.getElementById('app')).render(
				React.createElement(React.StrictMode, null, React.createElement(PollboxBell, {inbox: inbox})));`},
}

// fwPage loads the builds, /client.js and the example, then mounts it. The
// page keeps the client (window.__inbox) and every error and console
// warning (window.__errors), and window.__view() says what it shows.
var fwPage = template.Must(template.New("page").Parse(`<!doctype html>
<html><head><meta charset="utf-8"><title>{{.Name}}</title>
{{range .CSS}}<link rel="stylesheet" href="/npm/{{.}}">
{{end}}<script>
window.__errors = [];
window.addEventListener('error', function (e) { __errors.push('error: ' + e.message); });
window.addEventListener('unhandledrejection', function (e) { __errors.push('rejection: ' + e.reason); });
['error', 'warn'].forEach(function (k) {
  var f = console[k];
  console[k] = function () { __errors.push(k + ': ' + [].slice.call(arguments).join(' ')); return f.apply(console, arguments); };
});
var token = new URLSearchParams(location.hash.slice(1)).get('token');
window.__view = function () {
  var ids = [], unread = [], els = document.querySelectorAll('#app [data-id], .el-popover [data-id]'), i;
  for (i = 0; i < els.length; i++) {
    ids.push(els[i].getAttribute('data-id'));
    if (els[i].classList.contains('unread')) { unread.push(els[i].getAttribute('data-id')); }
  }
  var b = document.querySelector({{.Badge}}), more = document.querySelector('.load-more');
  return {ids: ids, unread: unread,
    badge: !b || getComputedStyle(b).display === 'none' ? '0' : b.textContent.trim(),
    more: !!more && !more.closest('[hidden]'),
    status: window.__inbox ? window.__inbox.state().status : '', errors: window.__errors};
};
</script>
</head><body><div id="app"></div>
<script src="/client.js"></script>
<script>
(function () {
  var connect = Pollbox.connect;
  Pollbox.connect = function () { return (window.__inbox = connect.apply(this, arguments)); };
})();
</script>
{{range .Scripts}}<script src="/npm/{{.}}"></script>
{{end}}<script src="/{{.Example}}"></script>
<script>{{.Mount}}</script>
</body></html>
`))

// frontServer serves one stack's page, the builds and the examples, and
// passes /client.js and /v1/ to pollbox. Polls can be held at the door.
type fwFront struct {
	*httptest.Server
	mu     sync.Mutex
	gate   chan struct{} // closed: polls pass; nil: no gate
	held   chan struct{} // gets a value when a poll is held
	poll   atomic.Int32  // polls passed to pollbox and not answered yet
	resets atomic.Int32  // poll answers that said reset
}

func newFWFront(t *testing.T, st fwStack, pollbox, npm string) *fwFront {
	t.Helper()
	u, err := url.Parse(pollbox)
	if err != nil {
		t.Fatal(err)
	}
	proxy := httputil.NewSingleHostReverseProxy(u)
	f := &fwFront{held: make(chan struct{}, 16)}
	proxy.ModifyResponse = func(res *http.Response) error {
		if res.Request.URL.Path != "/v1/poll" || res.StatusCode != http.StatusOK {
			return nil
		}
		b, err := io.ReadAll(res.Body)
		res.Body.Close()
		res.Body = io.NopCloser(bytes.NewReader(b))
		if err != nil {
			return err
		}
		if res.Header.Get("Content-Encoding") == "gzip" {
			zr, err := gzip.NewReader(bytes.NewReader(b))
			if err != nil {
				return err
			}
			if b, err = io.ReadAll(zr); err != nil {
				return err
			}
		}
		var a struct{ Reset bool }
		if json.Unmarshal(b, &a) == nil && a.Reset {
			f.resets.Add(1)
		}
		return nil
	}
	mux := http.NewServeMux()
	mux.Handle("/client.js", proxy)
	mux.Handle("/v1/", proxy)
	mux.HandleFunc("/v1/poll", func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		gate := f.gate
		f.mu.Unlock()
		if gate != nil {
			select {
			case f.held <- struct{}{}:
			default:
			}
			select {
			case <-gate:
			case <-r.Context().Done():
				return
			}
		}
		f.poll.Add(1)
		defer f.poll.Add(-1)
		proxy.ServeHTTP(w, r)
	})
	mux.Handle("/npm/", http.StripPrefix("/npm/", http.FileServer(http.Dir(filepath.Join(npm, "node_modules")))))
	mux.Handle("/examples/", http.FileServer(http.Dir(".")))
	mux.HandleFunc("/page.html", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		err := fwPage.Execute(w, map[string]any{"Name": st.name, "CSS": st.css, "Scripts": st.scripts,
			"Example": st.example, "Badge": st.badge, "Mount": template.JS(st.mount)})
		if err != nil {
			t.Errorf("page template: %v", err)
		}
	})
	f.Server = httptest.NewServer(mux)
	t.Cleanup(f.Close)
	return f
}

// holdPolls makes the front server hold every poll until releasePolls.
func (f *fwFront) holdPolls() {
	f.mu.Lock()
	f.gate = make(chan struct{})
	f.mu.Unlock()
}

func (f *fwFront) releasePolls() {
	f.mu.Lock()
	if f.gate != nil {
		close(f.gate)
	}
	f.gate = nil
	f.mu.Unlock()
}

// waitPolling waits until exactly one poll of the page's tabs waits at
// pollbox: the tabs share one, and the page has started its live delivery.
func (f *fwFront) waitPolling(t *testing.T) {
	t.Helper()
	eventually(t, 10*time.Second, func() bool { return f.poll.Load() == 1 },
		func() string { return fmt.Sprintf("one poll through %s (%d)", f.URL, f.poll.Load()) })
}

// fwView is what a stack's page shows.
type fwView struct {
	IDs    []string `json:"ids"`    // data-id of each listed message, top to bottom
	Unread []string `json:"unread"` // those shown as unread
	Badge  string   `json:"badge"`  // the badge's text, "0" while it is hidden
	More   bool     `json:"more"`   // an "Older" button is shown
	Status string   `json:"status"` // the client's state().status
	Errors []string `json:"errors"` // errors and console warnings of the page
}

func viewOf(t *testing.T, tb *pageTab) fwView {
	t.Helper()
	return evalJS[fwView](t, tb, `window.__view()`)
}

// fwWant is a view to wait for; nil fields are not compared.
type fwWant struct {
	IDs    []string `json:"ids"`
	Unread []string `json:"unread,omitempty"`
	Badge  *string  `json:"badge,omitempty"`
	More   *bool    `json:"more,omitempty"`
	Absent []string `json:"absent,omitempty"` // ids that must not be listed
	// PrefixOf: the listed ids are the first ones (at least MinLen) of these.
	PrefixOf []string `json:"prefixOf,omitempty"`
	MinLen   int      `json:"minLen,omitempty"`
}

// jsViewIs answers Date.now() once the page shows want (JSON), else 0.
const jsViewIs = `function (w) {
	w = JSON.parse(w);
	var v = window.__view && window.__view(), eq = function (a, b) { return JSON.stringify(a) === JSON.stringify(b); };
	if (!v || (w.ids && !eq(v.ids, w.ids)) || (w.unread && !eq(v.unread, w.unread)) ||
		(w.badge != null && v.badge !== w.badge) || (w.more != null && v.more !== w.more) ||
		(w.absent && w.absent.some(function (id) { return v.ids.indexOf(id) >= 0; })) ||
		(w.prefixOf && (v.ids.length < w.minLen || !eq(v.ids, w.prefixOf.slice(0, v.ids.length))))) { return 0; }
	return Date.now();
}`

// waitView waits until the tab shows want and returns when (page clock, ms).
func waitView(t *testing.T, tb *pageTab, timeout time.Duration, what string, want fwWant) int64 {
	t.Helper()
	b, _ := json.Marshal(want)
	at, err := waitFor[int64](tb, timeout, jsViewIs, string(b))
	if err != nil {
		v := viewOf(t, tb)
		got, _ := json.Marshal(v)
		t.Fatalf("%s: waiting %v for %s: %v%s\nwant %s\nshows %s", tb.name, timeout, what, err, orderHint(v.IDs, want.IDs), b, got)
	}
	return at
}

// click clicks the first element matching sel in the tab (through the DOM,
// so that one inside a closed popover is clicked too) and returns when.
func click(t *testing.T, tb *pageTab, sel string) int64 {
	t.Helper()
	js, _ := json.Marshal(sel)
	at := evalJS[int64](t, tb, `(function () { var el = document.querySelector(`+string(js)+`);
		if (!el) { return 0; } var t = Date.now(); el.click(); return t; })()`)
	if at == 0 {
		t.Fatalf("%s: nothing to click at %s; page shows %+v", tb.name, sel, viewOf(t, tb))
	}
	return at
}

// orderHint says where got lists the ids of want in another order.
func orderHint(got, want []string) string {
	if want == nil || len(got) != len(want) {
		return ""
	}
	a, b := slices.Clone(got), slices.Clone(want)
	slices.Sort(a)
	slices.Sort(b)
	if !slices.Equal(a, b) {
		return ""
	}
	for i := range got {
		if got[i] != want[i] {
			return fmt.Sprintf("\nthe same ids in another order: from position %d, %v where %v is expected", i,
				got[i:min(i+2, len(got))], want[i:min(i+2, len(want))])
		}
	}
	return ""
}

func strp(s string) *string { return &s }
func boolp(b bool) *bool    { return &b }

// reversed returns ids newest first (ids are in publish order).
func reversed(ids []string) []string {
	out := make([]string, len(ids))
	for i, id := range ids {
		out[len(ids)-1-i] = id
	}
	return out
}

// publishRevocable publishes to user and returns the message id and the publish id.
func publishRevocable(t *testing.T, hc *http.Client, base, token, user, title string) (string, string) {
	t.Helper()
	body, _ := json.Marshal(map[string]any{"to": []string{user}, "title": title})
	res, err := do(hc, "POST", base+"/v1/publish", token, body, 15*time.Second)
	if err != nil || res.Status != http.StatusCreated {
		t.Fatalf("publish: %v %s", err, res)
	}
	var out struct {
		PublishID string   `json:"publish_id"`
		IDs       []string `json:"ids"`
	}
	if err := json.Unmarshal(res.Body, &out); err != nil || len(out.IDs) != 1 || out.PublishID == "" {
		t.Fatalf("publish answered %s (%v)", res, err)
	}
	return out.IDs[0], out.PublishID
}
