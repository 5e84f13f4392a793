// Command pollbox serves in-app notifications over HTTP long-polling,
// with Redis Streams as each user's inbox.
package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"pollbox/inbox"
	"pollbox/poll"
)

var _ poll.Store = (*inbox.Store)(nil)
var _ poll.SessionChecker = (*inbox.Sessions)(nil)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// The first signal starts a graceful shutdown; a second one ends
	// pollbox at once, as signals do by default (Ctrl-C twice skips the drain).
	context.AfterFunc(ctx, stop)
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return
		}
		fmt.Fprintln(os.Stderr, "pollbox:", err)
		os.Exit(1)
	}
}

// run starts pollbox and blocks until ctx ends (then shuts down gracefully)
// or the server fails. Tests call it directly.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) > 0 {
		switch args[0] {
		case "token":
			return runToken(args[1:], getenv, stdout, stderr)
		case "healthcheck":
			return runHealthcheck(ctx, args[1:], getenv, stderr)
		}
	}
	cfg, err := parseConfig(args, getenv, stderr)
	if err != nil {
		return err
	}
	if strings.ContainsAny(cfg.KeyPrefix, "{}") {
		// Keys rely on their {user}/{group} hash tag; a brace in the prefix
		// would become the tag and scatter one user's keys over the cluster.
		return errors.New("key-prefix must not contain { or }")
	}
	log, err := newLogger(cfg, stderr)
	if err != nil {
		return err
	}
	setRedisLogger(log)
	// The collector keeps Go's default pace (GOGC=100): with waiting polls
	// parked, what a poll keeps is a few KiB of heap, and a higher GOGC
	// multiplies that (15,000 waiting polls: 9.4 KiB of RSS each at 100,
	// 14.0 KiB at 300) for a few percent less CPU under load. GOGC and
	// GOMEMLIMIT in the environment apply as usual.

	var dev *devMode
	rdb, closeRedis, err := openRedis(cfg)
	if err != nil {
		return err
	}
	defer closeRedis()
	if rdb == nil {
		if dev, err = startDevMode(cfg); err != nil {
			return err
		}
		defer dev.close()
		rdb = dev.rdb
	} else if cfg.JWTSecret == "" && cfg.JWTSecretBase64 == "" && cfg.JWTPublicKeyFile == "" {
		return errors.New("refusing to start: a Redis is configured but no JWT key is " +
			"(set POLLBOX_JWT_SECRET, POLLBOX_JWT_SECRET_BASE64 or POLLBOX_JWT_PUBLIC_KEY_FILE)")
	}

	authCfg, err := authConfig(cfg)
	if err != nil {
		return err
	}
	if cfg.SessionKeyPrefix != "" {
		srdb := rdb
		if cfg.SessionRedisURL != "" {
			opt, err := redis.ParseURL(cfg.SessionRedisURL)
			if err != nil {
				return fmt.Errorf("session-redis-url: %w", err)
			}
			opt.ContextTimeoutEnabled = true // see openRedis
			sc := redis.NewClient(opt)
			defer sc.Close()
			srdb = sc
		}
		authCfg.Sessions = inbox.NewSessions(srdb, cfg.SessionKeyPrefix)
	}
	auth, err := poll.NewAuthenticator(authCfg)
	if err != nil {
		return err
	}

	timeouts := derivedTimeouts(cfg)
	metrics := poll.NewMetrics()
	store := inbox.New(rdb, inbox.Options{Prefix: cfg.KeyPrefix, MaxLen: int64(cfg.InboxMaxLen), Retention: cfg.Retention,
		Pipelines: max(2, cfg.RedisPoolSize/2), CallTimeout: timeouts.Call,
		MaxRecipients: cfg.MaxRecipients, OnNotice: metrics.Notice})
	defer store.Close()
	loadScripts := func() {
		lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		if err := store.LoadScripts(lctx); err != nil {
			log.Warn().Err(err).Msg("could not preload scripts; they will be loaded on first use")
		}
	}
	go loadScripts()
	metrics.WatchChannels(store.Hub().Subscriptions)
	store.Hub().OnEvent = func(event string) {
		metrics.HubEvent(event)
		if event == "reconnected" { // Redis may have restarted with an empty script cache
			go loadScripts()
		}
	}
	store.Hub().OnLost = func(err error) {
		log.Warn().Err(err).Msg("wake-up subscription lost; resubscribing and waking the polls that waited on it")
	}
	hubCtx, stopHub := context.WithCancel(context.WithoutCancel(ctx))
	hubDone := make(chan struct{})
	go func() { defer close(hubDone); _ = store.Hub().Run(hubCtx) }()
	defer func() { stopHub(); <-hubDone }()
	// The scheduler delivers due scheduled publishes. It stops when the
	// drain starts, so that a stopping instance claims nothing new; a
	// publish it claimed and did not finish is claimed again by another
	// instance once its lease ends, and written once all the same.
	schedCtx, stopScheduler := context.WithCancel(context.WithoutCancel(ctx))
	schedDone := make(chan struct{})
	go func() {
		defer close(schedDone)
		if err := store.RunScheduler(schedCtx); err != nil && schedCtx.Err() == nil {
			log.Error().Err(err).Msg("scheduler stopped")
		}
	}()
	stopSchedulerAndWait := sync.OnceFunc(func() { stopScheduler(); <-schedDone })
	defer stopSchedulerAndWait()

	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	stopping := make(chan struct{})
	var drainEnd atomic.Int64 // unix ns; stored before stopping is closed
	hcfg := poll.Config{
		PollTimeout: cfg.PollTimeout, PollTimeoutMax: cfg.PollTimeoutMax, MaxPollsPerUser: cfg.MaxPollsPerUser,
		MaxBody: cfg.MaxBody, MaxRecipients: cfg.MaxRecipients, PublishRate: cfg.PublishRate,
		PublishBurst: cfg.PublishBurst, CORSOrigins: splitList(cfg.CORSOrigins), Stop: stopping,
		DrainEnd:     func() time.Time { return time.Unix(0, drainEnd.Load()) },
		StoreTimeout: timeouts.Store, Retention: cfg.Retention, SessionRecheck: cfg.SessionRecheck,
	}
	if dev != nil && dev.tokens != nil {
		hcfg.DevTokens = dev.tokens
	}
	scheme := "http"
	if cfg.TLSCert != "" || cfg.TLSKey != "" {
		scheme = "https"
	}
	if scheme == "http" && cfg.ParkPolls == "on" {
		// Parked polls' keep-alive connections come back through it.
		pl := poll.NewListener(ln)
		hcfg.Listener, ln = pl, pl
	}
	srv := &http.Server{
		Handler:           poll.New(hcfg, store, auth, metrics, log),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       60 * time.Second,
		WriteTimeout:      timeouts.Write,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          newStdLogger(log),
	}
	unused := &unusedConns{conns: map[net.Conn]struct{}{}}
	srv.ConnState = unused.track
	srv.RegisterOnShutdown(func() { // runs once the listener is closed
		// A connection accepted just before may carry a request still on
		// its way: give it a moment to arrive and get its 503.
		time.Sleep(unusedGrace)
		unused.closeAll()
	})
	// pprof binds before the listening line is printed, so whoever waits
	// for that line finds both addresses ready.
	if cfg.PprofAddr != "" {
		stopPprof, err := servePprof(cfg.PprofAddr, log)
		if err != nil {
			ln.Close()
			return err
		}
		defer stopPprof()
	}
	base := scheme + "://" + displayAddr(ln.Addr())
	log.Info().Str("addr", ln.Addr().String()).Str("url", base).Bool("embedded_redis", dev != nil).Msg("pollbox listening")
	fmt.Fprintf(stdout, "pollbox listening on %s\n", base)
	if dev != nil {
		dev.announce(stdout, base, !isLoopbackAddr(ln.Addr()))
	}

	errc := make(chan error, 1)
	go func() {
		if scheme == "https" {
			errc <- srv.ServeTLS(ln, cfg.TLSCert, cfg.TLSKey)
		} else {
			errc <- srv.Serve(ln)
		}
	}()
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	// The drain comes first: waiting polls answer now with their cursors,
	// /readyz fails, and every request gets a 503 with Connection: close,
	// so load balancers and keep-alive clients move away after a clear
	// answer. Shutdown closes idle connections at once; after the drain no
	// client is about to send a request on one.
	log.Info().Dur("drain", cfg.ShutdownDrain).Msg("shutting down: answering waiting polls, refusing requests until the drain ends")
	drainEnd.Store(time.Now().Add(cfg.ShutdownDrain).UnixNano())
	close(stopping)
	go stopSchedulerAndWait()
	drained := time.NewTimer(cfg.ShutdownDrain)
	defer drained.Stop()
	select {
	case <-drained.C:
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	}
	log.Info().Msg("drain over: closing the listener")
	sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		log.Warn().Err(err).Msg("shutdown deadline passed; closing remaining connections")
		srv.Close()
	}
	log.Info().Msg("stopped")
	return nil
}

// minHMACSecret is the shortest HMAC secret accepted, in bytes.
const minHMACSecret = 32

// timeouts are the deadlines pollbox derives from the configured ones.
type timeouts struct {
	Store time.Duration // one request's Redis calls, beyond its wait
	Call  time.Duration // one inbox pipeline
	Write time.Duration // the HTTP server's write deadline
}

// derivedTimeouts computes them. Every request answers within its wait plus
// Store (SPEC): its Redis calls share one deadline that go-redis honours
// (see openRedis), so a hung Redis costs it one Redis timeout and a second
// of slack. An inbox pipeline may carry the calls of several requests that
// queued behind a slow one, so it gets a second Redis timeout; and the write
// deadline lies past the longest poll's answer, so none is cut off.
func derivedTimeouts(cfg *config) timeouts {
	store := cfg.RedisTimeout + time.Second
	return timeouts{
		Store: store,
		Call:  2*cfg.RedisTimeout + time.Second,
		Write: cfg.PollTimeoutMax + store + 10*time.Second,
	}
}

// isLoopbackAddr reports whether a listener's address is a loopback one.
func isLoopbackAddr(a net.Addr) bool {
	ta, ok := a.(*net.TCPAddr)
	return ok && ta.IP.IsLoopback()
}

// openRedis connects to the configured Redis; it returns a nil client when
// none is configured (zero-config mode).
func openRedis(cfg *config) (redis.UniversalClient, func(), error) {
	opt := &redis.UniversalOptions{
		ClientName: "pollbox", PoolSize: cfg.RedisPoolSize, MinIdleConns: 2,
		DialTimeout: cfg.RedisTimeout, ReadTimeout: cfg.RedisTimeout, WriteTimeout: cfg.RedisTimeout,
		// No automatic retries: go-redis would resend a whole pipeline after
		// a timeout, re-running publish scripts Redis had already run. A
		// failed call becomes a 503; clients retry, with idempotency keys.
		PoolTimeout: cfg.RedisTimeout, MaxRetries: -1,
		// One dial attempt per try: while Redis is down, requests should get
		// their 503 quickly rather than after a series of dial retries.
		DialerRetries: 1,
		// Honour the caller's deadline on the socket too, not only the
		// timeouts above: those apply per read or write, so one command (a
		// MULTI/EXEC reads twice) or a few in a row could otherwise hold a
		// request for several times the Redis timeout.
		ContextTimeoutEnabled: true,
	}
	switch {
	case cfg.RedisClusterAddrs != "":
		opt.Addrs = splitList(cfg.RedisClusterAddrs)
		opt.IsClusterMode = true
	case cfg.RedisSentinels != "":
		if cfg.RedisMaster == "" {
			return nil, nil, errors.New("redis-sentinel-addrs needs redis-master")
		}
		opt.Addrs = splitList(cfg.RedisSentinels)
		opt.MasterName = cfg.RedisMaster
	case cfg.RedisURL != "":
		u, err := redis.ParseURL(cfg.RedisURL)
		if err != nil {
			return nil, nil, fmt.Errorf("redis-url: %w", err)
		}
		opt.Addrs = []string{u.Addr}
		opt.Username, opt.Password, opt.DB, opt.TLSConfig = u.Username, u.Password, u.DB, u.TLSConfig
	default:
		return nil, func() {}, nil
	}
	rdb := redis.NewUniversalClient(opt)
	return rdb, func() { rdb.Close() }, nil
}

// authConfig builds the token settings from the configuration.
func authConfig(cfg *config) (poll.AuthConfig, error) {
	ac := poll.AuthConfig{UserClaim: cfg.JWTUserClaim, GroupsClaim: cfg.JWTGroupsClaim,
		PublisherGroups: splitList(cfg.PublisherGroups), AdminGroups: splitList(cfg.AdminGroups), Leeway: 30 * time.Second}
	var defAlgs []string
	switch {
	case cfg.JWTSecretBase64 != "":
		s := strings.TrimSpace(cfg.JWTSecretBase64)
		key, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			if key, err = base64.RawStdEncoding.DecodeString(strings.TrimRight(s, "=")); err != nil {
				return ac, fmt.Errorf("jwt-secret-base64: %w", err)
			}
		}
		ac.HMACSecret = key
	case cfg.JWTSecret != "":
		ac.HMACSecret = []byte(cfg.JWTSecret)
	}
	if n := len(ac.HMACSecret); n > 0 && n < minHMACSecret {
		// RFC 7518 §3.2: an HMAC key is at least as long as the hash
		// output; a shorter one can be guessed offline from any token.
		what := fmt.Sprintf("POLLBOX_JWT_SECRET is %d bytes", n)
		if cfg.JWTSecretBase64 != "" {
			what = fmt.Sprintf("POLLBOX_JWT_SECRET_BASE64 decodes to %d bytes", n)
		}
		return ac, fmt.Errorf("%s: an HMAC secret must be at least %d bytes (RFC 7518 §3.2); "+
			"make one with: openssl rand -base64 64 (for POLLBOX_JWT_SECRET_BASE64)", what, minHMACSecret)
	}
	if len(ac.HMACSecret) > 0 {
		defAlgs = append(defAlgs, "HS256", "HS384", "HS512")
	}
	if cfg.JWTPublicKeyFile != "" {
		key, err := loadPublicKey(cfg.JWTPublicKeyFile)
		if err != nil {
			return ac, err
		}
		ac.PublicKey = key
		if _, ok := key.(*rsa.PublicKey); ok {
			defAlgs = append(defAlgs, "RS256")
		} else {
			defAlgs = append(defAlgs, "ES256")
		}
	}
	ac.Algorithms = defAlgs
	if cfg.JWTAlgorithms != "" {
		ac.Algorithms = splitList(cfg.JWTAlgorithms)
	}
	for _, kv := range splitList(cfg.APIKeys) {
		name, secret, ok := strings.Cut(kv, ":")
		if !ok || name == "" || len(secret) < 16 {
			return ac, fmt.Errorf("api-keys: want name:secret with a secret of 16+ characters, got %q…", name)
		}
		ac.APIKeys = append(ac.APIKeys, poll.APIKey{Name: name, Secret: secret})
	}
	return ac, nil
}

func loadPublicKey(path string) (any, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("jwt-public-key-file: %w", err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, errors.New("jwt-public-key-file: no PEM block")
	}
	var key any
	switch blk.Type {
	case "RSA PUBLIC KEY":
		key, err = x509.ParsePKCS1PublicKey(blk.Bytes)
	case "CERTIFICATE":
		var c *x509.Certificate
		if c, err = x509.ParseCertificate(blk.Bytes); err == nil {
			key = c.PublicKey
		}
	default:
		key, err = x509.ParsePKIXPublicKey(blk.Bytes)
	}
	if err != nil {
		return nil, fmt.Errorf("jwt-public-key-file: %w", err)
	}
	switch key.(type) {
	case *rsa.PublicKey, *ecdsa.PublicKey:
		return key, nil
	}
	return nil, errors.New("jwt-public-key-file: need an RSA or ECDSA public key")
}

// displayAddr turns a listen address into one a browser can open.
func displayAddr(a net.Addr) string {
	host, port, _ := net.SplitHostPort(a.String())
	if host == "" || host == "::" || host == "0.0.0.0" {
		host = "localhost"
	}
	return net.JoinHostPort(host, port)
}

func servePprof(addr string, log zerolog.Logger) (func(), error) {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("pprof: %w", err)
	}
	s := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = s.Serve(ln) }()
	log.Info().Str("addr", ln.Addr().String()).Msg("pprof listening")
	return func() { s.Close() }, nil
}

// unusedGrace is how long shutdown lets a connection that has not sent a
// request yet stay open, in case one is on its way.
const unusedGrace = 300 * time.Millisecond

// unusedConns tracks connections that have not sent a request yet. Shutdown
// closes them after unusedGrace: net/http would wait up to 5 s for each to
// send one, and clients (browsers, pooling HTTP clients) open such spare
// connections.
type unusedConns struct {
	mu      sync.Mutex
	conns   map[net.Conn]struct{}
	closing bool
}

func (u *unusedConns) track(c net.Conn, st http.ConnState) {
	u.mu.Lock()
	defer u.mu.Unlock()
	switch {
	case st == http.StateNew && u.closing:
		c.Close()
	case st == http.StateNew:
		u.conns[c] = struct{}{}
	default:
		delete(u.conns, c)
	}
}

func (u *unusedConns) closeAll() {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.closing = true
	for c := range u.conns {
		c.Close()
	}
	clear(u.conns)
}
