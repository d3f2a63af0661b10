#!/usr/bin/env bash
# NATS JetStream beside `meridian bench publish`: starts a 3-node JetStream cluster on loopback
# (Debian's nats-server, file storage, an R3 stream), then runs tools/nats-bench against it:
#   sync-1     1 publisher, one publish at a time (each awaits its PubAck before the next)
#   sync-64    64 publishers on 64 connections, each one publish at a time
#   sync-64-shared  64 publishers sharing one connection, each one publish at a time (not run by
#              default; the shape of Meridian's `bench publish --clients 64`)
#   async-256  1 publisher keeping at most 256 publishes awaiting their PubAck
# with 128-byte messages, and reports msgs/s, publish-to-ack p50/p90/p99/max and
# publish-to-consume p50/p99 (an ordered consumer on the stream reads the publish time from
# the payload) as a table and as JSON lines, one per run.
#
# Usage: scripts/bench-nats.sh [TOTAL]          (needs root for apt when nats-server is absent)
# Environment (all optional):
#   TOTAL=20000           messages per run (the first argument wins)
#   SIZE=128              message size in bytes (>= 16)
#   SCENARIOS="sync-1 sync-64 async-256"   any of those names, or pubsP-inflightW (e.g. pubs4-inflight64)
#   REPEAT=1              runs of each scenario
#   CONNECT=leader        leader: every client connects to the stream leader's server;
#                         spread: client i connects to server i mod 3
#   E2E=1                 0 leaves the consumer out (publish-to-ack only)
#   WARMUP=500            acked publishes before each measured run
#   OUT=FILE              also write the JSON lines to FILE
#   TMPDIR=/tmp           where the temporary store directories go (removed on exit)
#   GOMAXPROCS=N          threads each nats-server runs Go code on; default: its share of the
#                         machine's cores, max(1, cores / 3), as bench-messaging.sh gives Meridian's
#                         nodes (on 2 cores one each was faster than Go's default of one per core)
# nats-server 2.9 acknowledges before fsync: its file store syncs in the background every
# 2 minutes and 2.9 has no setting to change that (sync_interval / sync_always came in 2.10).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
TOTAL=${1:-${TOTAL:-20000}}
SIZE=${SIZE:-128}
SCENARIOS=${SCENARIOS:-"sync-1 sync-64 async-256"}
REPEAT=${REPEAT:-1}
CONNECT=${CONNECT:-leader}
E2E=${E2E:-1}
WARMUP=${WARMUP:-500}
OUT=${OUT:-}
GOMAXPROCS=${GOMAXPROCS:-$(($(nproc) / 3 > 0 ? $(nproc) / 3 : 1))}

# A scenario's publishers (p), per-publisher in-flight window (w) and connections (c, 0: one per
# publisher); checked before anything starts.
shape() {
  c=0
  case $1 in
    sync-1) p=1 w=1 ;;
    sync-64) p=64 w=1 ;;
    sync-64-shared) p=64 w=1 c=1 ;;
    async-256) p=1 w=256 ;;
    pubs[0-9]*-inflight[0-9]*) p=${1#pubs}; p=${p%%-*}; w=${1##*-inflight} ;;
    *) echo "unknown scenario $1 (sync-1, sync-64, sync-64-shared, async-256 or pubsP-inflightW)" >&2; exit 2 ;;
  esac
  case $p$w in *[!0-9]*) echo "unknown scenario $1" >&2; exit 2 ;; esac
}
for s in $SCENARIOS; do shape "$s"; done

# nats-server from Debian (2.9.x on bookworm).
if ! command -v nats-server >/dev/null; then
  echo "installing nats-server (apt)" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q nats-server >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q nats-server >/dev/null; }
fi
NATS_VERSION=$(nats-server --version | sed 's/.*v//')

# The load generator: a standalone crate (not in the main workspace).
export CARGO_TARGET_DIR=${NATS_BENCH_TARGET_DIR:-$ROOT/target/nats-bench}
BIN=$CARGO_TARGET_DIR/release/nats-bench
echo "building tools/nats-bench (release)" >&2
cargo build --release -q --manifest-path "$ROOT/tools/nats-bench/Cargo.toml"

W=$(mktemp -d "${TMPDIR:-/tmp}/nats-bench.XXXXXX") # store dirs, configs, logs
pids=()
bench_pid=""
cleanup() {
  local rc=$? p
  trap - EXIT INT TERM
  [ -z "$bench_pid" ] || kill "$bench_pid" 2>/dev/null || true
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do
    for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$p" 2>/dev/null || true
  done
  wait 2>/dev/null || true
  if [ "$rc" -ne 0 ]; then
    for f in "$W"/n*.log; do [ -f "$f" ] && { echo "--- tail of $f" >&2; tail -n 20 "$f" >&2; }; done
  fi
  rm -rf "$W"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Free loopback ports: client, cluster and monitoring for each node, all distinct.
read -r -a PORTS <<<"$(python3 -c '
import socket
ss = [socket.socket() for _ in range(9)]
for s in ss: s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in ss))
for s in ss: s.close()')"
ROUTES=""
for i in 1 2 3; do ROUTES="$ROUTES nats-route://127.0.0.1:${PORTS[$((3 * i - 2))]}"; done
URLS=""
for i in 1 2 3; do
  cport=${PORTS[$((3 * i - 3))]} rport=${PORTS[$((3 * i - 2))]} mport=${PORTS[$((3 * i - 1))]}
  mkdir -p "$W/n$i"
  cat >"$W/n$i.conf" <<EOF
server_name: n$i
listen: 127.0.0.1:$cport
http: 127.0.0.1:$mport
jetstream {
  store_dir: "$W/n$i"
}
cluster {
  name: bench
  listen: 127.0.0.1:$rport
  routes: [$(echo $ROUTES | sed 's/ /, /g')]
}
EOF
  GOMAXPROCS=$GOMAXPROCS nats-server -c "$W/n$i.conf" >"$W/n$i.log" 2>&1 &
  pids+=($!)
  URLS="$URLS,nats://127.0.0.1:$cport"
done
URLS=${URLS#,}
SERVER_PIDS=$(IFS=,; echo "${pids[*]}")

# Ready: every node's /healthz says ok (JetStream enabled and current with the meta leader).
for i in 1 2 3; do
  mport=${PORTS[$((3 * i - 1))]}
  ok=""
  for _ in $(seq 300); do
    kill -0 "${pids[$((i - 1))]}" 2>/dev/null || { echo "nats-server n$i exited" >&2; exit 1; }
    if curl -fsS "http://127.0.0.1:$mport/healthz" 2>/dev/null | grep -q '"ok"'; then ok=1; break; fi
    sleep 0.1
  done
  [ -n "$ok" ] || { echo "nats-server n$i not healthy after 30 s" >&2; exit 1; }
done
echo "nats-server $NATS_VERSION: 3 nodes ready at $URLS (store $W, GOMAXPROCS=$GOMAXPROCS)" >&2

RESULTS=$W/results.jsonl
: >"$RESULTS"
run() { # scenario publishers inflight conns
  "$BIN" run --urls "$URLS" --scenario "$1" --publishers "$2" --inflight "$3" --conns "$4" --total "$TOTAL" \
    --size "$SIZE" --replicas 3 --e2e "$E2E" --connect "$CONNECT" --warmup "$WARMUP" \
    --server-pids "$SERVER_PIDS" --server-version "$NATS_VERSION" >>"$RESULTS" &
  bench_pid=$!
  wait "$bench_pid" # in the background so that a TERM or INT reaches the trap at once
  bench_pid=""
}
for r in $(seq "$REPEAT"); do
  for s in $SCENARIOS; do
    shape "$s"
    echo "== $s (run $r/$REPEAT): $p publisher(s), at most $w in flight each, $TOTAL x $SIZE B" >&2
    run "$s" "$p" "$w" "$c"
  done
done

echo
echo "NATS JetStream $NATS_VERSION, 3 nodes on loopback (GOMAXPROCS=$GOMAXPROCS each), R3 file stream, $SIZE-byte messages, $TOTAL per run, clients connect to: $CONNECT"
"$BIN" table "$RESULTS"
echo
echo "JSON lines:"
cat "$RESULTS"
[ -z "$OUT" ] || cp "$RESULTS" "$OUT"
