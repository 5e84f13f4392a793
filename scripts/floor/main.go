// Command floor is a reference point for scripts/bench.sh: the least work a
// long-polling server built on Go's net/http can do for the load
// generator. It speaks just enough of pollbox's API (GET /v1/poll, POST
// /v1/publish) and keeps every message in memory: no Redis, no token
// checks, no validation, no limits, no logs. What pollbox measures above
// it is the price of the real work; what floor itself cannot reach on a
// machine, no net/http server reaches there.
//
// Never expose it: it trusts every request.
//
//	go run ./scripts/floor -addr 127.0.0.1:18090
package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:18090", "listen address (loopback only)")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := serve(ctx, *addr, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "floor:", err)
		os.Exit(1)
	}
}

// serve listens on addr (which must be a loopback address) and serves
// until ctx ends.
func serve(ctx context.Context, addr string, stdout *os.File) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return fmt.Errorf("%s is not a loopback address", addr)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: newHandler(newInboxes()), ReadHeaderTimeout: 10 * time.Second}
	fmt.Fprintf(stdout, "floor listening on http://%s\n", ln.Addr())
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return nil
}

// newHandler routes the three paths the load generator uses.
func newHandler(in *inboxes) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /v1/poll", handlePoll(in))
	mux.Handle("POST /v1/publish", handlePublish(in))
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "pollbox_polls_waiting %d\n", in.wait.Load())
	})
	return mux
}

// inbox is one user's messages; cursors are indexes into msgs.
type inbox struct {
	mu   sync.Mutex
	msgs []string
	wake chan struct{} // closed and replaced when msgs grows
}

// inboxes holds every user's inbox.
type inboxes struct {
	mu    sync.Mutex
	users map[string]*inbox
	wait  atomic.Int64 // polls waiting
}

func newInboxes() *inboxes { return &inboxes{users: map[string]*inbox{}} }

func (in *inboxes) get(user string) *inbox {
	in.mu.Lock()
	defer in.mu.Unlock()
	b := in.users[user]
	if b == nil {
		b = &inbox{}
		in.users[user] = b
	}
	return b
}

func (in *inboxes) all() []*inbox {
	in.mu.Lock()
	defer in.mu.Unlock()
	out := make([]*inbox, 0, len(in.users))
	for _, b := range in.users {
		out = append(out, b)
	}
	return out
}

func (b *inbox) add(msg string) {
	b.mu.Lock()
	b.msgs = append(b.msgs, msg)
	if b.wake != nil {
		close(b.wake)
		b.wake = nil
	}
	b.mu.Unlock()
}

// after returns the messages from index from on (from < 0: the end), the
// index after them, and a channel closed when more arrive if there are none.
func (b *inbox) after(from int) ([]string, int, <-chan struct{}) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if from < 0 || from > len(b.msgs) {
		from = len(b.msgs)
	}
	if from < len(b.msgs) {
		return b.msgs[from:], len(b.msgs), nil
	}
	if b.wake == nil {
		b.wake = make(chan struct{})
	}
	return nil, from, b.wake
}

// subject reads the "sub" claim of a bearer JWT without checking anything.
func subject(auth string) string {
	tok := strings.TrimPrefix(auth, "Bearer ")
	i, j := strings.IndexByte(tok, '.'), strings.LastIndexByte(tok, '.')
	if i < 0 || j <= i {
		return ""
	}
	payload, err := base64.RawURLEncoding.DecodeString(tok[i+1 : j])
	if err != nil {
		return ""
	}
	var c struct {
		Sub string `json:"sub"`
	}
	if json.Unmarshal(payload, &c) != nil {
		return ""
	}
	return c.Sub
}

func handlePoll(in *inboxes) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user := subject(r.Header.Get("Authorization"))
		if user == "" {
			http.Error(w, `{"error":"unauthorized"}`, http.StatusUnauthorized)
			return
		}
		q := r.URL.Query()
		from := -1
		if c, ok := strings.CutSuffix(q.Get("cursor"), "-0"); ok {
			from, _ = strconv.Atoi(c)
		}
		timeout, _ := strconv.Atoi(q.Get("timeout"))
		b := in.get(user)
		msgs, next, wake := b.after(from)
		if wake != nil && timeout > 0 {
			in.wait.Add(1)
			t := time.NewTimer(time.Duration(timeout) * time.Second)
			select {
			case <-wake:
				msgs, next, _ = b.after(next)
			case <-t.C:
			case <-r.Context().Done():
			}
			t.Stop()
			in.wait.Add(-1)
		}
		out := make([]byte, 0, 128+len(msgs)*96)
		out = append(out, `{"messages":[`...)
		for i, m := range msgs {
			if i > 0 {
				out = append(out, ',')
			}
			out = append(out, `{"id":"`...)
			out = strconv.AppendInt(out, int64(next-len(msgs)+i+1), 10)
			out = append(out, `-0","body":`...)
			out = strconv.AppendQuote(out, m)
			out = append(out, '}')
		}
		out = append(out, `],"cursor":"`...)
		out = strconv.AppendInt(out, int64(next), 10)
		out = append(out, `-0","unread":0,"more":false}`...)
		w.Header().Set("Content-Type", "application/json")
		w.Write(out)
	})
}

func handlePublish(in *inboxes) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var p struct {
			To        []string `json:"to"`
			Broadcast bool     `json:"broadcast"`
			Body      string   `json:"body"`
		}
		if err := json.NewDecoder(r.Body).Decode(&p); err != nil {
			http.Error(w, `{"error":"bad_request"}`, http.StatusBadRequest)
			return
		}
		n := 0
		if p.Broadcast {
			for _, b := range in.all() {
				b.add(p.Body)
				n++
			}
		}
		for _, u := range p.To {
			in.get(u).add(p.Body)
			n++
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		fmt.Fprintf(w, `{"id":"0-0","count":%d}`, n)
	})
}
