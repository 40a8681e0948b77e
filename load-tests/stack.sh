#!/usr/bin/env bash
# The docker-compose topology as plain processes on loopback ports, for load tests and CI:
# one redis-server (AOF on, noeviction), three cells of two `cellgate echo-cell` instances,
# two gateways sharing Redis, both from deploy/cellgate.toml.
#
#   load-tests/stack.sh up       build (unless CELLGATE_BIN is set), start, wait for readiness
#   load-tests/stack.sh down     stop everything this stack started (by recorded pid)
#   load-tests/stack.sh status   what runs, and `cellctl status` through gw-1
#   load-tests/stack.sh env      print the environment the k6 scenarios read
#
# State (pids, logs, Redis AOF, gateway state dirs, env file) lives in STACK_DIR, by default
# ${TMPDIR:-/tmp}/cellgate-stack-$UID. Every `up` starts from empty Redis and state dirs.
#
# Environment:
#   CELLGATE_BIN, CELLCTL_BIN   binaries to use; when CELLGATE_BIN is unset, `cargo build
#                               --release -p gateway -p cellctl` runs and target/release is used
#   STACK_DIR                   state directory (above)
#   STACK_REDIS_PORT            26379
#   STACK_ECHO_PORT             27001 (first of six consecutive ports: cell-1 a/b, cell-2 a/b, cell-3 a/b)
#   STACK_GW_PORT               28080 (gw-1; gw-2 is +1)
#   STACK_ADMIN_PORT            29901 (gw-1 admin; gw-2 is +1)
#   STACK_ADMIN_TOKEN           cellgate-dev-token
#   STACK_READY_TIMEOUT         30 (seconds to wait for readiness)
#   STACK_LOG                   gateway log filter (CELLGATE_LOG), default info
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
STACK_DIR="${STACK_DIR:-${TMPDIR:-/tmp}/cellgate-stack-$(id -u)}"
REDIS_PORT="${STACK_REDIS_PORT:-26379}"
ECHO_PORT="${STACK_ECHO_PORT:-27001}"
GW_PORT="${STACK_GW_PORT:-28080}"
ADMIN_PORT="${STACK_ADMIN_PORT:-29901}"
ADMIN_TOKEN="${STACK_ADMIN_TOKEN:-cellgate-dev-token}"
READY_TIMEOUT="${STACK_READY_TIMEOUT:-30}"
CONFIG="$ROOT/deploy/cellgate.toml"

CELLS=(cell-1 cell-1 cell-2 cell-2 cell-3 cell-3)
ECHO_NAMES=(cell1-a cell1-b cell2-a cell2-b cell3-a cell3-b)
GATEWAYS=(gw-1 gw-2)

log() { printf 'stack: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

echo_port() { echo $((ECHO_PORT + $1)); }
gw_port() { echo $((GW_PORT + $1)); }
admin_port() { echo $((ADMIN_PORT + $1)); }

resolve_bins() {
  if [ -z "${CELLGATE_BIN:-}" ]; then
    log "building release binaries (set CELLGATE_BIN to skip)"
    (cd "$ROOT" && cargo build --release -q -p gateway -p cellctl)
    local target="${CARGO_TARGET_DIR:-$ROOT/target}"
    CELLGATE_BIN="$target/release/cellgate"
    CELLCTL_BIN="${CELLCTL_BIN:-$target/release/cellctl}"
  fi
  CELLCTL_BIN="${CELLCTL_BIN:-$(dirname "$CELLGATE_BIN")/cellctl}"
  [ -x "$CELLGATE_BIN" ] || die "no executable cellgate at $CELLGATE_BIN"
  command -v redis-server >/dev/null || die "redis-server not found (apt-get install redis-server)"
  command -v redis-cli >/dev/null || die "redis-cli not found (apt-get install redis-tools)"
  command -v curl >/dev/null || die "curl not found"
}

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# A pid file names a process of ours only while that pid still runs the binary we started
# (a recycled pid must never be killed).
alive() {
  local pidfile="$1" pid exe
  [ -f "$pidfile" ] || return 1
  pid="$(cat "$pidfile")"
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
  exe="$(cat "$pidfile.exe" 2>/dev/null || true)"
  [ -z "$exe" ] || tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$(basename "$exe")"
}

start() {
  local name="$1" exe="$2"
  shift 2
  "$@" >"$STACK_DIR/logs/$name.log" 2>&1 </dev/null &
  echo $! >"$STACK_DIR/pids/$name.pid"
  echo "$exe" >"$STACK_DIR/pids/$name.pid.exe"
}

wait_for() {
  local what="$1"; shift
  local deadline=$((SECONDS + READY_TIMEOUT))
  until "$@" >/dev/null 2>&1; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      log "$what not ready after ${READY_TIMEOUT}s"
      return 1
    fi
    sleep 0.2
  done
}

write_env() {
  local gw_urls=() admin_urls=() echo_urls=()
  for i in 0 1; do
    gw_urls+=("http://127.0.0.1:$(gw_port "$i")")
    admin_urls+=("http://127.0.0.1:$(admin_port "$i")")
  done
  for i in 0 1 2 3 4 5; do
    echo_urls+=("${CELLS[$i]}=http://127.0.0.1:$(echo_port "$i")")
  done
  local IFS=,
  cat >"$STACK_DIR/env" <<EOF
# Written by load-tests/stack.sh; the k6 scenarios read these (load-tests/lib.js).
export GW_URLS=${gw_urls[*]}
export ADMIN_URLS=${admin_urls[*]}
export ADMIN_TOKEN=$ADMIN_TOKEN
export ECHO_URLS=${echo_urls[*]}
export REDIS_PORT=$REDIS_PORT
export REDIS_PID_FILE=$STACK_DIR/pids/redis.pid
export CELLCTL_ADMIN=${admin_urls[0]}
export CELLCTL_TOKEN=$ADMIN_TOKEN
export CELLCTL_BIN=$CELLCTL_BIN
EOF
}

up() {
  mkdir -p "$STACK_DIR/pids" "$STACK_DIR/logs"
  if [ -n "$(ls "$STACK_DIR/pids/"*.pid 2>/dev/null)" ]; then
    local running=0 total=0
    for p in "$STACK_DIR/pids/"*.pid; do
      total=$((total + 1))
      if alive "$p"; then running=$((running + 1)); fi
    done
    if [ "$running" -eq 9 ] && [ "$total" -eq 9 ]; then
      log "already up ($STACK_DIR)"
      print_urls
      return 0
    fi
    log "partial stack found ($running/$total running): stopping it first"
    down
    mkdir -p "$STACK_DIR/pids" "$STACK_DIR/logs"
  fi
  resolve_bins

  local ports=("$REDIS_PORT")
  for i in 0 1 2 3 4 5; do ports+=("$(echo_port "$i")"); done
  for i in 0 1; do ports+=("$(gw_port "$i")" "$(admin_port "$i")"); done
  for p in "${ports[@]}"; do
    port_busy "$p" && die "port $p is in use (override with STACK_*_PORT)"
  done

  # From here on, any exit before the end (a failed wait, set -e) stops whatever was started.
  trap 'log "up failed; logs in $STACK_DIR/logs"; tail_logs; down' EXIT

  rm -rf "$STACK_DIR/redis" "$STACK_DIR/gw-1" "$STACK_DIR/gw-2"
  mkdir -p "$STACK_DIR/redis"
  start redis redis-server "$(command -v redis-server)" \
    --port "$REDIS_PORT" --bind 127.0.0.1 --dir "$STACK_DIR/redis" \
    --appendonly yes --save "" --maxmemory-policy noeviction --daemonize no
  wait_for "redis" redis-cli -p "$REDIS_PORT" ping

  for i in 0 1 2 3 4 5; do
    start "${ECHO_NAMES[$i]}" "$CELLGATE_BIN" "$CELLGATE_BIN" echo-cell \
      --name "${CELLS[$i]}" --instance "${ECHO_NAMES[$i]}" \
      --listen "127.0.0.1:$(echo_port "$i")"
  done
  for i in 0 1 2 3 4 5; do
    wait_for "${ECHO_NAMES[$i]}" curl -fsS "http://127.0.0.1:$(echo_port "$i")/healthz"
  done

  for i in 0 1; do
    local id="${GATEWAYS[$i]}"
    mkdir -p "$STACK_DIR/$id/state"
    CELLGATE_LISTEN="127.0.0.1:$(gw_port "$i")" \
    CELLGATE_ADMIN_LISTEN="127.0.0.1:$(admin_port "$i")" \
    CELLGATE_ADMIN_TOKEN="$ADMIN_TOKEN" \
    CELLGATE_GATEWAY_ID="$id" \
    CELLGATE_REDIS_URL="redis://127.0.0.1:$REDIS_PORT" \
    CELLGATE_STATE_DIR="$STACK_DIR/$id/state" \
    CELL1_A="127.0.0.1:$(echo_port 0)" CELL1_B="127.0.0.1:$(echo_port 1)" \
    CELL2_A="127.0.0.1:$(echo_port 2)" CELL2_B="127.0.0.1:$(echo_port 3)" \
    CELL3_A="127.0.0.1:$(echo_port 4)" CELL3_B="127.0.0.1:$(echo_port 5)" \
    CELLGATE_LOG="${STACK_LOG:-info}" \
      start "$id" "$CELLGATE_BIN" "$CELLGATE_BIN" serve --config "$CONFIG"
  done
  for i in 0 1; do
    wait_for "${GATEWAYS[$i]}" curl -fsS "http://127.0.0.1:$(admin_port "$i")/readyz"
  done
  trap - EXIT

  write_env
  log "up ($STACK_DIR)"
  print_urls
}

print_urls() {
  cat >&2 <<EOF
  gateways   http://127.0.0.1:$(gw_port 0)  http://127.0.0.1:$(gw_port 1)
  admin      http://127.0.0.1:$(admin_port 0)  http://127.0.0.1:$(admin_port 1)   (token: $ADMIN_TOKEN)
  redis      127.0.0.1:$REDIS_PORT
  echo cells $(for i in 0 1 2 3 4 5; do printf '%s=:%s ' "${ECHO_NAMES[$i]}" "$(echo_port "$i")"; done)
  try        curl -s -H 'x-user-id: alice' http://127.0.0.1:$(gw_port 0)/hello
             cellctl --admin http://127.0.0.1:$(admin_port 0) --token $ADMIN_TOKEN status
  env        source $STACK_DIR/env
EOF
}

tail_logs() {
  for f in "$STACK_DIR/logs/"*.log; do
    [ -f "$f" ] || continue
    printf -- '--- %s\n' "$f" >&2
    tail -n 15 "$f" >&2 || true
  done
}

down() {
  [ -d "$STACK_DIR/pids" ] || { log "nothing to stop ($STACK_DIR)"; return 0; }
  local pids=()
  # Gateways first (they drain), then cells, then Redis.
  for name in gw-1 gw-2 "${ECHO_NAMES[@]}" redis; do
    local f="$STACK_DIR/pids/$name.pid"
    [ -f "$f" ] || continue
    if alive "$f"; then
      local pid
      pid="$(cat "$f")"
      # A stopped (SIGSTOP) redis cannot act on SIGTERM until it is continued.
      kill -CONT "$pid" 2>/dev/null || true
      kill -TERM "$pid" 2>/dev/null || true
      pids+=("$pid")
    fi
  done
  local deadline=$((SECONDS + 10))
  for pid in "${pids[@]}"; do
    while kill -0 "$pid" 2>/dev/null && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
      log "pid $pid did not stop within 10s: SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
    fi
  done
  rm -f "$STACK_DIR/pids/"*.pid "$STACK_DIR/pids/"*.pid.exe
  log "down (${#pids[@]} processes stopped; logs kept in $STACK_DIR/logs)"
}

status() {
  [ -d "$STACK_DIR/pids" ] || { log "not up ($STACK_DIR)"; return 1; }
  local up=0
  for name in redis "${ECHO_NAMES[@]}" gw-1 gw-2; do
    local f="$STACK_DIR/pids/$name.pid"
    if alive "$f"; then
      printf '%-8s running  pid %s\n' "$name" "$(cat "$f")"
      up=$((up + 1))
    else
      printf '%-8s stopped\n' "$name"
    fi
  done
  if [ "$up" -gt 0 ] && [ -f "$STACK_DIR/env" ]; then
    # shellcheck disable=SC1091
    . "$STACK_DIR/env"
    if [ -x "${CELLCTL_BIN:-}" ]; then
      echo
      "$CELLCTL_BIN" status || true
    fi
  fi
  [ "$up" -eq 9 ]
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) status ;;
  env) cat "$STACK_DIR/env" ;;
  *) echo "usage: $0 up|down|status|env" >&2; exit 2 ;;
esac
