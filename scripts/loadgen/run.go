package main

import (
	"context"
	"fmt"
	"math"
	"math/bits"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// nchanAllChannel is the channel every Nchan subscriber uses in broadcast mode.
const nchanAllChannel = "all"

type runner struct {
	cfg *config

	pollTarget      wireTarget
	publishTarget   wireTarget
	nchanPubTargets []wireTarget
	pollTimeout     time.Duration // limit on one long-poll exchange
	userNames       []string
	userAuth        []string
	pubAuth         string

	clients []*client
	wg      sync.WaitGroup
	dialSem chan struct{}

	runStart  int64 // unix nanos; payloads older than this are stale
	pubStart  chan struct{}
	connected atomic.Int64

	// Expectations: one bitmap of acknowledged sequence numbers per stream
	// (per user in mode users, a single one for broadcast and batch).
	streams  int
	seqBits  int
	seqWords int
	pubOK    []atomic.Uint64
	okCount  []atomic.Int64

	nextSeq    atomic.Int64
	published  atomic.Int64
	pubFailed  atomic.Int64
	pubIssued  int64
	pubTarget  int64
	batchCount int

	unique   atomic.Int64
	dups     atomic.Int64
	delivLat histogram
	pubLat   histogram
	pollErrs errCounter
	pubErrs  errCounter

	proc  *procSampler
	redis *redisSampler
}

func newRunner(cfg *config) (*runner, error) {
	r := &runner{
		cfg:      cfg,
		dialSem:  make(chan struct{}, cfg.dialers),
		pubStart: make(chan struct{}),
	}
	// The limit net/http's ResponseHeaderTimeout used to set: the requested
	// wait plus slack, and more where one publish fans out to everyone.
	r.pollTimeout = time.Duration(cfg.timeout)*time.Second + 30*time.Second
	if cfg.mode == "batch" || cfg.mode == "broadcast" {
		r.pollTimeout += 60 * time.Second
	}

	r.userNames = make([]string, cfg.users)
	for i := range r.userNames {
		r.userNames[i] = "u" + strconv.Itoa(i)
	}
	if cfg.protocol == "pollbox" {
		base := strings.TrimRight(cfg.baseURL, "/")
		var err error
		if r.pollTarget, err = parseTarget(base + "/v1/poll"); err != nil {
			return nil, fmt.Errorf("-url: %w", err)
		}
		if r.publishTarget, err = parseTarget(base + "/v1/publish"); err != nil {
			return nil, fmt.Errorf("-url: %w", err)
		}
		r.userAuth = make([]string, cfg.users)
		for i, name := range r.userNames {
			tok, err := mintToken(cfg.secret, name, nil)
			if err != nil {
				return nil, fmt.Errorf("minting token: %w", err)
			}
			r.userAuth[i] = "Bearer " + tok
		}
		auth, err := publisherAuth(cfg)
		if err != nil {
			return nil, fmt.Errorf("publisher token: %w", err)
		}
		r.pubAuth = auth
	} else {
		r.nchanPubTargets = make([]wireTarget, cfg.users)
		for i, name := range r.userNames {
			t, err := parseTarget(fmt.Sprintf(cfg.nchanPub, name))
			if err != nil {
				return nil, fmt.Errorf("-nchan-pub: %w", err)
			}
			r.nchanPubTargets[i] = t
		}
	}

	switch cfg.mode {
	case "users":
		r.streams = cfg.users
		perUser := int(math.Ceil(cfg.rate * cfg.duration.Seconds() / float64(cfg.users)))
		r.seqBits = perUser + 1
	case "broadcast", "batch":
		r.streams = 1
		r.seqBits = 1
	default:
		r.streams = 0
		r.seqBits = 1
	}
	r.seqWords = (r.seqBits + 63) / 64
	r.pubOK = make([]atomic.Uint64, r.streams*r.seqWords)
	r.okCount = make([]atomic.Int64, r.streams)

	for u := 0; u < cfg.users; u++ {
		for k := 0; k < cfg.clients; k++ {
			c := &client{r: r, user: u, stream: -1, seen: make([]uint64, r.seqWords)}
			switch cfg.mode {
			case "users":
				c.stream, c.want = u, r.userNames[u]
			case "broadcast", "batch":
				c.stream, c.want = 0, "all"
			}
			if cfg.protocol == "nchan" {
				ch := r.userNames[u]
				if cfg.mode == "broadcast" {
					ch = nchanAllChannel
				}
				t, err := parseTarget(fmt.Sprintf(cfg.nchanSub, ch))
				if err != nil {
					return nil, fmt.Errorf("-nchan-sub: %w", err)
				}
				c.subTarget = t
			}
			r.clients = append(r.clients, c)
		}
	}
	if cfg.pid > 0 {
		r.proc = &procSampler{pid: cfg.pid}
	}
	if cfg.redisURL != "" {
		rs, err := newRedisSampler(cfg.redisURL)
		if err != nil {
			return nil, fmt.Errorf("-redis: %w", err)
		}
		r.redis = rs
	}
	return r, nil
}

type cpuSample struct {
	server, redis, self float64
	serverOK, redisOK   bool
}

func (r *runner) cpuMark(ctx context.Context) cpuSample {
	c := cpuSample{self: selfCPUSeconds()}
	if r.proc != nil {
		c.server, c.serverOK = procCPUSeconds(r.proc.pid)
	}
	if r.redis != nil {
		c.redis, c.redisOK = r.redis.cpuSeconds(ctx)
	}
	return c
}

func (r *runner) publishing() bool {
	select {
	case <-r.pubStart:
		return true
	default:
		return false
	}
}

// expected is the number of deliveries owed to the active clients so far.
func (r *runner) expected() int64 {
	var n int64
	for _, c := range r.clients {
		if c.stream >= 0 && c.active.Load() {
			n += r.okCount[c.stream].Load()
		}
	}
	return n
}

func (r *runner) logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "loadgen: "+format+"\n", args...)
}

func (r *runner) run() (*result, error) {
	cfg := r.cfg
	total := len(r.clients)
	res := &result{Label: cfg.label, Mode: cfg.mode, Protocol: cfg.protocol, Users: cfg.users, ServerWaiting: -1,
		ClientsPerUser: cfg.clients, Clients: total, Publishers: cfg.publishers}

	if cfg.sessionKey != "" {
		toks := r.sessionTokens()
		sctx, cancel := context.WithTimeout(context.Background(), cfg.setupTimeout)
		err := createSessions(sctx, cfg.redisURL, cfg.sessionKey, toks)
		cancel()
		if err != nil {
			return nil, err
		}
		res.Sessions = len(toks)
	}

	sampCtx, stopSamplers := context.WithCancel(context.Background())
	defer stopSamplers()
	if r.proc != nil {
		r.proc.sample()
		go r.proc.run(sampCtx)
	}
	if r.redis != nil {
		defer r.redis.rdb.Close()
		r.redis.sample(sampCtx)
		go r.redis.run(sampCtx)
	}

	r.runStart = time.Now().UnixNano()
	cctx, stopClients := context.WithCancel(context.Background())
	defer stopClients()
	setupStart := time.Now()
	for _, c := range r.clients {
		r.wg.Add(1)
		if cfg.protocol == "pollbox" {
			go c.runPollbox(cctx)
		} else {
			go c.runNchan(cctx)
		}
	}

	// Wait until every client has sent its long-poll (or the setup time is up).
	lastLog := time.Now()
	for {
		n := r.connected.Load()
		if n >= int64(total) {
			break
		}
		if time.Since(setupStart) > cfg.setupTimeout {
			r.logf("setup timeout: only %d of %d clients connected", n, total)
			break
		}
		if _, errs := r.pollErrs.snapshot(); n == 0 && errs > 0 && time.Since(setupStart) > 10*time.Second {
			break // nothing works (server down, wrong secret, …): fail fast
		}
		if time.Since(lastLog) > 5*time.Second {
			r.logf("connecting: %d/%d", n, total)
			lastLog = time.Now()
		}
		time.Sleep(20 * time.Millisecond)
	}
	res.SetupS = time.Since(setupStart).Seconds()
	sleepCtx(cctx, cfg.settle)

	var active int
	for _, c := range r.clients {
		ready := c.conn.Load()
		if cfg.protocol == "pollbox" {
			ready = c.hasCur.Load()
		}
		if ready {
			c.active.Store(true)
			active++
		}
	}
	res.Connected = active
	res.NotReady = total - active
	if active == 0 {
		kinds, _ := r.pollErrs.snapshot()
		var first []string
		for k, v := range r.pollErrs.examples() {
			first = append(first, k+": "+v)
		}
		return nil, fmt.Errorf("no client could connect (poll errors: %s; e.g. %s)", formatKinds(kinds), strings.Join(first, "; "))
	}
	if r.proc != nil {
		r.proc.mark()
	}
	if r.redis != nil {
		r.redis.sample(sampCtx)
	}
	if cfg.protocol == "pollbox" {
		if n, ok := serverWaiting(sampCtx, strings.TrimRight(cfg.baseURL, "/")+"/metrics"); ok {
			res.ServerWaiting = int64(n)
		} else {
			res.ServerWaiting = -1
		}
	}
	cpu0 := r.cpuMark(sampCtx)
	close(r.pubStart)

	// Phase 2: publish (or just hold the polls).
	phaseStart := time.Now()
	var pubErr error
	switch cfg.mode {
	case "users":
		window := r.publishUsers(cctx)
		res.PublishWindowS = window.Seconds()
	case "broadcast", "batch":
		d, err := r.publishOne(cctx)
		res.SinglePublishMS = ms(d)
		pubErr = err
	case "waiters":
		sleepCtx(cctx, cfg.duration)
	}
	pubEnd := time.Now()

	// Phase 3: drain.
	if cfg.mode != "waiters" {
		drainEnd := pubEnd.Add(cfg.drain)
		for {
			if exp := r.expected(); r.unique.Load() >= exp {
				res.AllDeliveredS = time.Since(phaseStart).Seconds()
				res.DrainS = time.Since(pubEnd).Seconds()
				break
			}
			if time.Now().After(drainEnd) {
				res.DrainS = cfg.drain.Seconds()
				res.AllDeliveredS = -1 // not everything arrived
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	res.ElapsedS = time.Since(phaseStart).Seconds()
	cpu1 := r.cpuMark(sampCtx)
	pct := func(a, b float64, okA, okB bool) float64 {
		if !okA || !okB || res.ElapsedS <= 0 {
			return -1
		}
		return 100 * (b - a) / res.ElapsedS
	}
	res.ServerCPUPct = pct(cpu0.server, cpu1.server, cpu0.serverOK, cpu1.serverOK)
	res.RedisCPUPct = pct(cpu0.redis, cpu1.redis, cpu0.redisOK, cpu1.redisOK)
	res.LoadgenCPUPct = pct(cpu0.self, cpu1.self, true, true)
	res.ServerCPUS, res.RedisCPUS = -1, -1
	if cpu0.serverOK && cpu1.serverOK {
		res.ServerCPUS = cpu1.server - cpu0.server
	}
	if cpu0.redisOK && cpu1.redisOK {
		res.RedisCPUS = cpu1.redis - cpu0.redis
	}
	if r.proc != nil {
		r.proc.sample()
	}
	if r.redis != nil {
		r.redis.sample(sampCtx)
	}

	stopClients()
	done := make(chan struct{})
	go func() { r.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		r.logf("some clients did not stop within 15s; their counters are left out")
	}
	stopSamplers()
	if r.proc != nil {
		r.proc.sample()
	}
	r.fill(res)
	if pubErr != nil {
		res.Notes = append(res.Notes, pubErr.Error())
	}
	return res, nil
}

// fill computes the per-client results once the clients have stopped.
func (r *runner) fill(res *result) {
	cfg := r.cfg
	for _, c := range r.clients {
		if !c.active.Load() {
			// Not subscribed when publishing began (refused, or still
			// connecting): every message it was owed is lost to it.
			if c.stream >= 0 {
				exp := r.okCount[c.stream].Load()
				res.Expected += exp
				res.Lost += exp
				res.LostNotReady += exp
			}
			continue
		}
		if !c.exited.Load() {
			res.Stuck++
			continue
		}
		res.Polls += c.polls
		res.EmptyPolls += c.empty
		res.EarlyEmpty += c.early
		res.Duplicated += c.dup
		res.Stale += c.stale
		res.Foreign += c.foreign + c.bogus
		res.Misrouted += c.misrouted
		res.Resets += c.resets
		if c.stream < 0 {
			continue
		}
		ok := r.pubOK[c.stream*r.seqWords : (c.stream+1)*r.seqWords]
		var got, extra int64
		for i, w := range c.seen {
			got += int64(bits.OnesCount64(w & ok[i].Load()))
			extra += int64(bits.OnesCount64(w &^ ok[i].Load()))
		}
		exp := r.okCount[c.stream].Load()
		res.Expected += exp
		res.Delivered += got
		res.Lost += exp - got
		res.DeliveredUnacked += extra
	}
	res.Published = r.published.Load()
	res.PublishFailed = r.pubFailed.Load()
	res.PublishTarget = r.pubTarget
	if cfg.mode == "users" {
		res.TargetRate = cfg.rate
		if res.PublishWindowS > 0 {
			res.AchievedRate = float64(res.Published) / res.PublishWindowS
		}
	}
	res.BatchCount = r.batchCount
	res.PublishP50MS = r.pubLat.quantile(0.50)
	res.PublishP99MS = r.pubLat.quantile(0.99)
	res.PublishMaxMS = r.pubLat.maxMS()
	res.DeliveryP50MS = r.delivLat.quantile(0.50)
	res.DeliveryP90MS = r.delivLat.quantile(0.90)
	res.DeliveryP99MS = r.delivLat.quantile(0.99)
	res.DeliveryMaxMS = r.delivLat.maxMS()
	res.DeliveryMeanMS = r.delivLat.meanMS()
	res.CPUPerDeliveryUS = cpuPerDelivery(res.ServerCPUS, res.RedisCPUS, res.Delivered)
	res.PollErrorsByKind, res.PollErrors = r.pollErrs.snapshot()
	res.PollErrorExamples = r.pollErrs.examples()
	res.PublishErrorsByKind, _ = r.pubErrs.snapshot()
	if res.Stuck > 0 {
		res.Notes = append(res.Notes, fmt.Sprintf("%d clients did not stop in time", res.Stuck))
	}
	if p := r.proc; p != nil {
		p.mu.Lock()
		if p.ok {
			res.RSSStartKiB, res.RSSPeakKiB, res.RSSEndKiB = p.startKiB, p.peakKiB, p.lastKiB
			res.RSSWaitingKiB, res.RSSHWMKiB = p.markKiB, p.hwmKiB
			res.FDsStart, res.FDsPeak = p.fdsStart, p.fdsPeak
			if res.Connected > 0 && p.markKiB > 0 {
				res.KiBPerClient = float64(p.peakKiB-p.startKiB) / float64(res.Connected)
			}
		} else if p.err != "" {
			res.Notes = append(res.Notes, "pid sampling: "+p.err)
		}
		p.mu.Unlock()
	}
	if rs := r.redis; rs != nil {
		rs.mu.Lock()
		if rs.ok {
			res.RedisConnsStart, res.RedisConnsPeak = rs.startTotal, rs.peakTotal
			res.RedisConnsEnd, res.RedisBlockedPeak = rs.lastTotal, rs.peakBlocked
			res.RedisConnsByName = rs.peakByName
		}
		if rs.err != "" {
			res.Notes = append(res.Notes, "redis sampling: "+rs.err)
		}
		rs.mu.Unlock()
	}
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// cpuPerDelivery is the server's plus Redis's CPU time over the measured
// phase (publishing and drain) per message delivered to a client, in
// microseconds; -1 when the server's CPU time or the deliveries are
// unknown. Redis's share counts only when known (-1: not sampled).
func cpuPerDelivery(serverS, redisS float64, delivered int64) float64 {
	if serverS < 0 || delivered <= 0 {
		return -1
	}
	return (serverS + max(redisS, 0)) / float64(delivered) * 1e6
}
