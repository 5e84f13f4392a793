package main

import (
	"bufio"
	"bytes"
	"context"
	"math"
	"math/bits"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
)

// histogram is a lock-free log-linear histogram of durations with microsecond
// resolution. Values below 256 µs are exact; above that each power of two is
// split into 128 buckets, so the relative error stays below 1%.
type histogram struct {
	buckets [histBuckets]atomic.Uint64
	count   atomic.Uint64
	sum     atomic.Uint64 // microseconds
	max     atomic.Uint64 // microseconds
}

const (
	histSubBits = 7
	histSub     = 1 << histSubBits // 128
	histLinear  = 2 * histSub      // 256: exact below this
	histMaxExp  = 40               // ~12 days in µs; more is clamped
	histBuckets = histSub * (histMaxExp - histSubBits + 2)
)

func histIndex(us uint64) int {
	if us < histLinear {
		return int(us)
	}
	s := bits.Len64(us) - (histSubBits + 1)
	if s > histMaxExp-histSubBits {
		return histBuckets - 1
	}
	return histSub*s + int(us>>uint(s))
}

// histUpper returns the largest value that falls into bucket idx.
func histUpper(idx int) uint64 {
	if idx < histLinear {
		return uint64(idx)
	}
	s := idx/histSub - 1
	m := uint64(idx - histSub*s)
	return ((m + 1) << uint(s)) - 1
}

func (h *histogram) record(d time.Duration) {
	us := d.Microseconds()
	if us < 0 {
		us = 0
	}
	u := uint64(us)
	h.buckets[histIndex(u)].Add(1)
	h.count.Add(1)
	h.sum.Add(u)
	for {
		cur := h.max.Load()
		if u <= cur || h.max.CompareAndSwap(cur, u) {
			break
		}
	}
}

// quantile returns the q-quantile (0..1) in milliseconds.
func (h *histogram) quantile(q float64) float64 {
	n := h.count.Load()
	if n == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(n)))
	if rank < 1 {
		rank = 1
	}
	var seen uint64
	for i := range h.buckets {
		seen += h.buckets[i].Load()
		if seen >= rank {
			v := histUpper(i)
			if m := h.max.Load(); v > m {
				v = m
			}
			return float64(v) / 1000
		}
	}
	return h.maxMS()
}

func (h *histogram) maxMS() float64 { return float64(h.max.Load()) / 1000 }

func (h *histogram) meanMS() float64 {
	n := h.count.Load()
	if n == 0 {
		return 0
	}
	return float64(h.sum.Load()) / float64(n) / 1000
}

// errCounter counts errors by kind and keeps the first detail of each kind;
// errors are rare, a mutex is enough.
type errCounter struct {
	mu      sync.Mutex
	m       map[string]int64
	example map[string]string
}

func (e *errCounter) add(kind, detail string) {
	e.mu.Lock()
	if e.m == nil {
		e.m = make(map[string]int64)
		e.example = make(map[string]string)
	}
	e.m[kind]++
	if _, ok := e.example[kind]; !ok && detail != "" {
		if len(detail) > 200 {
			detail = detail[:200] + "…"
		}
		e.example[kind] = detail
	}
	e.mu.Unlock()
}

func (e *errCounter) examples() map[string]string {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make(map[string]string, len(e.example))
	for k, v := range e.example {
		out[k] = v
	}
	return out
}

func (e *errCounter) snapshot() (map[string]int64, int64) {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make(map[string]int64, len(e.m))
	var total int64
	for k, v := range e.m {
		out[k] = v
		total += v
	}
	return out, total
}

func formatKinds(m map[string]int64) string {
	if len(m) == 0 {
		return "none"
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if m[keys[i]] != m[keys[j]] {
			return m[keys[i]] > m[keys[j]]
		}
		return keys[i] < keys[j]
	})
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + strconv.FormatInt(m[k], 10)
	}
	return strings.Join(parts, " ")
}

// serverWaiting reads pollbox_polls_waiting from the server's /metrics.
func serverWaiting(ctx context.Context, metricsURL string) (float64, bool) {
	t, err := parseTarget(metricsURL)
	if err != nil {
		return 0, false
	}
	w := newWireClient(ctx)
	defer w.closeConn()
	w.begin("GET", &t, nil)
	resp, err := w.do(nil, 5*time.Second, nil)
	if err != nil || resp.status != 200 {
		return 0, false
	}
	for line := range bytes.Lines(resp.body) {
		if v, ok := bytes.CutPrefix(line, []byte("pollbox_polls_waiting ")); ok {
			f, err := strconv.ParseFloat(string(bytes.TrimSpace(v)), 64)
			return f, err == nil
		}
	}
	return 0, false
}

// procSampler samples a server process's resident memory and open files.
type procSampler struct {
	pid int

	mu       sync.Mutex
	ok       bool
	startKiB int64
	peakKiB  int64
	lastKiB  int64
	markKiB  int64 // sampled when all clients are waiting
	hwmKiB   int64
	fdsStart int
	fdsPeak  int
	fdsLast  int
	err      string
}

func readProcStatus(pid int) (rss, hwm int64, err error) {
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			rss = parseKiB(v)
		} else if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			hwm = parseKiB(v)
		}
	}
	return rss, hwm, sc.Err()
}

func parseKiB(v string) int64 {
	f := strings.Fields(v)
	if len(f) == 0 {
		return 0
	}
	n, _ := strconv.ParseInt(f[0], 10, 64)
	return n
}

func countFDs(pid int) int {
	d, err := os.Open("/proc/" + strconv.Itoa(pid) + "/fd")
	if err != nil {
		return -1
	}
	defer d.Close()
	names, err := d.Readdirnames(-1)
	if err != nil {
		return -1
	}
	return len(names)
}

func (p *procSampler) sample() {
	rss, hwm, err := readProcStatus(p.pid)
	fds := countFDs(p.pid)
	p.mu.Lock()
	defer p.mu.Unlock()
	if err != nil {
		if p.err == "" {
			p.err = err.Error()
		}
		return
	}
	if !p.ok {
		p.ok = true
		p.startKiB = rss
		p.fdsStart = fds
	}
	p.lastKiB = rss
	p.hwmKiB = hwm
	p.fdsLast = fds
	if rss > p.peakKiB {
		p.peakKiB = rss
	}
	if fds > p.fdsPeak {
		p.fdsPeak = fds
	}
}

// procCPUSeconds returns the user+system CPU time of a process, in seconds
// (clock ticks of 1/100 s, the Linux USER_HZ).
func procCPUSeconds(pid int) (float64, bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, false
	}
	// The command name may contain spaces; fields start after its ')'.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, false
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0, false
	}
	ut, err1 := strconv.ParseFloat(f[11], 64)
	st, err2 := strconv.ParseFloat(f[12], 64)
	if err1 != nil || err2 != nil {
		return 0, false
	}
	return (ut + st) / 100, true
}

// selfCPUSeconds returns this process's user+system CPU time.
func selfCPUSeconds() float64 {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	tv := func(t syscall.Timeval) float64 { return float64(t.Sec) + float64(t.Usec)/1e6 }
	return tv(ru.Utime) + tv(ru.Stime)
}

// redisCPUSeconds reads used_cpu_user + used_cpu_sys from INFO cpu.
func (r *redisSampler) cpuSeconds(ctx context.Context) (float64, bool) {
	cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	info, err := r.rdb.Info(cctx, "cpu").Result()
	if err != nil {
		return 0, false
	}
	var total float64
	var n int
	for _, line := range strings.Split(info, "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), ":")
		if ok && (k == "used_cpu_user" || k == "used_cpu_sys") {
			f, err := strconv.ParseFloat(v, 64)
			if err == nil {
				total += f
				n++
			}
		}
	}
	return total, n == 2
}

func (p *procSampler) mark() {
	p.sample()
	p.mu.Lock()
	p.markKiB = p.lastKiB
	p.mu.Unlock()
}

func (p *procSampler) run(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			p.sample()
		}
	}
}

// redisSampler counts Redis client connections with CLIENT LIST.
type redisSampler struct {
	rdb *redis.Client

	mu          sync.Mutex
	ok          bool
	err         string
	startTotal  int
	peakTotal   int
	peakBlocked int
	lastTotal   int
	peakByName  map[string]int
}

const samplerName = "pollbox-loadgen-sampler"

func newRedisSampler(rawURL string) (*redisSampler, error) {
	opt, err := redis.ParseURL(rawURL)
	if err != nil {
		return nil, err
	}
	opt.ClientName = samplerName
	opt.PoolSize = 1
	opt.MaxRetries = 0
	opt.DialTimeout = 2 * time.Second
	opt.ReadTimeout = 2 * time.Second
	return &redisSampler{rdb: redis.NewClient(opt)}, nil
}

// parseClientList counts connections (excluding the sampler's own), the ones
// blocked in a command (flag b, e.g. XREAD BLOCK) and connections by name.
func parseClientList(list string) (total, blocked int, byName map[string]int) {
	byName = make(map[string]int)
	for _, line := range strings.Split(list, "\n") {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		name, flags := "", ""
		for _, f := range strings.Fields(line) {
			if v, ok := strings.CutPrefix(f, "name="); ok {
				name = v
			} else if v, ok := strings.CutPrefix(f, "flags="); ok {
				flags = v
			}
		}
		if name == samplerName {
			continue
		}
		total++
		if strings.ContainsRune(flags, 'b') {
			blocked++
		}
		if name == "" {
			name = "(unnamed)"
		}
		byName[name]++
	}
	return total, blocked, byName
}

func (r *redisSampler) sample(ctx context.Context) {
	cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	list, err := r.rdb.ClientList(cctx).Result()
	r.mu.Lock()
	defer r.mu.Unlock()
	if err != nil {
		if r.err == "" && ctx.Err() == nil {
			r.err = err.Error()
		}
		return
	}
	total, blocked, byName := parseClientList(list)
	if !r.ok {
		r.ok = true
		r.startTotal = total
	}
	r.lastTotal = total
	if total > r.peakTotal || r.peakByName == nil {
		r.peakTotal = total
		r.peakByName = byName
	}
	if blocked > r.peakBlocked {
		r.peakBlocked = blocked
	}
}

func (r *redisSampler) run(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			r.sample(ctx)
		}
	}
}
