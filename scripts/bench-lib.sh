# Helpers for scripts/bench.sh (sourced, not run): ports, processes, reading
# loadgen's JSON lines and printing the report tables. They use the
# variables bench.sh sets ($tmp, $pids, the scenario sizes).

log() { printf '\n\033[1m%s\033[0m\n' "$*" >&2; }

used_ports=" "
# free_port VAR sets VAR to a loopback TCP port that nothing listens on, below
# the ephemeral range so that outgoing connections never collide with it.
free_port() {
	local p
	for _ in $(seq 1 500); do
		p=$((20000 + RANDOM % 12000))
		[[ $used_ports == *" $p "* ]] && continue
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
			used_ports+="$p "
			printf -v "$1" '%s' "$p"
			return 0
		fi
	done
	echo "bench: no free port found" >&2
	return 1
}

# http_status URL-PATH PORT: prints the HTTP status code of GET 127.0.0.1:PORT PATH.
http_status() {
	local path=$1 port=$2
	(
		exec 3<>"/dev/tcp/127.0.0.1/$port" || exit 1
		printf 'GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' "$path" >&3
		IFS= read -r -t 2 line <&3 || exit 1
		echo "$line" | awk '{print $2}'
	) 2>/dev/null || echo 000
}

redis_ping() {
	(
		exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
		printf 'PING\r\n' >&3
		IFS= read -r -t 1 line <&3 || exit 1
		[[ $line == +PONG* ]]
	) 2>/dev/null
}

wait_for() { # description, seconds, command...
	local what=$1 secs=$2
	shift 2
	for _ in $(seq 1 $((secs * 10))); do
		if "$@"; then return 0; fi
		sleep 0.1
	done
	echo "bench: timed out waiting for $what" >&2
	return 1
}

# forget_pid PID: drops PID from the list the exit trap stops (once stopped,
# the number may be reused by an unrelated process).
forget_pid() {
	local p keep=()
	for p in "${pids[@]}"; do [[ $p == "$1" ]] || keep+=("$p"); done
	pids=("${keep[@]}")
}

# stop_proc NAME PID LOG: SIGTERM, then after 15 s SIGQUIT (a Go program
# prints its goroutines to LOG) and SIGKILL.
stop_proc() {
	local name=$1 pid=$2 logf=$3
	kill -TERM "$pid" 2>/dev/null || return 0
	for _ in $(seq 1 150); do
		kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
		sleep 0.1
	done
	log "$name (pid $pid) did not stop within 15 s of SIGTERM"
	kill -QUIT "$pid" 2>/dev/null || true
	sleep 2
	kill -KILL "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
	cp "$logf" "${TMPDIR:-/tmp}/pollbox-bench-$name-stuck.log" 2>/dev/null &&
		echo "  its log (with a goroutine dump for Go programs): ${TMPDIR:-/tmp}/pollbox-bench-$name-stuck.log" >&2
}

rand_hex() { head -c "$1" /dev/urandom | od -An -tx1 | tr -d ' \n'; }

# CPU already in use by other processes, measured over one second.
cpu_busy() {
	local a b
	a=$(awk '/^cpu / {print $2+$3+$4+$6+$7+$8, $5}' /proc/stat)
	sleep 1
	b=$(awk '/^cpu / {print $2+$3+$4+$6+$7+$8, $5}' /proc/stat)
	awk -v a="$a" -v b="$b" 'BEGIN { split(a, x, " "); split(b, y, " ");
		busy = y[1] - x[1]; idle = y[2] - x[2]; if (busy + idle > 0) printf "%.0f", 100 * busy / (busy + idle); else print 0 }'
}

# jf FILE KEY: a top-level number or string from a loadgen JSON line.
jf() {
	[[ -s $1 ]] || { echo ""; return; }
	sed -n "s/.*\"$2\":\"\{0,1\}\([^,}\"]*\).*/\1/p" "$1" | head -n1
}

# jmap FILE KEY: a {"kind":n,…} object of a loadgen JSON line as "kind=n …".
jmap() {
	local m
	[[ -s $1 ]] || { echo "-"; return; }
	m=$(sed -n "s/.*\"$2\":{\([^}]*\)}.*/\1/p" "$1" | head -n1)
	[[ -z $m ]] && { echo "none"; return; }
	echo "$m" | tr -d '"' | sed -E 's/:([0-9]+)(,|$)/=\1 /g; s/ $//'
}

# ---------------------------------------------------------------- formatting
num() { # number with at most 1 decimal; "-" when empty or negative
	[[ -z ${1:-} ]] && { echo "-"; return; }
	awk -v v="$1" 'BEGIN { if (v !~ /^-?[0-9.e+-]+$/ || v < 0) print "-"; else if (v == int(v)) printf "%d", v; else printf "%.1f", v }'
}
pct() { awk -v v="${1:--1}" 'BEGIN { if (v < 0) print "-"; else printf "%.0f%%", v }'; }
mibs() { [[ -z ${1:-} || ${1:-0} == 0 ]] && { echo "-"; return; }; awk -v v="$1" 'BEGIN { printf "%.0f MiB", v/1024 }'; }
ratio() {
	awk -v x="${1:-}" -v y="${2:-}" 'BEGIN {
		if (x !~ /^[0-9.]+$/ || y !~ /^[0-9.]+$/ || y + 0 == 0) print "-"; else printf "%.2f", x / y }'
}
# verdict AWK-CONDITION VAR=VALUE...: "yes", "NO", or "?" when a value is missing.
verdict() {
	local cond=$1 a args=()
	shift
	for a in "$@"; do
		[[ ${a#*=} =~ ^[0-9.]+$ ]] || { echo "?"; return; }
		args+=(-v "$a")
	done
	awk "${args[@]}" "BEGIN { print (($cond) ? \"yes\" : \"**NO**\") }"
}

# ---------------------------------------------------------------- tables
row() { # target scenario json
	local t=$1 s=$2 js=$3 mode extra=""
	if [[ ! -s $js ]]; then
		echo "| $t | $s | failed | | | | | | | | | |"
		return
	fi
	mode=$(jf "$js" mode)
	local rate="-"
	case $mode in
	users)
		rate="$(num "$(jf "$js" target_rate)") → $(num "$(jf "$js" achieved_rate)")"
		extra="$(num "$(jf "$js" cpu_us_per_delivery)") µs server+Redis CPU per delivered message"
		;;
	broadcast | batch)
		extra="publish call $(num "$(jf "$js" single_publish_ms)") ms; "
		if [[ $(jf "$js" lost) == 0 ]] && awk -v s="$(jf "$js" all_delivered_s)" 'BEGIN { exit !(s >= 0) }'; then
			extra+="all delivered after $(num "$(awk -v s="$(jf "$js" all_delivered_s)" 'BEGIN{print s*1000}')") ms"
		else
			extra+="not all delivered within $(num "$(jf "$js" drain_s)") s"
		fi
		;;
	waiters)
		extra="$(num "$(jf "$js" kib_per_client)") KiB RSS per waiting poll"
		[[ -n $(jf "$js" sessions) ]] && extra+=" (session check on, $(jf "$js" sessions) sessions)"
		;;
	esac
	local nr
	nr=$(jf "$js" not_ready)
	[[ ${nr:-0} != 0 ]] && extra+="; $nr clients not subscribed when publishing began"
	local deliv="-" lat="-" pub="-" errs
	[[ $mode != waiters ]] && deliv="$(jf "$js" delivered)/$(jf "$js" expected) ($(jf "$js" lost)/$(jf "$js" duplicated))"
	[[ $mode != waiters ]] && lat="$(num "$(jf "$js" delivery_p50_ms)") / $(num "$(jf "$js" delivery_p99_ms)") / $(num "$(jf "$js" delivery_max_ms)")"
	[[ $mode == users ]] && pub="$(num "$(jf "$js" publish_p50_ms)") / $(num "$(jf "$js" publish_p99_ms)")"
	errs=$(jf "$js" poll_errors)
	[[ $errs != 0 ]] && errs+=" ($(jmap "$js" poll_errors_by_kind))"
	local cpu
	cpu="$(pct "$(jf "$js" server_cpu_pct)") / $(pct "$(jf "$js" redis_cpu_pct)") / $(pct "$(jf "$js" loadgen_cpu_pct)")"
	echo "| $t | $s | $(jf "$js" connected) | $rate | $deliv | $errs | $lat | $pub | $cpu | $(mibs "$(jf "$js" rss_peak_kib)") | $(jf "$js" redis_conns_peak) | $extra |"
}

print_results() {
	local r t s js
	echo "| Server | Scenario | Clients | msg/s target → achieved | Delivered/expected (lost/dup) | Poll errors | Delivery p50 / p99 / max (ms) | Publish p50 / p99 (ms) | CPU server / Redis / loadgen | Server RSS peak | Redis conns peak | Notes |"
	echo "|---|---|---|---|---|---|---|---|---|---|---|---|"
	for r in "${results[@]}"; do
		IFS='|' read -r t s js <<<"$r"
		row "$t" "$s" "$js"
	done
	echo
	for t in pollbox nchan floor; do
		[[ -f $tmp/$t-best ]] && echo "Highest sustained rate ($t, ${U1}×${K1} clients, p99 ≤ ${P99_LIMIT_MS} ms, no loss): $(cat "$tmp/$t-best") msg/s"
	done
	return 0
}

# print_overload: what each server does past pollbox's limit.
print_overload() {
	local t js any=0
	for t in pollbox nchan floor; do [[ -f $tmp/$t-overload-rate ]] && any=1; done
	((any)) || return 0
	echo
	local of="pollbox's highest sustained rate"
	[[ -f $tmp/pollbox-best ]] || of="each server's own highest sustained rate"
	echo "### Overload: 1.5 × $of (${U1} users × ${K1} clients, ${D1})"
	echo
	echo "Four times the ladder's publishers (each waits for its answer before the next publish), so that a server"
	echo "that slows down is still offered the rate; the achieved rate is what it accepted."
	echo "Lost = messages acknowledged to the publisher that a subscribed client never received (also those owed to clients"
	echo "the server refused before publishing began); poll errors = non-2xx answers to a poll/subscribe and failed connections."
	echo
	echo "| Server | msg/s target → achieved | Delivered/expected | Lost | Duplicated | Publish failed | Delivery p50 / p99 / max (ms) | Poll errors (kinds) | CPU server / Redis |"
	echo "|---|---|---|---|---|---|---|---|---|"
	for t in pollbox nchan floor; do
		[[ -f $tmp/$t-overload-rate ]] || continue
		js=$tmp/$t-overload.json
		if [[ ! -s $js ]]; then
			echo "| $t | $(cat "$tmp/$t-overload-rate") → failed | | | | | | | |"
			continue
		fi
		echo "| $t | $(num "$(jf "$js" target_rate)") → $(num "$(jf "$js" achieved_rate)") | $(jf "$js" delivered)/$(jf "$js" expected)" \
			"| $(jf "$js" lost) | $(jf "$js" duplicated) | $(jf "$js" publish_failed) ($(jmap "$js" publish_errors_by_kind))" \
			"| $(num "$(jf "$js" delivery_p50_ms)") / $(num "$(jf "$js" delivery_p99_ms)") / $(num "$(jf "$js" delivery_max_ms)")" \
			"| $(jf "$js" poll_errors) ($(jmap "$js" poll_errors_by_kind)) | $(pct "$(jf "$js" server_cpu_pct)") / $(pct "$(jf "$js" redis_cpu_pct)") |"
	done
}

# cmp LABEL KEY [SCENARIO [NCHAN-SCENARIO]]: one pollbox vs Nchan row.
cmp() {
	local x y
	x=$(jf "$tmp/pollbox-${3:-users}.json" "$2") y=$(jf "$tmp/nchan-${4:-${3:-users}}.json" "$2")
	echo "| $1 | $(num "$x") | $(num "$y") | $(ratio "$x" "$y") |"
}

print_comparison() {
	local a=$tmp/pollbox-users.json b=$tmp/nchan-users.json x y
	echo
	echo "### pollbox vs Nchan $nchan_version (longpoll, Redis storage, 1 worker)"
	echo
	echo "Rows without a scenario name compare \"users\" (${U1} users × ${K1} clients at ${R1} msg/s for ${D1}). Ratio = pollbox / Nchan (lower is better except for rates)."
	echo
	echo "| Metric | pollbox | Nchan | Ratio |"
	echo "|---|---|---|---|"
	cmp "Achieved msg/s" achieved_rate
	cmp "Delivery p50 (ms)" delivery_p50_ms
	cmp "Delivery p99 (ms)" delivery_p99_ms
	cmp "Delivery max (ms)" delivery_max_ms
	cmp "Publish p99 (ms)" publish_p99_ms
	cmp "Lost" lost
	cmp "Poll errors" poll_errors
	x=$(jf "$a" rss_peak_kib) y=$(jf "$b" rss_peak_kib)
	echo "| Server RSS peak (MiB) | $(num "$(awk -v v="${x:-0}" 'BEGIN{print v/1024}')") | $(num "$(awk -v v="${y:-0}" 'BEGIN{print v/1024}')") | $(ratio "$x" "$y") |"
	cmp "Redis connections peak" redis_conns_peak
	cmp "Server CPU % (of one core)" server_cpu_pct
	cmp "Redis CPU % (of one core)" redis_cpu_pct
	cmp "Server+Redis CPU per delivered message (µs)" cpu_us_per_delivery
	cmp "Delivery p99 at ${R2} msg/s (ms)" delivery_p99_ms "lat-$R2"
	x=$(cat "$tmp/pollbox-best") y=$(cat "$tmp/nchan-best")
	echo "| Highest sustained msg/s | $x | $y | $(ratio "$x" "$y") |"
	cmp "KiB RSS per waiting poll ($((WU * 2)) polls, fresh process)" kib_per_client waiters
	cmp "KiB RSS per waiting poll, pollbox session check on" kib_per_client waiters-session waiters
	cmp "Broadcast publish call (ms, $((BU * 2)) clients)" single_publish_ms broadcast
	cmp "Broadcast delivery p50 (ms)" delivery_p50_ms broadcast
	cmp "Broadcast: all delivered after (s)" all_delivered_s broadcast
}

# print_targets: every performance target with pollbox's, Nchan's and
# floor's figure, the ratio and whether pollbox meets it.
print_targets() {
	local p n f best_p best_n best_f kib=13
	echo
	echo "### Targets"
	echo
	echo "CPU per delivered message = (server CPU s + Redis CPU s) / messages delivered, over the measured phase (publishing"
	echo "until every message arrived or the drain time ended; CPU % in the table above is averaged over the same phase, so this"
	echo "is (server % + Redis %) / 100 × elapsed_s / delivered × 10⁶). Each publish is delivered to ${K1} clients. Nchan's"
	echo "server CPU is its one nginx worker; floor's Redis figure is Redis idling. \"?\": a figure is missing."
	echo
	echo "| Target | pollbox | Nchan | floor | pollbox / Nchan | Goal | Met |"
	echo "|---|---|---|---|---|---|---|"
	tv() { jf "$tmp/$1-$2.json" "$3"; }
	at() { # figure of TARGET's SCENARIO with the rate it achieved
		local v
		v=$(num "$(tv "$1" "$2" "$3")")
		[[ $v == - ]] && { echo -; return; }
		echo "$v (at $(num "$(awk -v r="$(tv "$1" "$2" achieved_rate)" 'BEGIN { printf "%.0f", r }')") msg/s)"
	}
	p=$(tv pollbox users cpu_us_per_delivery) n=$(tv nchan users cpu_us_per_delivery)
	echo "| Server+Redis CPU µs per delivered message (users, ${R1} msg/s offered) | $(at pollbox users cpu_us_per_delivery) | $(at nchan users cpu_us_per_delivery) | $(at floor users cpu_us_per_delivery) | $(ratio "$p" "$n") | ratio ≤ 1.2 | $(verdict 'n > 0 && p / n <= 1.2' p="$p" n="$n") |"
	p=$(tv pollbox "lat-$R2" delivery_p99_ms) n=$(tv nchan "lat-$R2" delivery_p99_ms)
	echo "| Delivery p99 at ${R2} msg/s offered (ms) | $(at pollbox "lat-$R2" delivery_p99_ms) | $(at nchan "lat-$R2" delivery_p99_ms) | $(at floor "lat-$R2" delivery_p99_ms) | $(ratio "$p" "$n") | ratio ≤ 2 | $(verdict 'n > 0 && p / n <= 2' p="$p" n="$n") |"
	n=$(tv nchan waiters kib_per_client)
	p=$(tv pollbox waiters kib_per_client)
	echo "| KiB RSS per waiting poll, session check off ($((WU * 2)) polls, fresh process) | $(num "$p") | $(num "$n") | - | $(ratio "$p" "$n") | ≤ Nchan and ≤ $kib | $(verdict "p <= n && p <= $kib" p="$p" n="$n") |"
	p=$(tv pollbox waiters-session kib_per_client)
	echo "| KiB RSS per waiting poll, session check on | $(num "$p") | $(num "$n") | - | $(ratio "$p" "$n") | ≤ Nchan and ≤ $kib | $(verdict "p <= n && p <= $kib" p="$p" n="$n") |"
	best_p=$(cat "$tmp/pollbox-best" 2>/dev/null || true) best_n=$(cat "$tmp/nchan-best" 2>/dev/null || true)
	best_f=$(cat "$tmp/floor-best" 2>/dev/null || true)
	echo "| Highest sustained msg/s (p99 ≤ ${P99_LIMIT_MS} ms, no loss) | ${best_p:--} | ${best_n:--} | ${best_f:--} | $(ratio "$best_p" "$best_n") | ≥ Nchan | $(verdict 'p >= n' p="$best_p" n="$best_n") |"
	local orate
	orate=$(cat "$tmp/pollbox-overload-rate" 2>/dev/null || echo "?")
	p=$(tv pollbox overload lost) n=$(tv nchan overload lost) f=$(tv floor overload lost)
	echo "| Overload at $orate msg/s: messages lost | ${p:--} | ${n:--} | ${f:--} | - | pollbox 0 | $(verdict 'p == 0' p="$p") |"
	p=$(tv pollbox overload poll_errors) n=$(tv nchan overload poll_errors) f=$(tv floor overload poll_errors)
	echo "| Overload at $orate msg/s: poll errors | ${p:--} | ${n:--} | ${f:--} | - | pollbox 0 | $(verdict 'p == 0' p="$p") |"
}
