package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"pollbox/inbox"
	"pollbox/poll"
)

// config is every setting, each a flag and a POLLBOX_* variable. The
// defaults live in the table in configFlags, which takes those that inbox
// and poll also apply from the constants they export.
type config struct {
	Addr              string
	RedisURL          string
	RedisClusterAddrs string
	RedisSentinels    string
	RedisMaster       string
	RedisPoolSize     int
	RedisTimeout      time.Duration
	KeyPrefix         string

	JWTSecret        string
	JWTSecretBase64  string
	JWTPublicKeyFile string
	JWTAlgorithms    string
	JWTUserClaim     string
	JWTGroupsClaim   string
	PublisherGroups  string
	AdminGroups      string
	APIKeys          string
	SessionKeyPrefix string
	SessionRedisURL  string
	SessionRecheck   time.Duration

	PollTimeout     time.Duration
	PollTimeoutMax  time.Duration
	MaxPollsPerUser int
	InboxMaxLen     int
	Retention       time.Duration
	MaxBody         int
	MaxRecipients   int
	PublishRate     float64
	PublishBurst    int
	ShutdownTimeout time.Duration
	ShutdownDrain   time.Duration

	CORSOrigins string
	TLSCert     string
	TLSKey      string
	LogLevel    string
	LogFormat   string
	PprofAddr   string
	ParkPolls   string
}

// configFlags defines the flags on fs, with defaults taken from the
// environment when set. Each flag --foo-bar reads POLLBOX_FOO_BAR.
func configFlags(fs *flag.FlagSet, c *config, getenv func(string) string) *[]error {
	var errs []error
	env := func(name string) (string, bool) {
		v := getenv("POLLBOX_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_")))
		return v, v != ""
	}
	str := func(p *string, name, def, usage string) {
		if v, ok := env(name); ok {
			def = v
		}
		fs.StringVar(p, name, def, usage+envNote(name))
	}
	num := func(p *int, name string, def int, usage string) {
		if v, ok := env(name); ok {
			n, err := strconv.Atoi(v)
			if err != nil {
				errs = append(errs, fmt.Errorf("POLLBOX_%s: %v", envName(name), err))
			}
			def = n
		}
		fs.IntVar(p, name, def, usage+envNote(name))
	}
	flt := func(p *float64, name string, def float64, usage string) {
		if v, ok := env(name); ok {
			n, err := strconv.ParseFloat(v, 64)
			if err != nil {
				errs = append(errs, fmt.Errorf("POLLBOX_%s: %v", envName(name), err))
			}
			def = n
		}
		fs.Float64Var(p, name, def, usage+envNote(name))
	}
	dur := func(p *time.Duration, name string, def time.Duration, usage string) {
		if v, ok := env(name); ok {
			d, err := parseDuration(v)
			if err != nil {
				errs = append(errs, fmt.Errorf("POLLBOX_%s: %v", envName(name), err))
			}
			def = d
		}
		*p = def
		fs.Func(name, usage+" (default "+def.String()+")"+envNote(name), func(s string) error {
			d, err := parseDuration(s)
			*p = d
			return err
		})
	}
	str(&c.Addr, "addr", "", "listen address (default "+defaultAddr+", or "+defaultDevAddr+" on the embedded Redis)")
	str(&c.RedisURL, "redis-url", "", "Redis URL (redis:// or rediss://); empty with no cluster = embedded in-memory Redis")
	str(&c.RedisClusterAddrs, "redis-cluster-addrs", "", "comma-separated Redis Cluster seed addresses")
	str(&c.RedisSentinels, "redis-sentinel-addrs", "", "comma-separated Sentinel addresses (with --redis-master)")
	str(&c.RedisMaster, "redis-master", "", "Sentinel master name")
	num(&c.RedisPoolSize, "redis-pool-size", 16, "Redis connections per node (waiting polls hold none)")
	dur(&c.RedisTimeout, "redis-timeout", 3*time.Second, "Redis dial/read/write timeout")
	str(&c.KeyPrefix, "key-prefix", inbox.DefaultPrefix, "prefix of every Redis key")
	str(&c.JWTSecret, "jwt-secret", "", "HMAC secret for user tokens (raw)")
	str(&c.JWTSecretBase64, "jwt-secret-base64", "", "HMAC secret for user tokens, base64 (smpe-admin's jwt.base64-secret)")
	str(&c.JWTPublicKeyFile, "jwt-public-key-file", "", "PEM public key for RS256/ES256 tokens")
	str(&c.JWTAlgorithms, "jwt-algorithms", "", "accepted JWT algorithms (default HS256,HS384,HS512 with a secret; RS256 or ES256 with a key)")
	str(&c.JWTUserClaim, "jwt-user-claim", "sub", "claim holding the user id")
	str(&c.JWTGroupsClaim, "jwt-groups-claim", "groups", "claim holding the groups: JSON array or comma-separated (smpe-admin: auth)")
	str(&c.PublisherGroups, "publisher-groups", "admin", "comma-separated groups allowed to publish")
	str(&c.AdminGroups, "admin-groups", "admin", "comma-separated groups that may cancel, revoke and inspect any publisher's sends")
	str(&c.APIKeys, "api-keys", "", "publisher API keys, name:secret,… (names: 1-128 of [A-Za-z0-9_.@-])")
	str(&c.SessionKeyPrefix, "session-key-prefix", "", "accept a token only while Redis key <prefix><token> exists (smpe-admin: online-token-)")
	str(&c.SessionRedisURL, "session-redis-url", "", "Redis holding the session keys, when not pollbox's own")
	dur(&c.SessionRecheck, "session-recheck", 5*time.Second, "how often the sessions of waiting polls are re-checked (one batch per instance)")
	dur(&c.PollTimeout, "poll-timeout", poll.DefaultPollTimeout, "default poll wait")
	dur(&c.PollTimeoutMax, "poll-timeout-max", poll.DefaultPollTimeoutMax, "longest poll wait a client may ask for")
	num(&c.MaxPollsPerUser, "max-polls-per-user", 20, "concurrent polls per user on one instance")
	num(&c.InboxMaxLen, "inbox-maxlen", int(inbox.DefaultMaxLen), "entries kept per stream (approximate)")
	dur(&c.Retention, "retention", inbox.DefaultRetention, "entries older than this are trimmed (e.g. 30d, 720h)")
	num(&c.MaxBody, "max-body", poll.DefaultMaxBody, "bytes of body+data in one message")
	num(&c.MaxRecipients, "max-recipients", poll.DefaultMaxRecipients, "users in one publish")
	flt(&c.PublishRate, "publish-rate", 100, "publishes per second per publisher (0 = unlimited)")
	num(&c.PublishBurst, "publish-burst", 200, "publish burst per publisher")
	dur(&c.ShutdownTimeout, "shutdown-timeout", 10*time.Second, "how long shutdown may take")
	dur(&c.ShutdownDrain, "shutdown-drain", 3*time.Second, "on SIGTERM, how long /readyz fails and requests get 503 before the listener closes")
	str(&c.CORSOrigins, "cors-origins", "", "comma-separated origins allowed cross-origin (* for any)")
	str(&c.TLSCert, "tls-cert", "", "TLS certificate file (enables HTTPS and HTTP/2)")
	str(&c.TLSKey, "tls-key", "", "TLS key file")
	str(&c.LogLevel, "log-level", "info", "debug, info, warn or error")
	str(&c.LogFormat, "log-format", "json", "json or console")
	str(&c.PprofAddr, "pprof-addr", "", "serve net/http/pprof on this address (off when empty; keep it private)")
	str(&c.ParkPolls, "park-polls", "on", "on: waiting HTTP/1.x polls give up net/http's per-request state while they wait; off: each waits in its request")
	return &errs
}

func envName(flagName string) string { return strings.ToUpper(strings.ReplaceAll(flagName, "-", "_")) }
func envNote(flagName string) string { return " [$POLLBOX_" + envName(flagName) + "]" }

// parseDuration is time.ParseDuration plus a "d" (days) unit.
func parseDuration(s string) (time.Duration, error) {
	if n, ok := strings.CutSuffix(s, "d"); ok {
		days, err := strconv.Atoi(n)
		if err != nil || days < 0 {
			return 0, fmt.Errorf("bad duration %q", s)
		}
		return time.Duration(days) * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("bad duration %q", s)
	}
	return d, nil
}

// parseConfig reads flags and environment.
func parseConfig(args []string, getenv func(string) string, out io.Writer) (*config, error) {
	fs := flag.NewFlagSet("pollbox", flag.ContinueOnError)
	fs.SetOutput(out)
	c := &config{}
	errs := configFlags(fs, c, getenv)
	fs.Usage = func() {
		fmt.Fprintf(out, "pollbox: in-app notifications over HTTP long-polling, stored in Redis Streams.\n\n"+
			"Usage:\n  pollbox [flags]                 run the server\n"+
			"  pollbox token --user ID [--groups a,b] [--ttl 24h]  print a signed user token (see pollbox token --help)\n"+
			"  pollbox healthcheck             exit 0 if this configuration's pollbox is ready, else 1\n\n"+
			"Flags (each also an environment variable):\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q (see --help)", fs.Arg(0))
	}
	if len(*errs) > 0 {
		return nil, errors.Join(*errs...)
	}
	if c.PollTimeout > c.PollTimeoutMax {
		return nil, errors.New("poll-timeout is above poll-timeout-max")
	}
	if c.ParkPolls != "on" && c.ParkPolls != "off" {
		return nil, fmt.Errorf("park-polls must be on or off, not %q", c.ParkPolls)
	}
	if c.Addr == "" {
		c.Addr = defaultAddr
		if c.embedded() {
			// The embedded Redis comes with dev tokens that can publish:
			// nothing beyond this machine should reach them unasked.
			c.Addr = defaultDevAddr
		}
	}
	return c, nil
}

// Listen addresses when POLLBOX_ADDR is empty.
const (
	defaultAddr    = ":8080"
	defaultDevAddr = "127.0.0.1:8080"
)

// embedded reports whether no Redis is configured, so that pollbox runs
// on its embedded in-memory one.
func (c *config) embedded() bool {
	return c.RedisURL == "" && c.RedisClusterAddrs == "" && c.RedisSentinels == ""
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
