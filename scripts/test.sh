#!/usr/bin/env bash
# pollbox test command.
#
#   scripts/test.sh                    # all packages
#   scripts/test.sh -run TestX ./poll  # arguments replace ./... in `go test`
#                                      # (and the extra checks are skipped)
#
# Starts a private redis-server and a private 3-master Redis Cluster on free
# loopback ports with temporary directories, exports
# POLLBOX_TEST_REDIS_URL and POLLBOX_TEST_CLUSTER_ADDRS so that every test
# binary shares them (see internal/redistest), runs `go test -race`, then the
# extra checks (short fuzz runs, ES5 check of the browser client), and stops
# everything on exit, also on failure or Ctrl-C. A variable already set in the
# environment is used as it is and that server is not started.
#
# Environment:
#   FUZZTIME   budget per fuzz target, as go test's -fuzztime takes it
#              (default 50000x, an execution count; 0 or "off" skips fuzzing)
#   ES_CHECK   path of an es-check executable (set by .ci/run); else the one
#              .ci/run installs under $POLLBOX_CI_PREFIX, else npx runs the
#              version pinned in .ci/run (ES_CHECK_VERSION)
#
# It never touches a Redis it did not start (such as one on 127.0.0.1:6379).
set -euo pipefail

cd "$(dirname "$0")/.."

# A count rather than a duration: Go 1.26's fuzzing coordinator can report
# "context deadline exceeded" at the end of a timed run on a busy machine,
# a failure with no input behind it. A count has no deadline to race.
FUZZTIME="${FUZZTIME:-50000x}"

die() { echo "test.sh: $*" >&2; exit 1; }

for bin in redis-server redis-cli; do
	if ! command -v "$bin" >/dev/null 2>&1; then
		cat >&2 <<-'EOF'
		test.sh: redis-server and redis-cli are needed to run the pollbox tests.
		  Debian/Ubuntu: sudo apt-get install redis-server redis-tools
		  macOS:         brew install redis
		(.ci/run installs them automatically.)
		EOF
		exit 1
	fi
done
command -v go >/dev/null 2>&1 || die "go not found on PATH"

TMP_ROOT="$(mktemp -d "${TMPDIR:-/tmp}/pollbox-test.XXXXXX")"
PIDS=()

# Stop every redis-server this script started: SIGTERM, then SIGKILL for any
# that is still there after 10 s. Runs on every exit.
cleanup() {
	local rc=$? pid i
	trap - EXIT INT TERM
	for pid in ${PIDS[@]+"${PIDS[@]}"}; do
		kill -TERM "$pid" 2>/dev/null || true
	done
	for pid in ${PIDS[@]+"${PIDS[@]}"}; do
		for ((i = 0; i < 100; i++)); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		kill -KILL "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	done
	rm -rf "$TMP_ROOT"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# port_listening PORT: true when something accepts connections on it.
port_listening() {
	(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# pick_port [cluster]: sets PICKED_PORT to a port nothing listens on (a
# global, not output: a $(subshell) would lose USED_PORTS). Ports stay below
# Linux's ephemeral range (32768 and up), where outgoing connections and the
# ports test binaries take from the kernel would collide with them: 20000-31999,
# and for a cluster node 12000-21999 so that its bus port (port+10000, which
# must be free too) stays below as well. Ports handed out earlier are never
# reused.
USED_PORTS=" "
PICKED_PORT=
pick_port() {
	local port i
	for ((i = 0; i < 500; i++)); do
		if [ "${1:-}" = cluster ]; then
			port=$((12000 + (RANDOM % 10000)))
		else
			port=$((20000 + (RANDOM % 12000)))
		fi
		case "$USED_PORTS" in *" $port "* | *" $((port + 10000)) "*) continue ;; esac
		port_listening "$port" && continue
		if [ "${1:-}" = cluster ]; then
			port_listening "$((port + 10000))" && continue
		fi
		USED_PORTS="$USED_PORTS$port $((port + 10000)) "
		PICKED_PORT=$port
		return 0
	done
	die "no free port found on 127.0.0.1"
}

# wait_ready PORT PID: waits until that very process answers PING (not some
# other server that took the port first). Fails if it exits or takes > 20 s.
wait_ready() {
	local port=$1 pid=$2 i
	for ((i = 0; i < 400; i++)); do
		kill -0 "$pid" 2>/dev/null || return 1
		if [ "$(redis-cli -h 127.0.0.1 -p "$port" ping 2>/dev/null)" = PONG ] &&
			redis-cli -h 127.0.0.1 -p "$port" info server 2>/dev/null | tr -d '\r' | grep -qx "process_id:$pid"; then
			return 0
		fi
		sleep 0.05
	done
	return 1
}

# start_redis NAME [cluster] [extra redis-server args...]: starts a throw-away
# redis-server (loopback only, no persistence) in $TMP_ROOT/NAME-PORT and sets
# STARTED_PORT. A server that cannot bind its port is tried again elsewhere.
STARTED_PORT=
start_redis() {
	local name=$1 mode="" port dir pid attempt
	shift
	if [ "${1:-}" = cluster ]; then
		mode=cluster
		shift
	fi
	for ((attempt = 0; attempt < 8; attempt++)); do
		pick_port "$mode"
		port=$PICKED_PORT
		dir="$TMP_ROOT/$name-$port"
		mkdir -p "$dir"
		redis-server --port "$port" --bind 127.0.0.1 --dir "$dir" \
			--save "" --appendonly no --daemonize no "$@" >"$dir/redis.log" 2>&1 &
		pid=$!
		PIDS+=("$pid")
		if wait_ready "$port" "$pid"; then
			STARTED_PORT=$port
			return 0
		fi
		echo "test.sh: redis-server for $name did not start on port $port:" >&2
		tail -n 20 "$dir/redis.log" >&2 || true
		kill -KILL "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	done
	die "could not start redis-server for $name"
}

# start_cluster: three masters joined by redis-cli; waits until every node
# reports cluster_state:ok with all 16384 slots and 3 known nodes.
start_cluster() {
	local addrs=() port i addr info ok
	for i in 1 2 3; do
		start_redis "cluster$i" cluster \
			--cluster-enabled yes --cluster-config-file nodes.conf
		addrs+=("127.0.0.1:$STARTED_PORT")
	done
	if ! redis-cli --cluster create "${addrs[@]}" --cluster-replicas 0 --cluster-yes \
		>"$TMP_ROOT/cluster-create.log" 2>&1; then
		cat "$TMP_ROOT/cluster-create.log" >&2
		die "redis-cli --cluster create failed"
	fi
	for addr in "${addrs[@]}"; do
		port=${addr##*:}
		ok=
		for ((i = 0; i < 600; i++)); do
			info="$(redis-cli -h 127.0.0.1 -p "$port" cluster info 2>/dev/null | tr -d '\r')" || true
			if grep -qx 'cluster_state:ok' <<<"$info" &&
				grep -qx 'cluster_slots_assigned:16384' <<<"$info" &&
				grep -qx 'cluster_slots_ok:16384' <<<"$info" &&
				grep -qx 'cluster_known_nodes:3' <<<"$info"; then
				ok=1
				break
			fi
			sleep 0.1
		done
		[ -n "$ok" ] || { echo "$info" >&2; die "cluster node $addr never became ready"; }
	done
	CLUSTER_ADDRS="$(IFS=,; echo "${addrs[*]}")"
}

if [ -n "${POLLBOX_TEST_REDIS_URL:-}" ]; then
	echo "==> using POLLBOX_TEST_REDIS_URL=$POLLBOX_TEST_REDIS_URL from the environment"
else
	start_redis single
	export POLLBOX_TEST_REDIS_URL="redis://127.0.0.1:$STARTED_PORT"
	echo "==> redis-server on $POLLBOX_TEST_REDIS_URL"
fi
if [ -n "${POLLBOX_TEST_CLUSTER_ADDRS:-}" ]; then
	echo "==> using POLLBOX_TEST_CLUSTER_ADDRS=$POLLBOX_TEST_CLUSTER_ADDRS from the environment"
else
	start_cluster
	export POLLBOX_TEST_CLUSTER_ADDRS="$CLUSTER_ADDRS"
	echo "==> Redis Cluster on $POLLBOX_TEST_CLUSTER_ADDRS"
fi

PASSED=0
FAILED=0
SKIPPED=0
FAILED_STEPS=()

# step NAME CMD...: runs one check and records its outcome.
step() {
	local name=$1
	shift
	echo "==> $name"
	if "$@"; then
		PASSED=$((PASSED + 1))
	else
		FAILED=$((FAILED + 1))
		FAILED_STEPS+=("$name")
		echo "==> FAILED: $name" >&2
	fi
}

skip() {
	SKIPPED=$((SKIPPED + 1))
	echo "==> SKIPPED: $*" >&2
}

# ---------------------------------------------------------------------------
# extra_checks: checks beyond `go test`. Each one runs only when the files it
# checks exist, so new checks can be added here before their code lands.
# ---------------------------------------------------------------------------
extra_checks() {
	# Measurements the race detector distorts (it enlarges stack frames)
	# run once more without it.
	step "go test -count=1 -run 'WithoutRace' ./..." go test -count=1 -run 'WithoutRace' ./...

	# Waiting polls are parked by default; the end-to-end and HTTP-layer
	# tests run once more with every poll waiting in its request
	# (POLLBOX_PARK_POLLS=off).
	step "go test -race -count=1 . ./poll (POLLBOX_TEST_PARK_POLLS=off)" env POLLBOX_TEST_PARK_POLLS=off go test -race -count=1 . ./poll

	# Fuzzing: every `func FuzzXxx` in a *_test.go file runs for $FUZZTIME
	# (-timeout turns an input that hangs into a failure with stacks).
	if [ "$FUZZTIME" = 0 ] || [ "$FUZZTIME" = off ]; then
		skip "fuzzing (FUZZTIME=$FUZZTIME)"
	else
		local line file dir name
		# grep prints "./dir/x_test.go:func FuzzName(". The list is read on fd 3
		# so that nothing run in the loop can consume it from stdin.
		while IFS= read -r line <&3; do
			file=${line%%:*}
			name=${line#*:func }
			name=${name%%(*}
			dir="./$(dirname "${file#./}")"
			step "fuzz $name ($dir, $FUZZTIME)" \
				go test -run='^$' -fuzz="^${name}\$" -fuzztime="$FUZZTIME" -timeout=5m "$dir"
		done 3< <(grep -rHoE --include='*_test.go' --exclude-dir=.git --exclude-dir=node_modules \
			--exclude-dir=vendor '^func Fuzz[A-Za-z0-9_]*\(' . | sort || true)
	fi

	# The browser client must stay ES5 for the old browsers pollbox serves:
	# the source, and the minified script the server sends (the client.js
	# test writes it out as served).
	# es-check is the version .ci/run installs, so that a new release cannot
	# change the verdict; once installed it runs offline.
	local js=poll/static/client.js es_check_version es_check_prefix files
	local served="$TMP_ROOT/client.served.js"
	es_check_version="$(sed -n 's/^ES_CHECK_VERSION="\([^"]*\)"$/\1/p' .ci/run 2>/dev/null)"
	es_check_version="${es_check_version:-9}"
	es_check_prefix="${POLLBOX_CI_PREFIX:-/opt/pollbox-ci}/node_modules/.bin/es-check"
	if [ -f "$js" ]; then
		files=("$js")
		step "write the served client.js" env POLLBOX_CLIENT_JS_OUT="$served" \
			go test -count=1 -run '^TestClientJSIsMinifiedGzippedAndCached$' ./poll
		if [ -s "$served" ]; then files+=("$served"); fi
		if [ -n "${ES_CHECK:-}" ] && [ -x "$ES_CHECK" ]; then
			step "es-check es5 ${files[*]}" "$ES_CHECK" es5 "${files[@]}"
		elif [ -x "$es_check_prefix" ]; then
			step "es-check es5 ${files[*]}" "$es_check_prefix" es5 "${files[@]}"
		elif command -v npx >/dev/null 2>&1; then
			step "es-check@$es_check_version es5 ${files[*]}" \
				npx --yes --prefer-offline "es-check@$es_check_version" es5 "${files[@]}"
		elif [ "${CI:-}" = true ]; then
			step "es-check es5 ${files[*]} (es-check and npx not found)" false
		else
			skip "es-check: neither es-check nor npx found (install Node.js)"
		fi
	fi
}

if [ $# -eq 0 ]; then
	step "go test -race -count=1 ./..." go test -race -count=1 ./...
	extra_checks
else
	# Arguments narrow the run to one `go test`; the extra checks need all.
	step "go test -race -count=1 $*" go test -race -count=1 "$@"
	skip "extra checks (arguments given)"
fi

echo
if [ "$FAILED" -gt 0 ]; then
	echo "failed steps:"
	printf '  %s\n' "${FAILED_STEPS[@]}"
fi
if [ "$SKIPPED" -gt 0 ]; then
	echo "summary: $PASSED passed, $FAILED failed, $SKIPPED skipped"
else
	echo "summary: $PASSED passed, $FAILED failed"
fi
[ "$FAILED" -eq 0 ]
