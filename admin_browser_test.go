package main

// Browser test of the notice management page (/admin): a publisher
// composes, schedules, cancels, sends and revokes notices, and watches
// read counts move, while user 42's demo page shows what arrives.

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"

	"pollbox/internal/redistest"
)

const (
	// jsRow answers "<state>|<read cell>" of the admin list's row for a
	// publish id once it reads want ("" while it reads otherwise).
	jsRow = `function (pid, want) {
		var tr = document.querySelector('#sends tr[data-pid="' + pid + '"]');
		var got = tr ? tr.getAttribute('data-state') + '|' + tr.querySelector('td.read').textContent : '';
		return got === want ? got : '';
	}`
	// jsLoads answers how many answers an element of the admin page has
	// shown (data-loads), once more than n.
	jsLoads = `function (id, n) {
		var v = +(document.getElementById(id).getAttribute('data-loads') || 0);
		return v > n ? v : 0;
	}`
	// jsResult answers the compose result once it is one (not "Sending…").
	jsResult = `function () {
		var r = document.getElementById('send-result').textContent;
		return /^(Sent|Scheduled|Error|Enter|Name|Write|Expiry|Send at)/.test(r) ? r : '';
	}`
	// jsGone answers true once message id is no longer listed.
	jsGone = `function (id) { return !document.querySelector('#messages li.msg[data-id="' + id + '"]'); }`
	// jsBadge answers "<badge>|<tooltip>" once it reads want.
	jsBadge = `function (want) {
		var b = document.getElementById('unread'), got = b.textContent + '|' + b.title;
		return got === want ? got : '';
	}`
)

// pidRE finds the publish id in the compose result "… (p.u.1.<ms>-<seq>)".
var pidRE = regexp.MustCompile(`\((p\.[uk]\.[^ )]+)\)$`)

// TestBrowserAdmin, on a single Redis and on a Redis Cluster: on /admin a
// notice composed to user 42 (type, level, link, expiry) is listed as sent
// with 0 of 1 read, and 1 of 1 once 42's demo page marks it read (the
// details pane says read too); one scheduled an hour ahead, entered in the
// browser's local time (Asia/Shanghai), is due at that instant (send_at)
// and cancelled with two clicks; one sent and then revoked leaves 42's
// page through client.js's onRevoke, with the page's "withdrawn" note and
// its unread count, by type in the badge's tooltip, back down.
func TestBrowserAdmin(t *testing.T) {
	for _, tc := range redisBackends {
		t.Run(tc.name, func(t *testing.T) {
			k, v := tc.env(t)
			testBrowserAdmin(t, tc.name, k, v)
		})
	}
}

func testBrowserAdmin(t *testing.T, name, redisKey, redisVal string) {
	b := newBrowser(t)
	secret := newSecret(t)
	in := startInstance(t, baseEnv(secret, redistest.Prefix(t), redisKey, redisVal))
	hc := newHTTPClient(t)
	user := smpeToken(secret, "42", "user:list")
	admin := smpeToken(secret, "1", "admin")

	// The page is served like the demo page: HTML, never cached.
	res, err := do(hc, "GET", in.base+"/admin", "", nil, 5*time.Second)
	if err != nil || res.Status != http.StatusOK || !strings.Contains(string(res.Body), "Pollbox.publisher") {
		t.Fatalf("GET /admin: %v %d %.200s", err, res.Status, res.Body)
	}
	if cc := res.Header.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("GET /admin: Cache-Control %q, want no-store", cc)
	}

	// Two tabs of 42 share one long-poll: the leader relays what it hears.
	uts := b.openTabs(t, in.base+"/#token="+user, "user 42 (tab 1)", "user 42 (tab 2)")
	ut := uts[0]
	for _, tb := range uts {
		mustWaitFor[string](t, tb, 10*time.Second, "the user page to lead or follow", jsStatusLike, `^connected \((leader|follower)\)$`)
	}
	if a, b := tabState(t, uts[0]), tabState(t, uts[1]); a.Leader == b.Leader {
		t.Fatalf("42's two tabs: leader %v and %v, want one leader and one follower", a.Leader, b.Leader)
	}
	at := b.openTabs(t, in.base+"/admin#token="+admin, "admin")[0]
	at.front(t)
	at.do(t, 10*time.Second, "setting the time zone to Asia/Shanghai", chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		_, err := cdp.Call(ctx, tg, emulation.SetTimezoneOverride, emulation.SetTimezoneOverrideParams{TimezoneID: "Asia/Shanghai"})
		return err
	}))
	mustWaitFor[int](t, at, 10*time.Second, "the list of sends", jsLoads, "sends", 0)
	if e := evalJS[string](t, at, `document.getElementById('list-error').textContent`); e != "" {
		t.Fatalf("the admin page's list says %q", e)
	}

	// 1. A direct notice: sent, read 0 of 1; read on the user's page: 1 of 1.
	direct := composeNotice(t, at, map[string]string{"to": "42", "type": "reply", "level": "success",
		"title": "Your order shipped", "body": "Parcel 991 left the warehouse.", "link": "/orders/991", "expires": "2"})
	if !strings.HasPrefix(direct.result, "Sent to 1 recipient") {
		t.Fatalf("composing a notice to 42: %q", direct.result)
	}
	mustWaitFor[string](t, at, 10*time.Second, "the notice listed as sent, 0 of 1 read", jsRow, direct.pid, "sent|0 / 1")
	msgID := mustWaitFor[string](t, ut, 10*time.Second, "the notice on 42's page", jsItemTitled, "Your order shipped")
	allTabs(t, uts, 10*time.Second, "42's badge: 1 unread, a reply", jsBadge, "1|reply 1")
	sent := sentDetail(t, hc, in.base, admin, direct.pid)
	if sent.Send.Type != "reply" || sent.Send.Level != "success" || sent.Send.Link != "/orders/991" {
		t.Errorf("the sent notice reads %+v, want type reply, level success, link /orders/991", sent.Send)
	}
	msg := historyMessage(t, hc, in.base, user, msgID)
	if exp, err := time.Parse(time.RFC3339Nano, msg.ExpiresAt); err != nil ||
		exp.Sub(msg.CreatedAt) < 2*time.Hour-time.Second || exp.Sub(msg.CreatedAt) > 2*time.Hour+time.Second {
		t.Errorf("the notice expires at %q, created %v: want 2 hours after", msg.ExpiresAt, msg.CreatedAt)
	}

	ut.do(t, 10*time.Second, "clicking Mark read on 42's page",
		chromedp.Click(chromedp.CSS(fmt.Sprintf(`#messages li.msg[data-id=%q] .mark-read`, msgID))))
	allTabs(t, uts, 10*time.Second, "42's badge: 0", jsBadge, "0|")
	loads := evalJS[int](t, at, `+document.getElementById('sends').getAttribute('data-loads')`)
	at.do(t, 10*time.Second, "clicking Refresh", chromedp.Click(chromedp.ID("refresh")))
	mustWaitFor[int](t, at, 10*time.Second, "the list again", jsLoads, "sends", loads)
	mustWaitFor[string](t, at, 5*time.Second, "the notice read by 1 of 1", jsRow, direct.pid, "sent|1 / 1")
	at.do(t, 10*time.Second, "opening the details",
		chromedp.Click(chromedp.CSS(fmt.Sprintf(`#sends tr[data-pid=%q] button.details`, direct.pid))))
	mustWaitFor[int](t, at, 10*time.Second, "the recipients", jsLoads, "detail-list", 0)
	if got := evalJS[string](t, at, `(function () {
		var tr = document.querySelector('#detail-list tr[data-user="42"]');
		return tr ? tr.children[1].textContent + ' ' + tr.children[2].textContent : '';
	})()`); got != "read "+msgID {
		t.Errorf("the details list user 42 as %q, want %q", got, "read "+msgID)
	}

	// 2. Scheduled an hour ahead in the browser's local time, then cancelled.
	shanghai := time.FixedZone("CST", 8*3600)
	due := time.Now().Add(time.Hour).Truncate(time.Minute)
	sched := composeNotice(t, at, map[string]string{"to": "42", "title": "Maintenance tonight",
		"send-at": due.In(shanghai).Format("2006-01-02T15:04")})
	if !strings.HasPrefix(sched.result, "Scheduled for") {
		t.Fatalf("scheduling a notice: %q", sched.result)
	}
	mustWaitFor[string](t, at, 10*time.Second, "the notice listed as scheduled", jsRow, sched.pid, "scheduled|—")
	if got := sentDetail(t, hc, in.base, admin, sched.pid).Send.SendAt; got == nil || !got.Equal(due) {
		t.Errorf("scheduled for %s in Asia/Shanghai: send_at %v, want %v", due.In(shanghai).Format("15:04"), got, due.UTC())
	}
	clickTwice(t, at, sched.pid)
	mustWaitFor[string](t, at, 10*time.Second, "the notice listed as cancelled", jsRow, sched.pid, "cancelled|—")
	if st := sentDetail(t, hc, in.base, admin, sched.pid).Send.State; st != "cancelled" {
		t.Errorf("after Cancel, /v1/sent says %q", st)
	}

	// 3. Sent, then revoked: it leaves 42's page through onRevoke.
	rev := composeNotice(t, at, map[string]string{"to": "42", "type": "notification", "level": "warning",
		"title": "Wrong price list", "body": "Please ignore."})
	if !strings.HasPrefix(rev.result, "Sent to 1 recipient") {
		t.Fatalf("composing the notice to revoke: %q", rev.result)
	}
	revID := mustWaitFor[string](t, ut, 10*time.Second, "the notice to revoke on 42's page", jsItemTitled, "Wrong price list")
	for _, tb := range uts {
		if got := mustWaitFor[string](t, tb, 10*time.Second, "the notice to revoke", jsItemTitled, "Wrong price list"); got != revID {
			t.Fatalf("%s lists the notice as %s, the other tab as %s", tb.name, got, revID)
		}
	}
	allTabs(t, uts, 10*time.Second, "42's badge: 1 unread notification", jsBadge, "1|notification 1")
	saveShot(t, at, "admin-"+name+"-before-revoke.png")
	start := clickTwice(t, at, rev.pid)
	allTabs(t, uts, 5*time.Second, "the revoked notice to leave 42's page", jsGone, revID)
	took := time.Since(start)
	t.Logf("revoke: gone from both of 42's tabs %v after the confirming click", took.Round(time.Millisecond))
	if took > 2*time.Second {
		t.Errorf("the revoked notice left 42's tabs %v after the click, want ≤ 2 s", took.Round(time.Millisecond))
	}
	for _, tb := range uts {
		// Only onRevoke removes a message without a click on its Delete.
		if note := evalJS[string](t, tb, `document.getElementById('revoked').hidden ? '' : document.getElementById('revoked').textContent`); !strings.Contains(note, "withdrawn") {
			t.Errorf("%s does not say a message was withdrawn (note %q)", tb.name, note)
		}
		if st := tabState(t, tb); countID(st.IDs, msgID) != 1 || countID(st.IDs, revID) != 0 {
			t.Errorf("%s lists %v, want %s and not the revoked %s", tb.name, st.IDs, msgID, revID)
		}
	}
	allTabs(t, uts, 5*time.Second, "42's badge back to 0", jsBadge, "0|")
	mustWaitFor[string](t, at, 10*time.Second, "the notice listed as revoked", jsRow, rev.pid, "revoked|—")
	saveShot(t, ut, "admin-"+name+"-user-after-revoke.png")
	at.do(t, 10*time.Second, "opening the details of the first notice",
		chromedp.Click(chromedp.CSS(fmt.Sprintf(`#sends tr[data-pid=%q] button.details`, direct.pid))))
	mustWaitFor[int](t, at, 10*time.Second, "the recipients again", jsLoads, "detail-list", 1)
	saveShot(t, at, "admin-"+name+".png")
	evalJS[any](t, at, `document.getElementById('detail').scrollIntoView(false), null`)
	saveShot(t, at, "admin-"+name+"-details.png")
}

// allTabs waits for fn(want) in each tab in turn.
func allTabs(t *testing.T, tabs []*pageTab, timeout time.Duration, what, fn, want string) {
	t.Helper()
	for _, tb := range tabs {
		mustWaitFor[any](t, tb, timeout, what, fn, want)
	}
}

// composed is what the compose form answered.
type composed struct{ result, pid string }

// composeNotice fills in the admin page's compose form (field id → value;
// "target" is users, groups or broadcast, users when absent) and sends it.
func composeNotice(t *testing.T, tb *pageTab, fields map[string]string) composed {
	t.Helper()
	target := fields["target"]
	if target == "" {
		target = "users"
	}
	tb.do(t, 10*time.Second, "choosing "+target, chromedp.Click(chromedp.CSS(`input[name=target][value=`+target+`]`)))
	if fields["level"] == "" {
		fields["level"] = "info"
	}
	values := map[string]string{}
	for _, id := range []string{"to", "type", "level", "title", "body", "link", "expires", "send-at"} {
		values[id] = fields[id]
	}
	js, _ := json.Marshal(values)
	// Each field set as typing would leave it, with an input event (the
	// button's label follows send-at).
	if bad := evalJS[string](t, tb, `(function (f) {
		for (var id in f) {
			var e = document.getElementById(id);
			e.value = f[id];
			e.dispatchEvent(new Event('input'));
			if (e.value !== f[id]) { return id; }
		}
		return '';
	})(`+string(js)+`)`); bad != "" {
		t.Fatalf("the compose form's #%s does not take %q", bad, fields[bad])
	}
	label := evalJS[string](t, tb, `document.getElementById('send').textContent`)
	if want := map[bool]string{true: "Schedule", false: "Send now"}[fields["send-at"] != ""]; label != want {
		t.Errorf("the compose button reads %q, want %q", label, want)
	}
	evalJS[any](t, tb, `document.getElementById('send-result').textContent = ''`)
	tb.do(t, 10*time.Second, "clicking "+label, chromedp.Click(chromedp.ID("send")))
	r := mustWaitFor[string](t, tb, 10*time.Second, "the compose result", jsResult)
	c := composed{result: r}
	if m := pidRE.FindStringSubmatch(r); m != nil {
		c.pid = m[1]
	}
	return c
}

// clickTwice arms a row's Cancel/Revoke button, confirms it, and returns
// when the confirming click was made.
func clickTwice(t *testing.T, tb *pageTab, pid string) time.Time {
	t.Helper()
	sel := chromedp.CSS(fmt.Sprintf(`#sends tr[data-pid=%q] button.withdraw`, pid))
	tb.do(t, 10*time.Second, "arming Cancel/Revoke", chromedp.Click(sel))
	if got := evalJS[string](t, tb, fmt.Sprintf(`document.querySelector('#sends tr[data-pid=%q] button.withdraw').textContent`, pid)); !strings.HasPrefix(got, "Confirm") {
		t.Fatalf("after one click the button reads %q, want a confirmation", got)
	}
	start := time.Now()
	tb.do(t, 10*time.Second, "confirming", chromedp.Click(sel))
	return start
}

// sentView is the part of a GET /v1/sent/{id} answer the test reads.
type sentView struct {
	Send struct {
		State  string     `json:"state"`
		Type   string     `json:"type"`
		Level  string     `json:"level"`
		Link   string     `json:"link"`
		SendAt *time.Time `json:"send_at"`
	} `json:"send"`
}

func sentDetail(t *testing.T, hc *http.Client, base, token, pid string) sentView {
	t.Helper()
	res, err := do(hc, "GET", base+"/v1/sent/"+pid, token, nil, 10*time.Second)
	if err != nil || res.Status != http.StatusOK {
		t.Fatalf("GET /v1/sent/%s: %v %s", pid, err, res)
	}
	var v sentView
	if err := json.Unmarshal(res.Body, &v); err != nil {
		t.Fatalf("GET /v1/sent/%s: %v in %s", pid, err, res)
	}
	return v
}

// histMessage is the part of a history message the test reads.
type histMessage struct {
	ID        string    `json:"id"`
	CreatedAt time.Time `json:"created_at"`
	ExpiresAt string    `json:"expires_at"`
}

// historyMessage returns message id from the user's history.
func historyMessage(t *testing.T, hc *http.Client, base, token, id string) histMessage {
	t.Helper()
	res, err := do(hc, "GET", base+"/v1/messages?limit=100", token, nil, 10*time.Second)
	if err != nil || res.Status != http.StatusOK {
		t.Fatalf("GET /v1/messages: %v %s", err, res)
	}
	var h struct {
		Messages []histMessage `json:"messages"`
	}
	if err := json.Unmarshal(res.Body, &h); err != nil {
		t.Fatalf("GET /v1/messages: %v", err)
	}
	for _, m := range h.Messages {
		if m.ID == id {
			return m
		}
	}
	t.Fatalf("message %s is not in the history", id)
	return histMessage{}
}

// TestBrowserAdminDevToken: in zero-config mode /admin comes with the dev
// admin token filled in and lists its sends at once; a notice composed
// there reaches the dev user.
func TestBrowserAdminDevToken(t *testing.T) {
	b := newBrowser(t)
	in, userTok, adminTok := startZeroConfig(t)
	at := b.openTabs(t, in.base+"/admin", "admin")[0]
	mustWaitFor[int](t, at, 10*time.Second, "the list of sends", jsLoads, "sends", 0)
	if got := evalJS[string](t, at, `document.getElementById('token').value`); got != adminTok {
		t.Fatalf("the token field holds %.24q…, want the dev admin token %.24q…", got, adminTok)
	}
	if e := evalJS[string](t, at, `document.getElementById('list-error').textContent`); e != "" {
		t.Fatalf("the list says %q", e)
	}
	c := composeNotice(t, at, map[string]string{"to": "42", "title": "hello from /admin"})
	if !strings.HasPrefix(c.result, "Sent to 1 recipient") {
		t.Fatalf("composing to the dev user: %q", c.result)
	}
	mustWaitFor[string](t, at, 10*time.Second, "the notice listed as sent", jsRow, c.pid, "sent|0 / 1")
	// To the dev user's group and to everyone: sent, with no read counts.
	for _, f := range []map[string]string{
		{"target": "groups", "to": "user", "title": "hello, group user"},
		{"target": "broadcast", "title": "hello, everyone"},
	} {
		c := composeNotice(t, at, f)
		if !strings.HasPrefix(c.result, "Sent to ") {
			t.Fatalf("composing to %s: %q", f["target"], c.result)
		}
		mustWaitFor[string](t, at, 10*time.Second, "the "+f["target"]+" notice listed as sent", jsRow, c.pid, "sent|—")
	}
	// Pollbox.publisher asks getToken again after a 401 and retries once.
	evalJS[any](t, at, `(function (good) {
		var asked = 0, p = window.Pollbox.publisher({url: '', getToken: function (cb) { asked++; cb(asked === 1 ? 'stale' : good); }});
		window.__refreshed = null;
		p.sent({limit: 1}, function (e, d) { window.__refreshed = {asked: asked, err: e, n: d && d.sends.length}; });
		return null;
	})(`+strconv.Quote(adminTok)+`)`)
	type refreshed struct {
		Asked int             `json:"asked"`
		Err   json.RawMessage `json:"err"`
		N     int             `json:"n"`
	}
	if r := mustWaitFor[refreshed](t, at, 10*time.Second, "the publisher's answer", `function () { return window.__refreshed; }`); r.Asked != 2 || string(r.Err) != "null" || r.N != 1 {
		t.Errorf("a publisher whose first token is refused: asked getToken %d times, error %s, %d sends; want 2, null, 1", r.Asked, r.Err, r.N)
	}

	hc := newHTTPClient(t)
	res, err := do(hc, "GET", in.base+"/v1/messages", userTok, nil, 5*time.Second)
	for _, title := range []string{"hello from /admin", "hello, group user", "hello, everyone"} {
		if err != nil || !strings.Contains(string(res.Body), title) {
			t.Errorf("the dev user's history lacks %q: %v %s", title, err, res)
		}
	}
}
