#!/usr/bin/env bash
# Runs etcd's own benchmark tool against a 3-member etcd and a 3-node Meridian cluster on this
# machine, side by side (the disk's speed drifts, so compare within one run), then
# `meridian bench` against Meridian. Needs root for apt (etcd-server) and the benchmark build.
# Usage: scripts/bench-vs-etcd.sh [TOTAL]   (default 20000)
set -euo pipefail
TOTAL=${1:-20000}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=$ROOT/target/release/meridian
[ -x "$BIN" ] || (cd "$ROOT" && cargo build --release -p meridian)
command -v etcd >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -q etcd-server >/dev/null
BENCH=$(bash "$ROOT/../shared/tools/etcd-benchmark.sh")
W=$(mktemp -d /tmp/meridian-bench.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$W"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# etcd, 3 members
CL=""; EEPS=""
declare -a CP PP
for i in 1 2 3; do CP[$i]=$(free_port); PP[$i]=$(free_port); CL="$CL,e$i=http://127.0.0.1:${PP[$i]}"; EEPS="$EEPS,127.0.0.1:${CP[$i]}"; done
CL=${CL#,}; EEPS=${EEPS#,}
for i in 1 2 3; do
  etcd --name e$i --data-dir "$W/etcd$i" --listen-client-urls http://127.0.0.1:${CP[$i]} \
    --advertise-client-urls http://127.0.0.1:${CP[$i]} --listen-peer-urls http://127.0.0.1:${PP[$i]} \
    --initial-advertise-peer-urls http://127.0.0.1:${PP[$i]} --initial-cluster "$CL" \
    --initial-cluster-state new >"$W/etcd$i.log" 2>&1 &
  pids+=($!)
done

# Meridian, 3 nodes
MEPS=""
for i in 1 2 3; do
  "$BIN" server --id $i --listen 127.0.0.1:0 --data-dir "$W/m$i" --region r$i >"$W/m$i.out" 2>"$W/m$i.log" &
  pids+=($!)
done
for i in 1 2 3; do
  for _ in $(seq 100); do grep -q listening "$W/m$i.out" 2>/dev/null && break; sleep 0.1; done
  MEPS="$MEPS,$(awk '{print $NF}' "$W/m$i.out")"
done
MEPS=${MEPS#,}
"$BIN" cluster init --endpoints "$MEPS" --ranges 1
sleep 2
# etcd's `--target-leader` asks Maintenance.Status for the leader, which on Meridian is the meta
# group's; keep the key range's leader on that node too (a placement rule's home region: node i
# is in region r<i>), so neither side pays a forwarding hop.
M1=${MEPS%%,*}
leader_of() { curl -s "http://$M1/v1/cluster" | python3 -c "import json,sys; v=json.load(sys.stdin); print(next(r['leader'] for r in v['ranges'] if r['id']==$1) or '')"; }
META_LEADER=""
for _ in $(seq 50); do META_LEADER=$(leader_of 0 || true); [ -n "$META_LEADER" ] && break; sleep 0.2; done
"$BIN" placement set '' --replicas 3 --leader-regions "r$META_LEADER" --endpoints "$M1" >/dev/null
for _ in $(seq 100); do [ "$(leader_of 1 || true)" = "$META_LEADER" ] && break; sleep 0.2; done
echo "meta leader n$META_LEADER, range 1 leader n$(leader_of 1)"

run() { # name endpoints clients conns
  echo "== $1 clients=$3"
  "$BENCH" --endpoints="$2" --target-leader --clients="$3" --conns="$4" put --key-size=8 --val-size=128 \
    --sequential-keys --total="$TOTAL" 2>&1 | tr '\r' '\n' | grep -E "Requests/sec|Average|Slowest|(50|90|99|99\.9)% in" || true
}
for c in 1 50 256; do
  conns=$(( c < 100 ? c : 100 ))
  run etcd "$EEPS" $c $conns
  run meridian "$MEPS" $c $conns
done
echo "== etcd range (linearizable) clients=256"
"$BENCH" --endpoints="$EEPS" --clients=256 --conns=100 range k --total="$TOTAL" 2>&1 | tr '\r' '\n' | grep -E "Requests/sec|(50|99)% in" || true
echo "== meridian range (linearizable) clients=256"
"$BENCH" --endpoints="$MEPS" --clients=256 --conns=100 range k --total="$TOTAL" 2>&1 | tr '\r' '\n' | grep -E "Requests/sec|(50|99)% in" || true
echo "== meridian bench"
for c in 1 50 256; do "$BIN" bench put --endpoints "$MEPS" --clients $c --total "$TOTAL" --key-size 8 --value-size 128 --output json; done
"$BIN" bench get --endpoints "$MEPS" --clients 256 --total "$TOTAL" --consistency linearizable --output json
