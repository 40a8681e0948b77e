#!/usr/bin/env bash
# Cellgate vs nginx as a reverse proxy in front of the same echo backend, same load, one run.
#
#   load-tests/bench/proxy-vs-nginx.sh            # 15 s per target, 64 connections
#   DURATION=30s CONNECTIONS=128 load-tests/bench/proxy-vs-nginx.sh
#   GATEWAY_THREADS=2 load-tests/bench/proxy-vs-nginx.sh  # Cellgate on two threads
#
# Starts one `cellgate echo-cell` backend, Cellgate (1 cell, no limits, 1 worker thread) and
# nginx (1 worker, keep-alive upstream pool) in front of it, drives each with wrk (2 threads), alternating the
# order over ROUNDS rounds, and prints requests/s, p50 and p99 of each plus the ratios.
# Needs: wrk, nginx (apt-get install wrk nginx). Absolute numbers on a shared 2-core machine
# are noise; the ratio measured in the same run is the figure that means something.
set -euo pipefail

DURATION=${DURATION:-15s}
CONNECTIONS=${CONNECTIONS:-64}
ROUNDS=${ROUNDS:-2}
WARMUP=${WARMUP:-3s}
# One worker each, like for like: nginx runs `worker_processes 1`.
GATEWAY_THREADS=${GATEWAY_THREADS:-1}

root=$(cd "$(dirname "$0")/../.." && pwd)
for tool in wrk nginx; do
  command -v "$tool" >/dev/null || { echo "missing $tool: apt-get install -y $tool" >&2; exit 2; }
done
cargo build --release --quiet --manifest-path "$root/Cargo.toml" -p gateway
bin="$root/target/release/cellgate"

work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  [ -f "$work/nginx.pid" ] && kill "$(cat "$work/nginx.pid" 2>/dev/null)" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
wait_http() {
  for _ in $(seq 1 100); do
    curl -fsS -o /dev/null -H 'x-user-id: bench' "$1" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "not ready: $1" >&2; exit 1
}

echo_port=$(free_port); gw_port=$(free_port); admin_port=$(free_port); nginx_port=$(free_port)

"$bin" echo-cell --name bench --listen "127.0.0.1:$echo_port" 2>"$work/echo.log" &
pids+=($!)
wait_http "http://127.0.0.1:$echo_port/healthz"

cat >"$work/cellgate.toml" <<TOML
[server]
listen = "127.0.0.1:$gw_port"
admin_listen = "127.0.0.1:$admin_port"

[[cells]]
name = "cell-1"
upstreams = ["127.0.0.1:$echo_port"]
TOML
CELLGATE_LOG=warn "$bin" --worker-threads "$GATEWAY_THREADS" serve --config "$work/cellgate.toml" 2>"$work/cellgate.log" &
pids+=($!)
wait_http "http://127.0.0.1:$gw_port/"

mkdir -p "$work/nginx-tmp"
cat >"$work/nginx.conf" <<NGINX
worker_processes 1;
daemon off;
pid $work/nginx.pid;
error_log $work/nginx-error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $work/nginx-tmp/body;
  proxy_temp_path $work/nginx-tmp/proxy;
  fastcgi_temp_path $work/nginx-tmp/fastcgi;
  uwsgi_temp_path $work/nginx-tmp/uwsgi;
  scgi_temp_path $work/nginx-tmp/scgi;
  upstream backend { server 127.0.0.1:$echo_port; keepalive 128; }
  server {
    listen 127.0.0.1:$nginx_port;
    keepalive_requests 100000;
    location / {
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering off;
    }
  }
}
NGINX
nginx -c "$work/nginx.conf" -p "$work" &
pids+=($!)
wait_http "http://127.0.0.1:$nginx_port/"

# wrk prints latency in us/ms/s; normalise to milliseconds.
to_ms() { awk -v v="$1" 'BEGIN { n=v+0; if (v ~ /us$/) n/=1000; else if (v ~ /ms$/) n=n; else if (v ~ /s$/) n*=1000; printf "%.3f", n }'; }

run() { # name port -> "rps p50 p99"
  wrk -t2 -c"$CONNECTIONS" -d"$WARMUP" -H 'x-user-id: bench' "http://127.0.0.1:$2/bench" >/dev/null
  local out; out=$(wrk -t2 -c"$CONNECTIONS" -d"$DURATION" --latency -H 'x-user-id: bench' "http://127.0.0.1:$2/bench")
  local rps p50 p99 errors
  rps=$(awk '/^Requests\/sec/ {print $2}' <<<"$out")
  p50=$(to_ms "$(awk '$1=="50%" {print $2}' <<<"$out")")
  p99=$(to_ms "$(awk '$1=="99%" {print $2}' <<<"$out")")
  errors=$(awk '/Non-2xx|Socket errors/ {print}' <<<"$out" | tr '\n' ' ')
  [ -n "$errors" ] && echo "  $1: $errors" >&2
  echo "$rps $p50 $p99"
}

declare -A sum_rps sum_p50 sum_p99
for t in cellgate nginx; do sum_rps[$t]=0; sum_p50[$t]=0; sum_p99[$t]=0; done
printf '%-6s %-9s %12s %10s %10s\n' round target 'req/s' 'p50 ms' 'p99 ms'
for round in $(seq 1 "$ROUNDS"); do
  if (( round % 2 )); then order="nginx cellgate"; else order="cellgate nginx"; fi
  for t in $order; do
    port=$([ "$t" = cellgate ] && echo "$gw_port" || echo "$nginx_port")
    read -r rps p50 p99 < <(run "$t" "$port")
    printf '%-6s %-9s %12.0f %10.3f %10.3f\n' "$round" "$t" "$rps" "$p50" "$p99"
    sum_rps[$t]=$(awk -v a="${sum_rps[$t]}" -v b="$rps" 'BEGIN{print a+b}')
    sum_p50[$t]=$(awk -v a="${sum_p50[$t]}" -v b="$p50" 'BEGIN{print a+b}')
    sum_p99[$t]=$(awk -v a="${sum_p99[$t]}" -v b="$p99" 'BEGIN{print a+b}')
  done
done
echo
awk -v cr="${sum_rps[cellgate]}" -v nr="${sum_rps[nginx]}" \
    -v c50="${sum_p50[cellgate]}" -v n50="${sum_p50[nginx]}" \
    -v c99="${sum_p99[cellgate]}" -v n99="${sum_p99[nginx]}" -v r="$ROUNDS" -v c="$CONNECTIONS" -v d="$DURATION" 'BEGIN {
  printf "mean over %d rounds, %d connections, %s each:\n", r, c, d
  printf "  cellgate %10.0f req/s  p50 %7.3f ms  p99 %7.3f ms\n", cr/r, c50/r, c99/r
  printf "  nginx    %10.0f req/s  p50 %7.3f ms  p99 %7.3f ms\n", nr/r, n50/r, n99/r
  printf "  ratio cellgate/nginx: throughput %.2fx, p50 %.2fx, p99 %.2fx\n", cr/nr, c50/n50, c99/n99
}'
