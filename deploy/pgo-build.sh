#!/usr/bin/env bash
# Builds a profile-guided (PGO) release binary of `cellgate`: the compiler lays out and
# inlines the request path by how a real load ran it, rather than by guesswork.
#
#   deploy/pgo-build.sh                    # -> target/pgo/cellgate
#   deploy/pgo-build.sh /usr/local/bin/cellgate
#   TRAIN_DURATION=30s deploy/pgo-build.sh
#
# Steps, on loopback ports found free:
#   1. an instrumented release build (`-Cprofile-generate`), in target/pgo-gen;
#   2. a training load: one `cellgate echo-cell` backend, the instrumented gateway in front of
#      it (one cell, no limits), and wrk sending it GETs with a routing key (TRAIN_DURATION,
#      64 connections), then POSTs with a 2 KiB body and requests without a routing key
#      (400s), so the error path is in the profile too. Twice: once on one worker thread
#      (tokio's current-thread scheduler, `--worker-threads 1`) and once on the default, one
#      per core (the multi-thread scheduler), so both schedulers' code is profiled. The
#      gateway is stopped with SIGTERM each time and writes its profile as it exits;
#   3. `llvm-profdata merge`;
#   4. the release build again with `-Cprofile-use`, in target/pgo-use, copied to OUT.
#
# What it bought on a 2-core VM (README, "Benchmark"), one worker thread: 17 % fewer
# user-space instructions and 47 % fewer instruction-cache misses per proxied request than
# the plain release build (`CACHE_SIM=1 load-tests/bench/instructions.sh`).
# A profile describes the code it was taken from: build and train from the same tree, as this
# script does, never reuse a profile across versions.
#
# The build scripts and proc-macros are built for the host without instrumentation
# (`--target` keeps the flags to the gateway's own build); RUSTFLAGS are not applied.
# Needs: llvm-profdata (`rustup component add llvm-tools`), wrk, curl, python3.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
target=${CARGO_TARGET_DIR:-$root/target}
out=${1:-$target/pgo/cellgate}
TRAIN_DURATION=${TRAIN_DURATION:-15s}

host=$(rustc -vV | sed -n 's/^host: //p')
profdata="$(rustc --print sysroot)/lib/rustlib/$host/bin/llvm-profdata"
[ -x "$profdata" ] || { echo "missing llvm-profdata: rustup component add llvm-tools" >&2; exit 2; }
for tool in wrk curl python3; do
  command -v "$tool" >/dev/null || { echo "missing $tool (apt-get install -y wrk curl python3)" >&2; exit 2; }
done

work=$(mktemp -d "${TMPDIR:-/tmp}/cellgate-pgo.XXXXXX")
# shellcheck source=../load-tests/bench/lib.sh
. "$root/load-tests/bench/lib.sh"
log() { printf 'pgo-build: %s\n' "$*" >&2; }

# build dir flag: a release build of the gateway for the host, with one extra rustc flag
# (CARGO_ENCODED_RUSTFLAGS: a path with spaces stays one argument).
build() {
  CARGO_ENCODED_RUSTFLAGS="$2" CARGO_TARGET_DIR="$1" \
    cargo build --release --quiet --locked --target "$host" --manifest-path "$root/Cargo.toml" -p gateway
}

log "1/4 instrumented build"
build "$target/pgo-gen" "-Cprofile-generate=$work/profiles"
bin="$target/pgo-gen/$host/release/cellgate"

log "2/4 training load"
read -r echo_port gw_port admin_port < <(free_ports 3)
echo_backend "$echo_port"
one_cell_config "$gw_port" "$admin_port" "$echo_port" >"$work/cellgate.toml"
cat >"$work/post.lua" <<'LUA'
wrk.method = "POST"
wrk.body = string.rep("x", 2048)
wrk.headers["Content-Type"] = "application/json"
wrk.headers["x-user-id"] = "train-post"
LUA
url="http://127.0.0.1:$gw_port"
# train [gateway flags]: one training run of the instrumented gateway.
train() {
  CELLGATE_LOG=warn "$bin" "$@" serve --config "$work/cellgate.toml" 2>"$work/cellgate.log" &
  local gw_pid=$! rc=0
  pids+=("$gw_pid")
  wait_until cellgate curl -fsS -o /dev/null -H 'x-user-id: train' "$url/"
  wrk -t2 -c64 -d"$TRAIN_DURATION" -H 'x-user-id: train' "$url/train" | grep 'Requests/sec' >&2
  wrk -t1 -c16 -d4s -s "$work/post.lua" "$url/orders" | grep 'Requests/sec' >&2
  wrk -t1 -c4 -d2s "$url/no-routing-key" | grep 'Non-2xx' >&2
  # The profile is written when the process exits normally: SIGTERM drains, main returns.
  kill -TERM "$gw_pid"
  wait "$gw_pid" || rc=$?
  forget "$gw_pid"
  [ "$rc" -eq 0 ] || { echo "the instrumented gateway exited with $rc (log: $work/cellgate.log)" >&2; exit 1; }
}
train --worker-threads 1
train
ls "$work/profiles"/*.profraw >/dev/null 2>&1 || { echo "the training runs wrote no profile" >&2; exit 1; }

log "3/4 merge"
"$profdata" merge -o "$work/cellgate.profdata" "$work/profiles"

log "4/4 build with the profile"
build "$target/pgo-use" "-Cprofile-use=$work/cellgate.profdata"
mkdir -p "$(dirname "$out")"
cp "$target/pgo-use/$host/release/cellgate" "$out"
log "built $out"
