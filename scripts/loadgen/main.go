// Command loadgen drives a pollbox server (or an Nchan server, for comparison)
// with many concurrent long-polling clients and a paced publisher, and reports
// delivery completeness, latency, errors and the server's resource use.
//
// It only talks to loopback addresses.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"runtime/debug"
	"runtime/pprof"
	"strings"
	"syscall"
	"time"
)

type config struct {
	baseURL      string
	secret       string
	pubToken     string
	users        int
	clients      int
	rate         float64
	duration     time.Duration
	drain        time.Duration
	mode         string
	timeout      int
	pid          int
	redisURL     string
	protocol     string
	nchanSub     string
	nchanPub     string
	publishers   int
	jsonOut      bool
	setupTimeout time.Duration
	settle       time.Duration
	dialers      int
	label        string
	cpuProfile   string
	sessionKey   string // prefix of the login-session keys to create
}

const usageHead = `loadgen — load generator for pollbox (HTTP long-polling notifications).

Starts -users × -clients independent long-poll loops (each with its own
cursor), waits until every one is connected and waiting, then publishes
according to -mode and checks that every client received every message exactly
once. Reports publish and delivery latency, lost/duplicated messages, poll
errors, the server's RSS (-pid) and its Redis connections (-redis).

Modes:
  users      each publish goes to one user ({"to":["u<i>"]}, round-robin) at -rate msg/s for -duration
  broadcast  one {"broadcast":true} publish once all clients wait; measures fan-out to all of them
  batch      one publish listing every user in "to"; measures the publish call and delivery
  waiters    no publishes: hold all polls for -duration, count errors, measure RSS per waiting poll

Only plain http:// URLs on 127.0.0.0/8, ::1 and localhost are accepted.

Examples:
  go run ./scripts/loadgen -secret "$POLLBOX_JWT_SECRET" -users 2000 -clients 2 -rate 5000 -duration 10s
  go run ./scripts/loadgen -secret S -mode waiters -users 7500 -clients 2 -duration 20s -pid $(pidof pollbox) -redis redis://127.0.0.1:6400
  go run ./scripts/loadgen -secret S -mode waiters -redis redis://127.0.0.1:6400 -session-prefix online-token-
  go run ./scripts/loadgen -protocol nchan -nchan-sub http://127.0.0.1:8081/sub/%s -nchan-pub http://127.0.0.1:8081/pub/%s -rate 5000

Flags:
`

func parseFlags(args []string) (*config, error) {
	c := &config{}
	fs := flag.NewFlagSet("loadgen", flag.ContinueOnError)
	fs.StringVar(&c.baseURL, "url", "http://127.0.0.1:8080", "pollbox base URL")
	fs.StringVar(&c.secret, "secret", "", "HMAC secret used to mint HS256 user tokens (sub=u<N>)")
	fs.StringVar(&c.pubToken, "pub-token", "", "publisher credential: an API key `name:secret` (sent as Bearer secret) or an admin JWT; empty = mint a token with groups [\"admin\"] from -secret")
	fs.IntVar(&c.users, "users", 2000, "number of users (u0 … u<N-1>)")
	fs.IntVar(&c.clients, "clients", 2, "long-poll clients per user, each with its own cursor")
	fs.Float64Var(&c.rate, "rate", 1000, "publish rate in messages/s (mode users)")
	fs.DurationVar(&c.duration, "duration", 10*time.Second, "publishing time (mode users) or holding time (mode waiters)")
	fs.DurationVar(&c.drain, "drain", 5*time.Second, "how long to wait for outstanding deliveries after publishing")
	fs.StringVar(&c.mode, "mode", "users", "users | broadcast | batch | waiters")
	fs.IntVar(&c.timeout, "timeout", 25, "long-poll timeout in seconds (pollbox timeout= parameter)")
	fs.IntVar(&c.pid, "pid", 0, "server process id: sample VmRSS and open files every second")
	fs.StringVar(&c.redisURL, "redis", "", "Redis URL: sample CLIENT LIST every second (connection count)")
	fs.StringVar(&c.protocol, "protocol", "pollbox", "pollbox | nchan")
	fs.StringVar(&c.nchanSub, "nchan-sub", "http://127.0.0.1:8081/sub/%s", "Nchan long-poll subscriber URL template (%s = channel)")
	fs.StringVar(&c.nchanPub, "nchan-pub", "http://127.0.0.1:8081/pub/%s", "Nchan publisher URL template (%s = channel)")
	fs.IntVar(&c.publishers, "publishers", 32, "concurrent publisher goroutines")
	fs.BoolVar(&c.jsonOut, "json", false, "also print the results as one JSON line (last line of output)")
	fs.DurationVar(&c.setupTimeout, "setup-timeout", 60*time.Second, "maximum time to connect all clients")
	fs.DurationVar(&c.settle, "settle", time.Second, "pause after all clients sent their poll, before publishing")
	fs.IntVar(&c.dialers, "dialers", 256, "maximum clients connecting at the same time")
	fs.StringVar(&c.label, "label", "", "free text copied into the report and JSON (e.g. scenario name)")
	fs.StringVar(&c.cpuProfile, "cpuprofile", "", "write a CPU profile of the load generator itself to this file")
	fs.StringVar(&c.sessionKey, "session-prefix", "", "before the clients connect, SET `prefix`<token> in the -redis Redis for every minted token, "+
		"as smpe-admin does at login (for a server with POLLBOX_SESSION_KEY_PREFIX=prefix, e.g. online-token-)")
	fs.Usage = func() {
		_, _ = io.WriteString(fs.Output(), usageHead)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	return c, c.validate()
}

func (c *config) validate() error {
	switch c.mode {
	case "users", "broadcast", "batch", "waiters":
	default:
		return fmt.Errorf("-mode %q: want users, broadcast, batch or waiters", c.mode)
	}
	switch c.protocol {
	case "pollbox":
		if err := checkLoopback(c.baseURL); err != nil {
			return fmt.Errorf("-url: %w", err)
		}
		if c.secret == "" {
			return errors.New("-secret is required to mint user tokens")
		}
	case "nchan":
		if c.mode == "batch" {
			return errors.New("-mode batch has no Nchan equivalent (one publish per channel); use users, broadcast or waiters")
		}
		for name, tmpl := range map[string]string{"-nchan-sub": c.nchanSub, "-nchan-pub": c.nchanPub} {
			if strings.Count(tmpl, "%s") != 1 {
				return fmt.Errorf("%s must contain exactly one %%s", name)
			}
			if err := checkLoopback(fmt.Sprintf(tmpl, "x")); err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
		}
	default:
		return fmt.Errorf("-protocol %q: want pollbox or nchan", c.protocol)
	}
	if c.redisURL != "" {
		if err := checkLoopback(c.redisURL); err != nil {
			return fmt.Errorf("-redis: %w", err)
		}
	}
	if c.sessionKey != "" && (c.protocol != "pollbox" || c.redisURL == "") {
		return errors.New("-session-prefix needs -protocol pollbox and -redis (where the session keys go)")
	}
	if c.users < 1 || c.clients < 1 {
		return errors.New("-users and -clients must be at least 1")
	}
	if c.mode == "users" && c.rate <= 0 {
		return errors.New("-rate must be positive")
	}
	if c.mode == "batch" && c.users > 10000 {
		fmt.Fprintf(os.Stderr, "warning: %d recipients exceeds the documented publish limit of 10,000\n", c.users)
	}
	if c.duration <= 0 || c.drain < 0 {
		return errors.New("-duration must be positive and -drain not negative")
	}
	if c.duration > time.Hour || c.drain > 10*time.Minute {
		return errors.New("-duration is capped at 1h and -drain at 10m")
	}
	if c.timeout < 0 || c.timeout > 600 {
		return errors.New("-timeout must be between 0 and 600 seconds")
	}
	if c.publishers < 1 {
		c.publishers = 1
	}
	if c.dialers < 1 {
		c.dialers = 1
	}
	return nil
}

// checkLoopback refuses any URL whose host is not a loopback address.
func checkLoopback(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return err
	}
	if u.Scheme == "" || u.Host == "" {
		return fmt.Errorf("%q is not an absolute URL", raw)
	}
	host := u.Hostname()
	if strings.EqualFold(host, "localhost") {
		return nil
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return nil
	}
	return fmt.Errorf("refusing non-loopback host %q (only 127.0.0.0/8, ::1 and localhost)", host)
}

// raiseFDLimit lifts RLIMIT_NOFILE to its hard limit and checks that it is
// enough for the requested number of concurrent connections.
func raiseFDLimit(need int) (uint64, error) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, err
	}
	if lim.Cur < lim.Max {
		lim.Cur = lim.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
			return 0, fmt.Errorf("raising RLIMIT_NOFILE to %d: %w", lim.Max, err)
		}
	}
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, err
	}
	if lim.Cur < uint64(need) {
		return lim.Cur, fmt.Errorf("open file limit is %d (hard %d) but %d are needed for the polls, publishers and samplers; "+
			"raise `ulimit -Hn` (as root) or lower -users/-clients", lim.Cur, lim.Max, need)
	}
	return lim.Cur, nil
}

func main() {
	cfg, err := parseFlags(os.Args[1:])
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(2)
	}
	if os.Getenv("GOGC") == "" {
		// Memory is cheap here, CPU is shared with the server under test.
		debug.SetGCPercent(400)
	}
	total := cfg.users * cfg.clients
	need := total + cfg.publishers + 64
	if _, err := raiseFDLimit(need); err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(2)
	}

	// Hard stop: whatever happens, the process ends by itself.
	hard := cfg.setupTimeout + cfg.settle + cfg.duration + cfg.drain + 45*time.Second
	if cfg.mode == "batch" || cfg.mode == "broadcast" {
		hard += 60 * time.Second // the single publish call may take long
	}
	go func() {
		time.Sleep(hard)
		fmt.Fprintf(os.Stderr, "loadgen: hard deadline of %s exceeded, exiting\n", hard.Round(time.Second))
		os.Exit(3)
	}()

	r, err := newRunner(cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(2)
	}
	if cfg.cpuProfile != "" {
		f, err := os.Create(cfg.cpuProfile)
		if err != nil {
			fmt.Fprintln(os.Stderr, "loadgen:", err)
			os.Exit(2)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintln(os.Stderr, "loadgen:", err)
			os.Exit(2)
		}
	}
	res, err := r.run()
	pprof.StopCPUProfile()
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(1)
	}
	printReport(os.Stdout, cfg, res)
	if cfg.jsonOut {
		printJSON(os.Stdout, res)
	}
}
