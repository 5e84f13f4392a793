// Package poll is pollbox's HTTP layer: routes, authentication, handlers,
// the JSON error shape and the static browser client. It knows nothing of
// Redis: it talks to a Store.
package poll

import (
	"math"
	"net/http"
	"strings"
	"time"

	"github.com/julienschmidt/httprouter"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/rs/zerolog"

	"pollbox/inbox"
)

// Config holds the HTTP layer's settings.
type Config struct {
	PollTimeout     time.Duration // default wait of a poll
	PollTimeoutMax  time.Duration // largest wait a client may ask for
	MaxPollsPerUser int           // concurrent polls per user; 0 = unlimited
	MaxBody         int           // bytes of body+data in one message
	MaxRecipients   int           // users in one publish
	MaxRequestBytes int64         // bytes of any request body
	PublishRate     float64       // publishes per second per publisher; 0 = unlimited
	PublishBurst    int
	CORSOrigins     []string      // allowed origins; "*" allows any
	SessionRecheck  time.Duration // how often the login sessions of waiting polls are re-checked
	// StoreTimeout is how long a request may take beyond a poll's wait: it
	// answers by then, with 503 if the store has not (see requestDeadline).
	StoreTimeout time.Duration
	// Retention is how long messages are kept, and so how far ahead a
	// publish may be scheduled.
	Retention time.Duration
	DevTokens map[string]string // shown on the demo page in zero-config mode
	// Stop is closed when the server begins shutting down: waiting polls
	// answer at once with their cursor and new requests get 503.
	Stop <-chan struct{}
	// DrainEnd, when set, tells when the server stops listening and closes
	// idle connections after Stop closed. The 503s carry a Retry-After
	// reaching a second past it, so a client that honours it comes back to
	// a closed port (refused at connect, nothing sent) rather than racing
	// the close of the listener or of a connection idle in its pool.
	DrainEnd func() time.Time
	// Listener, when set and the store is a PollStarter, is the server's
	// listener: waiting HTTP/1.x polls are then parked (see parking).
	// http.Server's Shutdown and Close do not reach parked polls: close
	// Stop first, and they answer.
	Listener *Listener
}

func (c *Config) defaults() {
	if c.PollTimeout <= 0 {
		c.PollTimeout = DefaultPollTimeout
	}
	if c.PollTimeoutMax <= 0 {
		c.PollTimeoutMax = DefaultPollTimeoutMax
	}
	if c.MaxBody <= 0 {
		c.MaxBody = DefaultMaxBody
	}
	if c.MaxRecipients <= 0 {
		c.MaxRecipients = DefaultMaxRecipients
	}
	if c.MaxRequestBytes <= 0 {
		// Room for the largest message plus 10,000 recipient ids.
		c.MaxRequestBytes = int64(c.MaxBody)*2 + int64(c.MaxRecipients)*140 + 64<<10
	}
	if c.SessionRecheck <= 0 {
		c.SessionRecheck = 5 * time.Second
	}
	if c.StoreTimeout <= 0 {
		c.StoreTimeout = 5 * time.Second
	}
	if c.Retention <= 0 {
		c.Retention = inbox.DefaultRetention
	}
}

// publishLimits are the bounds of a publish request.
func (d *deps) publishLimits() PublishLimits {
	return PublishLimits{MaxBody: d.cfg.MaxBody, MaxRecipients: d.cfg.MaxRecipients, Retention: d.cfg.Retention}
}

// deps is what every handler may use.
type deps struct {
	cfg     Config
	store   Store
	auth    *Authenticator
	metrics *Metrics
	slots   *pollSlots
	pubRate *publishLimits
	// sessions re-checks the login sessions of waiting polls; nil
	// without a session check.
	sessions *sessionWatch
	// park keeps waiting polls without their requests; nil: not parking.
	park *parking
}

// New returns pollbox's HTTP handler.
func New(cfg Config, store Store, auth *Authenticator, m *Metrics, log zerolog.Logger) http.Handler {
	cfg.defaults()
	d := &deps{cfg: cfg, store: store, auth: auth, metrics: m,
		slots: newPollSlots(cfg.MaxPollsPerUser), pubRate: newPublishLimits(cfg.PublishRate, cfg.PublishBurst)}
	if auth != nil && auth.cfg.Sessions != nil {
		d.sessions = newSessionWatch(auth.cfg.Sessions, cfg.SessionRecheck, cfg.StoreTimeout, log, m)
	}
	if st, ok := store.(PollStarter); ok && cfg.Listener != nil {
		d.park = newParking(d, st, cfg.Listener)
	}
	r := httprouter.New()
	r.RedirectTrailingSlash = false
	r.RedirectFixedPath = false
	handle := func(method, path string, h http.Handler) {
		r.Handler(method, path, routeLabel(path, h))
	}
	handle("GET", "/v1/poll", requireUser(d, handlePoll(d)))
	handle("GET", "/v1/messages", requireUser(d, handleHistory(d)))
	handle("GET", "/v1/unread", requireUser(d, handleUnread(d)))
	handle("POST", "/v1/read", requireUser(d, handleRead(d)))
	handle("DELETE", "/v1/messages/:id", requireUser(d, handleDelete(d)))
	handle("POST", "/v1/publish", requirePublisher(d, handlePublish(d)))
	handle("DELETE", "/v1/publish/:id", requirePublisher(d, handleWithdraw(d)))
	handle("GET", "/v1/sent", requirePublisher(d, handleSent(d)))
	handle("GET", "/v1/sent/:id", requirePublisher(d, handleSentDetail(d)))
	handle("GET", "/healthz", handleHealth())
	handle("GET", "/readyz", handleReady(d))
	handle("GET", "/metrics", promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{}))
	handle("GET", "/client.js", handleClientJS())
	handle("GET", "/favicon.ico", handleFavicon())
	handle("GET", "/", handleDemo(cfg.DevTokens))
	handle("GET", "/demo", handleDemo(cfg.DevTokens))
	handle("GET", "/admin", handleAdmin(cfg.DevTokens))
	handle("GET", "/openapi.json", handleOpenAPI())
	r.NotFound = handlerFunc(func(http.ResponseWriter, *http.Request) error { return errNotFound })
	r.MethodNotAllowed = handlerFunc(func(http.ResponseWriter, *http.Request) error { return errMethod })
	r.HandleOPTIONS = true
	r.GlobalOPTIONS = http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		// Reached only for allowed origins (cors rejects the rest first).
		w.WriteHeader(http.StatusNoContent)
	})
	r.PanicHandler = func(w http.ResponseWriter, req *http.Request, v any) {
		if v == http.ErrAbortHandler { // a deliberate abort (abortGone): net/http drops the connection
			panic(v)
		}
		logOf(req).Error().Interface("panic", v).Msg("handler panic")
		writeError(w, req, newErr(http.StatusInternalServerError, "internal", "internal error"))
	}

	var h http.Handler = routing(r) // HEAD as GET; malformed paths are a 400
	h = stopping(cfg.Stop, cfg.DrainEnd, h)
	h = cors(cfg.CORSOrigins, h) // outside stopping: 503s stay readable cross-origin
	h = common(h)
	h = requestScope(log, m, h)
	return h
}

var (
	noStore = []string{"no-store"}
	noSniff = []string{"nosniff"}
)

// common sets headers every response carries.
func common(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Direct map writes of shared values: the keys are canonical
		// already, and this runs on every request. (A later Add appends
		// to a full slice, so it copies rather than changing the shared one.)
		h := w.Header()
		h["Cache-Control"] = noStore
		h["X-Content-Type-Options"] = noSniff
		next.ServeHTTP(w, r)
	})
}

// stopping refuses new requests once shutdown has begun (/healthz
// excepted: the process is alive; /readyz is refused, so the load balancer
// sees the instance go unready). Every answer then carries Connection:
// close: a keep-alive client (a pooling HTTP client, a proxy's upstream
// keepalive) drops the connection after a clear answer, instead of having
// it closed under its next request with no answer at all.
func stopping(stop <-chan struct{}, drainEnd func() time.Time, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-stop:
			w.Header().Set("Connection", "close")
			if r.URL.Path != "/healthz" {
				writeError(w, r, shuttingDown(drainEnd))
				return
			}
		default:
		}
		next.ServeHTTP(w, r)
	})
}

// shuttingDown is the 503 of a stopping server, with a Retry-After a
// second beyond the time left until it stops listening.
func shuttingDown(drainEnd func() time.Time) error {
	if drainEnd == nil {
		return errShuttingDown
	}
	secs := int(math.Ceil(time.Until(drainEnd()).Seconds())) + 1
	if secs <= errShuttingDown.retryAfter {
		return errShuttingDown
	}
	e := *errShuttingDown
	e.retryAfter = secs
	return &e
}

// cors answers cross-origin requests from allowed origins only. Requests
// without an Origin header (curl, same-origin) pass untouched.
func cors(origins []string, next http.Handler) http.Handler {
	allowed := map[string]bool{}
	for _, o := range origins {
		allowed[strings.TrimRight(o, "/")] = true
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		origin := r.Header.Get("Origin")
		if origin == "" {
			next.ServeHTTP(w, r)
			return
		}
		w.Header().Add("Vary", "Origin")
		if !allowed[origin] && !allowed["*"] {
			if r.Method == http.MethodOptions {
				writeError(w, r, errBadOrigin)
				return
			}
			next.ServeHTTP(w, r) // no CORS headers: the browser withholds the answer
			return
		}
		h := w.Header()
		h.Set("Access-Control-Allow-Origin", origin)
		h.Set("Access-Control-Expose-Headers", "Retry-After, X-Request-Id")
		if r.Method == http.MethodOptions {
			h.Set("Access-Control-Allow-Methods", "GET, POST, DELETE, OPTIONS")
			h.Set("Access-Control-Allow-Headers", "Authorization, Content-Type")
			h.Set("Access-Control-Max-Age", "600")
		}
		next.ServeHTTP(w, r)
	})
}

func handleHealth() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
}

func handleReady(d *deps) http.Handler {
	return handlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		ctx, cancel := withTimeout(r.Context(), min(2*time.Second, d.cfg.StoreTimeout))
		defer cancel()
		if err := d.store.Ping(ctx); err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
		return nil
	})
}
