#!/usr/bin/env bash
# The rate limiter's Redis cost per request (issue 4's load figure): one gateway with one
# policy, ~RATE requests/s spread over KEYS keys, and every command Redis ran in the meantime
# (INFO commandstats before and after: commands run inside the limiter's script count, as
# Redis counts them). A benchmark, not a test: it prints figures and asserts nothing about them
# (exit 0 unless something could not run). A design that calls Redis per request costs 1.0 or
# more commands per request; the goal is at most 0.01.
#
#   load-tests/bench/ratelimit-redis.sh                    # RATE=10000 KEYS=1000 LIMITS="100 10"
#   DURATION=30s LIMITS=100 load-tests/bench/ratelimit-redis.sh
#
# Setup, on loopback ports found free: redis-server (the one on PATH, persistence off), one
# `cellgate echo-cell`, and per round a fresh gateway (release build, `cargo build --release -p
# gateway --bin cellgate`) with `[ratelimit] sync_interval = SYNC_INTERVAL` and one policy
# `per-user` (key = "user", LIMIT per 1s, burst = limit), on an emptied Redis (FLUSHALL).
# One round per LIMIT in LIMITS: the keys are offered RATE / KEYS requests/s each, so
# LIMIT=100 keeps every key under its limit (10/s against 100: most keys of a real fleet) and
# LIMIT=10 puts every key at its limit (each gateway then reports each key every tick). wrk
# (THREADS threads, CONNECTIONS connections) paces its sends at RATE requests/s overall, the
# keys in turn (x-user-id: user-<n>); a WARMUP of the same load runs first (the keys' first
# reports and the script load are not what a steady gateway costs, but they are counted if
# WARMUP=0).
#
# Reported per round: requests/s achieved, 200s and 429s, Redis commands in the window (all of
# them, EVALSHA apart) and per request, Redis CPU per 1,000 requests, the gateway's sync ticks
# and sync errors (`cellgate_ratelimit_sync_errors_total`).
#
# Environment: DURATION (20s), RATE (10000), KEYS (1000), LIMITS ("100 10"), WARMUP (3s),
# SYNC_INTERVAL ("100ms", deploy/cellgate.toml's), REDIS_TIMEOUT ("10ms"), THREADS (2),
# CONNECTIONS (32), BUILD=0 skips the cargo build, KEEP_WORK=1 keeps the work directory.
# Needs: wrk (with LuaJIT, as packaged), redis-server, redis-cli, curl, python3.
set -euo pipefail

DURATION=${DURATION:-20s}
RATE=${RATE:-10000}
KEYS=${KEYS:-1000}
LIMITS=${LIMITS:-100 10}
WARMUP=${WARMUP:-3s}
SYNC_INTERVAL=${SYNC_INTERVAL:-100ms}
REDIS_TIMEOUT=${REDIS_TIMEOUT:-10ms}
THREADS=${THREADS:-2}
CONNECTIONS=${CONNECTIONS:-32}

root=$(cd "$(dirname "$0")/../.." && pwd)
for tool in wrk redis-server redis-cli curl python3; do
  command -v "$tool" >/dev/null || { echo "missing $tool (apt-get install -y wrk redis-server redis-tools curl python3)" >&2; exit 2; }
done
if [ "${BUILD:-1}" != 0 ]; then
  cargo build --release --quiet --manifest-path "$root/Cargo.toml" -p gateway --bin cellgate
fi
bin="${CARGO_TARGET_DIR:-$root/target}/release/cellgate"

work=$(mktemp -d "${TMPDIR:-/tmp}/cellgate-bench-ratelimit.XXXXXX")
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

redis_port=$(free_port)
redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no \
  --daemonize no --logfile "$work/redis.log" &
redis_pid=$!
pids+=("$redis_pid")
wait_until redis redis-cli -p "$redis_port" ping

echo_port=$(free_port)
"$bin" echo-cell --name cell-1 --instance cell1-a --listen "127.0.0.1:$echo_port" >"$work/echo.log" 2>&1 &
pids+=($!)
wait_until echo curl -fsS "http://127.0.0.1:$echo_port/healthz"

cat >"$work/keys.lua" <<LUA
-- KEYS keys in turn (each thread starts at another one), paced (pace.lua).
dofile("$(cd "$(dirname "$0")" && pwd)/pace.lua")
LUA
cat >>"$work/keys.lua" <<'LUA'
local keys = tonumber(os.getenv("BENCH_KEYS"))
local n = 0

function request()
  n = n + 1
  return wrk.format("GET", "/", { ["x-user-id"] = "user-" .. ((n + tid * 7919) % keys) })
end
LUA

metric() { # name: the sum of a metric's samples at the admin endpoint
  curl -fsS "http://127.0.0.1:$admin_port/metrics" | awk -v m="$1" '$1 == m || index($1, m "{") == 1 { s += $NF } END { print s + 0 }'
}

rows=()
for limit in $LIMITS; do
  redis-cli -p "$redis_port" flushall >/dev/null
  gw_port=$(free_port); admin_port=$(free_port)
  cat >"$work/gw-$limit.toml" <<TOML
[server]
listen = "127.0.0.1:$gw_port"
admin_listen = "127.0.0.1:$admin_port"
gateway_id = "bench"
state_dir = "$work/state-$limit"

[redis]
url = "redis://127.0.0.1:$redis_port"
timeout = "$REDIS_TIMEOUT"

[routing]
key = ["header:x-user-id"]

[[cells]]
name = "cell-1"
upstreams = ["127.0.0.1:$echo_port"]
max_in_flight = 4096

[ratelimit]
sync_interval = "$SYNC_INTERVAL"

[[ratelimit.policies]]
name = "per-user"
key = "user"
limit = $limit
per = "1s"
TOML
  mkdir -p "$work/state-$limit"
  CELLGATE_LOG=warn "$bin" serve --config "$work/gw-$limit.toml" >"$work/gw-$limit.log" 2>&1 &
  gw_pid=$!
  pids+=("$gw_pid")
  wait_until gateway curl -fsS "http://127.0.0.1:$admin_port/readyz"
  wrk_env=(env BENCH_KEYS="$KEYS" BENCH_RATE="$RATE" BENCH_THREADS="$THREADS")

  log "limit $limit/s per key: warm-up $WARMUP"
  "${wrk_env[@]}" wrk -t"$THREADS" -c"$CONNECTIONS" -d"$WARMUP" -s "$work/keys.lua" "http://127.0.0.1:$gw_port" >/dev/null
  log "limit $limit/s per key: $RATE requests/s over $KEYS keys for $DURATION"
  commandstats "$redis_port" >"$work/cmd-before-$limit"
  redis_cpu0=$(cpu_of "$redis_pid"); ticks0=$(metric cellgate_ratelimit_sync_duration_seconds_count)
  errors0=$(metric cellgate_ratelimit_sync_errors_total)
  t0=$(now)
  "${wrk_env[@]}" wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" -s "$work/keys.lua" \
    "http://127.0.0.1:$gw_port" >"$work/wrk-$limit.txt"
  t1=$(now)
  commandstats "$redis_port" >"$work/cmd-after-$limit"
  redis_cpu1=$(cpu_of "$redis_pid"); ticks1=$(metric cellgate_ratelimit_sync_duration_seconds_count)
  errors1=$(metric cellgate_ratelimit_sync_errors_total)
  stop_pid "$gw_pid"

  out=$(cat "$work/wrk-$limit.txt")
  sent=$(awk '/requests in/ { print $1 }' <<<"$out")
  non2xx=$(awk '/Non-2xx/ { print $NF }' <<<"$out"); non2xx=${non2xx:-0}
  read -r cmds evals breakdown < <(awk '
    FNR == NR { c0[$1] = $2; next }
    { dc = $2 - c0[$1]; if (dc <= 0) next
      calls += dc; if ($1 == "evalsha" || $1 == "eval") ev += dc; parts = parts sprintf("%s=%d,", $1, dc) }
    END { printf "%d %d %s\n", calls, ev, parts }' "$work/cmd-before-$limit" "$work/cmd-after-$limit")
  rows+=("$(awk -v l="$limit" -v s="$sent" -v bad="$non2xx" -v c="$cmds" -v e="$evals" -v t0="$t0" -v t1="$t1" \
    -v cpu="$(awk -v a="$redis_cpu0" -v b="$redis_cpu1" 'BEGIN { print b - a }')" \
    -v ticks="$(awk -v a="$ticks0" -v b="$ticks1" 'BEGIN { print b - a }')" -v errs="$(awk -v a="$errors0" -v b="$errors1" 'BEGIN { print b - a }')" \
    'BEGIN { d = t1 - t0; printf "%8s %10.0f %9d %9d %9d %8d %11.5f %11.5f %12.1f %6d %6d", l "/s", s / d, s - bad, bad, c, e, c / s, e / s, cpu * 1e6 / s, ticks, errs }')")
  details+=("limit $limit/s: $breakdown")
done

echo
echo "Redis commands per request: $KEYS keys, $RATE requests/s offered, $DURATION, sync_interval $SYNC_INTERVAL"
printf '%8s %10s %9s %9s %9s %8s %11s %11s %12s %6s %6s\n' limit "req/s" "200s" "429s" "commands" EVALSHA "cmds/req" "evalsha/req" "redis µs/req" ticks errors
for row in "${rows[@]}"; do echo "$row"; done
echo
for d in "${details[@]}"; do echo "$d"; done
