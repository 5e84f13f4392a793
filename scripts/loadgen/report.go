package main

import (
	"encoding/json"
	"fmt"
	"io"
	"runtime"
	"sort"
	"strings"
)

// result holds every figure of a run; it is also the JSON line.
type result struct {
	Label          string  `json:"label,omitempty"`
	Mode           string  `json:"mode"`
	Protocol       string  `json:"protocol"`
	Users          int     `json:"users"`
	ClientsPerUser int     `json:"clients_per_user"`
	Clients        int     `json:"clients"`
	Connected      int     `json:"connected"`
	NotReady       int     `json:"not_ready"` // clients not subscribed when publishing began
	Sessions       int     `json:"sessions,omitempty"`
	Publishers     int     `json:"publishers"`
	ServerWaiting  int64   `json:"server_waiting"`
	SetupS         float64 `json:"setup_s"`

	TargetRate      float64 `json:"target_rate"`
	AchievedRate    float64 `json:"achieved_rate"`
	PublishTarget   int64   `json:"publish_target"`
	Published       int64   `json:"published"`
	PublishFailed   int64   `json:"publish_failed"`
	PublishWindowS  float64 `json:"publish_window_s"`
	PublishP50MS    float64 `json:"publish_p50_ms"`
	PublishP99MS    float64 `json:"publish_p99_ms"`
	PublishMaxMS    float64 `json:"publish_max_ms"`
	SinglePublishMS float64 `json:"single_publish_ms,omitempty"`
	BatchCount      int     `json:"batch_count,omitempty"`

	Expected         int64 `json:"expected"`
	Delivered        int64 `json:"delivered"`
	Lost             int64 `json:"lost"`
	LostNotReady     int64 `json:"lost_not_ready"` // part of Lost owed to clients that were not subscribed
	Duplicated       int64 `json:"duplicated"`
	DeliveredUnacked int64 `json:"delivered_unacked"`
	Stale            int64 `json:"stale"`
	Foreign          int64 `json:"foreign"`
	Misrouted        int64 `json:"misrouted"`
	Resets           int64 `json:"resets"`
	Polls            int64 `json:"polls"`
	EmptyPolls       int64 `json:"empty_polls"`
	EarlyEmpty       int64 `json:"early_empty_polls"`
	Stuck            int   `json:"stuck,omitempty"`

	PollErrors          int64             `json:"poll_errors"`
	PollErrorsByKind    map[string]int64  `json:"poll_errors_by_kind"`
	PollErrorExamples   map[string]string `json:"-"`
	PublishErrorsByKind map[string]int64  `json:"publish_errors_by_kind"`

	DeliveryP50MS  float64 `json:"delivery_p50_ms"`
	DeliveryP90MS  float64 `json:"delivery_p90_ms"`
	DeliveryP99MS  float64 `json:"delivery_p99_ms"`
	DeliveryMaxMS  float64 `json:"delivery_max_ms"`
	DeliveryMeanMS float64 `json:"delivery_mean_ms"`
	AllDeliveredS  float64 `json:"all_delivered_s"` // -1: not all within the drain time
	DrainS         float64 `json:"drain_s"`
	ElapsedS       float64 `json:"elapsed_s"`

	ServerCPUPct  float64 `json:"server_cpu_pct"`
	RedisCPUPct   float64 `json:"redis_cpu_pct"`
	LoadgenCPUPct float64 `json:"loadgen_cpu_pct"`
	// CPU seconds used over the measured phase (-1: not sampled) and the
	// server's plus Redis's CPU time per delivered message.
	ServerCPUS       float64 `json:"server_cpu_s"`
	RedisCPUS        float64 `json:"redis_cpu_s"`
	CPUPerDeliveryUS float64 `json:"cpu_us_per_delivery"`

	RSSStartKiB   int64   `json:"rss_start_kib"`
	RSSWaitingKiB int64   `json:"rss_waiting_kib"`
	RSSPeakKiB    int64   `json:"rss_peak_kib"`
	RSSEndKiB     int64   `json:"rss_end_kib"`
	RSSHWMKiB     int64   `json:"rss_hwm_kib"`
	KiBPerClient  float64 `json:"kib_per_client"`
	FDsStart      int     `json:"fds_start"`
	FDsPeak       int     `json:"fds_peak"`

	RedisConnsStart  int            `json:"redis_conns_start"`
	RedisConnsPeak   int            `json:"redis_conns_peak"`
	RedisConnsEnd    int            `json:"redis_conns_end"`
	RedisBlockedPeak int            `json:"redis_blocked_peak"`
	RedisConnsByName map[string]int `json:"redis_conns_by_name,omitempty"`

	Notes []string `json:"notes,omitempty"`
}

func mib(kib int64) string { return fmt.Sprintf("%.1f MiB", float64(kib)/1024) }

func printReport(w io.Writer, cfg *config, r *result) {
	p := func(format string, args ...any) { fmt.Fprintf(w, format+"\n", args...) }
	title := "loadgen"
	if r.Label != "" {
		title += " [" + r.Label + "]"
	}
	target := cfg.baseURL
	if cfg.protocol == "nchan" {
		target = cfg.nchanSub
	}
	p("== %s: mode=%s protocol=%s target=%s", title, r.Mode, r.Protocol, target)
	line := fmt.Sprintf("clients        %d/%d connected (%d users × %d), setup %.2fs", r.Connected, r.Clients, r.Users, r.ClientsPerUser, r.SetupS)
	if r.ServerWaiting >= 0 && r.Protocol == "pollbox" {
		line += fmt.Sprintf("; server reported %d polls waiting", r.ServerWaiting)
	}
	p("%s", line)
	if r.Sessions > 0 {
		p("sessions       %d login-session keys %s<token> created before connecting", r.Sessions, cfg.sessionKey)
	}
	switch r.Mode {
	case "users":
		p("published      %d ok, %d failed of %d scheduled (target %.0f/s, achieved %.0f/s over %.2fs, %d publishers)",
			r.Published, r.PublishFailed, r.PublishTarget, r.TargetRate, r.AchievedRate, r.PublishWindowS, r.Publishers)
		p("publish call   p50 %.2fms  p99 %.2fms  max %.2fms", r.PublishP50MS, r.PublishP99MS, r.PublishMaxMS)
	case "broadcast", "batch":
		line = fmt.Sprintf("publish call   %.2fms (%d ok, %d failed)", r.SinglePublishMS, r.Published, r.PublishFailed)
		if r.Mode == "batch" && r.Protocol == "pollbox" {
			line += fmt.Sprintf(", %d recipients, server count %d", r.Users, r.BatchCount)
		}
		p("%s", line)
	}
	if r.Mode != "waiters" {
		p("deliveries     expected %d, delivered %d, lost %d, duplicated %d", r.Expected, r.Delivered, r.Lost, r.Duplicated)
		if r.NotReady > 0 {
			p("               %d of the lost were owed to the %d clients not subscribed when publishing began", r.LostNotReady, r.NotReady)
		}
		if r.DeliveredUnacked+r.Stale+r.Foreign+r.Misrouted+r.Resets > 0 {
			p("               delivered-but-publish-failed %d, stale %d, foreign %d, misrouted %d, resets %d",
				r.DeliveredUnacked, r.Stale, r.Foreign, r.Misrouted, r.Resets)
		}
		p("delivery lat   p50 %.2fms  p90 %.2fms  p99 %.2fms  max %.2fms  (mean %.2fms)",
			r.DeliveryP50MS, r.DeliveryP90MS, r.DeliveryP99MS, r.DeliveryMaxMS, r.DeliveryMeanMS)
		if r.AllDeliveredS >= 0 && r.Lost == r.LostNotReady && r.Expected > 0 {
			to := ""
			if r.NotReady > 0 {
				to = " to the subscribed clients"
			}
			p("all delivered%s  %.3fs after publishing began (%.3fs after it ended)", to, r.AllDeliveredS, r.DrainS)
		} else {
			p("drain          gave up %.1fs after publishing ended", r.DrainS)
		}
	} else {
		p("held           %.1fs, foreign messages %d", r.ElapsedS, r.Foreign)
	}
	line = fmt.Sprintf("polls          %d responses, %d empty", r.Polls, r.EmptyPolls)
	if r.Protocol == "pollbox" {
		line += fmt.Sprintf(" (%d of them before 90%% of the %ds timeout)", r.EarlyEmpty, cfg.timeout)
	}
	p("%s", line)
	p("poll errors    %d (%s)", r.PollErrors, formatKinds(r.PollErrorsByKind))
	for _, k := range sortedKeys(r.PollErrorExamples) {
		p("               e.g. %s: %s", k, r.PollErrorExamples[k])
	}
	if len(r.PublishErrorsByKind) > 0 {
		p("publish errors %s", formatKinds(r.PublishErrorsByKind))
	}
	if r.RSSPeakKiB > 0 {
		p("server RSS     start %s, all waiting %s, peak %s, end %s (VmHWM %s); open files %d → peak %d",
			mib(r.RSSStartKiB), mib(r.RSSWaitingKiB), mib(r.RSSPeakKiB), mib(r.RSSEndKiB), mib(r.RSSHWMKiB), r.FDsStart, r.FDsPeak)
		if r.Mode == "waiters" {
			p("per waiter     %.1f KiB RSS per waiting poll ((peak − start) / %d)", r.KiBPerClient, r.Connected)
		}
	}
	if cfg.redisURL != "" {
		p("redis conns    start %d, peak %d (blocked peak %d), end %d; at peak by name: %s",
			r.RedisConnsStart, r.RedisConnsPeak, r.RedisBlockedPeak, r.RedisConnsEnd, formatNames(r.RedisConnsByName))
	}
	cpu := fmt.Sprintf("loadgen %.0f%%", r.LoadgenCPUPct)
	if r.ServerCPUPct >= 0 {
		cpu = fmt.Sprintf("server %.0f%%, ", r.ServerCPUPct) + cpu
	}
	if r.RedisCPUPct >= 0 {
		cpu += fmt.Sprintf(", redis %.0f%%", r.RedisCPUPct)
	}
	p("cpu            %s of one core, averaged over the %.1fs measured phase (%d cores)", cpu, r.ElapsedS, runtime.NumCPU())
	if r.CPUPerDeliveryUS >= 0 {
		p("cpu per msg    %.1f µs of server+redis CPU per delivered message (%.2fs server + %.2fs redis over the phase / %d delivered)",
			r.CPUPerDeliveryUS, r.ServerCPUS, max(r.RedisCPUS, 0), r.Delivered)
	}
	for _, n := range r.Notes {
		p("note           %s", n)
	}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func formatNames(m map[string]int) string {
	if len(m) == 0 {
		return "-"
	}
	parts := make([]string, 0, len(m))
	for _, k := range sortedKeys(m) {
		parts = append(parts, fmt.Sprintf("%s=%d", k, m[k]))
	}
	return strings.Join(parts, " ")
}

func printJSON(w io.Writer, r *result) {
	if r.PollErrorsByKind == nil {
		r.PollErrorsByKind = map[string]int64{}
	}
	if r.PublishErrorsByKind == nil {
		r.PublishErrorsByKind = map[string]int64{}
	}
	b, err := json.Marshal(r)
	if err != nil {
		fmt.Fprintln(w, `{"error":"json"}`)
		return
	}
	fmt.Fprintln(w, string(b))
}
