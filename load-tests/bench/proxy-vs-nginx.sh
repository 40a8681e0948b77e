#!/usr/bin/env bash
# Cellgate vs nginx as a reverse proxy in front of the same echo backend, same load, one run.
#
#   load-tests/bench/proxy-vs-nginx.sh            # 15 s per target, 64 connections
#   DURATION=30s CONNECTIONS=128 load-tests/bench/proxy-vs-nginx.sh
#   GATEWAY_THREADS=2 load-tests/bench/proxy-vs-nginx.sh  # Cellgate on two threads
#   CELLGATE=/path/to/cellgate load-tests/bench/proxy-vs-nginx.sh  # another build (no cargo)
#   PGO=1 load-tests/bench/proxy-vs-nginx.sh      # the profile-guided build (deploy/pgo-build.sh)
#   NGINX_HEADERS=plain load-tests/bench/proxy-vs-nginx.sh  # nginx adds no header at all
#
# NGINX_HEADERS=same (the default) has nginx do the header work Cellgate does on every
# request, as an edge nginx would: pass the client's Host, add X-Forwarded-For,
# X-Forwarded-Proto, X-Request-Id (nginx's $request_id), and the same-sized X-Cell,
# traceparent and X-Request-Deadline-Ms to the upstream; X-Request-Id and X-Cell to the
# client. Without them the backend echoes ~240 fewer bytes per request for nginx, and wrk
# and the backend, which share the cores with the proxy, do less work for nginx than for
# Cellgate: `plain` measures that difference too, not only the proxies. The backend's CPU
# per request is printed for each target so the two runs can be told apart.
#
# Starts one `cellgate echo-cell` backend, Cellgate (1 cell, no limits, 1 worker thread) and
# nginx (1 worker, keep-alive upstream pool) in front of it, drives each with wrk (2 threads),
# alternating the order over ROUNDS rounds, and prints requests/s, p50 and p99 of each, the
# proxy's own CPU time per request (user + system, from /proc), and the ratios.
#
# On a 2-core machine wrk, the backend and the proxy share the cores, so requests/s follows
# the sum of their CPU costs; CPU per request is the proxy's own share of it. Absolute numbers
# on a shared machine are noise; the ratios measured in the same run are the figures that
# mean something. Needs: wrk, nginx (apt-get install wrk nginx).
set -euo pipefail

DURATION=${DURATION:-15s}
CONNECTIONS=${CONNECTIONS:-64}
ROUNDS=${ROUNDS:-2}
WARMUP=${WARMUP:-3s}
# One worker each, like for like: nginx runs `worker_processes 1`.
GATEWAY_THREADS=${GATEWAY_THREADS:-1}
NGINX_HEADERS=${NGINX_HEADERS:-same}
root=$(cd "$(dirname "$0")/../.." && pwd)
case $NGINX_HEADERS in
  same|plain) ;;
  *) echo "NGINX_HEADERS must be same or plain, not $NGINX_HEADERS" >&2; exit 2 ;;
esac
for tool in wrk nginx; do
  command -v "$tool" >/dev/null || { echo "missing $tool: apt-get install -y $tool" >&2; exit 2; }
done
work=$(mktemp -d)
# shellcheck source=lib.sh
. "$root/load-tests/bench/lib.sh"
cellgate_bin

http_ok() { curl -fsS -o /dev/null -H 'x-user-id: bench' "$1"; }
read -r echo_port gw_port admin_port nginx_port < <(free_ports 4)

echo_backend "$echo_port"
one_cell_config "$gw_port" "$admin_port" "$echo_port" >"$work/cellgate.toml"
CELLGATE_LOG=warn "$bin" --worker-threads "$GATEWAY_THREADS" serve --config "$work/cellgate.toml" 2>"$work/cellgate.log" &
gw_pid=$!
pids+=("$gw_pid")
wait_until cellgate http_ok "http://127.0.0.1:$gw_port/"

nginx_conf "$work" "$nginx_port" "$echo_port" "$NGINX_HEADERS" >"$work/nginx.conf"
nginx -c "$work/nginx.conf" -p "$work" 2>"$work/nginx.stderr" &
nginx_master=$!
pids+=("$nginx_master")
wait_until nginx http_ok "http://127.0.0.1:$nginx_port/"
# The worker does the proxying; the master only supervises.
nginx_worker=$(pgrep -P "$nginx_master" | head -1)

run() { # name port pid -> "rps p50 p99 cpu_us_per_request backend_cpu_us_per_request"
  wrk -t2 -c"$CONNECTIONS" -d"$WARMUP" -H 'x-user-id: bench' "http://127.0.0.1:$2/bench" >/dev/null
  local before after echo_before echo_after out rps p50 p99 requests errors
  before=$(cpu_of "$3")
  echo_before=$(cpu_of "$echo_pid")
  out=$(wrk -t2 -c"$CONNECTIONS" -d"$DURATION" --latency -H 'x-user-id: bench' "http://127.0.0.1:$2/bench")
  after=$(cpu_of "$3")
  echo_after=$(cpu_of "$echo_pid")
  rps=$(awk '/^Requests\/sec/ {print $2}' <<<"$out")
  requests=$(awk '/requests in/ {print $1}' <<<"$out")
  p50=$(to_ms "$(awk '$1=="50%" {print $2}' <<<"$out")")
  p99=$(to_ms "$(awk '$1=="99%" {print $2}' <<<"$out")")
  errors=$(awk '/Non-2xx|Socket errors/ {print}' <<<"$out" | tr '\n' ' ')
  [ -n "$errors" ] && echo "  $1: $errors" >&2
  echo "$rps $p50 $p99 $(per_request "$before" "$after" "$requests") $(per_request "$echo_before" "$echo_after" "$requests")"
}
per_request() { awk -v a="$1" -v b="$2" -v n="$3" 'BEGIN { printf "%.2f", (b - a) * 1e6 / n }'; }

declare -A sum_rps sum_p50 sum_p99 sum_cpu sum_echo round_rps round_p99 round_cpu
pairs=()
for t in cellgate nginx; do sum_rps[$t]=0; sum_p50[$t]=0; sum_p99[$t]=0; sum_cpu[$t]=0; sum_echo[$t]=0; done
add() { awk -v a="$1" -v b="$2" 'BEGIN{print a+b}'; }
echo "nginx headers: $NGINX_HEADERS"
printf '%-6s %-9s %12s %10s %10s %14s %16s\n' round target 'req/s' 'p50 ms' 'p99 ms' 'cpu us/req' 'backend us/req'
for round in $(seq 1 "$ROUNDS"); do
  if (( round % 2 )); then order="nginx cellgate"; else order="cellgate nginx"; fi
  for t in $order; do
    if [ "$t" = cellgate ]; then port=$gw_port pid=$gw_pid; else port=$nginx_port pid=$nginx_worker; fi
    read -r rps p50 p99 cpu echo_cpu < <(run "$t" "$port" "$pid")
    printf '%-6s %-9s %12.0f %10.3f %10.3f %14.2f %16.2f\n' "$round" "$t" "$rps" "$p50" "$p99" "$cpu" "$echo_cpu"
    sum_rps[$t]=$(add "${sum_rps[$t]}" "$rps")
    sum_p50[$t]=$(add "${sum_p50[$t]}" "$p50")
    sum_p99[$t]=$(add "${sum_p99[$t]}" "$p99")
    sum_cpu[$t]=$(add "${sum_cpu[$t]}" "$cpu")
    sum_echo[$t]=$(add "${sum_echo[$t]}" "$echo_cpu")
    round_rps[$t]=$rps; round_p99[$t]=$p99; round_cpu[$t]=$cpu
  done
  # The two targets of a round ran back to back: their ratio is the least disturbed by the
  # machine's load drifting from round to round, which moves every absolute figure.
  pairs+=("$(awk -v cr="${round_rps[cellgate]}" -v nr="${round_rps[nginx]}" -v c99="${round_p99[cellgate]}" \
    -v n99="${round_p99[nginx]}" -v cc="${round_cpu[cellgate]}" -v nc="${round_cpu[nginx]}" \
    'BEGIN { printf "%.4f %.4f %.4f", cr / nr, c99 / n99, cc / nc }')")
done
echo
awk -v cr="${sum_rps[cellgate]}" -v nr="${sum_rps[nginx]}" \
    -v c50="${sum_p50[cellgate]}" -v n50="${sum_p50[nginx]}" \
    -v c99="${sum_p99[cellgate]}" -v n99="${sum_p99[nginx]}" \
    -v cc="${sum_cpu[cellgate]}" -v nc="${sum_cpu[nginx]}" \
    -v ce="${sum_echo[cellgate]}" -v ne="${sum_echo[nginx]}" \
    -v r="$ROUNDS" -v c="$CONNECTIONS" -v d="$DURATION" 'BEGIN {
  printf "mean over %d rounds, %d connections, %s each:\n", r, c, d
  printf "  cellgate %10.0f req/s  p50 %7.3f ms  p99 %7.3f ms  cpu %6.2f us/req  backend %6.2f us/req\n", cr/r, c50/r, c99/r, cc/r, ce/r
  printf "  nginx    %10.0f req/s  p50 %7.3f ms  p99 %7.3f ms  cpu %6.2f us/req  backend %6.2f us/req\n", nr/r, n50/r, n99/r, nc/r, ne/r
  printf "  ratio cellgate/nginx: throughput %.2fx, p50 %.2fx, p99 %.2fx, cpu per request %.2fx\n", cr/nr, c50/n50, c99/n99, cc/nc
}'
# Per-round ratios: their median is what a typical pair of back-to-back runs showed, and
# the count of rounds won says whether the means hide a split.
printf '%s\n' "${pairs[@]}" | awk '
  function median(v, n,   i, j, t) {
    for (i = 2; i <= n; i++) { t = v[i]; for (j = i - 1; j >= 1 && v[j] > t; j--) v[j + 1] = v[j]; v[j + 1] = t }
    return n % 2 ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
  }
  { n++; rps[n] = $1; p99[n] = $2; cpu[n] = $3
    if ($1 > 1) won++; if ($2 <= 1) low++
    if (n == 1 || $1 < lo) lo = $1; if (n == 1 || $1 > hi) hi = $1 }
  END {
    printf "  per round (back to back): throughput ratio median %.2fx (%.2f-%.2fx), cellgate ahead in %d of %d rounds;\n", median(rps, n), lo, hi, won, n
    printf "    p99 ratio median %.2fx, cellgate p99 <= nginx p99 in %d of %d rounds; cpu per request ratio median %.2fx\n", median(p99, n), low, n, median(cpu, n)
  }'
