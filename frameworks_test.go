package main

// The front-end examples (examples/plain, vue2-eladmin, vue3, react) in a
// real headless Chromium with the real framework builds from npm, against a
// real pollbox on a real Redis: every stack lists what client.js's inbox
// state holds, across reloads, tabs, reads, deletes, revokes, resets and
// paged history.

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"pollbox/internal/redistest"
)

// fwReadSync bounds mark-all-read clicked in one tab → the other tab's
// items read and its badge at 0.
const fwReadSync = time.Second

// fwEnv is what every stack's subtest shares: one browser, one pollbox with
// the default inbox length and one that trims at about 10 entries (to make
// it answer reset).
type fwEnv struct {
	b           *testBrowser
	hc          *http.Client
	secret      []byte
	admin       string
	npm         string
	main, small *instance
}

// TestFrameworkExamples runs every stack as a parallel subtest in one browser.
func TestFrameworkExamples(t *testing.T) {
	npm := frameworkBuilds(t)
	b := newBrowser(t)
	secret := newSecret(t)
	redisURL := redistest.URL(t)
	env := &fwEnv{b: b, hc: newHTTPClient(t), secret: secret, npm: npm,
		admin: smpeToken(secret, "1", "admin"),
		main:  startInstance(t, baseEnv(secret, redistest.Prefix(t), "POLLBOX_REDIS_URL", redisURL, "POLLBOX_PUBLISH_RATE", "0")),
		small: startInstance(t, baseEnv(secret, redistest.Prefix(t), "POLLBOX_REDIS_URL", redisURL,
			"POLLBOX_INBOX_MAXLEN", "10", "POLLBOX_PUBLISH_RATE", "0")),
	}
	// Every stack at once (t.Parallel would run only GOMAXPROCS of them).
	started := time.Now()
	var wg sync.WaitGroup
	for _, st := range fwStacks {
		wg.Go(func() {
			t.Run(st.name, func(t *testing.T) {
				start := time.Now()
				testStack(t, env, st)
				t.Logf("%s: %v", st.name, time.Since(start).Round(10*time.Millisecond))
			})
		})
	}
	wg.Wait()
	t.Logf("all stacks: %v", time.Since(started).Round(10*time.Millisecond))
}

func testStack(t *testing.T, env *fwEnv, st fwStack) {
	front := newFWFront(t, st, env.main.base, env.npm)
	user := "fw-" + st.name
	pageURL := front.URL + "/page.html#token=" + smpeToken(env.secret, user, "user:list")
	tab1 := env.b.openTabs(t, pageURL, st.name+" tab 1")[0]
	waitView(t, tab1, 15*time.Second, "an empty inbox", fwWant{IDs: []string{}, Badge: strp("0")})
	waitStatus(t, tab1, "connected")

	// Three publishes: three items, newest first, all unread; badge 3.
	var ids []string
	for i := range 3 {
		ids = append(ids, mustPublish(t, env.hc, env.main.base, env.admin, []string{user}, fmt.Sprintf("%s %d", st.name, i))[0])
	}
	three := fwWant{IDs: reversed(ids), Unread: reversed(ids), Badge: strp("3")}
	waitView(t, tab1, 5*time.Second, "three unread items", three)
	if st.open != "" {
		tab1.do(t, 10*time.Second, "clicking "+st.open, chromedp.Click(chromedp.CSS(st.open)))
	}
	if _, err := waitFor[bool](tab1, 5*time.Second, `function () {
		var els = document.querySelectorAll('[data-id]'), i;
		for (i = 0; i < els.length; i++) { if (!els[i].offsetParent) { return false; } }
		return els.length === 3;
	}`); err != nil {
		t.Fatalf("%s: the three items are not visible: %v; page shows %+v", tab1.name, err, viewOf(t, tab1))
	}

	// A reload shows the same three, none twice, and stays so once connected.
	tab1.do(t, 20*time.Second, "reloading", chromedp.Reload())
	waitView(t, tab1, 10*time.Second, "the three items after the reload", three)
	front.waitPolling(t)
	checkView(t, tab1, three)

	// A second tab shows the same.
	tab2 := env.b.openTabs(t, pageURL, st.name+" tab 2")[0]
	waitView(t, tab2, 10*time.Second, "the three items in a second tab", three)

	// Mark all read in tab 2: tab 1's items are read and its badge 0 within fwReadSync.
	clicked := click(t, tab2, ".mark-all")
	allRead := fwWant{IDs: reversed(ids), Unread: []string{}, Badge: strp("0")}
	at := waitView(t, tab1, 5*time.Second, "every item read after mark all read in tab 2", allRead)
	d := time.Duration(at-clicked) * time.Millisecond
	t.Logf("%s: tab 1 shows all read %v after the click in tab 2", st.name, d)
	if d > fwReadSync {
		t.Errorf("%s: tab 1 showed all read %v after the click in tab 2, want ≤ %v", st.name, d, fwReadSync)
	}
	waitView(t, tab2, 2*time.Second, "every item read in tab 2", allRead)

	// Delete in tab 1: the item leaves both tabs.
	click(t, tab1, `[data-id="`+ids[0]+`"] .remove`)
	left := fwWant{IDs: reversed(ids[1:]), Badge: strp("0")}
	for _, tb := range []*pageTab{tab1, tab2} {
		waitView(t, tb, 5*time.Second, "the deleted item gone", left)
	}

	// Revoke: the item shows, then leaves both tabs.
	rid, pid := publishRevocable(t, env.hc, env.main.base, env.admin, user, st.name+" revoked")
	withR := fwWant{IDs: append([]string{rid}, left.IDs...), Unread: []string{rid}, Badge: strp("1")}
	for _, tb := range []*pageTab{tab1, tab2} {
		waitView(t, tb, 5*time.Second, "the message to revoke", withR)
	}
	// A click on an item marks it read, in both tabs.
	click(t, tab1, `[data-id="`+rid+`"]`)
	for _, tb := range []*pageTab{tab1, tab2} {
		waitView(t, tb, 5*time.Second, "the clicked item read", fwWant{IDs: withR.IDs, Unread: []string{}, Badge: strp("0")})
	}
	if res, err := do(env.hc, "DELETE", env.main.base+"/v1/publish/"+pid, env.admin, nil, 10*time.Second); err != nil || res.Status != http.StatusOK {
		t.Fatalf("revoke %s: %v %s", pid, err, res)
	}
	for _, tb := range []*pageTab{tab1, tab2} {
		waitView(t, tb, 5*time.Second, "the revoked item gone", left)
	}

	testPagedHistory(t, env, st, front)
	testReset(t, env, st)

	for _, tb := range []*pageTab{tab1, tab2} {
		if v := viewOf(t, tb); len(v.Errors) > 0 {
			t.Errorf("%s: the page reported %q", tb.name, v.Errors)
		}
	}
}

// testPagedHistory: 50 messages, the first 20 listed at start, the rest
// paged in with the example's "Older" button.
func testPagedHistory(t *testing.T, env *fwEnv, st fwStack, front *fwFront) {
	user := "fw-" + st.name + "-h"
	var ids []string
	for i := range 50 {
		ids = append(ids, mustPublish(t, env.hc, env.main.base, env.admin, []string{user}, fmt.Sprintf("h%d", i))[0])
	}
	all := reversed(ids)
	tb := env.b.openTabs(t, front.URL+"/page.html#token="+smpeToken(env.secret, user, "user:list"), st.name+" history")[0]
	waitView(t, tb, 15*time.Second, "the newest 20 messages", fwWant{IDs: all[:20], Badge: strp("50"), More: boolp(true)})
	click(t, tb, ".load-more")
	waitView(t, tb, 10*time.Second, "40 messages after one Older", fwWant{IDs: all[:40], More: boolp(true)})
	click(t, tb, ".load-more")
	waitView(t, tb, 10*time.Second, "all 50 messages, no Older button", fwWant{IDs: all, Unread: all, Badge: strp("50"), More: boolp(false)})
	if v := viewOf(t, tb); len(v.Errors) > 0 {
		t.Errorf("%s: the page reported %q", tb.name, v.Errors)
	}
}

// testReset: while the tab's poll is held, its inbox is trimmed past its
// cursor; pollbox answers reset, and the tab lists history again: the
// trimmed message leaves.
func testReset(t *testing.T, env *fwEnv, st fwStack) {
	front := newFWFront(t, st, env.small.base, env.npm)
	user := "fw-" + st.name + "-r"
	tb := env.b.openTabs(t, front.URL+"/page.html#token="+smpeToken(env.secret, user, "user:list"), st.name+" reset")[0]
	waitView(t, tb, 15*time.Second, "an empty inbox", fwWant{IDs: []string{}})
	waitStatus(t, tb, "connected")
	first := mustPublish(t, env.hc, env.small.base, env.admin, []string{user}, "trimmed soon")[0]
	waitView(t, tb, 5*time.Second, "the first message", fwWant{IDs: []string{first}})

	// The waiting poll gets the next message; the poll after it is held.
	// Hold only once the tab's next poll has passed the door (the answer
	// that showed the first message came a moment before it was sent).
	front.waitPolling(t)
	front.holdPolls()
	second := mustPublish(t, env.hc, env.small.base, env.admin, []string{user}, "next")[0]
	waitView(t, tb, 5*time.Second, "the second message", fwWant{IDs: []string{second, first}})
	select {
	case <-front.held:
	case <-time.After(10 * time.Second):
		front.releasePolls()
		t.Fatal("the tab sent no poll after its answer")
	}
	for i := range 250 {
		mustPublish(t, env.hc, env.small.base, env.admin, []string{user}, fmt.Sprintf("r%d", i))
	}
	h := historyIDs(t, env.hc, env.small.base, smpeToken(env.secret, user, "user:list"))
	if slices.Contains(h, first) || slices.Contains(h, second) || len(h) < 20 {
		t.Fatalf("250 publishes with POLLBOX_INBOX_MAXLEN=10 left %d messages, the first two among them", len(h))
	}
	front.releasePolls()
	// The reset answer's messages and the newest 20 of history, without a gap.
	waitView(t, tb, 10*time.Second, "the newest messages after the reset, the trimmed ones gone",
		fwWant{Absent: []string{first, second}, PrefixOf: h, MinLen: 20})
	if front.resets.Load() == 0 {
		t.Errorf("%s: pollbox never answered the tab's poll with reset", tb.name)
	}
	if v := viewOf(t, tb); len(v.Errors) > 0 {
		t.Errorf("%s: the page reported %q", tb.name, v.Errors)
	}
}

// historyIDs returns the ids of the user's newest 100 messages, newest first.
func historyIDs(t *testing.T, hc *http.Client, base, token string) []string {
	t.Helper()
	res, err := do(hc, "GET", base+"/v1/messages?limit=100", token, nil, 10*time.Second)
	if err != nil || res.Status != http.StatusOK {
		t.Fatalf("GET /v1/messages: %v %s", err, res)
	}
	var h struct{ Messages []message }
	if err := json.Unmarshal(res.Body, &h); err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, m := range h.Messages {
		ids = append(ids, m.ID)
	}
	return ids
}

// waitStatus waits until the tab's client reports status.
func waitStatus(t *testing.T, tb *pageTab, status string) {
	t.Helper()
	if _, err := waitFor[bool](tb, 10*time.Second,
		`function (s) { return !!window.__inbox && window.__inbox.state().status === s; }`, status); err != nil {
		t.Fatalf("%s: waiting for status %s: %v; page shows %+v", tb.name, status, err, viewOf(t, tb))
	}
}

// checkView fails unless the tab shows want now.
func checkView(t *testing.T, tb *pageTab, want fwWant) {
	t.Helper()
	v := viewOf(t, tb)
	if !slices.Equal(v.IDs, want.IDs) || (want.Unread != nil && !slices.Equal(v.Unread, want.Unread)) ||
		(want.Badge != nil && v.Badge != *want.Badge) {
		t.Errorf("%s shows %+v, want %+v", tb.name, v, want)
	}
}

// TestFrameworkBuildsPinnedInCI: .ci/run pre-installs the very builds the
// framework tests ask for.
func TestFrameworkBuildsPinnedInCI(t *testing.T) {
	b, err := os.ReadFile(".ci/run")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^FRONTEND_NPM_SPECS="([^"]*)"$`).FindSubmatch(b)
	if m == nil {
		t.Fatal(".ci/run sets no FRONTEND_NPM_SPECS")
	}
	if got, want := string(m[1]), strings.Join(npmSpecs, " "); got != want {
		t.Errorf(".ci/run installs %q, the framework tests want %q", got, want)
	}
}
