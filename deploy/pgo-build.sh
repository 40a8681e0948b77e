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
#      it (one cell, no limits, one worker thread), and wrk sending it GETs with a routing key
#      (TRAIN_DURATION, 64 connections), then POSTs with a 2 KiB body and requests without a
#      routing key (400s), so the error path is in the profile too; the gateway is stopped
#      with SIGTERM and writes its profile as it exits;
#   3. `llvm-profdata merge`;
#   4. the release build again with `-Cprofile-use`, in target/pgo-use, copied to OUT.
#
# What it bought on a 2-core VM (README, "Benchmarks"): 19 % fewer user-space instructions
# and 45 % fewer instruction-cache misses per proxied request than the plain release build
# (`CACHE_SIM=1 load-tests/bench/instructions.sh`), and CPU per request below nginx's.
# A profile describes the code it was taken from: build and train from the same tree, as this
# script does, never reuse a profile across versions.
#
# Needs: llvm-profdata (`rustup component add llvm-tools`), wrk, curl, python3.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
target=${CARGO_TARGET_DIR:-$root/target}
out=${1:-$target/pgo/cellgate}
TRAIN_DURATION=${TRAIN_DURATION:-15s}

profdata="$(rustc --print sysroot)/lib/rustlib/$(rustc -vV | sed -n 's/^host: //p')/bin/llvm-profdata"
[ -x "$profdata" ] || { echo "missing llvm-profdata: rustup component add llvm-tools" >&2; exit 2; }
for tool in wrk curl python3; do
  command -v "$tool" >/dev/null || { echo "missing $tool (apt-get install -y wrk curl python3)" >&2; exit 2; }
done

work=$(mktemp -d "${TMPDIR:-/tmp}/cellgate-pgo.XXXXXX")
# shellcheck source=../load-tests/bench/lib.sh
. "$root/load-tests/bench/lib.sh"
log() { printf 'pgo-build: %s\n' "$*" >&2; }

log "1/4 instrumented build"
RUSTFLAGS="${RUSTFLAGS:-} -Cprofile-generate=$work/profiles" CARGO_TARGET_DIR="$target/pgo-gen" \
  cargo build --release --quiet --locked --manifest-path "$root/Cargo.toml" -p gateway
bin="$target/pgo-gen/release/cellgate"

log "2/4 training load"
read -r echo_port gw_port admin_port < <(free_ports 3)
echo_backend "$echo_port"
one_cell_config "$gw_port" "$admin_port" "$echo_port" >"$work/cellgate.toml"
CELLGATE_LOG=warn "$bin" --worker-threads 1 serve --config "$work/cellgate.toml" 2>"$work/cellgate.log" &
gw_pid=$!
pids+=("$gw_pid")
wait_until cellgate curl -fsS -o /dev/null -H 'x-user-id: train' "http://127.0.0.1:$gw_port/"
url="http://127.0.0.1:$gw_port"
wrk -t2 -c64 -d"$TRAIN_DURATION" -H 'x-user-id: train' "$url/train" | grep 'Requests/sec' >&2
cat >"$work/post.lua" <<'LUA'
wrk.method = "POST"
wrk.body = string.rep("x", 2048)
wrk.headers["Content-Type"] = "application/json"
wrk.headers["x-user-id"] = "train-post"
LUA
wrk -t1 -c16 -d4s -s "$work/post.lua" "$url/orders" | grep 'Requests/sec' >&2
wrk -t1 -c4 -d2s "$url/no-routing-key" | grep 'Non-2xx' >&2
# The profile is written when the process exits normally: SIGTERM drains and returns from main.
kill -TERM "$gw_pid"
wait "$gw_pid"
forget "$gw_pid"
ls "$work/profiles"/*.profraw >/dev/null 2>&1 || { echo "the training run wrote no profile" >&2; exit 1; }

log "3/4 merge"
"$profdata" merge -o "$work/cellgate.profdata" "$work/profiles"

log "4/4 build with the profile"
RUSTFLAGS="${RUSTFLAGS:-} -Cprofile-use=$work/cellgate.profdata" CARGO_TARGET_DIR="$target/pgo-use" \
  cargo build --release --quiet --locked --manifest-path "$root/Cargo.toml" -p gateway
mkdir -p "$(dirname "$out")"
cp "$target/pgo-use/release/cellgate" "$out"
log "built $out"
