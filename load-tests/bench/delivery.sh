#!/usr/bin/env bash
# Async delivery throughput: how fast one gateway accepts `Prefer: respond-async` requests and
# how fast the queue delivers them end to end. A benchmark, not a test: it prints figures and
# asserts nothing about them (exit 0 unless something could not run).
#
#   load-tests/bench/delivery.sh                          # DURATION=10s, WORKERS="64 128", RATES="5000 max"
#   DURATION=30s WORKERS=128 RATES=max load-tests/bench/delivery.sh
#
# Setup, on loopback ports found free:
#   - redis-server (the one on PATH), empty: AOF on with `appendfsync everysec`, as a
#     production queue would run it (an acknowledged enqueue survives a Redis restart; a
#     crash of the host loses at most the last second), RDB snapshots off, `noeviction`;
#   - three `cellgate echo-cell` backends, one per cell;
#   - per round, one gateway (release build, `cargo build --release -p gateway`; see CELLGATE
#     and PGO below) with `[delivery] workers = <w>`, no rate limits,
#     `[redis] timeout = REDIS_TIMEOUT` (the
#     enqueue's budget; workers use their own connection bounded by `[control].timeout`).
# One round per (w in WORKERS, r in RATES), each on an emptied Redis (FLUSHALL) and a fresh
# gateway: a WARMUP of load, drained; then wrk (THREADS threads, CONNECTIONS connections)
# POSTs /orders with `Prefer: respond-async`, a distinct `Idempotency-Key` and one of USERS
# routing keys (all three partitions get work) for DURATION:
#   - r = max: as fast as the connections go (closed model: saturation throughput; latency
#     then includes queueing in the gateway);
#   - r = a number: paced to r requests/s overall (each wrk thread hands out send times at
#     r/THREADS per second, a connection waits for its slot; send times are whole ms), which
#     measures latency below saturation as long as CONNECTIONS suffice.
# The round ends when Redis's live sets are empty (every accepted entry delivered or dead).
#
# Reported per round:
#   - 202/s: accepted enqueues per second of load, and non-202 answers (503 queue_unavailable
#     when Redis does not confirm within REDIS_TIMEOUT: such a write often did happen, and is
#     delivered, so the delivery rates below count it); p50/p99: wrk's latency (client side);
#     st p99: the gateway's own store time (`cellgate_delivery_enqueue_duration_seconds`,
#     upper bound of the histogram bucket, accepted enqueues only);
#   - dlv/s: deliveries per second while the load ran; end to end: delivered / (first
#     enqueue -> live sets empty), and 99.9% of the delivered / (first enqueue -> at most 0.1%
#     of the accepted left), since one entry whose outcome could not be recorded waits for a
#     claim (the visibility timeout); backlog: accepted but undelivered when the load stopped;
#   - Redis commands per delivered message, from INFO commandstats before/after (commands run
#     inside Lua scripts count, as Redis counts them; INFO and this script's own ZCARD polls
#     are left out), EVALSHA (one per state transition) apart, with the full breakdown, and
#     Redis's time per message: in scripts, in the commands they run, in the rest;
#   - Redis's own stalls (its latency monitor, threshold 2 ms: LATENCY LATEST per event, e.g.
#     `fork` and `aof-write` around an automatic AOF rewrite, `command` for a slow script);
#   - Redis's forks during the load (AOF rewrites, from its log: how many, for how long) and
#     how many of the gateway's 503 queue_unavailable fell in them (from 50 ms before to
#     100 ms after) against the rest of the load;
#   - Redis memory added per delivered message (delivered records are kept for `retention`);
#   - CPU seconds of Redis, the gateway and the echo cells over the round (from /proc), per
#     delivered message too, a `top` snapshot in the middle of the load, and the load
#     average: on a shared machine other work skews every figure.
#
# Environment: DURATION (10s), WORKERS ("64 128"), RATES ("5000 max"), CONNECTIONS (64),
# THREADS (2), USERS (100000), BODY_BYTES (256), WARMUP (2s), REDIS_TIMEOUT ("10ms", as in
# deploy/cellgate.toml), VISIBILITY_TIMEOUT ("30s", the default), DRAIN_TIMEOUT (120 s),
# CELLGATE=<binary> runs that build instead of building this tree (to compare builds); PGO=1
# builds the profile-guided binary (deploy/pgo-build.sh) and runs it: its training load is
# proxied traffic, not the queue, so the enqueue and delivery paths are untrained in it.
# REDIS_ARGS: more redis-server options (e.g. "--auto-aof-rewrite-percentage 0").
# GATEWAY_THREADS (1): worker threads of the gateway ('' = one per core). The gateway needs
# about half a core at 5,000 messages/s; on these 2 shared cores a second worker thread cost
# 18% more gateway CPU per message (cross-thread wake-ups) and competed with Redis's single
# thread: with it, the enqueue p99 was 0.5 ms higher and 503s more frequent (docs/delivery.md).
# ECHO_THREADS (1): worker threads of each echo cell. The cells stand in for backends on
# other machines; with one thread each, three of them add 3 runnable threads to this
# machine's 2 cores rather than 6.
# PRIORITY (none): `nice` or `fifo` gives Redis and each gateway (every thread they have once
# ready; threads started later, such as tokio's blocking pool, run at normal priority) CPU
# priority over the rest of this machine (wrk, the echo cells) with SCHED_RESET_ON_FORK, so
# that what they fork, above all Redis's AOF-rewrite child, runs at normal priority:
#   - nice: nice -20 (CFS weight 88761 against a normal thread's 1024);
#   - fifo: SCHED_FIFO, Redis priority 10, the gateway 5 (the kernel's real-time throttling
#     still leaves other work 5 % of each core).
# It stands in for what a deployment gives them, cores of their own: on 2 shared cores the
# rewrite child otherwise takes a core away from Redis's main thread and the gateway, and the
# enqueue p99 is the fork's (docs/delivery.md, "Redis's forks and CPU priority"). Needs root
# or CAP_SYS_NICE.
# KEEP_WORK=1 keeps the work directory (configs, logs, wrk output, commandstats); it is also
# kept when a run fails or is interrupted.
# PROFILE=1 also samples the gateway and Redis with `perf record` for the middle half of the
# load and prints the split of samples (gateway, Redis main thread, Redis's AOF-rewrite fork)
# and each one's hottest symbols (needs perf and permission to trace them).
# Needs: wrk (with LuaJIT, as packaged), redis-server, redis-cli, curl, python3.
set -euo pipefail

DURATION=${DURATION:-10s}
WORKERS=${WORKERS:-64 128}
RATES=${RATES:-5000 max}
CONNECTIONS=${CONNECTIONS:-64}
THREADS=${THREADS:-2}
USERS=${USERS:-100000}
BODY_BYTES=${BODY_BYTES:-256}
WARMUP=${WARMUP:-2s}
REDIS_TIMEOUT=${REDIS_TIMEOUT:-10ms}
VISIBILITY_TIMEOUT=${VISIBILITY_TIMEOUT:-30s}
DRAIN_TIMEOUT=${DRAIN_TIMEOUT:-120}
ECHO_THREADS=${ECHO_THREADS:-1}
GATEWAY_THREADS=${GATEWAY_THREADS-1}
PRIORITY=${PRIORITY:-}
case $PRIORITY in
  ''|nice|fifo) ;;
  *) echo "PRIORITY must be nice or fifo (or unset), not $PRIORITY" >&2; exit 2 ;;
esac

for tool in wrk redis-server redis-cli curl python3; do
  command -v "$tool" >/dev/null || { echo "missing $tool (apt-get install -y wrk redis-server curl python3)" >&2; exit 2; }
done
work=$(mktemp -d "${TMPDIR:-/tmp}/cellgate-bench-delivery.XXXXXX")
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"
cellgate_bin
echo_cpu() {
  local total=0
  for p in "${echo_pids[@]}"; do total=$(awk -v a="$total" -v b="$(cpu_of "$p")" 'BEGIN { print a + b }'); done
  echo "$total"
}

# ---- Redis and echo cells, shared by every round ---------------------------------------------
redis_port=$(free_port)
mkdir -p "$work/redis"
redis-server --port "$redis_port" --bind 127.0.0.1 --dir "$work/redis" \
  --appendonly yes --appendfsync everysec --save "" --maxmemory-policy noeviction \
  --latency-monitor-threshold 2 ${REDIS_ARGS:-} --daemonize no --logfile "$work/redis.log" &
redis_pid=$!
pids+=("$redis_pid")
rcli() { redis-cli -p "$redis_port" "$@"; }
wait_until redis rcli ping

# prioritize pid fifo_priority: PRIORITY for every thread process `pid` has now (see the
# header). A thread that ended meanwhile is skipped; any other failure ends the run.
prioritize() {
  local task
  [ -d "/proc/$1/task" ] || { echo "PRIORITY: process $1 is gone" >&2; exit 2; }
  for task in /proc/"$1"/task/*; do
    task=${task##*/}
    case $PRIORITY in
      nice) chrt --reset-on-fork --other -p 0 "$task" && renice -n -20 -p "$task" >/dev/null ;;
      fifo) chrt --reset-on-fork --fifo -p "$2" "$task" ;;
    esac || [ ! -d "/proc/$1/task/$task" ] || {
      echo "could not set PRIORITY=$PRIORITY on thread $task of $1 (see the error above;" \
        "it needs root or CAP_SYS_NICE)" >&2
      exit 2
    }
  done
}
[ -z "$PRIORITY" ] || prioritize "$redis_pid" 10

echo_pids=()
echo_ports=()
for i in 1 2 3; do
  port=$(free_port)
  "$bin" --worker-threads "$ECHO_THREADS" echo-cell --name "cell-$i" --instance "cell$i-a" --listen "127.0.0.1:$port" \
    >"$work/echo-$i.log" 2>&1 &
  pids+=($!)
  echo_pids+=($!)
  echo_ports+=("$port")
done
for port in "${echo_ports[@]}"; do wait_until "echo :$port" curl -fsS "http://127.0.0.1:$port/healthz"; done

# ---- wrk script ------------------------------------------------------------------------------
cat >"$work/enqueue.lua" <<LUA
-- Distinct Idempotency-Key per request (run id, thread, counter), USERS routing keys, fixed
-- body; paced when BENCH_RATE > 0 (pace.lua).
dofile("$(cd "$(dirname "$0")" && pwd)/pace.lua")
LUA
cat >>"$work/enqueue.lua" <<'LUA'
local users = tonumber(os.getenv("BENCH_USERS") or "100000")
local run = os.getenv("BENCH_RUN") or "run"
local body = '{"order":"' .. string.rep("x", tonumber(os.getenv("BENCH_BODY") or "256")) .. '"}'
local n = 0

function request()
  n = n + 1
  local k = (n * 7919 + tid * 104729) % users
  -- wrk.format does not merge with wrk.headers: every header goes here.
  return wrk.format("POST", "/orders", {
    ["Content-Type"] = "application/json",
    ["Prefer"] = "respond-async",
    ["x-user-id"] = "user-" .. k,
    ["Idempotency-Key"] = run .. "-" .. tid .. "-" .. n,
  }, body)
end
LUA

# ---- gateway metrics, Redis figures ----------------------------------------------------------
metrics() { curl -fsS "http://127.0.0.1:$admin_port/metrics"; }
# accepted delivered dead unavailable full
counters() {
  metrics | awk '
    /^cellgate_delivery_enqueued_total\{outcome="accepted"\}/ { a = $NF }
    /^cellgate_delivery_enqueued_total\{outcome="unavailable"\}/ { u = $NF }
    /^cellgate_delivery_enqueued_total\{outcome="full"\}/ { f = $NF }
    /^cellgate_delivery_deliveries_total\{outcome="delivered"\}/ { d = $NF }
    /^cellgate_delivery_deliveries_total\{outcome="dead"\}/ { x = $NF }
    END { printf "%d %d %d %d %d\n", a, d, x, u, f }'
}
# Quantile q of the enqueue store-time histogram over the round (bucket counts minus those
# at the round's start, in file $2), as the upper bound of its bucket, in ms.
buckets() { metrics | awk '/^cellgate_delivery_enqueue_duration_seconds_bucket/ { print $1, $NF }'; }
store_quantile() {
  awk -v q="$1" '
    FNR == NR { before[$1] = $2; next }
    { match($1, /le="[^"]+"/); n++; bound[n] = substr($1, RSTART + 4, RLENGTH - 5); count[n] = $2 - before[$1] }
    END {
      total = count[n]
      if (total <= 0) { print "-"; exit }
      for (i = 1; i <= n; i++) if (count[i] >= q * total) {
        if (bound[i] == "+Inf") print ">3277"; else printf "%.1f\n", bound[i] * 1000; exit
      }
    }' "$2" <(buckets)
}
# Accepted-but-unfinished entries, all partitions (ZCARD of the live sets: exact, instant).
# Every call is 3 ZCARDs of ours, counted in $work/zcards to leave them out of the stats.
live_depth() {
  echo $(( $(cat "$work/zcards" 2>/dev/null || echo 0) + 3 )) >"$work/zcards"
  printf 'ZCARD {dq:cell-%s}:live\n' 1 2 3 | rcli | awk '{ s += $1 } END { print s + 0 }'
}
# Waits until the live sets are empty; prints when they first held at most $1 entries, and
# when they were first seen empty.
wait_drained() {
  local deadline=$(( $(date +%s) + DRAIN_TIMEOUT )) near= depth
  while :; do
    depth=$(live_depth)
    if [ -z "$near" ] && [ "$depth" -le "${1:-0}" ]; then near=$(now); fi
    if [ "$depth" -eq 0 ]; then echo "$near $(now)"; return 0; fi
    if [ "$(date +%s)" -ge "$deadline" ]; then
      log "live sets not empty after ${DRAIN_TIMEOUT}s ($depth entries)"
      echo "${near:-$(now)} $(now)"; return 1
    fi
    sleep 0.05
  done
}

# fork_windows redis_log gateway_log t0 t1: Redis's fork-based background jobs (AOF rewrite,
# RDB save) between t0 and t1 (epoch seconds), from its log, and the gateway's
# queue-unavailable refusals (logged one per request) inside those windows, from 50 ms before
# the log's "started" line (written once fork() has returned; the stall of the fork itself
# comes before it) to 100 ms after the end, against the rest of the load. A job still running
# when the log is read ends at t1. A fork's child takes a core for as long as it writes the
# dataset, which on a machine Redis shares with the gateway is when enqueues wait.
fork_windows() {
  python3 - "$@" <<'PY'
import calendar, re, sys, time
redis_log, gateway_log, t0, t1 = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
def redis_time(line):  # "27 Nov 2026 12:04:42.022", the server's local time
    m = re.search(r'(\d+ \w{3} \d{4} \d\d:\d\d:\d\d)\.(\d{3})', line)
    return time.mktime(time.strptime(m.group(1), '%d %b %Y %H:%M:%S')) + int(m.group(2)) / 1000 if m else None
windows, start = [], None
for line in open(redis_log, errors='replace'):
    if 'rewriting started' in line or 'Background saving started' in line:
        start = redis_time(line)
    elif start is not None and ('AOF rewrite terminated' in line or 'Background saving terminated' in line
                                or 'Background saving error' in line):
        end = redis_time(line)
        if end is not None and end >= t0 and start <= t1:
            windows.append((max(start, t0), min(end, t1)))
        start = None
if start is not None and start <= t1:
    windows.append((max(start, t0), t1))
inside = outside = 0
for line in open(gateway_log, errors='replace'):
    if 'queue unavailable' not in line:
        continue
    m = re.match(r'(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?Z', line)
    if not m:
        continue
    t = calendar.timegm(time.strptime(m.group(1), '%Y-%m-%dT%H:%M:%S')) + float(m.group(2) or 0)
    if not t0 <= t <= t1 + 0.1:
        continue
    if any(a - 0.05 <= t <= b + 0.1 for a, b in windows):
        inside += 1
    else:
        outside += 1
total = sum(b - a for a, b in windows)
print(f"{len(windows)}, {total:.2f} s in all ({100 * total / max(t1 - t0, 1e-9):.0f}% of the load); "
      f"503 queue_unavailable in them (50 ms before to 100 ms after): {inside}, in the rest of the load: {outside}")
PY
}

# ---- rounds ----------------------------------------------------------------------------------
rows=()
details=()
for workers in $WORKERS; do
  for rate in $RATES; do
    case "$rate" in max) bench_rate=0 ;; *[!0-9]*|'') echo "RATES: numbers or max, got $rate" >&2; exit 2 ;; *) bench_rate=$rate ;; esac
    rcli flushall >/dev/null
    rcli latency reset >/dev/null
    gw_port=$(free_port); admin_port=$(free_port)
    name="w$workers-r$rate"
    cat >"$work/$name.toml" <<TOML
[server]
listen = "127.0.0.1:$gw_port"
admin_listen = "127.0.0.1:$admin_port"
gateway_id = "bench"
state_dir = "$work/state-$name"

[redis]
url = "redis://127.0.0.1:$redis_port"
timeout = "$REDIS_TIMEOUT"

[routing]
key = ["header:x-user-id"]

[[cells]]
name = "cell-1"
upstreams = ["127.0.0.1:${echo_ports[0]}"]
max_in_flight = 4096

[[cells]]
name = "cell-2"
upstreams = ["127.0.0.1:${echo_ports[1]}"]
max_in_flight = 4096

[[cells]]
name = "cell-3"
upstreams = ["127.0.0.1:${echo_ports[2]}"]
max_in_flight = 4096

[delivery]
workers = $workers
max_pending = 10000000
visibility_timeout = "$VISIBILITY_TIMEOUT"
TOML
    mkdir -p "$work/state-$name"
    CELLGATE_LOG=warn "$bin" ${GATEWAY_THREADS:+--worker-threads "$GATEWAY_THREADS"} serve --config "$work/$name.toml" >"$work/$name.log" 2>&1 &
    gw_pid=$!
    pids+=("$gw_pid")
    wait_until gateway curl -fsS "http://127.0.0.1:$admin_port/readyz"
    # Once ready, its runtime's worker threads exist.
    [ -z "$PRIORITY" ] || prioritize "$gw_pid" 5
    wrk_env=(env BENCH_USERS="$USERS" BENCH_BODY="$BODY_BYTES" BENCH_RATE="$bench_rate" BENCH_THREADS="$THREADS")

    log "workers=$workers rate=$rate: warm-up $WARMUP"
    "${wrk_env[@]}" BENCH_RUN="warm-$name" \
      wrk -t"$THREADS" -c"$CONNECTIONS" -d"$WARMUP" -s "$work/enqueue.lua" "http://127.0.0.1:$gw_port" >/dev/null
    wait_drained >/dev/null || true
    sleep 1

    read -r a0 d0 x0 u0 f0 < <(counters)
    buckets >"$work/buckets-$name"
    commandstats "$redis_port" >"$work/cmd-before-$name"
    echo 0 >"$work/zcards"
    redis_cpu0=$(cpu_of "$redis_pid"); gw_cpu0=$(cpu_of "$gw_pid"); echo_cpu0=$(echo_cpu)
    load_before=$(cut -d' ' -f1-3 /proc/loadavg)
    mem0=$(rcli info memory | tr -d '\r' | awk -F: '$1 == "used_memory" { print $2 }')

    log "workers=$workers rate=$rate: load $DURATION"
    t0=$(now)
    "${wrk_env[@]}" BENCH_RUN="run-$name" \
      wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency -s "$work/enqueue.lua" \
        "http://127.0.0.1:$gw_port" >"$work/wrk-$name.txt" &
    wrk_pid=$!
    pids+=("$wrk_pid")
    quarter=$(awk -v d="$(to_ms "$DURATION")" 'BEGIN { print d / 4000 }')
    sleep "$quarter"
    perf_pid=
    if [ "${PROFILE:-0}" = 1 ]; then
      perf record -q -F 499 -p "$gw_pid,$redis_pid" -o "$work/perf-$name.data" -- sleep "$(awk -v q="$quarter" 'BEGIN { print 2 * q }')" \
        >"$work/perf-$name.log" 2>&1 &
      perf_pid=$!
      pids+=("$perf_pid")
    fi
    sleep "$quarter"
    top -b -n1 -w 160 2>/dev/null | sed -n '1p;3p;7,14p' >"$work/top-$name.txt" || true
    if [ -n "$perf_pid" ]; then wait "$perf_pid" || true; forget "$perf_pid"; fi
    wait "$wrk_pid"
    forget "$wrk_pid"
    t_load=$(now)
    read -r a1 d1 _ < <(counters)
    drained=yes
    ends=$(wait_drained $(( (a1 - a0) / 1000 ))) || drained=no
    read -r t_near t_end <<<"$ends"
    commandstats "$redis_port" >"$work/cmd-after-$name"
    redis_cpu1=$(cpu_of "$redis_pid"); gw_cpu1=$(cpu_of "$gw_pid"); echo_cpu1=$(echo_cpu)
    read -r a2 d2 x2 u2 f2 < <(counters)
    load_after=$(cut -d' ' -f1-3 /proc/loadavg)
    mem1=$(rcli info memory | tr -d '\r' | awk -F: '$1 == "used_memory" { print $2 }')
    profile=
    if [ -s "$work/perf-$name.data" ]; then
      # Samples by process (Redis's AOF rewrite runs in a forked child), then the hottest
      # symbols of each (no call graphs: neither binary keeps frame pointers).
      profile+="    perf (share of the samples of the gateway and Redis, kernel part in brackets):
$(perf report -q -i "$work/perf-$name.data" --no-children -g none --sort pid,dso 2>/dev/null | awk -v r="$redis_pid" '
        NF >= 3 { pct = $1 + 0; split($2, a, ":"); tid = a[1]; comm = a[2]
          if (comm ~ /^tokio/ || comm == "cellgate") who = "gateway"
          else if (tid == r) who = "redis main thread"
          else if (comm == "redis-server") who = "redis fork (AOF rewrite)"
          else who = "redis other threads"
          tot[who] += pct; if ($3 ~ /kernel/) k[who] += pct }
        END { for (w in tot) printf "      %-26s %5.1f%% [%4.1f%%]\n", w, tot[w], k[w] }' | sort)
    gateway, hottest symbols: $(perf report -q -i "$work/perf-$name.data" --no-children -g none --pid "$gw_pid" --sort sym 2>/dev/null \
        | awk 'NR <= 6 { printf "%s %s; ", $1, $NF }')
    redis, hottest symbols: $(perf report -q -i "$work/perf-$name.data" --no-children -g none --tid "$redis_pid" --sort sym 2>/dev/null \
        | awk 'NR <= 6 { printf "%s %s; ", $1, $NF }')
"
    fi
    # Redis's own stalls of 2 ms or more in the round: per event, the seconds that had one
    # (LATENCY HISTORY keeps the worst per second) and the worst.
    stalls=$(rcli latency latest | paste - - - - | while read -r event _ _ worst; do
      printf '%s: %s s, worst %s ms; ' "$event" "$(( $(rcli latency history "$event" | wc -l) / 2 ))" "$worst"
    done)
    forks=$(fork_windows "$work/redis.log" "$work/$name.log" "$t0" "$t_load")
    claimed=$(metrics | awk '/^cellgate_delivery_claimed_total/ { print $NF }')
    # Outcomes are recorded in batches: one log line per batch, with how many it held.
    record_failures=$({ grep 'could not record a delivery attempt' "$work/$name.log" || true; } \
      | sed -n 's/.* attempts=\([0-9]*\).*/\1/p' | awk '{ s += $1 } END { print s + 0 }')

    out=$(cat "$work/wrk-$name.txt")
    p50=$(to_ms "$(awk '$1=="50%" {print $2}' <<<"$out")")
    p99=$(to_ms "$(awk '$1=="99%" {print $2}' <<<"$out")")
    sent=$(awk '/requests in/ {print $1}' <<<"$out")
    sockerr=$(awk '/Socket errors/' <<<"$out" | sed 's/^ *//')
    s99=$(store_quantile 0.99 "$work/buckets-$name")
    s50=$(store_quantile 0.50 "$work/buckets-$name")
    accepted=$((a2 - a0)); delivered=$((d2 - d0)); dead=$((x2 - x0))
    unavailable=$((u2 - u0)); full=$((f2 - f0)); backlog=$(( (a1 - a0) - (d1 - d0) ))
    non202=$(awk '/Non-2xx/ { print $NF }' <<<"$out"); non202=${non202:-0}
    [ "$backlog" -ge 0 ] || backlog=0

    read -r load_s total_s near_s acc_rate dlv_load dlv_e2e dlv_near < <(awk -v t0="$t0" -v tl="$t_load" -v te="$t_end" \
      -v tn="$t_near" -v a="$((a1 - a0))" -v dl="$((d1 - d0))" -v d="$delivered" \
      'BEGIN { printf "%.2f %.2f %.2f %.0f %.0f %.0f %.0f\n", tl - t0, te - t0, tn - t0, a / (tl - t0), dl / (tl - t0), d / (te - t0), 0.999 * d / (tn - t0) }')
    # Commands per delivered message; our ZCARD polls are taken out.
    read -r cmds evals breakdown < <(awk -v d="$delivered" -v ours="$(cat "$work/zcards")" '
      FNR == NR { c0[$1] = $2; next }
      { dc = $2 - c0[$1]; if ($1 == "zcard") dc -= ours; if (dc <= 0) next
        calls += dc; per[$1] = dc; if ($1 == "evalsha" || $1 == "eval") ev += dc }
      END {
        if (d == 0) d = 1
        printf "%.1f %.2f ", calls / d, ev / d
        for (k in per) printf "%s=%.2f,", k, per[k] / d
        print ""
      }' "$work/cmd-before-$name" "$work/cmd-after-$name")
    breakdown=$(tr ',' '\n' <<<"$breakdown" | grep . | sort -t= -k2 -gr | tr '\n' ' ')
    # Redis's own time per message: in EVALSHA (which includes the commands the scripts run),
    # in those inner commands, and in the top-level rest (reads, claims, depth samples).
    redis_time=$(awk -v d="$delivered" '
      FNR == NR { c[$1] = $2; u[$1] = $3; next }
      { dc = $2 - c[$1]; du = $3 - u[$1]; if (dc <= 0) next
        if ($1 == "evalsha" || $1 == "eval") { ec += dc; eu += du }
        else if ($1 ~ /^(xreadgroup|xautoclaim|xgroup|zrange|zrangebyscore|ping|config)$/) top += du
        else inner += du }
      END { if (d == 0) d = 1; if (ec == 0) ec = 1
        printf "EVALSHA %.1fus per call, %.1fus per message, of which the commands inside %.1fus (Lua and call overhead %.1fus); top-level reads and the rest %.1fus",
          eu / ec, eu / d, inner / d, (eu - inner) / d, top / d }' \
      "$work/cmd-before-$name" "$work/cmd-after-$name")
    cpu=$(awk -v r="$(awk -v a="$redis_cpu0" -v b="$redis_cpu1" 'BEGIN { print b - a }')" \
      -v g="$(awk -v a="$gw_cpu0" -v b="$gw_cpu1" 'BEGIN { print b - a }')" \
      -v e="$(awk -v a="$echo_cpu0" -v b="$echo_cpu1" 'BEGIN { print b - a }')" -v t="$total_s" -v d="$delivered" \
      'BEGIN { if (d == 0) d = 1
        printf "redis %.1fs (%.0f%% of a core), gateway %.1fs (%.0f%%), echo cells %.1fs (%.0f%%) in %.1fs; per delivered message: redis %.0fus, gateway %.0fus",
          r, 100 * r / t, g, 100 * g / t, e, 100 * e / t, t, r * 1e6 / d, g * 1e6 / d }')

    rows+=("$(printf '%-7s %-7s %8s %7s %8s %8s %8s %8s %9s %9s %8s %8s %8s' \
      "$workers" "$rate" "$acc_rate" "$non202" "$p50" "$p99" "$s99" "$dlv_load" "$dlv_near" "$dlv_e2e" "$backlog" "$cmds" "$evals")")
    details+=("workers=$workers rate=$rate: load ${load_s}s; first enqueue -> 99.9% delivered ${near_s}s, -> live sets empty ${total_s}s (drained: $drained)
    enqueue: $sent sent, $((a1 - a0)) accepted (202); refused: unavailable $unavailable, full $full${sockerr:+; wrk: $sockerr}; store time p50 <= ${s50}ms p99 <= ${s99}ms
    delivery: $delivered delivered (incl. repeats of claimed work), $dead dead, claimed $claimed, attempts not recorded (timeout; left to a claim) $record_failures
    CPU: $cpu
    Redis memory: $(( (mem1 - mem0) / 1024 / 1024 )) MiB more after the round, $(( (mem1 - mem0) / (delivered > 0 ? delivered : 1) )) bytes per delivered message (records of delivered entries are kept for [delivery] retention, 24 h by default)
    Redis time per delivered message (commandstats): $redis_time
    Redis stalls >= 2 ms (LATENCY LATEST): ${stalls:-none}
    Redis forks (AOF rewrite, RDB save) during the load: $forks
    Redis commands per delivered message: $breakdown
    load average: before $load_before, after $load_after; top in the middle of the load:
$(sed 's/^/      | /' "$work/top-$name.txt")
$profile")
    stop_pid "$gw_pid"
  done
done

echo
echo "async delivery bench: $DURATION per round; wrk $THREADS threads x $CONNECTIONS connections; $USERS users; body ${BODY_BYTES}B"
echo "redis $(redis-server --version | awk '{print $3}' | sed 's/^v=//') (AOF everysec)${PRIORITY:+; Redis and gateway priority: $PRIORITY, reset on fork}; gateway [redis] timeout $REDIS_TIMEOUT; $(nproc) CPUs; $(uptime | sed 's/^ *//')"
echo
printf '%-7s %-7s %8s %7s %8s %8s %8s %8s %9s %9s %8s %8s %8s\n' \
  workers rate '202/s' 'non-202' 'p50 ms' 'p99 ms' 'st p99' 'dlv/s ld' 'dlv/s 999' 'dlv/s e2e' backlog 'cmd/msg' 'eval/msg'
for r in "${rows[@]}"; do echo "$r"; done
cat <<'EOF'

rate: offered requests/s (max = closed model, as fast as the connections go). 202/s: accepted
per second of load. non-202: other answers (a 503 whose write Redis made after the gateway gave
up waiting is still delivered, and counted in the delivery rates). p50/p99: wrk, client side.
st p99: the gateway's store time, bucket upper bound (ms). dlv/s ld: delivered per second
while the load ran. dlv/s 999: 99.9% of the delivered / (first enqueue -> at most 0.1% of the
accepted left). dlv/s e2e: delivered / (first enqueue -> queue empty; one entry left to a claim
adds the visibility timeout). backlog: accepted, undelivered when the load stopped. cmd/msg:
Redis commands (incl. inside Lua) per delivered message; eval/msg: EVALSHA per message.

EOF
for d in "${details[@]}"; do echo "$d"; echo; done
