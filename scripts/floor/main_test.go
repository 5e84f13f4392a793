package main

import (
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"
)

func token(user string) string {
	return "Bearer x." + base64.RawURLEncoding.EncodeToString([]byte(`{"sub":"`+user+`"}`)) + ".y"
}

type pollResp struct {
	Messages []struct {
		ID   string `json:"id"`
		Body string `json:"body"`
	} `json:"messages"`
	Cursor string `json:"cursor"`
}

func poll(url, user string) (pollResp, error) {
	var p pollResp
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		return p, err
	}
	req.Header.Set("Authorization", token(user))
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return p, err
	}
	defer res.Body.Close()
	err = json.NewDecoder(res.Body).Decode(&p)
	return p, err
}

func publish(t *testing.T, base, body string) {
	t.Helper()
	res, err := http.Post(base+"/v1/publish", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusCreated {
		t.Fatalf("publish %s: status %d", body, res.StatusCode)
	}
}

// waitWaiting returns once the server reports n waiting polls.
func waitWaiting(t *testing.T, base string, n int) {
	t.Helper()
	want := "pollbox_polls_waiting " + strconv.Itoa(n) + "\n"
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); {
		res, err := http.Get(base + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if string(b) == want {
			return
		}
		time.Sleep(time.Millisecond) // polling an observable value, not waiting blind
	}
	t.Fatalf("never saw %d waiting polls", n)
}

// TestWaitingPollsWake checks the two ways a waiting poll ends with
// messages (a publish to its user, a broadcast) and that cursors continue.
func TestWaitingPollsWake(t *testing.T) {
	ts := httptest.NewServer(newHandler(newInboxes()))
	t.Cleanup(ts.Close)
	for _, tc := range []struct {
		name, publish, cursor, want string
	}{
		{"to the user", `{"to":["u1"],"body":"one"}`, "", "one"},
		{"broadcast", `{"broadcast":true,"body":"two"}`, "1-0", "two"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			type result struct {
				p   pollResp
				err error
			}
			got := make(chan result, 1)
			go func() {
				p, err := poll(ts.URL+"/v1/poll?timeout=5&cursor="+tc.cursor, "u1")
				got <- result{p, err}
			}()
			waitWaiting(t, ts.URL, 1)
			publish(t, ts.URL, tc.publish)
			r := <-got
			if r.err != nil || len(r.p.Messages) != 1 || r.p.Messages[0].Body != tc.want {
				t.Fatalf("poll got %+v, %v; want one message %q", r.p, r.err, tc.want)
			}
			again, err := poll(ts.URL+"/v1/poll?timeout=0&cursor="+r.p.Cursor, "u1")
			if err != nil || len(again.Messages) != 0 {
				t.Errorf("poll from cursor %s got %+v, %v; want nothing new", r.p.Cursor, again.Messages, err)
			}
		})
	}
}

func TestRefusesNonLoopback(t *testing.T) {
	if err := serve(t.Context(), "0.0.0.0:0", nil); err == nil || !strings.Contains(err.Error(), "loopback") {
		t.Fatalf("serve on 0.0.0.0: %v, want a loopback error", err)
	}
}
