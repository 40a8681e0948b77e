#!/usr/bin/env bash
# User-space instructions per proxied request, Cellgate vs nginx, counted by valgrind's
# callgrind. Unlike requests/s and CPU time, an instruction count hardly moves with the load
# of a shared machine (two runs of the same build differ by well under 1%), so it tells
# whether a change to the request path made it cheaper, and by how much, where
# `proxy-vs-nginx.sh` would need many rounds to see a few percent.
#
#   load-tests/bench/instructions.sh
#   TOP=25 load-tests/bench/instructions.sh                 # each one's 25 costliest functions
#   CELLGATE=/path/to/cellgate load-tests/bench/instructions.sh   # another build (no cargo)
#   PGO=1 load-tests/bench/instructions.sh         # the profile-guided build (deploy/pgo-build.sh)
#   TARGETS=cellgate CELLGATE=<build> load-tests/bench/instructions.sh  # Cellgate only: run
#                                                  # once per build to compare two builds
#   NGINX_HEADERS=plain load-tests/bench/instructions.sh    # nginx adds no header (see lib.sh)
#
# Setup, as in proxy-vs-nginx.sh: one `cellgate echo-cell` backend (run natively), Cellgate
# (1 cell, no limits, 1 worker thread) and nginx (1 worker; `master_process off`, so that the
# traced process is the one that proxies) in front of it. Each proxy in turn runs under
# callgrind: wrk (1 thread, CONNECTIONS connections, `x-user-id` routing header) sends it
# WARMUP requests, its counters are dumped (a dump also resets them), wrk sends it REQUESTS
# more, and its counters are dumped again. Instructions per request = the second dump's
# instructions / the requests wrk completed in it. Both runs stop after a fixed count, not a
# time, so that what a run costs once (16 connections opened and closed, the last turns of
# the event loop) is spread over the same number of requests whatever the machine's load. A
# run with a non-2xx answer or a socket error fails, and so does one whose dumps did not both
# appear (callgrind_control reports no error of its own).
#
# What is counted: every instruction the proxy's process ran in user space (its own code and
# the libraries it calls: libc, the allocator, OpenSSL for nginx's $request_id), all threads.
# Not counted: the kernel's work (system calls, TCP), about half of either proxy's CPU time
# on loopback; `proxy-vs-nginx.sh` measures that side (CPU time per request, requests/s).
# Under callgrind a proxy runs ~50x slower, so each poll of the event loop finds more
# requests ready than at full speed: per-turn costs (epoll, timers) are spread over more
# requests than they would be, alike for both proxies.
#
# CACHE_SIM=1 also simulates the caches (callgrind's --cache-sim, about twice as slow) and
# prints per request the first-level instruction and data cache misses, the last-level ones,
# and KCachegrind's cycle estimate, Ir + 10 x (L1 misses) + 100 x (LL misses): two proxies
# with the same instruction count can differ in time by what they miss (a larger code path,
# bigger moves of state), and the estimate weighs that in, as a model, not a measurement.
#
# Environment: REQUESTS (20000), WARMUP (3000), CONNECTIONS (16), TOP (0: no function list),
# TARGETS ("cellgate nginx"), NGINX_HEADERS (same), CELLGATE (binary; default: build this tree),
# PGO (1: build this tree profile-guided, deploy/pgo-build.sh),
# KEEP_WORK=1 keeps the callgrind files (callgrind_annotate reads them).
# Needs: valgrind, wrk, nginx, curl, python3 (apt-get install -y valgrind wrk nginx).
set -euo pipefail

REQUESTS=${REQUESTS:-20000}
WARMUP=${WARMUP:-3000}
CONNECTIONS=${CONNECTIONS:-16}
TOP=${TOP:-0}
TARGETS=${TARGETS:-cellgate nginx}
CACHE_SIM=${CACHE_SIM:-0}
NGINX_HEADERS=${NGINX_HEADERS:-same}

root=$(cd "$(dirname "$0")/../.." && pwd)
case $NGINX_HEADERS in
  same|plain) ;;
  *) echo "NGINX_HEADERS must be same or plain, not $NGINX_HEADERS" >&2; exit 2 ;;
esac
for t in $TARGETS; do
  case $t in cellgate|nginx) ;; *) echo "TARGETS: cellgate and/or nginx, not $t" >&2; exit 2 ;; esac
done
for tool in valgrind callgrind_control wrk nginx curl python3; do
  command -v "$tool" >/dev/null || { echo "missing $tool: apt-get install -y valgrind wrk nginx curl python3" >&2; exit 2; }
done
export CELLGATE_LOG=warn
work=$(mktemp -d)
# shellcheck source=lib.sh
. "$root/load-tests/bench/lib.sh"
cellgate_bin

http_ok() { curl -fsS -o /dev/null -H 'x-user-id: bench' "$1"; }
read -r echo_port gw_port admin_port nginx_port < <(free_ports 4)

echo_backend "$echo_port"
one_cell_config "$gw_port" "$admin_port" "$echo_port" >"$work/cellgate.toml"
nginx_conf "$work" "$nginx_port" "$echo_port" "$NGINX_HEADERS" 'master_process off;' >"$work/nginx.conf"

# Self cost (instructions in the function itself) per request of the costliest functions of a
# callgrind dump: callgrind_annotate's totals need symbols it does not always resolve for
# Rust builds, so the file is read directly (a `calls=` line is followed by the callee's
# inclusive cost, which is not the caller's own).
top_functions() { # file requests count
  python3 - "$@" <<'PY'
import collections, re, sys
path, requests, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
names, cost, fn, callee_cost = {}, collections.Counter(), None, False
def name(token):
    m = re.match(r'\((\d+)\)(?: (.*))?', token)
    if not m:
        return token
    if m.group(2):
        names[m.group(1)] = m.group(2)
    return names.get(m.group(1), m.group(1))
for line in open(path, errors='replace'):
    line = line.rstrip('\n')
    if line.startswith('fn='):
        fn = name(line[3:])
    elif line.startswith('cfn='):
        name(line[4:])  # a callee named here for the first time
    elif line.startswith('calls='):
        callee_cost = True
    elif line[:1].isdigit() or line[:1] in '+-*':
        if callee_cost:
            callee_cost = False
        elif fn is not None:
            fields = line.split()
            if len(fields) >= 2:
                cost[fn] += int(fields[1])
total = sum(cost.values()) or 1
for f, c in cost.most_common(count):
    print(f'    {c / requests:8.0f} {100 * c / total:5.1f}%  {f[:140]}')
PY
}

# wrk stops about $LIMIT responses in (at most 5 minutes): its main thread sleeps for the whole
# duration whatever its threads do, but ends the run, report included, on SIGINT. Sent from a
# background shell, again until wrk is gone: os.execute's system() ignores SIGINT while it
# waits, so a first one may come too early.
cat >"$work/limit.lua" <<'LUA'
local limit, seen, asked = tonumber(os.getenv("LIMIT")), 0, false
function response()
  seen = seen + 1
  if seen >= limit and not asked then
    asked = true
    os.execute("(while kill -INT $PPID 2>/dev/null; do sleep 0.1; done) &")
  end
end
LUA
# drive port requests: sends about `requests` requests; prints wrk's report (its count is the
# one that counts: a few more answers arrive before it stops).
drive() {
  LIMIT=$2 wrk -t1 -c"$CONNECTIONS" -d300s -s "$work/limit.lua" -H 'x-user-id: bench' \
    "http://127.0.0.1:$1/bench"
}

# measure name port command...: runs the command under callgrind; writes "requests instructions"
# to $work/<name>.count.
measure() {
  local name=$1 port=$2; shift 2
  local out="$work/$name.cg" vg n wrk_out
  local sim=()
  [ "$CACHE_SIM" = 1 ] && sim=(--cache-sim=yes)
  valgrind --tool=callgrind "${sim[@]}" --callgrind-out-file="$out" "$@" >"$work/$name.log" 2>&1 &
  vg=$!
  pids+=("$vg")
  wait_for "$name under callgrind" 600 http_ok "http://127.0.0.1:$port/"
  drive "$port" "$WARMUP" >/dev/null
  callgrind_control -d "$vg" >/dev/null 2>&1
  wait_for "$name's callgrind dump after the warm-up" 300 grep -q '^totals:' "$out.1"
  wrk_out=$(drive "$port" "$REQUESTS")
  callgrind_control -d "$vg" >/dev/null 2>&1
  if grep -Eq 'Non-2xx|Socket errors' <<<"$wrk_out"; then
    echo "$name: not every request succeeded:" >&2
    grep -E 'Non-2xx|Socket errors' <<<"$wrk_out" >&2
    exit 1
  fi
  n=$(awk '/requests in/ { print $1 }' <<<"$wrk_out")
  wait_for "$name's callgrind dump after the run" 300 grep -q '^totals:' "$out.2"
  stop_pid "$vg"
  echo "$n $(awk '/^totals:/ { print $2 }' "$out.2")" >"$work/$name.count"
}

# misses file requests: the cache simulation's misses per request, by the dump's event names.
misses() {
  awk -v n="$2" '
    /^events:/ { for (i = 2; i <= NF; i++) ev[i - 1] = $i }
    /^totals:/ { for (i = 2; i <= NF; i++) t[ev[i - 1]] = $i }
    END {
      l1 = t["I1mr"] + t["D1mr"] + t["D1mw"]; ll = t["ILmr"] + t["DLmr"] + t["DLmw"]
      printf "    per request: I1 misses %.0f, D1 misses %.0f (read %.0f, write %.0f), LL misses %.1f; cycle estimate %.0f\n",
        t["I1mr"] / n, (t["D1mr"] + t["D1mw"]) / n, t["D1mr"] / n, t["D1mw"] / n, ll / n, (t["Ir"] + 10 * l1 + 100 * ll) / n
    }' "$1"
}

declare -A per_request
printf '%-9s %10s %16s %14s\n' target requests instructions 'instr/request'
for t in $TARGETS; do
  if [ "$t" = cellgate ]; then
    measure cellgate "$gw_port" "$bin" --worker-threads 1 serve --config "$work/cellgate.toml"
  else
    measure nginx "$nginx_port" nginx -c "$work/nginx.conf" -p "$work"
  fi
  read -r n ir <"$work/$t.count"
  per_request[$t]=$(( ir / n ))
  printf '%-9s %10d %16d %14d\n' "$t" "$n" "$ir" "${per_request[$t]}"
  if [ "$CACHE_SIM" = 1 ]; then misses "$work/$t.cg.2" "$n"; fi
  if [ "$TOP" -gt 0 ]; then top_functions "$work/$t.cg.2" "$n" "$TOP"; fi
done
if [ -n "${per_request[cellgate]:-}" ] && [ -n "${per_request[nginx]:-}" ]; then
  awk -v c="${per_request[cellgate]}" -v n="${per_request[nginx]}" -v h="$NGINX_HEADERS" \
    'BEGIN { printf "ratio cellgate/nginx (user-space instructions per request, nginx headers: %s): %.2fx\n", h, c / n }'
fi
