#!/usr/bin/env bash
# Benchmark pollbox on this machine (and Nchan for comparison, when nginx with
# the Nchan module is installed). Everything runs on 127.0.0.1 with a private
# redis-server and is cleaned up on exit.
#
#   scripts/bench.sh                  full run (10-15 minutes with Nchan)
#   BENCH_QUICK=1 scripts/bench.sh    small smoke-test version of every scenario
#   BENCH_TARGETS=pollbox             skip the comparisons (default pollbox,unparked,nchan,floor;
#                                     "unparked" is pollbox with POLLBOX_PARK_POLLS=off)
#
# Scenarios (each "users"-mode run: 2000 users x 2 clients for 10 s, one
# publish to one user at a time, at a fixed rate):
#  (1) users: 5,000 msg/s, with CPU per delivered message;
#  (2) lat-2500: 2,500 msg/s, for delivery latency below the limit (twice
#      the publishers of the ladder, so that the rate is reached);
#  (3) rate ladder 5k/10k/15k/20k msg/s, stopping when p99 > 50 ms, a message
#      is lost or the rate is not reached (halving down from 5k when even that
#      is not sustained), then two bisection steps between the best rate
#      sustained and the lowest that was not;
#  (4) waiters: 15,000 waiting polls for 20 s on a fresh server process (RSS
#      per poll, Redis connections); pollbox twice, with the smpe-admin
#      session check off and on (POLLBOX_SESSION_KEY_PREFIX, the load
#      generator creating every token's session key first);
#  (5) one broadcast to 10,000 waiting clients; (6) one publish to 10,000
#      listed recipients;
#  (7) overload: 1.5 x pollbox's highest sustained rate, the same for every
#      server, with four times the ladder's publishers (each waits for its
#      answer), to show what each does past pollbox's limit (loss, errors).
# Nchan gets all but (6), which has no Nchan equivalent. "floor"
# (scripts/floor) is the least a net/http long-poll server can do: in-memory,
# no Redis, no checks. It gets all but (4) and shows how much of each figure
# is the machine and net/http rather than pollbox.
#
# The server, Redis and the load generator share this machine's CPUs: the
# report shows each one's CPU use, and the numbers are only as good as the
# machine is idle.
set -euo pipefail

# The command line as typed, with the environment that changes the run.
shq() { if [[ $1 =~ ^[A-Za-z0-9_.,/:=+-]+$ ]]; then printf '%s' "$1"; else printf '%q' "$1"; fi; }
command_line=""
for v in BENCH_QUICK BENCH_TARGETS NCHAN_MODULE TMPDIR; do
	[[ -n ${!v:-} ]] && command_line+="$v=$(shq "${!v}") "
done
command_line+="bash"
for a in "$0" "$@"; do command_line+=" $(shq "$a")"; done
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/bench-lib.sh
. scripts/bench-lib.sh
QUICK=${BENCH_QUICK:-0}
TARGETS=${BENCH_TARGETS:-pollbox,unparked,nchan,floor}
NCHAN_MODULE=${NCHAN_MODULE:-/usr/lib/nginx/modules/ngx_nchan_module.so}
P99_LIMIT_MS=50
SESSION_PREFIX=online-token-

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

# ---------------------------------------------------------------- machine
ulimit -n "$(ulimit -Hn)" 2>/dev/null || ulimit -n 65536 2>/dev/null || true
NOFILE=$(ulimit -n)
[[ $NOFILE == unlimited ]] && NOFILE=1048576
cpu_model=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n1)
mem_total=$(awk '/^MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo)
busy=$(cpu_busy)
if ((busy > 20)); then
	log "warning: the machine is already ${busy}% busy before the benchmark starts; results will be low and noisy"
fi
machine="$(nproc) CPUs (${cpu_model:-unknown}), $mem_total RAM, $(uname -sr), $(go version | awk '{print $3}'), $(redis-server --version | awk '{print $3}' | tr -d 'v=')"
log "machine: $machine; open files limit $NOFILE; ${busy}% CPU busy before start"

# ---------------------------------------------------------------- sizes
if [[ $QUICK == 1 ]]; then
	U1=200 K1=2 R1=500 R2=250 D1=2s
	LADDER=(500 1000)
	LADDER_MIN=100
	WU=500 WD=2s
	BU=200 TU=200
	DRAIN=3s FANOUT_DRAIN=5s
else
	U1=2000 K1=2 R1=5000 R2=2500 D1=10s
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
if [[ ,$TARGETS, == *,pollbox,* || ,$TARGETS, == *,unparked,* ]]; then
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

results=() # "target|scenario|jsonfile"
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

# rated TARGET SCENARIO RATE ARGS...: U1 users × K1 clients, one-recipient
# publishes at RATE msg/s for D1. Each publisher waits for its answer: rate/100
# of them (32 to 200) sustain the rate while a publish takes under 10 ms;
# PUB_X (default 1) multiplies that, so that a slower server is still offered
# the rate instead of the publishers slowing down with it.
rated() {
	local target=$1 name=$2 rate=$3 pubs
	shift 3
	pubs=$((rate / 100 < 32 ? 32 : (rate / 100 > 200 ? 200 : rate / 100)))
	pubs=$((pubs * ${PUB_X:-1}))
	run_lg "$target" "$name" -mode users -users "$U1" -clients "$K1" -rate "$rate" -duration "$D1" \
		-publishers "$pubs" "$@"
}

passes() { # JSON file, target rate: sustained without loss and within the p99 limit
	local js=$1 rate=$2 lost p99 ach
	[[ -s $js ]] || return 1
	lost=$(jf "$js" lost) p99=$(jf "$js" delivery_p99_ms) ach=$(jf "$js" achieved_rate)
	awk -v l="$lost" -v p="$p99" -v a="$ach" -v r="$rate" -v lim="$P99_LIMIT_MS" \
		'BEGIN { exit !(l == 0 && p <= lim && a >= 0.95 * r) }'
}

ladder() { # target, extra loadgen args...
	local target=$1 rate best=0 fail=0 mid
	shift
	for rate in "${LADDER[@]}"; do
		rated "$target" "ladder-$rate" "$rate" "$@"
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
		rated "$target" "ladder-$rate" "$rate" "$@"
		if passes "$tmp/$target-ladder-$rate.json" "$rate"; then best=$rate; else fail=$rate; fi
	done
	# Two bisection steps between the best rate sustained and the lowest
	# that was not (in steps of 125 msg/s).
	for _ in 1 2; do
		((best > 0 && fail > best)) || break
		mid=$(((best + fail) / 2 / 125 * 125))
		((mid > best && mid < fail)) || break
		rated "$target" "ladder-$mid" "$mid" "$@"
		if passes "$tmp/$target-ladder-$mid.json" "$mid"; then best=$mid; else fail=$mid; fi
	done
	if ((best == 0)); then best="< $rate"; fi
	echo "$best" >"$tmp/$target-best"
}

# overload TARGET ARGS...: the users scenario at 1.5 × pollbox's highest
# sustained rate (this target's own when pollbox was not measured), rounded
# to 125 msg/s.
overload() {
	local target=$1 base rate
	shift
	base=$(cat "$tmp/pollbox-best" 2>/dev/null || true)
	[[ $base =~ ^[0-9]+$ ]] || base=$(cat "$tmp/$target-best" 2>/dev/null || true)
	if ! [[ $base =~ ^[1-9][0-9]*$ ]]; then
		log "[$target] overload skipped: no sustained rate to start from"
		return 0
	fi
	rate=$(((base * 3 / 2 + 62) / 125 * 125))
	echo "$rate" >"$tmp/$target-overload-rate"
	PUB_X=4 rated "$target" overload "$rate" "$@"
}

# latency TARGET ARGS...: the users scenario at R2 msg/s, with twice the
# publishers so that the rate is reached when the server can take it.
latency() { PUB_X=2 rated "$1" "lat-$R2" "$R2" "${@:2}"; }

# ---------------------------------------------------------------- pollbox
# start_pollbox NAME [VAR=value...]: a fresh pollbox process (extra
# environment given) on a new port; sets pollbox_pid and PB (loadgen flags).
start_pollbox() {
	local name=$1
	shift
	free_port PPORT
	pollbox_log="$tmp/pollbox-$name-server.log"
	env POLLBOX_REDIS_URL="$REDIS_URL" POLLBOX_JWT_SECRET="$SECRET" POLLBOX_ADDR="127.0.0.1:$PPORT" \
		POLLBOX_API_KEYS="bench:$APIKEY" POLLBOX_LOG_LEVEL=warn POLLBOX_MAX_POLLS_PER_USER=100 \
		POLLBOX_PUBLISH_RATE=0 "$@" "$tmp/pollbox" >"$pollbox_log" 2>&1 &
	pollbox_pid=$!
	pids+=("$pollbox_pid")
	ready() { [[ $(http_status /readyz "$PPORT") == 200 ]]; }
	if ! wait_for "pollbox /readyz on port $PPORT" 30 ready; then
		tail -n 30 "$pollbox_log" >&2
		exit 1
	fi
	log "pollbox (pid $pollbox_pid${*:+, $*}) on 127.0.0.1:$PPORT"
	PB=(-url "http://127.0.0.1:$PPORT" -secret "$SECRET" -pub-token "bench:$APIKEY" -pid "$pollbox_pid")
}

stop_pollbox() {
	if ! kill -0 "$pollbox_pid" 2>/dev/null; then
		log "pollbox exited during the benchmark; last log lines:"
		tail -n 30 "$pollbox_log" >&2
	elif [[ -s $pollbox_log ]]; then
		log "pollbox log (warnings and errors, first 20 lines):"
		head -n 20 "$pollbox_log" >&2
	fi
	stop_proc pollbox "$pollbox_pid" "$pollbox_log"
	forget_pid "$pollbox_pid"
}

if [[ ,$TARGETS, == *,pollbox,* ]]; then
	SECRET=$(rand_hex 32)
	APIKEY=$(rand_hex 24)
	WAIT=(-mode waiters -users "$WU" -clients 2 -duration "$WD" -timeout 60)

	start_pollbox waiters
	run_lg pollbox waiters "${WAIT[@]}" "${PB[@]}"
	stop_pollbox
	start_pollbox waiters-session POLLBOX_SESSION_KEY_PREFIX="$SESSION_PREFIX"
	run_lg pollbox waiters-session "${WAIT[@]}" "${PB[@]}" -session-prefix "$SESSION_PREFIX"
	stop_pollbox

	start_pollbox main
	rated pollbox users "$R1" "${PB[@]}"
	latency pollbox "${PB[@]}"
	ladder pollbox "${PB[@]}"
	run_lg pollbox broadcast -mode broadcast -users "$BU" -clients 2 "${PB[@]}" -drain "$FANOUT_DRAIN"
	run_lg pollbox batch -mode batch -users "$TU" -clients 1 "${PB[@]}" -drain "$FANOUT_DRAIN"
	overload pollbox "${PB[@]}"
	stop_pollbox
fi

# pollbox with every waiting poll in its request's goroutine, side by side
# with the default (parked polls): memory per waiting poll and the users
# and latency runs, each on a fresh process.
if [[ ,$TARGETS, == *,unparked,* ]]; then
	SECRET=${SECRET:-$(rand_hex 32)}
	APIKEY=${APIKEY:-$(rand_hex 24)}
	start_pollbox waiters-unparked POLLBOX_PARK_POLLS=off
	run_lg pollbox-unparked waiters -mode waiters -users "$WU" -clients 2 -duration "$WD" -timeout 60 "${PB[@]}"
	stop_pollbox
	start_pollbox unparked POLLBOX_PARK_POLLS=off
	rated pollbox-unparked users "$R1" "${PB[@]}"
	latency pollbox-unparked "${PB[@]}"
	stop_pollbox
fi

# ---------------------------------------------------------------- Nchan
nchan_conf() {
	local wconn=$((NOFILE > 20000 ? 19000 : NOFILE - 1000))
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
}

# start_nginx: a fresh nginx + Nchan (one worker); sets nginx_pid and NC
# (loadgen flags), or returns 1.
start_nginx() {
	free_port NPORT
	nchan_conf
	nginx -p "$nd" -e "$nd/error.log" -c "$nd/nginx.conf" -g 'daemon off; master_process on;' \
		>>"$nd/stdout.log" 2>&1 &
	nginx_pid=$!
	nginx_up() { [[ $(http_status /none "$NPORT") != 000 ]]; }
	if ! wait_for "nginx on port $NPORT" 15 nginx_up; then
		cat "$nd/error.log" "$nd/stdout.log" >&2 || true
		return 1
	fi
	local worker
	worker=$(pgrep -P "$nginx_pid" -n 2>/dev/null || echo "$nginx_pid")
	log "nginx $(nginx -v 2>&1 | sed 's|.*/||') + Nchan $nchan_version on 127.0.0.1:$NPORT (worker pid $worker)"
	NC=(-protocol nchan -nchan-sub "http://127.0.0.1:$NPORT/sub/%s"
		-nchan-pub "http://127.0.0.1:$NPORT/pub/%s" -pid "$worker")
}

stop_nginx() {
	[[ -n $nginx_pid ]] && stop_proc nginx "$nginx_pid" "$nd/error.log"
	nginx_pid=""
}

nchan_version=""
if [[ ,$TARGETS, == *,nchan,* ]]; then
	if command -v nginx >/dev/null && [[ -f $NCHAN_MODULE ]] && nginx -V >/dev/null 2>&1; then
		nd="$tmp/nginx"
		mkdir -p "$nd"
		chmod 755 "$nd"
		nchan_version=$(dpkg-query -W -f='${Version}' libnginx-mod-nchan 2>/dev/null || echo "?")
		if start_nginx; then
			run_lg nchan waiters -mode waiters -users "$WU" -clients 2 -duration "$WD" -timeout 60 "${NC[@]}"
		fi
		stop_nginx
		if start_nginx; then
			rated nchan users "$R1" "${NC[@]}"
			latency nchan "${NC[@]}"
			ladder nchan "${NC[@]}"
			run_lg nchan broadcast -mode broadcast -users "$BU" -clients 2 "${NC[@]}" -drain "$FANOUT_DRAIN"
			overload nchan "${NC[@]}"
		fi
		stop_nginx
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
		rated floor users "$R1" "${FL[@]}"
		latency floor "${FL[@]}"
		ladder floor "${FL[@]}"
		run_lg floor broadcast -mode broadcast -users "$BU" -clients 2 "${FL[@]}" -drain "$FANOUT_DRAIN"
		run_lg floor batch -mode batch -users "$TU" -clients 1 "${FL[@]}" -drain "$FANOUT_DRAIN"
		overload floor "${FL[@]}"
	else
		cat "$tmp/floor.log" >&2
	fi
	stop_proc floor "$floor_pid" "$tmp/floor.log"
	forget_pid "$floor_pid"
fi

# ---------------------------------------------------------------- report
echo
echo "## Benchmark results"
echo
echo "Command: \`$command_line\`"
echo
echo "Machine: $machine. Everything on one machine (server, Redis, load generator); delivery latency is"
echo "measured from just before the publish call to the client receiving the message. CPU is % of one core"
echo "averaged over the measured phase (publishing, then until every message arrived or the drain time ended)."
echo "${busy}% of the machine's CPU was busy with other work before the start. The waiters rows each ran on a"
echo "fresh server process; \"users\" (${R1} msg/s) and \"lat-${R2}\" use ${U1} users × ${K1} clients for ${D1}."
[[ $QUICK == 1 ]] && echo "**BENCH_QUICK=1: smoke-test sizes, not representative.**"
echo
print_results
print_overload
if [[ -f $tmp/pollbox-best && -f $tmp/nchan-best ]]; then
	print_comparison
fi
if [[ ,$TARGETS, == *,pollbox,* ]]; then
	print_targets
fi
echo
echo "Command: \`$command_line\`"
echo "Machine: $machine"
