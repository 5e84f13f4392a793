package redistest_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"pollbox/internal/redistest"
)

func TestMain(m *testing.M) { redistest.Main(m) }

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

func TestPrefixUnique(t *testing.T) {
	t.Parallel()
	seen := map[string]bool{}
	for range 100 {
		p := redistest.Prefix(t)
		if len(p) != len("t12345678:") || !strings.HasPrefix(p, "t") || !strings.HasSuffix(p, ":") {
			t.Fatalf("bad prefix %q", p)
		}
		if seen[p] {
			t.Fatalf("prefix %q handed out twice", p)
		}
		seen[p] = true
	}
}

func TestURL(t *testing.T) {
	t.Parallel()
	opt, err := redis.ParseURL(redistest.URL(t))
	if err != nil {
		t.Fatal(err)
	}
	c := redis.NewClient(opt)
	defer c.Close()
	key := redistest.Prefix(t) + "k"
	if err := c.Set(ctx(t), key, "v", time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	if got, err := c.Get(ctx(t), key).Result(); err != nil || got != "v" {
		t.Fatalf("GET %s = %q, %v; want v", key, got, err)
	}
	if u1, u2 := redistest.URL(t), redistest.URL(t); u1 != u2 {
		t.Fatalf("URL changed between calls: %q, %q", u1, u2)
	}
}

func TestClusterAddrs(t *testing.T) {
	t.Parallel()
	addrs := redistest.ClusterAddrs(t)
	if len(addrs) == 0 {
		t.Fatal("no cluster seeds")
	}
	c := redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs})
	defer c.Close()
	prefix := redistest.Prefix(t)
	// Enough keys to land on every master of a 3-master cluster.
	masters := map[string]bool{}
	for i := range 30 {
		key := fmt.Sprintf("%sk%d", prefix, i)
		if err := c.Set(ctx(t), key, i, time.Minute).Err(); err != nil {
			t.Fatalf("SET %s: %v", key, err)
		}
		got, err := c.Get(ctx(t), key).Int()
		if err != nil || got != i {
			t.Fatalf("GET %s = %d, %v; want %d", key, got, err, i)
		}
		node, err := c.MasterForKey(ctx(t), key)
		if err != nil {
			t.Fatal(err)
		}
		masters[node.Options().Addr] = true
	}
	if len(masters) < 2 {
		t.Fatalf("30 keys all went to %v: not a sharded cluster", masters)
	}
}

func TestStartKillRestartKeepsAOF(t *testing.T) {
	t.Parallel()
	s := redistest.Start(t, redistest.Options{AOF: true})
	if s.URL() != "redis://"+s.Addr() {
		t.Fatalf("URL %q does not match Addr %q", s.URL(), s.Addr())
	}
	c := redis.NewClient(&redis.Options{Addr: s.Addr()})
	defer c.Close()
	if err := c.Set(ctx(t), "durable", "yes", 0).Err(); err != nil {
		t.Fatal(err)
	}

	s.Kill()
	dead := redis.NewClient(&redis.Options{Addr: s.Addr(), MaxRetries: -1})
	defer dead.Close()
	if err := dead.Ping(ctx(t)).Err(); err == nil {
		t.Fatal("PING succeeded on a killed server")
	}
	s.Restart(t)
	if got, err := c.Get(ctx(t), "durable").Result(); err != nil || got != "yes" {
		t.Fatalf("after Kill+Restart GET durable = %q, %v; want yes", got, err)
	}

	s.Stop()
	s.Stop() // stopping twice is harmless
	s.Restart(t)
	if got, err := c.Get(ctx(t), "durable").Result(); err != nil || got != "yes" {
		t.Fatalf("after Stop+Restart GET durable = %q, %v; want yes", got, err)
	}
}

func TestStartWithoutAOFIsEmptyAfterRestart(t *testing.T) {
	t.Parallel()
	s := redistest.Start(t, redistest.Options{})
	c := redis.NewClient(&redis.Options{Addr: s.Addr()})
	defer c.Close()
	if err := c.Set(ctx(t), "volatile", "yes", 0).Err(); err != nil {
		t.Fatal(err)
	}
	s.Restart(t) // Restart stops a running server first
	if n, err := c.Exists(ctx(t), "volatile").Result(); err != nil || n != 0 {
		t.Fatalf("EXISTS volatile = %d, %v; want 0 without persistence", n, err)
	}
}
