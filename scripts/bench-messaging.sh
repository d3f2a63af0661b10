#!/usr/bin/env bash
# Meridian's messaging beside NATS JetStream on this machine: starts a 3-node Meridian cluster on
# loopback and runs `meridian bench publish` (128-byte messages, publish-to-ack and, with --e2e,
# publish-to-consume) and `meridian bench queue` at 1 and 64 clients (64 publishers sharing one
# connection, on 64 connections, and as unary calls; and publish with 256 in flight: one
# pipelined publisher, and 256 publishers one at a time), then
# scripts/bench-nats.sh (a 3-node JetStream, R3 file stream) with the same sizes, so both sides
# are measured within one run (the disk's speed drifts between runs).
# Each server gets its share of the machine's cores (three nodes per side): Meridian's nodes
# `--worker-threads`, JetStream's GOMAXPROCS (set in bench-nats.sh), both max(1, cores / 3).
# WORKERS=N overrides Meridian's; GOMAXPROCS=N JetStream's.
# Last, scripts/durable-floor.sh (one round; needs gcc): the fastest one-at-a-time publish this
# machine allows when a majority of three fsyncs before the answer, with no consensus code at all.
# Usage: scripts/bench-messaging.sh [TOTAL]   (default 20000; NATS=0 skips JetStream, FLOOR=0 the
# floor)
set -euo pipefail
TOTAL=${1:-20000}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=$ROOT/target/release/meridian
[ -x "$BIN" ] || (cd "$ROOT" && cargo build --release -p meridian)
W=$(mktemp -d /tmp/meridian-msg-bench.XXXXXX)
WORKERS=${WORKERS:-$(($(nproc) / 3 > 0 ? $(nproc) / 3 : 1))}
echo "== 3 Meridian nodes, --worker-threads $WORKERS each"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$W"; }
trap cleanup EXIT

EPS=""
for i in 1 2 3; do
  "$BIN" server --id $i --listen 127.0.0.1:0 --data-dir "$W/m$i" --region r$i --worker-threads "$WORKERS" >"$W/m$i.out" 2>"$W/m$i.log" &
  pids+=($!)
done
for i in 1 2 3; do
  for _ in $(seq 100); do grep -q listening "$W/m$i.out" 2>/dev/null && break; sleep 0.1; done
  EPS="$EPS,$(awk '{print $NF}' "$W/m$i.out")"
done
EPS=${EPS#,}
"$BIN" cluster init --endpoints "$EPS" --ranges 1 >/dev/null
sleep 2

bench() { # op clients partitions [extra...]
  local op=$1 c=$2 p=$3; shift 3
  echo "== meridian $op clients=$c partitions=$p $*"
  "$BIN" bench "$op" --endpoints "$EPS" --clients "$c" --total "$TOTAL" --value-size 128 \
    --partitions "$p" --output json "$@"
}
# Publishers connect to their partition's leader, as bench-nats.sh's clients connect to the
# stream leader (CONNECT=leader).
# One partition, as JetStream's one R3 stream has one leader (three partitions on a 2-core
# machine spread the same work over three smaller batches: 8,500 vs 11,100 msgs/s at 64).
# --warmup: as bench-nats.sh, unmeasured publishes first. Publishers on one connection share
# its `Publisher` (one PublishStream call), as bench-nats.sh's sync-64-shared share one NATS
# connection; --conns 64 gives each its own connection, as sync-64; --unary is the older shape
# (one unary Publish call per publish). The pipelined run (one publisher, 256 in flight over one
# PublishStream call) is the shape of bench-nats.sh's async-256.
bench publish 1 1 --target-leader --e2e --warmup 500
bench publish 64 1 --target-leader --e2e --warmup 500
bench publish 64 1 --target-leader --e2e --warmup 500 --conns 64
bench publish 64 1 --target-leader --e2e --warmup 500 --unary
bench publish 1 1 --target-leader --e2e --warmup 500 --in-flight 256
bench publish 256 1 --target-leader --e2e --warmup 500
bench queue 1 1
bench queue 64 1

# Meridian's nodes stop before JetStream starts: idle, they still tick (and delete the bench
# streams' ranges), which would take CPU from JetStream's run.
cleanup
pids=()
if [ "${NATS:-1}" != 0 ]; then
  echo "== NATS JetStream (scripts/bench-nats.sh)"
  TOTAL=$TOTAL SCENARIOS="sync-1 sync-64 sync-64-shared async-256" bash "$ROOT/scripts/bench-nats.sh"
fi
if [ "${FLOOR:-1}" != 0 ] && command -v gcc >/dev/null; then
  ROUNDS=1 bash "$ROOT/scripts/durable-floor.sh" 5000
fi
