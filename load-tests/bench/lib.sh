# Helpers shared by the benchmark scripts of load-tests/bench/: sourced, not run.
#
# The caller sets `work` (its work directory) before sourcing and adds every process it
# starts to `pids`; on exit (normal, failed or interrupted) those processes are stopped and
# waited for, and `work` is removed unless KEEP_WORK=1 or the script failed.

pids=()
cleanup() {
  local rc=$?
  # Only what this script started, by pid; wait, so that nothing outlives it.
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  done
  wait 2>/dev/null || true
  # An empty one (a run that failed before it wrote anything) is not worth keeping.
  if { [ "${KEEP_WORK:-0}" = 1 ] || [ "$rc" -ne 0 ]; } && [ -n "$(ls -A "$work" 2>/dev/null)" ]; then
    echo "work directory kept: $work" >&2
  else
    rm -rf "$work"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { printf 'bench: %s\n' "$*" >&2; }
# free_ports n: n distinct free loopback ports (all bound at once, so none repeats).
free_ports() {
  python3 -c '
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket(); s.bind(("127.0.0.1", 0)); socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
for s in socks: s.close()' "$1"
}
free_port() { free_ports 1; }
now() { date +%s.%N; }
# wait_for what tenths command...: polls the command every 0.1 s, `tenths` times at most;
# exits the script if it never succeeds.
wait_for() {
  local what=$1 tries=$2; shift 2
  for _ in $(seq 1 "$tries"); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
  echo "not ready: $what (logs in $work)" >&2; exit 1
}
# wait_until what command...: wait_for, up to 10 s.
wait_until() { local what=$1; shift; wait_for "$what" 100 "$@"; }
# utime + stime of a process, in seconds.
cpu_of() {
  awk -v hz="$(getconf CLK_TCK)" '{ sub(/^.*\) /, ""); printf "%.2f\n", ($12 + $13) / hz }' "/proc/$1/stat" 2>/dev/null || echo 0
}
# Drops a pid that has ended from the list the exit trap signals (a pid can be reused).
forget() {
  local keep=() p
  for p in "${pids[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done
  pids=("${keep[@]}")
}
stop_pid() {
  kill -TERM "$1" 2>/dev/null || true
  for _ in $(seq 1 50); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
  forget "$1"
}
# A wrk latency (`812.00us`, `3.20ms`, `1.05s`) in milliseconds.
to_ms() { awk -v v="$1" 'BEGIN { n=v+0; if (v ~ /us$/) n/=1000; else if (v ~ /ms$/) n=n; else if (v ~ /s$/) n*=1000; printf "%.2f", n }'; }
# commandstats port: "name calls usec" per command from INFO commandstats (commands run inside
# scripts included, as Redis counts them); INFO and COMMAND* (redis-cli's own queries) left out.
commandstats() {
  redis-cli -p "$1" info commandstats | tr -d '\r' | awk -F'[:,=]' '
    /^cmdstat_/ { name = substr($1, 9); if (name != "info" && name !~ /^command/) print name, $3, $5 }'
}
# cellgate_bin: sets `bin` to $CELLGATE when given (another build, no cargo), else to a
# release build of this tree's gateway, built now (under CARGO_TARGET_DIR when set); with
# PGO=1, to a profile-guided one, built now by deploy/pgo-build.sh (about 10 minutes).
cellgate_bin() {
  if [ -n "${CELLGATE:-}" ] && [ "${PGO:-0}" != 0 ]; then
    echo "CELLGATE names a build to run, PGO=1 asks for one to be built: set one of them" >&2
    exit 2
  fi
  if [ -z "${CELLGATE:-}" ]; then
    local root
    root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
    case ${PGO:-0} in
      0)
        cargo build --release --quiet --manifest-path "$root/Cargo.toml" -p gateway
        bin="${CARGO_TARGET_DIR:-$root/target}/release/cellgate"
        ;;
      1)
        bin="${CARGO_TARGET_DIR:-$root/target}/pgo/cellgate"
        "$root/deploy/pgo-build.sh" "$bin" >&2
        ;;
      *) echo "PGO must be 0 or 1, not $PGO" >&2; exit 2 ;;
    esac
  else
    bin=$CELLGATE
  fi
  [ -x "$bin" ] || { echo "no executable cellgate at $bin" >&2; exit 2; }
}
# echo_backend port: starts one `cellgate echo-cell` ($bin) on the port, logging to
# $work/echo.log, and waits for it; its pid is in echo_pid (and in pids).
echo_backend() {
  "$bin" echo-cell --name bench --listen "127.0.0.1:$1" 2>"$work/echo.log" &
  echo_pid=$!
  pids+=("$echo_pid")
  wait_until "echo backend" curl -fsS -o /dev/null "http://127.0.0.1:$1/healthz"
}
# one_cell_config listen_port admin_port upstream_port: the config of the Cellgate-vs-nginx
# benches, on stdout: one cell on one upstream, no limits.
one_cell_config() {
  cat <<TOML
[server]
listen = "127.0.0.1:$1"
admin_listen = "127.0.0.1:$2"

[[cells]]
name = "cell-1"
upstreams = ["127.0.0.1:$3"]
TOML
}
# nginx_conf dir listen_port upstream_port headers [top-level directives]: the nginx config the
# Cellgate-vs-nginx benchmarks compare against, on stdout: one worker, a keep-alive upstream
# pool, no buffering, no access log; temp files and pid under `dir`. headers = same: nginx
# does the header work Cellgate does on every request (pass the client's Host; add
# X-Forwarded-For, X-Forwarded-Proto, X-Request-Id ($request_id) and the same-sized X-Cell,
# traceparent and X-Request-Deadline-Ms upstream; X-Request-Id and X-Cell to the client);
# plain: none of it.
nginx_conf() {
  local dir=$1 listen=$2 upstream=$3 headers=$4 top=${5:-} extra=
  case $headers in
    same)
      extra='
      proxy_set_header Host $http_host;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto $scheme;
      proxy_set_header X-Request-Id $request_id;
      proxy_set_header X-Cell cell-1;
      proxy_set_header traceparent 00-$request_id-0123456789abcdef-00;
      proxy_set_header X-Request-Deadline-Ms 4999;
      add_header X-Request-Id $request_id always;
      add_header X-Cell cell-1 always;'
      ;;
    plain) ;;
    *) echo "nginx headers must be same or plain, not $headers" >&2; return 2 ;;
  esac
  mkdir -p "$dir/nginx-tmp"
  cat <<NGINX
worker_processes 1;
daemon off;
$top
pid $dir/nginx.pid;
error_log $dir/nginx-error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $dir/nginx-tmp/body;
  proxy_temp_path $dir/nginx-tmp/proxy;
  fastcgi_temp_path $dir/nginx-tmp/fastcgi;
  uwsgi_temp_path $dir/nginx-tmp/uwsgi;
  scgi_temp_path $dir/nginx-tmp/scgi;
  upstream backend { server 127.0.0.1:$upstream; keepalive 128; }
  server {
    listen 127.0.0.1:$listen;
    keepalive_requests 100000;
    location / {
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering off;$extra
    }
  }
}
NGINX
}
