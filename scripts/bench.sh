#!/usr/bin/env bash
# Benchmark pollbox on this machine (and Nchan for comparison, when nginx with
# the Nchan module is installed). Everything runs on 127.0.0.1 with a private
# redis-server and is cleaned up on exit.
#
#   scripts/bench.sh                  full run (5-10 minutes with Nchan)
#   BENCH_QUICK=1 scripts/bench.sh    small smoke-test version of every scenario
#   BENCH_TARGETS=pollbox             skip the comparisons (default pollbox,nchan,floor)
#
# Scenarios: (1) users: 2000 users x 2 clients at 5,000 msg/s for 10 s;
# (2) rate ladder 5k/10k/15k/20k msg/s, stopping when p99 > 50 ms, a message
# is lost or the rate is not reached (halving down from 5k when even that is
# not sustained), then two bisection steps between the best rate sustained
# and the lowest that was not; (3) 15,000 waiting polls for 20 s (RSS, Redis connections);
# (4) one broadcast to 10,000 waiting clients; (5) one publish to 10,000
# listed recipients. Nchan gets (1)-(4); (5) has no Nchan equivalent.
# "floor" (scripts/floor) is the least a net/http long-poll server can do:
# in-memory, no Redis, no checks. It gets (1), (2), (4) and (5) and shows
# how much of each figure is the machine and net/http rather than pollbox.
#
# The server, Redis and the load generator share this machine's CPUs: the
# report shows each one's CPU use, and the numbers are only as good as the
# machine is idle.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
QUICK=${BENCH_QUICK:-0}
TARGETS=${BENCH_TARGETS:-pollbox,nchan,floor}
NCHAN_MODULE=${NCHAN_MODULE:-/usr/lib/nginx/modules/ngx_nchan_module.so}
P99_LIMIT_MS=50

for tool in go redis-server; do
	command -v "$tool" >/dev/null || { echo "bench: $tool is required" >&2; exit 1; }
done

tmp=$(mktemp -d "${TMPDIR:-/tmp}/pollbox-bench.XXXXXX")
chmod 711 "$tmp" # nginx workers (nobody) must reach their directory
pids=()
nginx_pid=""

cleanup() {
	local pid
	set +e
	if [[ -n $nginx_pid ]] && kill -0 "$nginx_pid" 2>/dev/null; then
		kill -TERM "$nginx_pid" 2>/dev/null
	fi
	for pid in "${pids[@]}"; do
		kill -TERM "$pid" 2>/dev/null
	done
	for pid in "${pids[@]}" $nginx_pid; do
		for _ in $(seq 1 50); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		kill -KILL "$pid" 2>/dev/null
		wait "$pid" 2>/dev/null
	done
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

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

# jf FILE KEY: a top-level number or string from a loadgen JSON line.
jf() {
	[[ -s $1 ]] || { echo ""; return; }
	sed -n "s/.*\"$2\":\"\{0,1\}\([^,}\"]*\).*/\1/p" "$1" | head -n1
}

# ---------------------------------------------------------------- machine
ulimit -n "$(ulimit -Hn)" 2>/dev/null || ulimit -n 65536 2>/dev/null || true
NOFILE=$(ulimit -n)
[[ $NOFILE == unlimited ]] && NOFILE=1048576
cpu_model=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n1)
mem_total=$(awk '/^MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo)
# CPU already in use by other processes, measured over one second.
cpu_busy() {
	local a b
	a=$(awk '/^cpu / {print $2+$3+$4+$6+$7+$8, $5}' /proc/stat)
	sleep 1
	b=$(awk '/^cpu / {print $2+$3+$4+$6+$7+$8, $5}' /proc/stat)
	awk -v a="$a" -v b="$b" 'BEGIN { split(a, x, " "); split(b, y, " ");
		busy = y[1] - x[1]; idle = y[2] - x[2]; if (busy + idle > 0) printf "%.0f", 100 * busy / (busy + idle); else print 0 }'
}
busy=$(cpu_busy)
if ((busy > 20)); then
	log "warning: the machine is already ${busy}% busy before the benchmark starts; results will be low and noisy"
fi
machine="$(nproc) CPUs (${cpu_model:-unknown}), $mem_total RAM, $(uname -sr), $(go version | awk '{print $3}'), $(redis-server --version | awk '{print $3}' | tr -d 'v=')"
log "machine: $machine; open files limit $NOFILE; ${busy}% CPU busy before start"

# ---------------------------------------------------------------- sizes
if [[ $QUICK == 1 ]]; then
	U1=200 K1=2 R1=500 D1=2s
	LADDER=(500 1000)
	LADDER_MIN=100
	WU=500 WD=2s
	BU=200 TU=200
	DRAIN=3s FANOUT_DRAIN=5s
else
	U1=2000 K1=2 R1=5000 D1=10s
	LADDER=(5000 10000 15000 20000)
	LADDER_MIN=600
	WU=7500 WD=20s
	BU=5000 TU=10000
	DRAIN=5s FANOUT_DRAIN=20s
fi
# Each process (server and load generator) holds one socket per waiting poll.
max_polls=$((NOFILE - 1000))
if ((WU * 2 > max_polls)); then
	WU=$((max_polls / 2))
	log "open files limit $NOFILE: waiters scenario reduced to $((WU * 2)) polls"
fi
if ((BU * 2 > max_polls)); then BU=$((max_polls / 2)); fi
if ((TU > max_polls)); then TU=$max_polls; fi

# ---------------------------------------------------------------- build
log "building"
go build -o "$tmp/loadgen" ./scripts/loadgen
if [[ ,$TARGETS, == *,pollbox,* ]]; then
	go build -o "$tmp/pollbox" .
fi
if [[ ,$TARGETS, == *,floor,* ]]; then
	go build -o "$tmp/floor" ./scripts/floor
fi

# ---------------------------------------------------------------- redis
free_port RPORT
mkdir -p "$tmp/redis"
redis-server --port "$RPORT" --bind 127.0.0.1 --dir "$tmp/redis" --save '' --appendonly no \
	--daemonize no --logfile "$tmp/redis.log" --maxclients 10000 &
pids+=($!)
wait_for "redis-server on port $RPORT" 10 redis_ping "$RPORT"
REDIS_URL="redis://127.0.0.1:$RPORT"
log "private redis-server on 127.0.0.1:$RPORT"

results=()   # "target|scenario|jsonfile"
# run_lg TARGET SCENARIO ARGS...: runs one loadgen scenario, keeps its JSON line.
run_lg() {
	local target=$1 name=$2
	shift 2
	local out="$tmp/$target-$name.log" js="$tmp/$target-$name.json"
	log "[$target] $name"
	if ! "$tmp/loadgen" -json -label "$name" -redis "$REDIS_URL" -drain "$DRAIN" "$@" >"$out" 2>&1; then
		echo "bench: loadgen failed for $target/$name" >&2
	fi
	grep -v '^{' "$out" >&2 || true
	grep '^{' "$out" | tail -n1 >"$js" || true
	results+=("$target|$name|$js")
}

passes() { # JSON file, target rate: sustained without loss and within the p99 limit
	local js=$1 rate=$2 lost p99 ach
	[[ -s $js ]] || return 1
	lost=$(jf "$js" lost) p99=$(jf "$js" delivery_p99_ms) ach=$(jf "$js" achieved_rate)
	awk -v l="$lost" -v p="$p99" -v a="$ach" -v r="$rate" -v lim="$P99_LIMIT_MS" \
		'BEGIN { exit !(l == 0 && p <= lim && a >= 0.95 * r) }'
}

ladder() { # target, extra loadgen args...
	local target=$1 rate best=0 fail=0 pubs mid
	shift
	for rate in "${LADDER[@]}"; do
		pubs=$((rate / 100 < 32 ? 32 : (rate / 100 > 200 ? 200 : rate / 100)))
		run_lg "$target" "ladder-$rate" -mode users -users "$U1" -clients "$K1" -rate "$rate" -duration "$D1" \
			-publishers "$pubs" "$@"
		if passes "$tmp/$target-ladder-$rate.json" "$rate"; then
			best=$rate
		else
			log "[$target] $rate msg/s not sustained (p99 > ${P99_LIMIT_MS} ms, loss or rate below 95%); stopping the ladder"
			fail=$rate
			break
		fi
	done
	# Nothing sustained: walk down (halving) to find what is.
	rate=${LADDER[0]}
	while ((best == 0 && rate / 2 >= LADDER_MIN)); do
		rate=$((rate / 2))
		run_lg "$target" "ladder-$rate" -mode users -users "$U1" -clients "$K1" -rate "$rate" -duration "$D1" "$@"
		if passes "$tmp/$target-ladder-$rate.json" "$rate"; then best=$rate; else fail=$rate; fi
	done
	# Two bisection steps between the best rate sustained and the lowest
	# that was not (in steps of 125 msg/s).
	for _ in 1 2; do
		((best > 0 && fail > best)) || break
		mid=$(((best + fail) / 2 / 125 * 125))
		((mid > best && mid < fail)) || break
		pubs=$((mid / 100 < 32 ? 32 : (mid / 100 > 200 ? 200 : mid / 100)))
		run_lg "$target" "ladder-$mid" -mode users -users "$U1" -clients "$K1" -rate "$mid" -duration "$D1" \
			-publishers "$pubs" "$@"
		if passes "$tmp/$target-ladder-$mid.json" "$mid"; then best=$mid; else fail=$mid; fi
	done
	if ((best == 0)); then best="< $rate"; fi
	echo "$best" >"$tmp/$target-best"
}

# ---------------------------------------------------------------- pollbox
if [[ ,$TARGETS, == *,pollbox,* ]]; then
	free_port PPORT
	SECRET=$(rand_hex 32)
	APIKEY=$(rand_hex 24)
	POLLBOX_REDIS_URL=$REDIS_URL POLLBOX_JWT_SECRET=$SECRET POLLBOX_ADDR=127.0.0.1:$PPORT \
		POLLBOX_API_KEYS=bench:$APIKEY POLLBOX_LOG_LEVEL=warn POLLBOX_MAX_POLLS_PER_USER=100 \
		POLLBOX_PUBLISH_RATE=0 \
		"$tmp/pollbox" >"$tmp/pollbox.log" 2>&1 &
	pollbox_pid=$!
	pids+=("$pollbox_pid")
	ready() { [[ $(http_status /readyz "$PPORT") == 200 ]]; }
	if ! wait_for "pollbox /readyz on port $PPORT" 30 ready; then
		tail -n 30 "$tmp/pollbox.log" >&2
		exit 1
	fi
	log "pollbox (pid $pollbox_pid) on 127.0.0.1:$PPORT"
	PB=(-url "http://127.0.0.1:$PPORT" -secret "$SECRET" -pub-token "bench:$APIKEY" -pid "$pollbox_pid")

	run_lg pollbox users -mode users -users "$U1" -clients "$K1" -rate "$R1" -duration "$D1" "${PB[@]}"
	ladder pollbox "${PB[@]}"
	run_lg pollbox waiters -mode waiters -users "$WU" -clients 2 -duration "$WD" -timeout 60 "${PB[@]}"
	run_lg pollbox broadcast -mode broadcast -users "$BU" -clients 2 "${PB[@]}" -drain "$FANOUT_DRAIN"
	run_lg pollbox batch -mode batch -users "$TU" -clients 1 "${PB[@]}" -drain "$FANOUT_DRAIN"

	if ! kill -0 "$pollbox_pid" 2>/dev/null; then
		log "pollbox exited during the benchmark; last log lines:"
		tail -n 30 "$tmp/pollbox.log" >&2
	elif [[ -s $tmp/pollbox.log ]]; then
		log "pollbox log (warnings and errors, first 20 lines):"
		head -n 20 "$tmp/pollbox.log" >&2
	fi
	stop_proc pollbox "$pollbox_pid" "$tmp/pollbox.log"
fi

# ---------------------------------------------------------------- Nchan
nchan_version=""
if [[ ,$TARGETS, == *,nchan,* ]]; then
	if command -v nginx >/dev/null && [[ -f $NCHAN_MODULE ]] && nginx -V >/dev/null 2>&1; then
		free_port NPORT
		nd="$tmp/nginx"
		mkdir -p "$nd"
		chmod 755 "$nd"
		wconn=$((NOFILE > 20000 ? 19000 : NOFILE - 1000))
		cat >"$nd/nginx.conf" <<EOF
load_module $NCHAN_MODULE;
worker_processes 1;
worker_rlimit_nofile $NOFILE;
pid $nd/nginx.pid;
error_log $nd/error.log warn;
events {
    worker_connections $wconn;
    multi_accept on;
}
http {
    access_log off;
    client_body_temp_path $nd/body;
    proxy_temp_path $nd/proxy;
    fastcgi_temp_path $nd/fastcgi;
    uwsgi_temp_path $nd/uwsgi;
    scgi_temp_path $nd/scgi;
    client_body_buffer_size 64k;
    keepalive_requests 10000000;
    keepalive_timeout 120s;

    upstream bench_redis {
        nchan_redis_server redis://127.0.0.1:$RPORT;
    }
    server {
        listen 127.0.0.1:$NPORT backlog=4096;
        location ~ ^/sub/([A-Za-z0-9_.-]+)$ {
            nchan_subscriber longpoll;
            nchan_channel_id \$1;
            nchan_redis_pass bench_redis;
            nchan_subscriber_first_message newest;
            nchan_subscriber_timeout 60s;
        }
        location ~ ^/pub/([A-Za-z0-9_.-]+)$ {
            nchan_publisher;
            nchan_channel_id \$1;
            nchan_redis_pass bench_redis;
            nchan_message_buffer_length 1000;
            nchan_message_timeout 1h;
        }
    }
}
EOF
		nginx -p "$nd" -e "$nd/error.log" -c "$nd/nginx.conf" -g 'daemon off; master_process on;' \
			>"$nd/stdout.log" 2>&1 &
		nginx_pid=$!
		nginx_up() { [[ $(http_status /none "$NPORT") != 000 ]]; }
		if wait_for "nginx on port $NPORT" 15 nginx_up; then
			worker=$(pgrep -P "$nginx_pid" -n 2>/dev/null || echo "$nginx_pid")
			nchan_version=$(dpkg-query -W -f='${Version}' libnginx-mod-nchan 2>/dev/null || echo "?")
			log "nginx $(nginx -v 2>&1 | sed 's|.*/||') + Nchan $nchan_version on 127.0.0.1:$NPORT (worker pid $worker)"
			NC=(-protocol nchan -nchan-sub "http://127.0.0.1:$NPORT/sub/%s"
				-nchan-pub "http://127.0.0.1:$NPORT/pub/%s" -pid "$worker")
			run_lg nchan users -mode users -users "$U1" -clients "$K1" -rate "$R1" -duration "$D1" "${NC[@]}"
			ladder nchan "${NC[@]}"
			run_lg nchan waiters -mode waiters -users "$WU" -clients 2 -duration "$WD" -timeout 60 "${NC[@]}"
			run_lg nchan broadcast -mode broadcast -users "$BU" -clients 2 "${NC[@]}" -drain "$FANOUT_DRAIN"
		else
			cat "$nd/error.log" "$nd/stdout.log" >&2 || true
		fi
		stop_proc nginx "$nginx_pid" "$nd/error.log"
		nginx_pid=""
	else
		log "Nchan comparison skipped: nginx with $NCHAN_MODULE not found."
		echo "  Debian/Ubuntu: sudo apt-get install nginx-light libnginx-mod-nchan" >&2
	fi
fi

# ---------------------------------------------------------------- floor
if [[ ,$TARGETS, == *,floor,* ]]; then
	free_port FPORT
	"$tmp/floor" -addr "127.0.0.1:$FPORT" >"$tmp/floor.log" 2>&1 &
	floor_pid=$!
	pids+=("$floor_pid")
	floor_up() { [[ $(http_status /metrics "$FPORT") == 200 ]]; }
	if wait_for "floor on port $FPORT" 15 floor_up; then
		log "floor (pid $floor_pid) on 127.0.0.1:$FPORT"
		FL=(-url "http://127.0.0.1:$FPORT" -secret unused -pub-token floor:unused -pid "$floor_pid")
		run_lg floor users -mode users -users "$U1" -clients "$K1" -rate "$R1" -duration "$D1" "${FL[@]}"
		ladder floor "${FL[@]}"
		run_lg floor broadcast -mode broadcast -users "$BU" -clients 2 "${FL[@]}" -drain "$FANOUT_DRAIN"
		run_lg floor batch -mode batch -users "$TU" -clients 1 "${FL[@]}" -drain "$FANOUT_DRAIN"
	else
		cat "$tmp/floor.log" >&2
	fi
	stop_proc floor "$floor_pid" "$tmp/floor.log"
fi

# ---------------------------------------------------------------- report
num() { # number with at most 1 decimal; "-" when empty
	[[ -z ${1:-} ]] && { echo "-"; return; }
	awk -v v="$1" 'BEGIN { if (v < 0) print "-"; else if (v == int(v)) printf "%d", v; else printf "%.1f", v }'
}
pct() { awk -v v="${1:--1}" 'BEGIN { if (v < 0) print "-"; else printf "%.0f%%", v }'; }
mibs() { [[ -z ${1:-} || ${1:-0} == 0 ]] && { echo "-"; return; }; awk -v v="$1" 'BEGIN { printf "%.0f MiB", v/1024 }'; }

row() { # target scenario json
	local t=$1 s=$2 js=$3 mode extra=""
	if [[ ! -s $js ]]; then
		echo "| $t | $s | failed | | | | | | | | | |"
		return
	fi
	mode=$(jf "$js" mode)
	local rate="-"
	case $mode in
	users) rate="$(num "$(jf "$js" target_rate)") → $(num "$(jf "$js" achieved_rate)")" ;;
	broadcast | batch)
		extra="publish call $(num "$(jf "$js" single_publish_ms)") ms; "
		if [[ $(jf "$js" lost) == 0 ]]; then
			extra+="all delivered after $(num "$(awk -v s="$(jf "$js" all_delivered_s)" 'BEGIN{print s*1000}')") ms"
		else
			extra+="not all delivered within $(num "$(jf "$js" drain_s)") s"
		fi
		;;
	waiters) extra="$(num "$(jf "$js" kib_per_client)") KiB RSS per waiting poll" ;;
	esac
	local deliv="-"
	[[ $mode != waiters ]] && deliv="$(jf "$js" delivered)/$(jf "$js" expected) ($(jf "$js" lost)/$(jf "$js" duplicated))"
	local lat="-"
	[[ $mode != waiters ]] && lat="$(num "$(jf "$js" delivery_p50_ms)") / $(num "$(jf "$js" delivery_p99_ms)") / $(num "$(jf "$js" delivery_max_ms)")"
	local pub="-"
	[[ $mode == users ]] && pub="$(num "$(jf "$js" publish_p50_ms)") / $(num "$(jf "$js" publish_p99_ms)")"
	local cpu
	cpu="$(pct "$(jf "$js" server_cpu_pct)") / $(pct "$(jf "$js" redis_cpu_pct)") / $(pct "$(jf "$js" loadgen_cpu_pct)")"
	echo "| $t | $s | $(jf "$js" connected) | $rate | $deliv | $(jf "$js" poll_errors) | $lat | $pub | $cpu | $(mibs "$(jf "$js" rss_peak_kib)") | $(jf "$js" redis_conns_peak) | $extra |"
}

echo
echo "## Benchmark results"
echo
echo "Machine: $machine. Everything on one machine (server, Redis, load generator); delivery latency is"
echo "measured from just before the publish call to the client receiving the message. CPU is % of one core"
echo "averaged over the measured phase. ${busy}% of the machine's CPU was busy with other work before the start."
[[ $QUICK == 1 ]] && echo "**BENCH_QUICK=1: smoke-test sizes, not representative.**"
echo
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

if [[ -f $tmp/pollbox-best && -f $tmp/nchan-best ]]; then
	a="$tmp/pollbox-users.json" b="$tmp/nchan-users.json"
	ratio() {
		awk -v x="${1:-}" -v y="${2:-}" 'BEGIN {
			if (x !~ /^[0-9.]+$/ || y !~ /^[0-9.]+$/ || y + 0 == 0) print "-"; else printf "%.2f", x / y }'
	}
	cmp() { # label key [scenario]
		local x y
		x=$(jf "$tmp/pollbox-${3:-users}.json" "$2") y=$(jf "$tmp/nchan-${3:-users}.json" "$2")
		echo "| $1 | $(num "$x") | $(num "$y") | $(ratio "$x" "$y") |"
	}
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
	x=$(cat "$tmp/pollbox-best") y=$(cat "$tmp/nchan-best")
	echo "| Highest sustained msg/s | $x | $y | $(ratio "$x" "$y") |"
	cmp "KiB RSS per waiting poll ($((WU * 2)) polls)" kib_per_client waiters
	cmp "Broadcast publish call (ms, $((BU * 2)) clients)" single_publish_ms broadcast
	cmp "Broadcast delivery p50 (ms)" delivery_p50_ms broadcast
	cmp "Broadcast: all delivered after (s)" all_delivered_s broadcast
fi
