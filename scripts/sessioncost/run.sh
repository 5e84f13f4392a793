#!/usr/bin/env bash
# scripts/sessioncost/run.sh POLLBOX_BINARY LABEL [sessioncost flags]: a private redis-server and one
# pollbox with POLLBOX_SESSION_KEY_PREFIX=online-token- on free loopback ports, then sessioncost
# against them (go build -o /tmp/sessioncost ./scripts/sessioncost; SESSIONCOST overrides the path).
set -euo pipefail
BIN=$1 LABEL=$2
tmp=$(mktemp -d /tmp/sessioncost.XXXXXX)
pids=()
cleanup() { set +e; for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done; for p in "${pids[@]}"; do wait "$p" 2>/dev/null; done; rm -rf "$tmp"; }
trap cleanup EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
rp=$(port)
redis-server --port "$rp" --bind 127.0.0.1 --dir "$tmp" --save '' --appendonly no --maxclients 10000 >"$tmp/redis.log" 2>&1 &
pids+=($!)
until redis-cli -p "$rp" ping >/dev/null 2>&1; do sleep 0.1; done
secret=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
hp=$(port)
env POLLBOX_REDIS_URL="redis://127.0.0.1:$rp" POLLBOX_JWT_SECRET="$secret" POLLBOX_ADDR="127.0.0.1:$hp" \
	POLLBOX_SESSION_KEY_PREFIX=online-token- POLLBOX_LOG_LEVEL=warn "$BIN" >"$tmp/pollbox.log" 2>&1 &
pb=$!
pids+=($pb)
until curl -fs "http://127.0.0.1:$hp/readyz" >/dev/null 2>&1; do sleep 0.1; done
echo "== $LABEL"
"${SESSIONCOST:-/tmp/sessioncost}" -url "http://127.0.0.1:$hp" -secret "$secret" -redis "redis://127.0.0.1:$rp" -pid "$pb" "${@:3}"
