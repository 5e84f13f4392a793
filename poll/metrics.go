package poll

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Metrics are pollbox's Prometheus series. Create them with NewMetrics and
// pass the same value to the handler and to whoever reports hub events.
type Metrics struct {
	Registry        *prometheus.Registry
	waiting         prometheus.Gauge
	polls           *prometheus.CounterVec
	cutWait         prometheus.Histogram
	published       prometheus.Counter
	delivered       prometheus.Counter
	publishLatency  prometheus.Histogram
	deliveryLatency prometheus.Histogram
	redisErrors     prometheus.Counter
	hubReconnects   prometheus.Counter
	requests        *prometheus.CounterVec
	scheduled       *prometheus.CounterVec
	revoked         prometheus.Counter
	scheduleLag     prometheus.Histogram
	sessionsWatched prometheus.Gauge
	sessionRounds   *prometheus.CounterVec
}

// NewMetrics registers pollbox's series (and the Go runtime's) in a fresh registry.
func NewMetrics() *Metrics {
	m := &Metrics{
		Registry: prometheus.NewRegistry(),
		waiting: prometheus.NewGauge(prometheus.GaugeOpts{Name: "pollbox_polls_waiting",
			Help: "Long-polls currently open on this instance."}),
		polls: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "pollbox_polls_total",
			Help: "Polls ended, by outcome (messages, empty, error, rejected, cut)."}, []string{"outcome"}),
		cutWait: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "pollbox_poll_cut_wait_seconds",
			Help: "How long polls cut before their answer (client or proxy closed the connection) had waited. " +
				"A peak below the poll timeout is an intermediary's read timeout.",
			Buckets: []float64{1, 2, 5, 8, 10, 12, 15, 20, 25, 30, 35, 40, 50, 60, 90, 120}}),
		published: prometheus.NewCounter(prometheus.CounterOpts{Name: "pollbox_messages_published_total",
			Help: "Stream entries written by publishes (one per recipient stream)."}),
		delivered: prometheus.NewCounter(prometheus.CounterOpts{Name: "pollbox_messages_delivered_total",
			Help: "Messages returned by polls."}),
		publishLatency: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "pollbox_publish_seconds",
			Help: "Time to handle a publish request.", Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14)}),
		deliveryLatency: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "pollbox_delivery_seconds",
			Help: "Time from a message's creation to its delivery by a poll.", Buckets: prometheus.ExponentialBuckets(0.001, 2, 16)}),
		redisErrors: prometheus.NewCounter(prometheus.CounterOpts{Name: "pollbox_redis_errors_total",
			Help: "Requests that failed because Redis was unavailable."}),
		hubReconnects: prometheus.NewCounter(prometheus.CounterOpts{Name: "pollbox_hub_reconnects_total",
			Help: "Times the wake-up subscription was re-established."}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "pollbox_http_requests_total",
			Help: "HTTP requests by route and status."}, []string{"route", "status"}),
		scheduled: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "pollbox_scheduled_total",
			Help: "Scheduled publishes that ended, by outcome (delivered by this instance's scheduler, cancelled here)."}, []string{"outcome"}),
		revoked: prometheus.NewCounter(prometheus.CounterOpts{Name: "pollbox_revoked_total",
			Help: "Publishes revoked through this instance."}),
		scheduleLag: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "pollbox_schedule_lag_seconds",
			Help:    "How late after its send_at a scheduled publish was delivered by this instance.",
			Buckets: []float64{0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1, 2, 5, 10, 30, 60, 300}}),
		sessionsWatched: prometheus.NewGauge(prometheus.GaugeOpts{Name: "pollbox_sessions_watched",
			Help: "Distinct login sessions (tokens) of waiting polls that this instance re-checks (session check on)."}),
		sessionRounds: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "pollbox_session_rounds_total",
			Help: "Rounds re-checking the login sessions of waiting polls, by result (ok, error)."}, []string{"result"}),
	}
	for _, o := range []string{"delivered", "cancelled"} {
		m.scheduled.WithLabelValues(o) // listed at 0 before the first
	}
	for _, r := range []string{"ok", "error"} {
		m.sessionRounds.WithLabelValues(r)
	}
	m.Registry.MustRegister(m.waiting, m.polls, m.cutWait, m.published, m.delivered, m.publishLatency,
		m.deliveryLatency, m.redisErrors, m.hubReconnects, m.requests, m.scheduled, m.revoked, m.scheduleLag,
		m.sessionsWatched, m.sessionRounds,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// WatchChannels exports how many wake-up channels the instance holds
// (subscribed, being subscribed or lingering), as channels() reports it.
func (m *Metrics) WatchChannels(channels func() int) {
	m.Registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "pollbox_wake_channels",
		Help: "Wake-up channels this instance holds: those its waiting polls need, and those lingering after them."},
		func() float64 { return float64(channels()) }))
}

// HubEvent records a wake-up hub event (see inbox.Hub.OnEvent).
func (m *Metrics) HubEvent(event string) {
	if event == "reconnected" {
		m.hubReconnects.Inc()
	}
}

// Notice records a transition of a publish as the inbox reports it (see
// inbox.Options.OnNotice): "delivered" with how late after its send_at,
// "cancelled", "revoked". Each transition is reported once, by the
// instance that made it, so repeated DELETEs do not count twice.
func (m *Metrics) Notice(event string, lag time.Duration) {
	switch event {
	case "delivered":
		m.scheduled.WithLabelValues("delivered").Inc()
		m.scheduleLag.Observe(max(lag, 0).Seconds())
	case "cancelled":
		m.scheduled.WithLabelValues("cancelled").Inc()
	case "revoked":
		m.revoked.Inc()
	}
}

// cutPoll counts a poll whose connection closed while it waited.
func (m *Metrics) cutPoll(waited time.Duration) {
	m.polls.WithLabelValues("cut").Inc()
	m.cutWait.Observe(waited.Seconds())
}

func (m *Metrics) observeDelivery(created time.Time, now time.Time) {
	m.deliveryLatency.Observe(now.Sub(created).Seconds())
}
