#!/usr/bin/env bash
# The figures of the "global" issue, measured with `meridian bench` over the simulated WAN:
# nine real `meridian server` processes on loopback, three per region (zones a, b, c), with
# us-east<->eu-west 75 ms, us-east<->ap-south 190 ms, eu-west<->ap-south 120 ms round trips and
# 1-2 ms inside a region (`--wan`). One client per run sends to a node of the named region.
#
#  1. zone survival: every replica in us-east (one per zone), leader there -> write p50
#  2. region survival: one replica per region, leader in us-east -> write p50
#  3. bounded:5000 reads from each region (the region's own node serves) -> read p50
#
# Usage: scripts/global-bench.sh            (builds the release binary first)
# Env:   TOTAL (requests per run, default 2000), MERIDIAN_BIN, KEEP=1 (keep the data dir)
set -euo pipefail
cd "$(dirname "$0")/.."

TOTAL=${TOTAL:-2000}
WAN=${WAN:-"us-east:eu-west=75ms,us-east:ap-south=190ms,eu-west:ap-south=120ms,local=1.5ms~0.5ms"}
REGIONS=(us-east eu-west ap-south)
ZONES=(a b c)
if [[ -z "${MERIDIAN_BIN:-}" ]]; then
  cargo build --release -p meridian >&2
  MERIDIAN_BIN=target/release/meridian
fi
BIN=$MERIDIAN_BIN
DIR=$(mktemp -d -t meridian-global-bench-XXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [[ "${KEEP:-}" == 1 ]]; then echo "kept $DIR" >&2; else rm -rf "$DIR"; fi
}
trap cleanup EXIT

declare -A ADDR REGION_OF
for i in $(seq 1 9); do
  region=${REGIONS[$(((i - 1) % 3))]}
  zone=${ZONES[$(((i - 1) / 3))]}
  REGION_OF[$i]=$region
  MERIDIAN_LOG=warn "$BIN" server --id "$i" --listen 127.0.0.1:0 --data-dir "$DIR/n$i" \
    --region "$region" --zone "$zone" --wan "$WAN" >"$DIR/n$i.out" 2>"$DIR/n$i.log" &
  PIDS+=($!)
done
for i in $(seq 1 9); do
  for _ in $(seq 1 100); do
    a=$(sed -n "s/^meridian node $i listening on //p" "$DIR/n$i.out" | head -1)
    [[ -n "$a" ]] && break
    sleep 0.1
  done
  [[ -n "$a" ]] || { echo "node $i did not start; see $DIR/n$i.log" >&2; exit 1; }
  ADDR[$i]=$a
done
ALL=$(for i in $(seq 1 9); do printf '%s,' "${ADDR[$i]}"; done)
ALL=${ALL%,}
"$BIN" cluster init --endpoints "$ALL" --ranges 1 >&2

# Waits until range 1 has replicas in exactly the regions named (space-separated, sorted) and its
# leader in us-east.
wait_for() {
  local want=$1
  for _ in $(seq 1 240); do
    got=$(curl -s "http://${ADDR[1]}/v1/cluster" | python3 -c '
import json,sys
v=json.load(sys.stdin)
reg={n["id"]:n["region"] for n in v["nodes"]}
for r in v["ranges"]:
    if r["id"]==1 and not r.get("learners"):
        print(" ".join(sorted(reg[x] for x in r["replicas"])), reg.get(r["leader"],"-"))
' 2>/dev/null || true)
    [[ "$got" == "$want us-east" ]] && return 0
    sleep 0.5
  done
  echo "placement never reached: $want (last: $got)" >&2
  return 1
}

# One bench run; prints "p50 p99 ops/s".
bench() {
  "$BIN" bench "$@" --clients 1 --total "$TOTAL" --output json 2>/dev/null | python3 -c '
import json,sys
s=json.load(sys.stdin)
l=s["latency_ms"]
print("%.2f %.2f %.0f errors=%d" % (l["p50"], l["p99"], s["ops_per_sec"], s["errors"]))
'
}

echo "== zone survival: 3 replicas in us-east zones a,b,c, leader in us-east" >&2
"$BIN" placement set '' --endpoints "${ADDR[1]}" --replicas 3 --survival zone \
  --regions us-east --leader-regions us-east >&2
wait_for "us-east us-east us-east"
echo "write from us-east (p50 p99 ms, ops/s): $(bench put --endpoints "${ADDR[1]}")"

echo "== region survival: one replica per region, leader in us-east" >&2
"$BIN" placement set '' --endpoints "${ADDR[1]}" --replicas 3 --survival region \
  --leader-regions us-east,eu-west >&2
wait_for "ap-south eu-west us-east"
echo "write from us-east (p50 p99 ms, ops/s): $(bench put --endpoints "${ADDR[1]}")"
for i in 1 2 3; do
  echo "bounded:5000 read from ${REGION_OF[$i]} (p50 p99 ms, ops/s): $(bench get --keys 100 --consistency bounded:5000 --endpoints "${ADDR[$i]}")"
done
for i in 1 2 3; do
  echo "linearizable read from ${REGION_OF[$i]} (p50 p99 ms, ops/s): $(bench get --keys 100 --endpoints "${ADDR[$i]}")"
done
