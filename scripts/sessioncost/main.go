// Command sessioncost measures what the login-session check costs while
// polls wait: it creates the session keys of -tokens users, holds -polls
// long-polls spread over them on one pollbox (started with
// POLLBOX_SESSION_KEY_PREFIX=online-token- and the same -secret), and
// reports over -window the EXISTS calls Redis served (INFO commandstats),
// the server's goroutines (go_goroutines from /metrics) and its RSS before
// and while the polls wait.
//
//	go run ./scripts/sessioncost -url http://127.0.0.1:8080 -secret S \
//	    -redis redis://127.0.0.1:6400 -pid $(pidof pollbox) -tokens 200 -polls 2000 -window 20s
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/redis/go-redis/v9"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "sessioncost:", err)
		os.Exit(1)
	}
}

func run() error {
	url := flag.String("url", "http://127.0.0.1:8080", "pollbox base URL")
	secret := flag.String("secret", "", "pollbox's POLLBOX_JWT_SECRET")
	redisURL := flag.String("redis", "", "the Redis holding the session keys")
	prefix := flag.String("prefix", "online-token-", "session key prefix, as POLLBOX_SESSION_KEY_PREFIX")
	pid := flag.Int("pid", 0, "pollbox's process id, for its RSS")
	tokens := flag.Int("tokens", 200, "distinct tokens (users u0…)")
	polls := flag.Int("polls", 2000, "waiting polls, spread over the tokens")
	window := flag.Duration("window", 20*time.Second, "how long to count EXISTS calls while the polls wait")
	flag.Parse()
	if *secret == "" || *redisURL == "" {
		return errors.New("-secret and -redis are required")
	}
	opt, err := redis.ParseURL(*redisURL)
	if err != nil {
		return err
	}
	rdb := redis.NewClient(opt)
	defer rdb.Close()
	ctx := context.Background()

	toks := make([]string, *tokens)
	for i := range toks {
		toks[i], err = jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
			"sub": "u" + strconv.Itoa(i), "exp": time.Now().Add(time.Hour).Unix()}).SignedString([]byte(*secret))
		if err != nil {
			return err
		}
		if err := rdb.Set(ctx, *prefix+toks[i], "{}", time.Hour).Err(); err != nil {
			return err
		}
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: *polls, MaxConnsPerHost: 0}}
	idle, err := sample(ctx, client, *url, rdb, *pid)
	if err != nil {
		return err
	}

	// Each poll waits 60 s; the window ends well before.
	pctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var failed atomic.Int64
	for i := range *polls {
		tok := toks[i%len(toks)]
		go func() {
			req, _ := http.NewRequestWithContext(pctx, "GET", *url+"/v1/poll?timeout=60", nil)
			req.Header.Set("Authorization", "Bearer "+tok)
			resp, err := client.Do(req)
			if err != nil {
				if pctx.Err() == nil {
					failed.Add(1)
				}
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if pctx.Err() == nil {
				failed.Add(1) // answered before the window ended
			}
		}()
	}
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		w, err := metric(ctx, client, *url, "pollbox_polls_waiting")
		if err != nil {
			return err
		}
		if int(w) >= *polls {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("only %v of %d polls waiting after 60 s", w, *polls)
		}
	}
	start, err := sample(ctx, client, *url, rdb, *pid)
	if err != nil {
		return err
	}
	time.Sleep(*window)
	end, err := sample(ctx, client, *url, rdb, *pid)
	if err != nil {
		return err
	}
	cancel()
	n := float64(*polls)
	fmt.Printf("polls %d over %d tokens, window %v, polls ended early %d\n", *polls, *tokens, *window, failed.Load())
	fmt.Printf("EXISTS calls in window   %d (%.1f/s)\n", end.exists-start.exists, float64(end.exists-start.exists)/window.Seconds())
	fmt.Printf("goroutines idle/waiting  %d / %d (%.2f per waiting poll)\n", idle.goroutines, end.goroutines,
		float64(end.goroutines-idle.goroutines)/n)
	if *pid > 0 {
		fmt.Printf("RSS idle/waiting         %.1f / %.1f MiB (%.1f KiB per waiting poll)\n", float64(idle.rss)/1024,
			float64(end.rss)/1024, float64(end.rss-idle.rss)/n)
	}
	return nil
}

type snapshot struct {
	exists     int64
	goroutines int64
	rss        int64 // KiB
}

func sample(ctx context.Context, c *http.Client, url string, rdb *redis.Client, pid int) (snapshot, error) {
	var s snapshot
	info, err := rdb.Info(ctx, "commandstats").Result()
	if err != nil {
		return s, err
	}
	for _, l := range strings.Split(info, "\n") {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(l), "cmdstat_exists:calls="); ok {
			s.exists, _ = strconv.ParseInt(strings.SplitN(rest, ",", 2)[0], 10, 64)
		}
	}
	g, err := metric(ctx, c, url, "go_goroutines")
	if err != nil {
		return s, err
	}
	s.goroutines = int64(g)
	if pid > 0 {
		f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
		if err != nil {
			return s, err
		}
		defer f.Close()
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
				s.rss, _ = strconv.ParseInt(strings.Fields(rest)[0], 10, 64)
			}
		}
	}
	return s, nil
}

// metric reads one unlabelled series from pollbox's /metrics.
func metric(ctx context.Context, c *http.Client, url, name string) (float64, error) {
	req, _ := http.NewRequestWithContext(ctx, "GET", url+"/metrics", nil)
	resp, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			return strconv.ParseFloat(rest, 64)
		}
	}
	return 0, fmt.Errorf("/metrics has no %s", name)
}
