package main

// Browser tests of the demo page's own features: its layout with a long
// inbox, message expiry, and publishing with a publisher token from a tab
// that watches another user's inbox.

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"pollbox/internal/redistest"
)

// box is an element's getBoundingClientRect.
type box struct {
	Top    float64 `json:"top"`
	Left   float64 `json:"left"`
	Bottom float64 `json:"bottom"`
	Right  float64 `json:"right"`
}

func (b box) String() string {
	return fmt.Sprintf("[%.0f,%.0f]–[%.0f,%.0f]", b.Left, b.Top, b.Right, b.Bottom)
}

// sendCardView is where the demo page shows its send card.
type sendCardView struct {
	Card      box     `json:"card"`      // the "Send a notification" card
	Inbox     box     `json:"inbox"`     // the inbox card
	Width     float64 `json:"width"`     // viewport width (innerWidth)
	Height    float64 `json:"height"`    // viewport height (innerHeight)
	ItemsTall float64 `json:"itemsTall"` // the listed messages' heights added up
	Items     int     `json:"items"`     // listed messages
	SendHit   bool    `json:"sendHit"`   // the Send button is what a click at its centre reaches
}

// jsSendCardView measures the send card with the page scrolled to the top,
// as someone who just opened it sees it.
const jsSendCardView = `(function () {
	window.scrollTo(0, 0);
	function rect(e) {
		var r = e.getBoundingClientRect();
		return {top: r.top, left: r.left, bottom: r.bottom, right: r.right};
	}
	var form = document.getElementById('send-form'), card = form, lis = document.querySelectorAll('#messages li.msg'), tall = 0, i;
	while (card && !/(^| )card( |$)/.test(card.className)) { card = card.parentNode; }
	for (i = 0; i < lis.length; i++) { tall += lis[i].getBoundingClientRect().height; }
	var btn = document.getElementById('send'), b = btn.getBoundingClientRect();
	var hit = document.elementFromPoint(b.left + b.width / 2, b.top + b.height / 2);
	return {card: rect(card), inbox: rect(document.getElementById('messages').parentNode),
		width: window.innerWidth, height: window.innerHeight, itemsTall: tall, items: lis.length,
		sendHit: hit === btn || btn.contains(hit)};
})()`

// within reports whether b lies inside a w×h viewport.
func (b box) within(w, h float64) bool {
	return b.Top >= 0 && b.Left >= 0 && b.Bottom <= h && b.Right <= w
}

// publishExpiring publishes one message to user that expires after
// expiresIn seconds and returns its id.
func publishExpiring(t *testing.T, hc *http.Client, base, token, user, title string, expiresIn int) string {
	t.Helper()
	body, _ := json.Marshal(map[string]any{"to": []string{user}, "title": title, "expires_in": expiresIn})
	res, err := do(hc, "POST", base+"/v1/publish", token, body, 10*time.Second)
	if err != nil || res.Status != http.StatusCreated {
		t.Fatalf("publish with expires_in: %v %s", err, res)
	}
	var out struct{ IDs []string }
	if err := json.Unmarshal(res.Body, &out); err != nil || len(out.IDs) != 1 {
		t.Fatalf("publish answered %s", res)
	}
	return out.IDs[0]
}

// jsItemText answers the text of message id's list item, or "" while it is not listed.
const jsItemText = `function (id) {
	var li = document.querySelector('#messages li.msg[data-id="' + id + '"]');
	return li ? li.textContent : '';
}`

// jsItemTitled answers the data-id of the listed message titled title, or "".
const jsItemTitled = `function (title) {
	var lis = document.querySelectorAll('#messages li.msg[data-id]'), i, t;
	for (i = 0; i < lis.length; i++) {
		t = lis[i].querySelector('.msg-title');
		if (t && t.textContent === title) { return lis[i].getAttribute('data-id'); }
	}
	return '';
}`

// expiresRE is how the list shows a message that expires in five minutes.
var expiresRE = regexp.MustCompile(`expires in [45] min`)

// TestBrowserDemoTallInbox: the demo page watching user 42's inbox of 30
// messages at 1280×800 keeps the whole "Send a notification" card in the
// viewport (beside the inbox, not below it) and, at 375×700, starts it
// above the fold and before the inbox; the message that expires in five
// minutes says so; and a message sent from the same tab with an admin's
// publisher token reaches the watched list, while the tab keeps polling as
// user 42 (who may not publish).
func TestBrowserDemoTallInbox(t *testing.T) {
	b := newBrowser(t)
	secret := newSecret(t)
	in := startInstance(t, baseEnv(secret, redistest.Prefix(t), "POLLBOX_REDIS_URL", redistest.URL(t)))
	hc := newHTTPClient(t)
	user := smpeToken(secret, "42", "user:list")
	admin := smpeToken(secret, "1", "admin")

	// The oldest of 30 messages expires in five minutes; the others never.
	expiring := publishExpiring(t, hc, in.base, admin, "42", "expires soon", 300)
	var plain string
	for i := 1; i < 30; i++ {
		plain = mustPublish(t, hc, in.base, admin, []string{"42"}, fmt.Sprintf("message %d of 30", i+1))[0]
	}

	tb := b.openTabs(t, in.base+"/#token="+user, "demo")[0]
	tb.front(t)
	tb.do(t, 10*time.Second, "setting the viewport", chromedp.EmulateViewport(1280, 800))
	mustWaitFor[string](t, tb, 10*time.Second, "the status to say connected", jsConnected)
	// The first page holds 20; "Load older" lists the rest.
	const jsListed = `function (n) { return document.querySelectorAll('#messages li.msg').length === n; }`
	mustWaitFor[bool](t, tb, 10*time.Second, "the first 20 messages", jsListed, 20)
	tb.do(t, 10*time.Second, "clicking Load older", chromedp.Click(chromedp.ID("load-more")))
	mustWaitFor[bool](t, tb, 10*time.Second, "all 30 messages", jsListed, 30)

	// Wide (three columns at 1280, two at 1024): the send card is entirely
	// in the viewport, and its Send button is not covered or scrolled away.
	for _, vp := range []struct{ w, h int64 }{{1024, 768}, {1280, 800}} {
		checkSendCardInView(t, tb, vp.w, vp.h)
	}

	// The expiring message says when; the others say nothing of expiry.
	text := mustWaitFor[string](t, tb, 5*time.Second, "the expiring message", jsItemText, expiring)
	if !expiresRE.MatchString(text) {
		t.Errorf("the message expiring in 5 minutes reads %q, want it to match %q", text, expiresRE)
	}
	if text := evalJS[string](t, tb, fmt.Sprintf(`document.querySelector('li.msg[data-id=%q]').textContent`, plain)); strings.Contains(text, "expire") {
		t.Errorf("a message without expiry reads %q", text)
	}

	// Sent from this tab with the admin's token as publisher token, to the
	// watched user: listed here, from the admin, by the poll of user 42.
	const title = "sent from the watching tab"
	if !evalJS[bool](t, tb, `!!document.getElementById('pub-token')`) {
		t.Fatalf("the send card has no publisher token field (#pub-token)")
	}
	tb.do(t, 10*time.Second, "filling in the send form",
		chromedp.SetValue(chromedp.ID("pub-token"), admin),
		chromedp.SetValue(chromedp.ID("send-to"), "42"),
		chromedp.SetValue(chromedp.ID("send-title"), title),
		chromedp.Click(chromedp.ID("send")))
	result := mustWaitFor[string](t, tb, 10*time.Second, "the send result",
		`function () { var r = document.getElementById('send-result').textContent; return /^(Sent|Error)/.test(r) ? r : ''; }`)
	if !strings.HasPrefix(result, "Sent to 1 recipient") {
		t.Fatalf("sending from the tab: %q", result)
	}
	id := mustWaitFor[string](t, tb, 10*time.Second, "the sent message in the list", jsItemTitled, title)
	if !strings.Contains(result, id) {
		t.Errorf("the send result %q does not name the listed message %s", result, id)
	}
	if text := evalJS[string](t, tb, fmt.Sprintf(`document.querySelector('li.msg[data-id=%q] .msg-meta').textContent`, id)); !strings.Contains(text, "from 1") {
		t.Errorf("the sent message's meta line reads %q, want it from the admin (1)", text)
	}
	if st := tabState(t, tb); !strings.HasPrefix(st.Status, "connected") || st.Badge != "31" {
		t.Errorf("after sending: status %q, badge %q; want still connected as user 42 with 31 unread", st.Status, st.Badge)
	}
	checkSendCardInView(t, tb, 1280, 800)

	// Narrow: the send card starts above the fold, before the inbox.
	tb.do(t, 10*time.Second, "setting a phone viewport",
		chromedp.EmulateViewport(375, 700, chromedp.EmulateMobile, chromedp.EmulatePortrait))
	mustWaitFor[bool](t, tb, 5*time.Second, "the 375×700 layout",
		`function () { return document.documentElement.clientWidth === 375; }`)
	v := evalJS[sendCardView](t, tb, jsSendCardView)
	t.Logf("375×700: send card %v, inbox card %v", v.Card, v.Inbox)
	if v.Card.Top >= v.Height || v.Card.Top >= v.Inbox.Top {
		t.Errorf("375×700: the send card starts at %.0f px, want above the fold (%.0f px) and above the inbox (%.0f px)",
			v.Card.Top, v.Height, v.Inbox.Top)
	}
	saveShot(t, tb, "demo-tall-375x700.png")
}

// checkSendCardInView lays the page out at w×h and fails the test unless
// the whole send card is in the viewport with its Send button reachable,
// while the listed messages together are taller than the viewport.
func checkSendCardInView(t *testing.T, tb *pageTab, w, h int64) {
	t.Helper()
	tb.do(t, 10*time.Second, "setting the viewport", chromedp.EmulateViewport(w, h))
	mustWaitFor[bool](t, tb, 5*time.Second, fmt.Sprintf("the %d×%d layout", w, h),
		`function (w, h) { return window.innerWidth === w && window.innerHeight === h; }`, w, h)
	v := evalJS[sendCardView](t, tb, jsSendCardView)
	t.Logf("%d×%d: send card %v, inbox card %v, %d messages %.0f px tall", w, h, v.Card, v.Inbox, v.Items, v.ItemsTall)
	if v.ItemsTall <= v.Height {
		t.Fatalf("%d×%d: the inbox lists %d messages %.0f px tall, want them taller than the viewport", w, h, v.Items, v.ItemsTall)
	}
	if !v.Card.within(v.Width, v.Height) {
		t.Errorf("%d×%d: the send card %v is not within the %.0f×%.0f viewport", w, h, v.Card, v.Width, v.Height)
	}
	if !v.SendHit {
		t.Errorf("%d×%d: a click at the Send button's centre does not reach it", w, h)
	}
	saveShot(t, tb, fmt.Sprintf("demo-tall-%dx%d.png", w, h))
}

// saveShot saves a screenshot of the tab's viewport for a look by eye, in
// the test's temporary directory and in /tmp/pollbox-shots (kept).
func saveShot(t *testing.T, tb *pageTab, name string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, 20*time.Second)
	img, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	cancel()
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	for _, dir := range []string{t.TempDir(), "/tmp/pollbox-shots"} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, img, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("screenshot: %s", p)
	}
}

// TestBrowserDemoDevPublisherToken: with dev tokens (zero-config), the
// send card's publisher token is the dev admin token, so a tab watching
// the dev user's inbox sends to it without pasting a token.
func TestBrowserDemoDevPublisherToken(t *testing.T) {
	b := newBrowser(t)
	in, userTok, adminTok := startZeroConfig(t)

	tb := b.openTabs(t, in.base+"/demo", "demo")[0]
	tb.front(t)
	tb.do(t, 10*time.Second, "clicking Use dev user token", chromedp.Click(chromedp.ID("dev-user")))
	mustWaitFor[string](t, tb, 10*time.Second, "the status to say connected", jsConnected)
	if got := evalJS[string](t, tb, `document.getElementById('pub-token').value`); got != adminTok {
		t.Fatalf("the publisher token field holds %.24q…, want the dev admin token %.24q…", got, adminTok)
	}
	if got := evalJS[string](t, tb, `document.getElementById('token').value`); got != userTok {
		t.Fatalf("the watched token is %.24q…, want the dev user token %.24q…", got, userTok)
	}
	var sub struct{ Sub string }
	parts := strings.Split(userTok, ".")
	if len(parts) != 3 {
		t.Fatalf("the dev user token %q is not a JWT", userTok)
	}
	if raw, err := base64.RawURLEncoding.DecodeString(parts[1]); err != nil || json.Unmarshal(raw, &sub) != nil || sub.Sub == "" {
		t.Fatalf("the dev user token's claims %q have no sub (%v)", parts[1], err)
	}

	const title = "dev send to myself"
	tb.do(t, 10*time.Second, "sending to the dev user",
		chromedp.SetValue(chromedp.ID("send-to"), sub.Sub),
		chromedp.SetValue(chromedp.ID("send-title"), title),
		chromedp.Click(chromedp.ID("send")))
	mustWaitFor[string](t, tb, 10*time.Second, "the sent message in the dev user's list", jsItemTitled, title)
}
