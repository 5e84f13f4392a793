package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"pollbox/internal/redistest"
)

// Notice management end to end: scheduled sends, cancel, revoke and read
// counts, through two instances on one Redis and on a Redis Cluster, with
// every answer checked against the OpenAPI document.

// noticePoll is a poll answer with the fields of notice management.
type noticePoll struct {
	Messages     []message      `json:"messages"`
	Cursor       string         `json:"cursor"`
	Unread       int            `json:"unread"`
	UnreadByType map[string]int `json:"unread_by_type"`
	Revoked      []string       `json:"revoked"`
}

type noticePublish struct {
	PublishID string   `json:"publish_id"`
	State     string   `json:"state"`
	Count     int      `json:"count"`
	IDs       []string `json:"ids"`
	SendAt    string   `json:"send_at"`
}

type noticeSend struct {
	PublishID string `json:"publish_id"`
	State     string `json:"state"`
	Count     int    `json:"count"`
	Read      *int   `json:"read"`
	Unread    *int   `json:"unread"`
	Deleted   *int   `json:"deleted"`
	Expired   *int   `json:"expired"`
}

type noticeDetail struct {
	Send       noticeSend `json:"send"`
	Recipients []struct {
		User, ID, State string
	} `json:"recipients"`
	Next *string `json:"next"`
}

// noticeEnv is two instances of one pollbox and its tokens: alice and bob
// read; boss and carol publish (group notice); root is an admin.
type noticeEnv struct {
	a, b                   *instance
	hc                     *http.Client
	secret                 []byte
	alice, bob, boss, root string
	otherPublisher         string // carol, a publisher who is no admin
}

// user is a reading token of user u.
func (e *noticeEnv) user(u string) string { return smpeToken(e.secret, u, "user:list") }

func newNoticeEnv(t *testing.T, k, v string) *noticeEnv {
	secret := newSecret(t)
	env := baseEnv(secret, redistest.Prefix(t), k, v, "POLLBOX_PUBLISHER_GROUPS", "admin,notice")
	e := &noticeEnv{a: startInstance(t, env), b: startInstance(t, env), hc: newCheckedClient(t), secret: secret,
		alice: smpeToken(secret, "alice", "user:list"), bob: smpeToken(secret, "bob", "user:list"),
		boss: smpeToken(secret, "boss", "notice"), root: smpeToken(secret, "root", "admin"),
		otherPublisher: smpeToken(secret, "carol", "notice")}
	return e
}

// call sends a JSON request and fails the test on a transport error or a
// status other than want.
func (e *noticeEnv) call(t *testing.T, base, method, path, token string, body any, want int) response {
	t.Helper()
	var b []byte
	if body != nil {
		var err error
		if b, err = json.Marshal(body); err != nil {
			t.Fatal(err)
		}
	}
	res, err := do(e.hc, method, base+path, token, b, 15*time.Second)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	if res.Status != want {
		t.Fatalf("%s %s: %s, want %d", method, path, res, want)
	}
	return res
}

func decodeNotice[T any](t *testing.T, r response) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(r.Body, &v); err != nil {
		t.Fatalf("answer %s: %v", r, err)
	}
	return v
}

// waitingPoll starts a poll on base and returns where its answer arrives,
// with the time it arrived.
func (e *noticeEnv) waitingPoll(t *testing.T, base, token, cursor string, timeout int) <-chan noticePolled {
	ch := make(chan noticePolled, 1)
	go func() {
		q := url.Values{"timeout": {fmt.Sprint(timeout)}, "cursor": {cursor}}
		res, err := do(e.hc, "GET", base+"/v1/poll?"+q.Encode(), token, nil, time.Duration(timeout)*time.Second+15*time.Second)
		p := noticePolled{at: time.Now(), err: err, res: res}
		if err == nil && res.Status == http.StatusOK {
			p.err = json.Unmarshal(res.Body, &p.poll)
		} else if err == nil {
			p.err = fmt.Errorf("poll answered %s", res)
		}
		ch <- p
	}()
	return ch
}

type noticePolled struct {
	poll noticePoll
	res  response
	err  error
	at   time.Time
}

func (e *noticeEnv) cursor(t *testing.T, base, token string) string {
	return decodeNotice[noticePoll](t, e.call(t, base, "GET", "/v1/poll?timeout=0", token, nil, 200)).Cursor
}

// metricSum is a series summed over both instances.
func (e *noticeEnv) metricSum(series string) (float64, error) {
	var sum float64
	for _, in := range []*instance{e.a, e.b} {
		v, err := metric(e.hc, in.base, series)
		if err != nil {
			return 0, err
		}
		sum += v
	}
	return sum, nil
}

// waitMetric waits until series, summed over both instances, is want.
func (e *noticeEnv) waitMetric(t *testing.T, series string, want float64) {
	t.Helper()
	var got float64
	var err error
	eventually(t, 5*time.Second, func() bool {
		got, err = e.metricSum(series)
		return err == nil && got == want
	}, func() string {
		return fmt.Sprintf("%s summed over both instances = %v (now %v, %v)", series, want, got, err)
	})
}

func recvNotice(t *testing.T, ch <-chan noticePolled, within time.Duration, what string) noticePolled {
	t.Helper()
	select {
	case p := <-ch:
		if p.err != nil {
			t.Fatalf("%s: %v", what, p.err)
		}
		return p
	case <-time.After(within):
		t.Fatalf("%s: no answer within %v", what, within)
		return noticePolled{}
	}
}

func TestNotices(t *testing.T) {
	t.Parallel()
	for _, tc := range redisBackends {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			k, v := tc.env(t)
			e := newNoticeEnv(t, k, v)
			t.Run("scheduled", e.testScheduled)
			t.Run("cancel", e.testCancel)
			t.Run("revoke", e.testRevoke)
			t.Run("read counts", e.testReadCounts)
		})
	}
}

// A scheduled send is delivered once, at its send_at, to a poll waiting on
// the other instance; the answer and /v1/sent/{id} follow it.
func (e *noticeEnv) testScheduled(t *testing.T) {
	cur := e.cursor(t, e.a.base, e.alice)
	ch := e.waitingPoll(t, e.a.base, e.alice, cur, 20)
	waitWaiting(t, e.hc, e.a.base, 1, 10*time.Second)
	sendAt := time.Now().Add(1500 * time.Millisecond).UTC().Truncate(time.Millisecond)
	pub := decodeNotice[noticePublish](t, e.call(t, e.b.base, "POST", "/v1/publish", e.boss,
		map[string]any{"to": []string{"alice"}, "title": "later", "type": "reply", "send_at": sendAt.Format(time.RFC3339Nano)}, 201))
	if pub.State != "scheduled" || len(pub.IDs) != 0 || pub.Count != 1 || pub.SendAt != sendAt.Format("2006-01-02T15:04:05.000Z") ||
		!strings.HasPrefix(pub.PublishID, "p.u.boss.") {
		t.Fatalf("scheduled publish answered %+v", pub)
	}
	p := recvNotice(t, ch, 10*time.Second, "the poll waiting for the scheduled send")
	if len(p.poll.Messages) != 1 || p.poll.Messages[0].Title != "later" {
		t.Fatalf("poll got %+v, want the scheduled message", p.poll.Messages)
	}
	created, err := time.Parse(time.RFC3339Nano, p.poll.Messages[0].CreatedAt)
	if err != nil {
		t.Fatal(err)
	}
	if p.at.Before(sendAt) || created.Before(sendAt) {
		t.Errorf("delivered at %v (created_at %v), before its send_at %v", p.at, created, sendAt)
	}
	if late := created.Sub(sendAt); late > time.Second {
		t.Errorf("created_at is %v after send_at, want at most 1 s", late)
	}
	if p.poll.UnreadByType["reply"] < 1 {
		t.Errorf("unread_by_type %v lacks the reply", p.poll.UnreadByType)
	}
	// Once: nothing more arrives from either instance's scheduler.
	if again := decodeNotice[noticePoll](t, e.call(t, e.b.base, "GET", "/v1/poll?timeout=0&cursor="+url.QueryEscape(p.poll.Cursor), e.alice, nil, 200)); len(again.Messages) != 0 {
		t.Errorf("after the scheduled message a poll got %+v", again.Messages)
	}
	hist := decodeNotice[noticePoll](t, e.call(t, e.a.base, "GET", "/v1/messages?type=reply,other", e.alice, nil, 200))
	n := 0
	for _, m := range hist.Messages {
		if m.Title == "later" {
			n++
		}
	}
	if n != 1 {
		t.Errorf("history holds the scheduled message %d times", n)
	}
	// Delivered by one of the two schedulers, once.
	e.waitMetric(t, `pollbox_scheduled_total{outcome="delivered"}`, 1)
	e.waitMetric(t, "pollbox_schedule_lag_seconds_count", 1)
	d := decodeNotice[noticeDetail](t, e.call(t, e.a.base, "GET", "/v1/sent/"+pub.PublishID, e.boss, nil, 200))
	if d.Send.State != "sent" || len(d.Recipients) != 1 || d.Recipients[0].User != "alice" ||
		d.Recipients[0].ID != p.poll.Messages[0].ID || d.Recipients[0].State != "unread" {
		t.Errorf("sent detail %+v, want alice's unread %s", d, p.poll.Messages[0].ID)
	}
}

// A scheduled send cancelled before its send_at never arrives; repeating
// the DELETE answers the same; only its owner or an admin may.
func (e *noticeEnv) testCancel(t *testing.T) {
	cur := e.cursor(t, e.a.base, e.bob)
	sendAt := time.Now().Add(1500 * time.Millisecond)
	pub := decodeNotice[noticePublish](t, e.call(t, e.a.base, "POST", "/v1/publish", e.boss,
		map[string]any{"to": []string{"bob"}, "title": "never", "send_at": sendAt.UnixMilli()}, 201))
	checkErrorShape(t, e.call(t, e.b.base, "DELETE", "/v1/publish/"+pub.PublishID, e.otherPublisher, nil, 404), 404, "not_found")
	checkErrorShape(t, e.call(t, e.b.base, "DELETE", "/v1/publish/"+pub.PublishID, e.bob, nil, 403), 403, "forbidden")
	for i, tok := range []string{e.boss, e.boss, e.root} {
		w := decodeNotice[noticePublish](t, e.call(t, e.b.base, "DELETE", "/v1/publish/"+pub.PublishID, tok, nil, 200))
		if w.PublishID != pub.PublishID || w.State != "cancelled" {
			t.Fatalf("DELETE %d answered %+v, want cancelled", i, w)
		}
	}
	// A poll waiting past the send_at gets nothing.
	wait := int(time.Until(sendAt).Seconds()) + 2
	p := recvNotice(t, e.waitingPoll(t, e.a.base, e.bob, cur, wait), time.Duration(wait+10)*time.Second, "bob's poll")
	if len(p.poll.Messages) != 0 {
		t.Fatalf("a cancelled send arrived: %+v", p.poll.Messages)
	}
	e.waitMetric(t, `pollbox_scheduled_total{outcome="cancelled"}`, 1)
	e.waitMetric(t, `pollbox_scheduled_total{outcome="delivered"}`, 1)
	list := decodeNotice[struct{ Sends []noticeSend }](t, e.call(t, e.a.base, "GET", "/v1/sent?limit=100", e.boss, nil, 200))
	i := slices.IndexFunc(list.Sends, func(s noticeSend) bool { return s.PublishID == pub.PublishID })
	if i < 0 || list.Sends[i].State != "cancelled" || list.Sends[i].Read != nil {
		t.Errorf("/v1/sent shows %+v for the cancelled send", list.Sends)
	}
}

// A revoke ends the recipients' waiting polls, on both instances, with the
// id in revoked, and takes the message out of history and unread counts.
func (e *noticeEnv) testRevoke(t *testing.T) {
	cur := e.cursor(t, e.a.base, e.alice)
	pub := decodeNotice[noticePublish](t, e.call(t, e.b.base, "POST", "/v1/publish", e.root,
		map[string]any{"to": []string{"alice"}, "title": "oops", "type": "like"}, 201))
	if pub.State != "sent" || len(pub.IDs) != 1 {
		t.Fatalf("publish answered %+v", pub)
	}
	id := pub.IDs[0]
	got := decodeNotice[noticePoll](t, e.call(t, e.a.base, "GET", "/v1/poll?timeout=0&cursor="+url.QueryEscape(cur), e.alice, nil, 200))
	if len(got.Messages) != 1 || got.Messages[0].ID != id {
		t.Fatalf("alice noticePolled %+v, want %s", got.Messages, id)
	}
	before := decodeNotice[noticePoll](t, e.call(t, e.a.base, "GET", "/v1/unread", e.alice, nil, 200))
	// Two devices wait past the message, one on each instance.
	chA := e.waitingPoll(t, e.a.base, e.alice, got.Cursor, 20)
	chB := e.waitingPoll(t, e.b.base, e.alice, got.Cursor, 20)
	waitWaiting(t, e.hc, e.a.base, 1, 10*time.Second)
	waitWaiting(t, e.hc, e.b.base, 1, 10*time.Second)
	checkErrorShape(t, e.call(t, e.a.base, "DELETE", "/v1/publish/"+pub.PublishID, e.boss, nil, 404), 404, "not_found")
	start := time.Now()
	w := decodeNotice[noticePublish](t, e.call(t, e.a.base, "DELETE", "/v1/publish/"+pub.PublishID, e.root, nil, 200))
	if w.State != "revoked" {
		t.Fatalf("DELETE answered %+v, want revoked", w)
	}
	for name, ch := range map[string]<-chan noticePolled{"A": chA, "B": chB} {
		p := recvNotice(t, ch, 5*time.Second, "the poll waiting on "+name)
		if !slices.Contains(p.poll.Revoked, id) || len(p.poll.Messages) != 0 {
			t.Errorf("poll on %s answered messages %+v, revoked %v; want revoked %s", name, p.poll.Messages, p.poll.Revoked, id)
		}
		if d := p.at.Sub(start); d > time.Second {
			t.Errorf("poll on %s learnt of the revoke after %v", name, d)
		}
	}
	after := decodeNotice[noticePoll](t, e.call(t, e.b.base, "GET", "/v1/unread", e.alice, nil, 200))
	if after.Unread != before.Unread-1 || after.UnreadByType["like"] != before.UnreadByType["like"]-1 {
		t.Errorf("unread %d %v before the revoke, %d %v after; want one like less", before.Unread, before.UnreadByType, after.Unread, after.UnreadByType)
	}
	hist := decodeNotice[noticePoll](t, e.call(t, e.b.base, "GET", "/v1/messages?limit=100", e.alice, nil, 200))
	if slices.ContainsFunc(hist.Messages, func(m message) bool { return m.ID == id }) {
		t.Errorf("history still lists the revoked %s", id)
	}
	if w := decodeNotice[noticePublish](t, e.call(t, e.b.base, "DELETE", "/v1/publish/"+pub.PublishID, e.root, nil, 200)); w.State != "revoked" {
		t.Errorf("second DELETE answered %+v", w)
	}
	e.waitMetric(t, "pollbox_revoked_total", 1) // the repeated DELETE counts no second revoke
}

// /v1/sent counts a direct send's recipients by state, exactly, and the
// detail pages them.
func (e *noticeEnv) testReadCounts(t *testing.T) {
	users := userNames("rc", 5)
	pub := decodeNotice[noticePublish](t, e.call(t, e.a.base, "POST", "/v1/publish", e.boss,
		map[string]any{"to": users, "title": "count me"}, 201))
	for _, i := range []int{0, 1} {
		e.call(t, e.b.base, "POST", "/v1/read", e.user(users[i]), map[string]any{"ids": []string{pub.IDs[i]}}, 200)
	}
	e.call(t, e.b.base, "DELETE", "/v1/messages/"+pub.IDs[4], e.user(users[4]), nil, 204)
	list := decodeNotice[struct{ Sends []noticeSend }](t, e.call(t, e.a.base, "GET", "/v1/sent", e.boss, nil, 200))
	if len(list.Sends) == 0 || list.Sends[0].PublishID != pub.PublishID {
		t.Fatalf("/v1/sent does not list the newest send first: %+v", list.Sends)
	}
	s := list.Sends[0]
	if s.Count != 5 || s.Read == nil || *s.Read != 2 || *s.Unread != 2 || *s.Deleted != 1 || *s.Expired != 0 {
		t.Errorf("send %+v, want read 2 unread 2 deleted 1 expired 0", s)
	}
	var seen []string
	next := ""
	for range 5 {
		path := "/v1/sent/" + pub.PublishID + "?limit=2"
		if next != "" {
			path += "&after=" + next
		}
		d := decodeNotice[noticeDetail](t, e.call(t, e.b.base, "GET", path, e.boss, nil, 200))
		for _, r := range d.Recipients {
			seen = append(seen, r.User+":"+r.State)
		}
		if d.Next == nil {
			break
		}
		next = *d.Next
	}
	want := []string{"rc0:read", "rc1:read", "rc2:unread", "rc3:unread", "rc4:deleted"}
	if !slices.Equal(seen, want) {
		t.Errorf("detail pages %v, want %v", seen, want)
	}
	read := decodeNotice[noticeDetail](t, e.call(t, e.b.base, "GET", "/v1/sent/"+pub.PublishID+"?state=read", e.root, nil, 200))
	if len(read.Recipients) != 2 {
		t.Errorf("state=read lists %+v", read.Recipients)
	}
	checkErrorShape(t, e.call(t, e.b.base, "GET", "/v1/sent/"+pub.PublishID, e.otherPublisher, nil, 404), 404, "not_found")
}

// An instance's scheduler stops when its drain starts: a send due during
// the drain is left to the next instance, which delivers it once.
func TestSchedulerStopsAtDrain(t *testing.T) {
	t.Parallel()
	secret := newSecret(t)
	env := baseEnv(secret, redistest.Prefix(t), "POLLBOX_REDIS_URL", redistest.URL(t), "POLLBOX_SHUTDOWN_DRAIN", "3s")
	a := startInstance(t, env)
	hc := newCheckedClient(t)
	user, admin := smpeToken(secret, "dora", "user:list"), smpeToken(secret, "1", "admin")
	cur := mustPoll(t, hc, a.base, user, "", 0).Cursor
	sendAt := time.Now().Add(time.Second)
	body, _ := json.Marshal(map[string]any{"to": []string{"dora"}, "title": "due in the drain", "send_at": sendAt.UnixMilli()})
	if res, err := do(hc, "POST", a.base+"/v1/publish", admin, body, 10*time.Second); err != nil || res.Status != http.StatusCreated {
		t.Fatalf("publish: %v %s", err, res)
	}
	if err := a.stop(t, 20*time.Second); err != nil {
		t.Fatalf("stopping A: %v", err)
	}
	if time.Now().Before(sendAt.Add(time.Second)) {
		t.Fatalf("A stopped %v before the send_at: the drain did not span it", time.Until(sendAt))
	}
	bStart := time.Now()
	b := startInstance(t, env)
	p := mustPoll(t, hc, b.base, user, cur, 10)
	if len(p.Messages) != 1 || p.Messages[0].Title != "due in the drain" {
		t.Fatalf("B polled %+v, want the scheduled message", p.Messages)
	}
	created, err := time.Parse(time.RFC3339Nano, p.Messages[0].CreatedAt)
	if err != nil {
		t.Fatal(err)
	}
	if created.Before(bStart.Add(-10 * time.Millisecond)) {
		t.Errorf("delivered at %v, during A's drain (B started %v)", created, bStart)
	}
}
