#!/usr/bin/env bash
# Horizontal gateways on Redis Cluster: how the rate limiter's Redis load and its accuracy
# change with 1, 2 and 4 gateways sharing one policy. A benchmark, not a test: it prints
# figures and asserts nothing about them (exit 0 unless something could not run).
#
#   load-tests/bench/cluster-scale.sh                     # GATEWAYS="1 2 4", DURATION=20s
#   DURATION=15s GATEWAYS="1 4" load-tests/bench/cluster-scale.sh
#
# Setup, on loopback ports found free:
#   - a Redis Cluster of 6 `redis-server --cluster-enabled yes` processes (persistence off),
#     formed by `redis-cli --cluster create --cluster-replicas 1`: 3 masters, 3 replicas;
#   - one `cellgate echo-cell`;
#   - per round, N gateways (release build, `cargo build --release -p gateway --bin cellgate`)
#     started from one config: `[redis] cluster = [the 6 nodes]`, `[redis] timeout =
#     REDIS_TIMEOUT`, `[ratelimit] sync_interval = SYNC_INTERVAL` and one policy `POLICY`
#     (key = "user", LIMIT per 1s, burst = limit); listen addresses and gateway ids come from
#     the environment (`${...}` in the config).
# One round per N in GATEWAYS, each on emptied masters (FLUSHALL) and fresh gateways:
#   1. IDLE seconds with the gateways up and no load: the background (control-plane
#      heartbeats, directory polls) per master;
#   2. k6 (load-tests/bench/cluster-scale.js) offers HOT_KEYS keys OFFERED requests/s each
#      (constant arrival rate, HOT_KEYS x OFFERED req/s overall) for DURATION; every key's
#      requests rotate over the N gateways, so each gateway sees every key at OFFERED/N.
#   Redis and gateway figures are read over a window inside the load: from 2 s after the
#   first decision to 2 s before the end (no start-up or wind-down in the rates).
#
# Reported per round:
#   - offered/s: decisions per second in the window (all gateways, allowed + denied);
#   - adm/s/key and accuracy: 200s per key per second, and admitted / (LIMIT x HOT_KEYS x
#     (DURATION - WARMUP)), both counted by k6 on requests sent after the first WARMUP
#     second (each key's initial burst);
#   - Redis commands per second summed over the masters, from INFO commandstats (commands run
#     inside Lua scripts count, as Redis counts them): `all` = everything but INFO, COMMAND*,
#     CLUSTER* and PING (this script's reads and the clients' topology/health checks, shown
#     apart); `bg` = the same in the idle phase; `limiter` = all - bg, the sync ticks' cost;
#     then per master (limiter, in the order of the master list), per gateway, per hot key
#     per gateway, and per request (limiter commands / offered requests);
#   - calls/s/gw: the limiter's script calls per second per gateway, as the gateways count
#     them (`cellgate_ratelimit_redis_commands_total`); errs/logs: failed or timed-out sync
#     ticks (`cellgate_ratelimit_sync_errors_total`) and `sync failed` warnings in the logs
#     (one per streak of failures: the limiter logs entering Degraded, not each tick).
# Details per round: per gateway (decisions, script calls, sync ticks and how long they took,
# errors, one hot key's view from /admin/ratelimit/POLICY/hot-0 in mid-load: share, live
# gateways, fleet demand), per master (slot groups `{rl:POLICY:g<n>}` held, commands by name,
# CPU), topology commands, k6 figures.
#
# Environment: DURATION (20s, at least 6s), GATEWAYS ("1 2 4"), HOT_KEYS (100), LIMIT (10, per
# key per second), OFFERED (20, per key per second), WARMUP (1, seconds left out of accuracy),
# IDLE (5, seconds of background measurement), SYNC_INTERVAL ("100ms", the default),
# REDIS_TIMEOUT ("10ms", the default and deploy/cellgate.toml's), POLICY ("per-user"),
# BUILD=0 skips the cargo build (uses target/release/cellgate as it is), KEEP_WORK=1 keeps the
# work directory (configs, logs, commandstats, k6 output); it is also kept when a run fails or
# is interrupted.
# Needs: redis-server and redis-cli (7.x), k6, curl, python3.
set -euo pipefail

DURATION=${DURATION:-20s}
GATEWAYS=${GATEWAYS:-1 2 4}
HOT_KEYS=${HOT_KEYS:-100}
LIMIT=${LIMIT:-10}
OFFERED=${OFFERED:-20}
WARMUP=${WARMUP:-1}
IDLE=${IDLE:-5}
SYNC_INTERVAL=${SYNC_INTERVAL:-100ms}
REDIS_TIMEOUT=${REDIS_TIMEOUT:-10ms}
POLICY=${POLICY:-per-user}
BUILD=${BUILD:-1}

root=$(cd "$(dirname "$0")/../.." && pwd)
for tool in redis-server redis-cli k6 curl python3; do
  command -v "$tool" >/dev/null || { echo "missing $tool (apt-get install -y redis-server curl python3; k6 from grafana.com)" >&2; exit 2; }
done
duration_s=$(awk -v v="$DURATION" 'BEGIN {
  n = v + 0; if (v ~ /ms$/) n /= 1000; else if (v ~ /m$/) n *= 60; else if (v ~ /h$/) n *= 3600
  print n }')
if ! awk -v d="$duration_s" 'BEGIN { exit !(d >= 6) }'; then echo "DURATION must be at least 6s, got $DURATION" >&2; exit 2; fi
for n in $GATEWAYS; do
  case "$n" in *[!0-9]*|''|0) echo "GATEWAYS: positive integers, got $n" >&2; exit 2 ;; esac
done
if [ "$BUILD" != 0 ]; then
  cargo build --release --quiet --manifest-path "$root/Cargo.toml" -p gateway --bin cellgate
fi
bin="${CARGO_TARGET_DIR:-$root/target}/release/cellgate"
[ -x "$bin" ] || { echo "no $bin (run without BUILD=0)" >&2; exit 2; }

work=$(mktemp -d "${TMPDIR:-/tmp}/cellgate-bench-cluster.XXXXXX")
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"
rcli() { local port=$1; shift; redis-cli -p "$port" "$@"; }

# ---- Redis Cluster: 6 nodes, 3 masters + 3 replicas ------------------------------------------
read -r -a ports <<<"$(free_ports 12)"
nodes=("${ports[@]:0:6}")
buses=("${ports[@]:6:6}")
declare -A node_pid
for i in 0 1 2 3 4 5; do
  mkdir -p "$work/redis-$i"
  redis-server --port "${nodes[$i]}" --bind 127.0.0.1 --cluster-enabled yes \
    --cluster-port "${buses[$i]}" --cluster-config-file nodes.conf --save "" --appendonly no \
    --dir "$work/redis-$i" --daemonize no --logfile "$work/redis-$i.log" &
  pids+=($!)
  node_pid[${nodes[$i]}]=$!
done
for p in "${nodes[@]}"; do wait_for "redis :$p" 100 rcli "$p" ping; done
addrs=()
for p in "${nodes[@]}"; do addrs+=("127.0.0.1:$p"); done
log "forming the cluster: ${addrs[*]}"
redis-cli --cluster create "${addrs[@]}" --cluster-replicas 1 --cluster-yes >"$work/cluster-create.log" 2>&1 \
  || { cat "$work/cluster-create.log" >&2; exit 1; }
cluster_ok() {
  local p info
  for p in "${nodes[@]}"; do
    info=$(rcli "$p" cluster info | tr -d '\r')
    grep -qx 'cluster_state:ok' <<<"$info" || return 1
    grep -qx 'cluster_slots_ok:16384' <<<"$info" || return 1
    grep -qx 'cluster_known_nodes:6' <<<"$info" || return 1
  done
}
wait_for "cluster_state:ok on every node" 300 cluster_ok
masters=()
for p in "${nodes[@]}"; do
  if [ "$(rcli "$p" role | tr -d '\r' | sed -n 1p)" = master ]; then masters+=("$p"); fi
done
[ "${#masters[@]}" -eq 3 ] || { echo "expected 3 masters, got ${masters[*]}" >&2; exit 1; }
replicas_linked() {
  local p
  for p in "${masters[@]}"; do rcli "$p" info replication | tr -d '\r' | grep -qx 'connected_slaves:1' || return 1; done
}
wait_for "a linked replica per master" 300 replicas_linked
# Which master holds which slot group of the policy: `{rl:<policy>:g<n>}`, 8 groups.
master_of_slot() {
  rcli "${nodes[0]}" cluster nodes | tr -d '\r' | awk -v s="$1" '
    $3 ~ /master/ { split($2, a, "[:@]"); for (i = 9; i <= NF; i++) {
      if ($i ~ /^\[/) continue
      n = split($i, r, "-"); lo = r[1]; hi = (n > 1 ? r[2] : r[1])
      if (s >= lo && s <= hi) { print a[2]; exit } } }'
}
declare -A groups_on
for p in "${masters[@]}"; do groups_on[$p]=""; done
for g in 0 1 2 3 4 5 6 7; do
  slot=$(rcli "${nodes[0]}" cluster keyslot "{rl:$POLICY:g$g}" | tr -d '\r')
  m=$(master_of_slot "$slot")
  groups_on[$m]+="g$g "
done
log "masters ${masters[*]}; slot groups: $(for p in "${masters[@]}"; do printf ':%s=%s; ' "$p" "${groups_on[$p]% }"; done)"

# ---- echo cell, config ------------------------------------------------------------------------
read -r echo_port <<<"$(free_ports 1)"
"$bin" echo-cell --name cell-1 --instance cell1-a --listen "127.0.0.1:$echo_port" >"$work/echo.log" 2>&1 &
pids+=($!)
wait_for "echo :$echo_port" 100 curl -fsS "http://127.0.0.1:$echo_port/healthz"

seeds=$(printf '"redis://127.0.0.1:%s", ' "${nodes[@]}")
seeds=${seeds%, }
# One file for every gateway; what differs comes from the environment (cellgate substitutes
# `${NAME}` itself, hence the escaped dollars).
cat >"$work/cellgate.toml" <<TOML
[server]
listen = "\${CELLGATE_LISTEN}"
admin_listen = "\${CELLGATE_ADMIN_LISTEN}"
gateway_id = "\${CELLGATE_GATEWAY_ID}"
shutdown_grace = "1s"

[redis]
cluster = [$seeds]
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
name = "$POLICY"
key = "user"
limit = $LIMIT
per = "1s"
TOML
CELLGATE_LISTEN=127.0.0.1:1 CELLGATE_ADMIN_LISTEN=127.0.0.1:2 CELLGATE_GATEWAY_ID=check \
  "$bin" check-config --config "$work/cellgate.toml" >"$work/check-config.log" 2>&1 \
  || { cat "$work/check-config.log" >&2; exit 1; }

# ---- figures ----------------------------------------------------------------------------------
# Snapshot of every master: files <prefix>-<port>; the time in <prefix>.t; CPU in <prefix>.cpu.
snapshot_redis() {
  local p t0 t1
  t0=$(now)
  for p in "${masters[@]}"; do
    commandstats "$p" >"$1-$p"
    cpu_of "${node_pid[$p]}" >"$1-$p.cpu"
  done
  t1=$(now)
  awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f\n", (a + b) / 2 }' >"$1.t"
}
# Counted commands, topology commands (CLUSTER*, PING; INFO and COMMAND* are not in the
# snapshots), EVALSHA between two snapshots of one node.
calls_between() {
  awk 'FNR == NR { c0[$1] = $2; next }
    { d = $2 - c0[$1]; if (d <= 0) next
      if ($1 == "info" || $1 ~ /^command/ || $1 ~ /^cluster/ || $1 == "ping") tool += d
      else { all += d; if ($1 == "evalsha" || $1 == "eval") ev += d } }
    END { printf "%d %d %d\n", all, tool, ev }' "$1" "$2"
}
# Per command calls/s between two snapshots of one node, counted commands only, busiest first.
breakdown() {
  awk -v t="$3" 'FNR == NR { c0[$1] = $2; next }
    { d = $2 - c0[$1]; if (d > 0) printf "%s %.1f\n", $1, d / t }' "$1" "$2" | sort -k2 -gr | awk '{ printf "%s=%s ", $1, $2 }'
}
# allowed denied calls errors ticks ticks<=5ms ticks<=10ms of one gateway, from its /metrics
# (ticks: those that called Redis, with their duration).
gw_counters() {
  curl -fsS "http://127.0.0.1:$1/metrics" | awk -v pol="policy=\"$POLICY\"" '
    /^cellgate_ratelimit_decisions_total\{/ && index($0, pol) {
      if ($0 ~ /outcome="allowed"/) a = $NF; else if ($0 ~ /outcome="denied"/) d = $NF }
    /^cellgate_ratelimit_redis_commands_total / { c = $NF }
    /^cellgate_ratelimit_sync_errors_total / { e = $NF }
    /^cellgate_ratelimit_sync_duration_seconds_count / { n = $NF }
    /^cellgate_ratelimit_sync_duration_seconds_bucket\{le="0\.005"\}/ { f = $NF }
    /^cellgate_ratelimit_sync_duration_seconds_bucket\{le="0\.01"\}/ { t = $NF }
    END { printf "%d %d %d %d %d %d %d\n", a, d, c, e, n, f, t }'
}
snapshot_gateways() {
  local i
  for i in "${!gw_admin[@]}"; do gw_counters "${gw_admin[$i]}" >"$1-gw$i"; done
}
total_decisions() {
  local i s=0 a d
  for i in "${!gw_admin[@]}"; do read -r a d _ <"$1-gw$i"; s=$((s + a + d)); done
  echo "$s"
}
rate() { awk -v n="$1" -v t="$2" -v k="${3:-1}" 'BEGIN { printf "%.1f\n", n / t / k }'; }
span() { awk -v a="$(cat "$1.t")" -v b="$(cat "$2.t")" 'BEGIN { printf "%.3f\n", b - a }'; }

# ---- rounds -----------------------------------------------------------------------------------
rows=()
details=()
for n in $GATEWAYS; do
  r="n$n"
  for p in "${masters[@]}"; do rcli "$p" flushall >/dev/null; done
  gw_pids=(); gw_admin=(); gw_urls=(); gw_ids=()
  for i in $(seq 0 $((n - 1))); do
    read -r gw_port admin_port <<<"$(free_ports 2)"
    CELLGATE_LISTEN="127.0.0.1:$gw_port" CELLGATE_ADMIN_LISTEN="127.0.0.1:$admin_port" \
      CELLGATE_GATEWAY_ID="gw-$n-$((i + 1))" CELLGATE_LOG=warn \
      "$bin" serve --config "$work/cellgate.toml" >"$work/$r-gw$i.log" 2>&1 &
    pids+=($!)
    gw_pids+=($!); gw_admin+=("$admin_port"); gw_urls+=("http://127.0.0.1:$gw_port"); gw_ids+=("gw-$n-$((i + 1))")
  done
  for a in "${gw_admin[@]}"; do wait_for "gateway admin :$a" 300 curl -fsS "http://127.0.0.1:$a/readyz"; done
  sleep 2 # a heartbeat or two: every gateway counts the others live

  log "$n gateway(s): idle ${IDLE}s"
  snapshot_redis "$work/$r-idle0"
  sleep "$IDLE"
  snapshot_redis "$work/$r-idle1"
  t_idle=$(span "$work/$r-idle0" "$work/$r-idle1")

  log "$n gateway(s): $HOT_KEYS keys x $OFFERED req/s for $DURATION (limit $LIMIT/s per key)"
  GW_URLS=$(IFS=,; echo "${gw_urls[*]}") HOT_KEYS="$HOT_KEYS" OFFERED="$OFFERED" DURATION="$DURATION" \
    WARMUP="$WARMUP" SUMMARY_OUT="$work/$r-k6.json" \
    k6 run --quiet --no-usage-report "$root/load-tests/bench/cluster-scale.js" >"$work/$r-k6.log" 2>&1 &
  k6_pid=$!
  pids+=("$k6_pid")
  # The window starts 2 s after the first decision, ends 2 s before the load does.
  first_decision() { gw_counters "${gw_admin[0]}" | awk '{ exit !($1 + $2 > 0) }'; }
  wait_for "first request through the gateways" 300 first_decision
  t_first=$(now)
  sleep 2
  snapshot_gateways "$work/$r-load0"
  snapshot_redis "$work/$r-load0"
  window=$(awk -v d="$duration_s" 'BEGIN { print d - 4 }')
  sleep "$(awk -v w="$window" 'BEGIN { print w / 2 }')"
  views=""
  for i in "${!gw_admin[@]}"; do
    view=$(curl -fsS "http://127.0.0.1:${gw_admin[$i]}/admin/ratelimit/$POLICY/hot-0" | python3 -c '
import json, sys
v = json.load(sys.stdin); u = v.get("usage") or {}
def f(x, fmt): return "-" if x is None else fmt % x
print("mode %s, share %s, local rate %s/s, local demand %s/s, fleet demand %s/s, live gateways %s, last sync %s ms ago" % (
    v.get("mode"), f(u.get("share"), "%.3f"), f(u.get("local_rate"), "%.2f"), f(u.get("local_demand"), "%.1f"),
    f(u.get("global_demand"), "%.1f"), u.get("live_gateways", "-"), u.get("last_sync_age_ms", "-")))') \
      || view="(no answer)"
    views+="      ${gw_ids[$i]}: $view
"
  done
  # Ends 2 s before the load: the window is measured from the first decision.
  sleep "$(awk -v t="$t_first" -v now="$(now)" -v d="$duration_s" 'BEGIN { s = t + d - 2 - now; print (s > 0 ? s : 0) }')"
  snapshot_redis "$work/$r-load1"
  snapshot_gateways "$work/$r-load1"
  wait "$k6_pid" || log "k6 exited with $? (see $work/$r-k6.log)"
  forget "$k6_pid"
  t_load=$(span "$work/$r-load0" "$work/$r-load1")
  for pid in "${gw_pids[@]}"; do stop_pid "$pid"; done

  # Redis, per master and in total.
  all=0; bg=0; tool=0; evs=0; per_master=(); master_lines=""
  for p in "${masters[@]}"; do
    read -r a_load t_l e_l < <(calls_between "$work/$r-load0-$p" "$work/$r-load1-$p")
    read -r a_idle _ _ < <(calls_between "$work/$r-idle0-$p" "$work/$r-idle1-$p")
    a_rate=$(rate "$a_load" "$t_load"); b_rate=$(rate "$a_idle" "$t_idle")
    l_rate=$(awk -v a="$a_rate" -v b="$b_rate" 'BEGIN { printf "%.0f\n", a - b }')
    per_master+=("$l_rate")
    all=$((all + a_load)); tool=$((tool + t_l)); evs=$((evs + e_l))
    bg=$(awk -v s="$bg" -v b="$b_rate" 'BEGIN { print s + b }')
    cpu=$(awk -v a="$(cat "$work/$r-load0-$p.cpu")" -v b="$(cat "$work/$r-load1-$p.cpu")" -v t="$t_load" \
      'BEGIN { printf "%.0f%%", 100 * (b - a) / t }')
    master_lines+="      :$p (groups ${groups_on[$p]:-none}): all ${a_rate}/s, idle ${b_rate}/s, limiter ${l_rate}/s, EVALSHA $(rate "$e_l" "$t_load")/s, CPU $cpu
        load:  $(breakdown "$work/$r-load0-$p" "$work/$r-load1-$p" "$t_load")
        idle:  $(breakdown "$work/$r-idle0-$p" "$work/$r-idle1-$p" "$t_idle")
"
  done
  all_rate=$(rate "$all" "$t_load")
  lim_rate=$(awk -v a="$all_rate" -v b="$bg" 'BEGIN { printf "%.0f\n", a - b }')
  decisions=$(( $(total_decisions "$work/$r-load1") - $(total_decisions "$work/$r-load0") ))
  offered=$(rate "$decisions" "$t_load")

  # Gateways.
  calls=0; errs=0; failed_logs=0; gw_lines=""
  for i in "${!gw_admin[@]}"; do
    read -r a0 d0 c0 _ n0 f0 t0 <"$work/$r-load0-gw$i"
    read -r a1 d1 c1 e1 n1 f1 t1 <"$work/$r-load1-gw$i"
    ticks=$(awk -v n=$((n1 - n0)) -v f=$((f1 - f0)) -v t=$((t1 - t0)) \
      'BEGIN { if (n == 0) n = 1; printf "%.0f%% <= 5 ms, %.1f%% > 10 ms", 100 * f / n, 100 * (n - t) / n }')
    calls=$((calls + c1 - c0)); errs=$((errs + e1))
    f=$(grep -c 'sync failed' "$work/$r-gw$i.log" || true)
    w=$(grep -Ec 'WARN|ERROR' "$work/$r-gw$i.log" || true)
    failed_logs=$((failed_logs + f))
    gw_lines+="      ${gw_ids[$i]}: allowed $(rate $((a1 - a0)) "$t_load")/s, denied $(rate $((d1 - d0)) "$t_load")/s, script calls $(rate $((c1 - c0)) "$t_load")/s, sync ticks $(rate $((n1 - n0)) "$t_load")/s ($ticks), sync errors $e1 (whole run), 'sync failed' log lines $f, WARN/ERROR lines $w
"
  done
  calls_gw=$(rate "$calls" "$t_load" "$n")

  # Accuracy (k6).
  read -r requests dropped adm_m lim_m unexpected p50 p99 < <(python3 -c '
import json, sys
s = json.load(open(sys.argv[1]))
print(s["requests"], s["dropped"], s["admitted_measure"], s["limited_measure"], s["unexpected"],
      "%.1f" % (s.get("p50_ms") or 0), "%.1f" % (s.get("p99_ms") or 0))' "$work/$r-k6.json")
  read -r adm_key accuracy < <(awk -v a="$adm_m" -v k="$HOT_KEYS" -v l="$LIMIT" -v d="$duration_s" -v w="$WARMUP" \
    'BEGIN { t = d - w; printf "%.2f %.1f%%\n", a / k / t, 100 * a / (l * k * t) }')

  per_gw=$(awk -v l="$lim_rate" -v n="$n" 'BEGIN { printf "%.0f\n", l / n }')
  per_key_gw=$(awk -v l="$lim_rate" -v n="$n" -v k="$HOT_KEYS" 'BEGIN { printf "%.2f\n", l / n / k }')
  per_req=$(awk -v l="$lim_rate" -v o="$offered" 'BEGIN { printf "%.3f\n", (o > 0 ? l / o : 0) }')
  rows+=("$(printf '%-4s %9s %9s %8s %8s %6s %8s %-16s %7s %9s %8s %10s %9s' \
    "$n" "$offered" "$adm_key/$LIMIT" "$accuracy" "$all_rate" "$(printf '%.0f' "$bg")" "$lim_rate" \
    "$(IFS=/; echo "${per_master[*]}")" "$per_gw" "$per_key_gw" "$per_req" "$calls_gw" "$errs/$failed_logs")")
  details+=("$n gateway(s): window ${t_load}s inside the load (idle phase ${t_idle}s)
    k6: $requests requests ($(rate "$requests" "$duration_s")/s), dropped iterations $dropped, unexpected statuses $unexpected, p50 ${p50}ms p99 ${p99}ms; after warm-up: $adm_m admitted, $lim_m limited
    Redis (masters): all $all_rate/s, idle $(printf '%.1f' "$bg")/s, limiter $lim_rate/s, EVALSHA $(rate "$evs" "$t_load")/s; INFO/COMMAND/CLUSTER/PING $(rate "$tool" "$t_load")/s (this script's INFO reads included)
$master_lines    gateways:
$gw_lines    key hot-0 in mid-load (/admin/ratelimit/$POLICY/hot-0):
$views")
done

echo
echo "horizontal gateways on Redis Cluster (3 masters + 3 replicas): $HOT_KEYS keys x $OFFERED req/s, policy $POLICY limit $LIMIT/s per key, $DURATION per round"
echo "sync_interval $SYNC_INTERVAL, [redis] timeout $REDIS_TIMEOUT; redis $(redis-server --version | awk '{print $3}' | sed 's/^v=//'); $(nproc) CPUs; $(uptime | sed 's/^ *//')"
echo "masters: $(for p in "${masters[@]}"; do printf ':%s (%s) ' "$p" "${groups_on[$p]% }"; done)"
echo
printf '%-4s %9s %9s %8s %8s %6s %8s %-16s %7s %9s %8s %10s %9s\n' \
  gw 'offered/s' 'adm/s/key' accuracy 'cmd/s' bg limiter 'per master' 'per gw' 'per key/gw' 'cmd/req' 'calls/s/gw' 'errs/logs'
for row in "${rows[@]}"; do echo "$row"; done
cat <<'EOF'

gw: gateways. offered/s: decisions per second (allowed + denied), all gateways. adm/s/key: 200s
per key per second after the warm-up, against the limit; accuracy: admitted / (limit x keys x
seconds after the warm-up). cmd/s: Redis commands per second summed over the masters (INFO
commandstats, script-internal commands included; INFO, COMMAND*, CLUSTER*, PING left out);
bg: the same with the gateways idle (control plane); limiter = cmd/s - bg, then per master,
per gateway, per hot key per gateway, and per request. calls/s/gw: the limiter's script calls
per second per gateway (its own count). errs/logs: sync errors (metric) / `sync failed` log
lines, whole round.

EOF
for d in "${details[@]}"; do echo "$d"; echo; done
