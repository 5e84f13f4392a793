package main

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeStreams is an in-memory message store for the fake servers below.
type fakeStreams struct {
	mu      sync.Mutex
	msgs    map[string][]string
	wake    map[string]chan struct{} // closed when a stream grows
	waiting atomic.Int64
}

func newFakeStreams() *fakeStreams {
	return &fakeStreams{msgs: map[string][]string{}, wake: map[string]chan struct{}{}}
}

func (f *fakeStreams) add(name, body string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.msgs[name] = append(f.msgs[name], body)
	if ch, ok := f.wake[name]; ok {
		close(ch)
		delete(f.wake, name)
	}
}

// wait returns the messages of stream name from index from on (from < 0:
// everything published after the call), waiting up to d for one.
func (f *fakeStreams) wait(r *http.Request, name string, from int, d time.Duration) ([]string, int) {
	f.waiting.Add(1)
	defer f.waiting.Add(-1)
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	for {
		f.mu.Lock()
		msgs := f.msgs[name]
		if from < 0 {
			from = len(msgs)
		}
		if len(msgs) > from || d == 0 {
			f.mu.Unlock()
			return msgs[min(from, len(msgs)):], len(msgs)
		}
		ch, ok := f.wake[name]
		if !ok {
			ch = make(chan struct{})
			f.wake[name] = ch
		}
		f.mu.Unlock()
		select {
		case <-ch:
		case <-deadline.C:
			return nil, from
		case <-r.Context().Done():
			return nil, from
		}
	}
}

// jwtSubject reads "sub" from a bearer JWT without checking it.
func jwtSubject(auth string) string {
	parts := strings.Split(strings.TrimPrefix(auth, "Bearer "), ".")
	if len(parts) != 3 {
		return ""
	}
	b, _ := base64.RawURLEncoding.DecodeString(parts[1])
	var c struct{ Sub string }
	_ = json.Unmarshal(b, &c)
	return c.Sub
}

// fakePollbox serves /v1/poll, /v1/publish and /metrics like pollbox does,
// with every answer shape the load generator must cope with: unknown and
// nested fields, decoy "body" keys, Content-Length and chunked bodies.
func fakePollbox(t *testing.T, users int) *httptest.Server {
	ts := httptest.NewServer(fakePollboxHandler(users))
	t.Cleanup(ts.Close)
	return ts
}

func fakePollboxHandler(users int) http.Handler {
	f := newFakeStreams()
	var n atomic.Int64
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/poll", func(w http.ResponseWriter, r *http.Request) {
		user := jwtSubject(r.Header.Get("Authorization"))
		if user == "" {
			http.Error(w, `{"error":"unauthorized"}`, http.StatusUnauthorized)
			return
		}
		q := r.URL.Query()
		from := -1
		if c := q.Get("cursor"); c != "" {
			from, _ = strconv.Atoi(strings.TrimSuffix(c, "-0"))
		}
		timeout, _ := strconv.Atoi(q.Get("timeout"))
		msgs, next := f.wait(r, user, from, time.Duration(timeout)*time.Second)
		type message struct {
			ID   string         `json:"id"`
			Body string         `json:"body"`
			Data map[string]any `json:"data"`
		}
		out := struct {
			Messages []message `json:"messages"`
			Cursor   string    `json:"cursor"`
			Unread   int       `json:"unread"`
			More     bool      `json:"more"`
			Reset    bool      `json:"reset"`
		}{Messages: []message{}, Cursor: strconv.Itoa(next) + "-0"}
		for i, m := range msgs {
			out.Messages = append(out.Messages, message{ID: strconv.Itoa(i), Body: m,
				Data: map[string]any{"body": "decoy", "list": []any{1.5, nil, map[string]any{"messages": []any{}}}}})
		}
		w.Header().Set("Content-Type", "application/json")
		if n.Add(1)%2 == 0 {
			w.(http.Flusher).Flush() // headers first: the body goes out chunked
		}
		_ = json.NewEncoder(w).Encode(out)
	})
	mux.HandleFunc("POST /v1/publish", func(w http.ResponseWriter, r *http.Request) {
		var in struct {
			To        []string `json:"to"`
			Broadcast bool     `json:"broadcast"`
			Body      string   `json:"body"`
		}
		if r.Header.Get("Authorization") != "Bearer benchkey" || json.NewDecoder(r.Body).Decode(&in) != nil {
			http.Error(w, `{"error":"bad_request"}`, http.StatusBadRequest)
			return
		}
		if in.Broadcast {
			for u := range users {
				in.To = append(in.To, "u"+strconv.Itoa(u))
			}
		}
		for _, u := range in.To {
			f.add(u, in.Body)
		}
		w.WriteHeader(http.StatusCreated)
		fmt.Fprintf(w, `{"id":"x","count":%d}`, len(in.To))
	})
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "# HELP x\npollbox_polls_waiting %d\n", f.waiting.Load())
	})
	return mux
}

// fakeNchan serves long-poll subscribers and publishers the way Nchan does:
// a new subscriber waits for the next message, and Last-Modified / Etag
// tell where it continues; an empty wait ends with 408.
func fakeNchan(t *testing.T) *httptest.Server {
	ts := httptest.NewServer(fakeNchanHandler())
	t.Cleanup(ts.Close)
	return ts
}

func fakeNchanHandler() http.Handler {
	f := newFakeStreams()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /sub/{ch}", func(w http.ResponseWriter, r *http.Request) {
		from := -1
		if ims := r.Header.Get("If-Modified-Since"); ims != "" {
			if r.Header.Get("If-None-Match") != "0" {
				http.Error(w, "If-None-Match not echoed", http.StatusBadRequest)
				return
			}
			from, _ = strconv.Atoi(strings.TrimPrefix(ims, "m"))
		}
		msgs, _ := f.wait(r, r.PathValue("ch"), from, 500*time.Millisecond)
		if len(msgs) == 0 {
			w.WriteHeader(http.StatusRequestTimeout)
			return
		}
		if from < 0 {
			from = 0 // only reached once the stream has grown
		}
		w.Header().Set("Last-Modified", "m"+strconv.Itoa(from+1))
		w.Header().Set("Etag", "0")
		_, _ = io.WriteString(w, msgs[0])
	})
	mux.HandleFunc("POST /pub/{ch}", func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		f.add(r.PathValue("ch"), string(b))
		w.WriteHeader(http.StatusAccepted)
		_, _ = io.WriteString(w, "queued messages: 1\n")
	})
	return mux
}

// TestRunAgainstFakeServers runs whole load-generator runs against the
// fake servers: every published message must arrive exactly once.
func TestRunAgainstFakeServers(t *testing.T) {
	if testing.Short() {
		t.Skip("runs for several seconds")
	}
	const users = 10
	pb, nc := fakePollbox(t, users), fakeNchan(t)
	for _, tc := range []struct{ protocol, mode string }{
		{"pollbox", "users"}, {"pollbox", "broadcast"}, {"pollbox", "batch"}, {"pollbox", "waiters"},
		{"nchan", "users"}, {"nchan", "broadcast"}, {"nchan", "waiters"},
	} {
		t.Run(tc.protocol+"/"+tc.mode, func(t *testing.T) {
			cfg := &config{baseURL: pb.URL, secret: "s", pubToken: "bench:benchkey", users: users, clients: 2,
				rate: 200, duration: time.Second, drain: 3 * time.Second, mode: tc.mode, timeout: 2,
				protocol: tc.protocol, nchanSub: nc.URL + "/sub/%s", nchanPub: nc.URL + "/pub/%s",
				publishers: 4, setupTimeout: 10 * time.Second, settle: 300 * time.Millisecond, dialers: 4}
			if err := cfg.validate(); err != nil {
				t.Fatal(err)
			}
			r, err := newRunner(cfg)
			if err != nil {
				t.Fatal(err)
			}
			res, err := r.run()
			if err != nil {
				t.Fatal(err)
			}
			want := map[string]int64{"users": 2 * 200, "broadcast": 2 * users, "batch": 2 * users}[tc.mode]
			if tc.mode == "users" {
				// On a busy machine the publishers may fall short of the
				// rate within the second: what counts is that every
				// message published arrives once.
				if res.Published < 100 {
					t.Fatalf("published %d of 200 messages in the second", res.Published)
				}
				want = 2 * res.Published
			}
			if res.Connected != 2*users || res.Expected != want || res.Delivered != want || res.Lost != 0 ||
				res.Duplicated != 0 || res.Foreign+res.Misrouted+res.Stale+res.DeliveredUnacked != 0 ||
				res.PollErrors != 0 || res.PublishFailed != 0 || res.Stuck != 0 {
				t.Fatalf("result: %+v", res)
			}
			if tc.protocol == "pollbox" && res.ServerWaiting != 2*users {
				t.Errorf("server waiting = %d, want %d", res.ServerWaiting, 2*users)
			}
			if tc.mode == "batch" && res.BatchCount != users {
				t.Errorf("batch count = %d, want %d", res.BatchCount, users)
			}
		})
	}
}
