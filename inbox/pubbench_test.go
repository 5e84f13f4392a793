package inbox

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"pollbox/internal/redistest"
)

// BenchmarkPublishRedisCPU publishes to one user at a time, as the load
// generator's users scenario does (2,000 users, one API key, 32 callers at
// once), on a private Redis, and reports Redis's CPU and the script calls
// per publish.
func BenchmarkPublishRedisCPU(b *testing.B) {
	srv := redistest.Start(b, redistest.Options{})
	opt, err := redis.ParseURL(srv.URL())
	if err != nil {
		b.Fatal(err)
	}
	rdb := redis.NewClient(opt)
	defer rdb.Close()
	s := New(rdb, Options{Prefix: "bench:"})
	defer s.Close()
	ctx := context.Background()
	if err := s.LoadScripts(ctx); err != nil {
		b.Fatal(err)
	}
	owner := Owner{Kind: 'k', Name: "bench"}
	var next atomic.Int64
	publish := func() {
		n := next.Add(1)
		u := "u" + strconv.FormatInt(n%2000, 10)
		d := Draft{Title: "load", Body: fmt.Sprintf("%s|%d|%d", u, n/2000, time.Now().UnixNano()), Sender: "bench"}
		if _, err := s.PublishWith(ctx, Target{Users: []string{u}}, d, PublishOptions{MaxBody: 64 << 10, Owner: owner}); err != nil {
			b.Error(err)
		}
	}
	for range 2000 { // every inbox exists before the measurement
		publish()
	}
	before, calls := redisCPU(b, rdb), s.scripts.Load()
	b.ResetTimer()
	var wg sync.WaitGroup
	jobs := make(chan struct{})
	for range 32 {
		wg.Go(func() {
			for range jobs {
				publish()
			}
		})
	}
	for range b.N {
		jobs <- struct{}{}
	}
	close(jobs)
	wg.Wait()
	b.StopTimer()
	b.ReportMetric((redisCPU(b, rdb)-before)/float64(b.N)*1e6, "redis-us/op")
	b.ReportMetric(float64(s.scripts.Load()-calls)/float64(b.N), "scripts/op")
}

// redisCPU returns the seconds of CPU the Redis server has used.
func redisCPU(b *testing.B, rdb *redis.Client) float64 {
	info, err := rdb.Info(context.Background(), "cpu").Result()
	if err != nil {
		b.Fatal(err)
	}
	total := 0.0
	for _, l := range strings.Split(info, "\r\n") {
		k, v, _ := strings.Cut(l, ":")
		if k == "used_cpu_sys" || k == "used_cpu_user" {
			f, _ := strconv.ParseFloat(v, 64)
			total += f
		}
	}
	return total
}
