#!/usr/bin/env bash
# Idle-instance cost of wake-ups: two pollbox processes on one private Redis
# (single node or a private 3-master cluster); loadgen drives instance A
# (USERS users x 2 clients, RATE msg/s for DUR); instance B serves no poll.
# Prints CPU seconds (utime+stime from /proc/<pid>/stat) of A and B over the
# loadgen run (setup, publishing and drain), per message published, and the
# Redis pub/sub channel counts afterwards (channels linger 2 minutes).
#
#   scripts/idlecost.sh POLLBOX_BINARY LOADGEN_BINARY single|cluster
#   (go build -o /tmp/pollbox . && go build -o /tmp/loadgen ./scripts/loadgen)
set -euo pipefail
BIN=$1 LG=$2 MODE=$3
RATE=${RATE:-4000} USERS=${USERS:-2000} DUR=${DUR:-10s}
tmp=$(mktemp -d /tmp/scaleout.XXXXXX)
pids=()
cleanup() {
	set +e
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null; done
	rm -rf "$tmp"
}
trap cleanup EXIT
# free port p with p+10000 free too (cluster bus)
port() {
	python3 - <<-'EOF'
	import socket, random
	while True:
	    p = random.randint(12000, 21999)
	    try:
	        for q in (p, p + 10000):
	            s = socket.socket(); s.bind(("127.0.0.1", q)); s.close()
	        print(p); break
	    except OSError:
	        pass
	EOF
}
cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; } # clock ticks
hz=$(getconf CLK_TCK)
rcli() { redis-cli -h 127.0.0.1 -p "$1" "${@:2}"; }

if [[ $MODE == single ]]; then
	rp=$(port)
	redis-server --port "$rp" --bind 127.0.0.1 --dir "$tmp" --save '' --appendonly no --maxclients 10000 >"$tmp/redis.log" 2>&1 &
	pids+=($!)
	nodes=("$rp")
	until rcli "$rp" ping >/dev/null 2>&1; do sleep 0.1; done
	RENV=(POLLBOX_REDIS_URL="redis://127.0.0.1:$rp")
else
	nodes=()
	addrs=()
	for i in 1 2 3; do
		p=$(port)
		mkdir -p "$tmp/n$i"
		redis-server --port "$p" --bind 127.0.0.1 --dir "$tmp/n$i" --save '' --appendonly no --maxclients 10000 \
			--cluster-enabled yes --cluster-config-file nodes.conf >"$tmp/n$i.log" 2>&1 &
		pids+=($!)
		nodes+=("$p")
		addrs+=("127.0.0.1:$p")
		until rcli "$p" ping >/dev/null 2>&1; do sleep 0.1; done
	done
	redis-cli --cluster create "${addrs[@]}" --cluster-replicas 0 --cluster-yes >"$tmp/create.log" 2>&1
	for p in "${nodes[@]}"; do
		until rcli "$p" cluster info | tr -d '\r' | grep -qx 'cluster_state:ok'; do sleep 0.2; done
	done
	RENV=(POLLBOX_REDIS_CLUSTER_ADDRS="$(
		IFS=,
		echo "${addrs[*]}"
	)")
fi

secret=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
key=$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')
start() { # name port
	env "${RENV[@]}" POLLBOX_JWT_SECRET="$secret" POLLBOX_ADDR="127.0.0.1:$2" POLLBOX_API_KEYS="bench:$key" \
		POLLBOX_LOG_LEVEL=warn POLLBOX_MAX_POLLS_PER_USER=100 POLLBOX_PUBLISH_RATE=0 "$BIN" >"$tmp/$1.log" 2>&1 &
	pids+=($!)
	eval "$1_pid=$!"
	until curl -fs "http://127.0.0.1:$2/readyz" >/dev/null 2>&1; do sleep 0.1; done
}
ap=$(port)
bp=$(port)
start A "$ap"
start B "$bp"
# Sample both processes' CPU every 0.25 s while loadgen runs; the figures
# below cover only the publishing window (after setup and settle, before the
# drain), from the loadgen JSON's setup_s and publish_window_s.
t0=$(date +%s.%N)
(
	while :; do
		echo "$(date +%s.%N) $(cpu "$A_pid") $(cpu "$B_pid")"
		sleep 0.25
	done
) >"$tmp/samples" &
sampler=$!
"$LG" -url "http://127.0.0.1:$ap" -secret "$secret" -pub-token "bench:$key" -mode users -users "$USERS" -clients 2 \
	-rate "$RATE" -duration "$DUR" -json >"$tmp/lg.log" 2>&1 || { tail -20 "$tmp/lg.log"; exit 1; }
kill "$sampler"
wait "$sampler" 2>/dev/null || true
grep -E "^(deliveries|delivery lat)" "$tmp/lg.log" || true
echo "mode=$MODE binary=$BIN users=$USERS rate=$RATE dur=$DUR"
tail -1 "$tmp/lg.log" | python3 -c '
import json, sys
r = json.load(sys.stdin)
t0, hz = float(sys.argv[1]), float(sys.argv[2])
s = [tuple(map(float, l.split())) for l in open(sys.argv[3]) if len(l.split()) == 3]
lo = t0 + r["setup_s"] + 1.5          # settle is 1 s
hi = t0 + r["setup_s"] + 1 + r["publish_window_s"] - 0.5
w = [x for x in s if lo <= x[0] <= hi]
a, b = w[0], w[-1]
secs = b[0] - a[0]
msgs = r["achieved_rate"] * secs
ca, cb = (b[1] - a[1]) / hz, (b[2] - a[2]) / hz
print("publishing window %.1f s at %.0f msg/s (%d published in all, %d delivered, lost %d):" % (secs, r["achieved_rate"], r["published"], r["delivered"], r["lost"]))
print("  A cpu %.2f s = %.0f %% of a core, %.0f us/msg" % (ca, 100 * ca / secs, 1e6 * ca / msgs))
print("  B cpu %.2f s = %.1f %% of a core, %.1f us/msg; B/A %.2f %%" % (cb, 100 * cb / secs, 1e6 * cb / msgs, 100 * cb / ca))
' "$t0" "$hz" "$tmp/samples"
for p in "${nodes[@]}"; do
	echo "redis :$p $(rcli "$p" info stats | tr -d '\r' | grep -E '^pubsub(shard)?_channels' | tr '\n' ' ')"
done
