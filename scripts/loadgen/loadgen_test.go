package main

import (
	"math"
	"testing"
	"time"
)

func TestHistogramBuckets(t *testing.T) {
	prev := -1
	for _, us := range []uint64{0, 1, 255, 256, 257, 511, 512, 1000, 1 << 20, 1<<39 + 12345, 1 << 45} {
		idx := histIndex(us)
		if idx < prev || idx >= histBuckets {
			t.Fatalf("histIndex(%d) = %d after %d", us, idx, prev)
		}
		prev = idx
		if us < 1<<40 {
			up := histUpper(idx)
			if up < us || float64(up-us) > 0.01*float64(us)+1 {
				t.Fatalf("value %d lands in bucket %d with upper bound %d", us, idx, up)
			}
		}
	}
}

func TestHistogramQuantiles(t *testing.T) {
	var h histogram
	for i := 1; i <= 10000; i++ {
		h.record(time.Duration(i) * time.Microsecond * 10) // 10 µs … 100 ms
	}
	for _, c := range []struct{ q, want float64 }{{0.5, 50}, {0.9, 90}, {0.99, 99}, {1, 100}} {
		got := h.quantile(c.q)
		if math.Abs(got-c.want)/c.want > 0.01 {
			t.Errorf("quantile(%v) = %.3f ms, want %.3f ms", c.q, got, c.want)
		}
	}
	if h.maxMS() != 100 {
		t.Errorf("max = %v", h.maxMS())
	}
}

func TestCheckLoopback(t *testing.T) {
	for _, ok := range []string{"http://127.0.0.1:8080", "http://localhost/x", "http://[::1]:1/", "redis://127.0.0.2:6400"} {
		if err := checkLoopback(ok); err != nil {
			t.Errorf("%s refused: %v", ok, err)
		}
	}
	for _, bad := range []string{"http://10.0.0.1:8080", "http://example.com", "http://192.168.1.1", "127.0.0.1:8080", "http://127.0.0.1.example.com/"} {
		if checkLoopback(bad) == nil {
			t.Errorf("%s accepted", bad)
		}
	}
}

func TestParseClientList(t *testing.T) {
	list := "id=3 addr=127.0.0.1:5 laddr=127.0.0.1:6379 fd=8 name=pollbox flags=N cmd=xread\n" +
		"id=4 addr=127.0.0.1:6 fd=9 name=pollbox flags=b cmd=xread\n" +
		"id=5 addr=127.0.0.1:7 fd=10 name= flags=N cmd=subscribe\n" +
		"id=6 addr=127.0.0.1:8 fd=11 name=" + samplerName + " flags=N cmd=client|list\n"
	total, blocked, byName := parseClientList(list)
	if total != 3 || blocked != 1 || byName["pollbox"] != 2 || byName["(unnamed)"] != 1 {
		t.Fatalf("got total=%d blocked=%d byName=%v", total, blocked, byName)
	}
}

func TestClientHandle(t *testing.T) {
	r := &runner{seqBits: 10, runStart: 100}
	c := &client{r: r, stream: 0, want: "u7", seen: make([]uint64, 1)}
	c.handle(appendPayload(nil, "u7", 3, 200), 1200)
	c.handle(appendPayload(nil, "u7", 3, 200), 1300) // duplicate
	c.handle(appendPayload(nil, "u8", 4, 200), 1300) // someone else's
	c.handle(appendPayload(nil, "u7", 5, 50), 1300)  // older than the run
	c.handle(appendPayload(nil, "u7", 99, 200), 1300)
	c.handle([]byte("hello"), 1300)
	if c.delivered != 1 || c.dup != 1 || c.misrouted != 1 || c.stale != 1 || c.bogus != 1 || c.foreign != 1 {
		t.Fatalf("counters: %+v", c)
	}
	if r.unique.Load() != 1 || r.delivLat.count.Load() != 1 {
		t.Fatalf("runner counters: unique=%d lat=%d", r.unique.Load(), r.delivLat.count.Load())
	}
}

func TestPublisherAuth(t *testing.T) {
	cases := map[string]string{
		"bench:s3cret": "Bearer s3cret",
		"aaa.bbb.ccc":  "Bearer aaa.bbb.ccc",
		"plain":        "Bearer plain",
	}
	for in, want := range cases {
		got, err := publisherAuth(&config{pubToken: in})
		if err != nil || got != want {
			t.Errorf("publisherAuth(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	got, err := publisherAuth(&config{secret: "x"})
	if err != nil || len(got) < 20 {
		t.Errorf("minted admin token: %q, %v", got, err)
	}
}
