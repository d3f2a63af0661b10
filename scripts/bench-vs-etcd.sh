#!/usr/bin/env bash
# Runs etcd's own benchmark tool against a 3-member etcd and a 3-node Meridian cluster on this
# machine, side by side (the disk's speed drifts, so compare within one run), then
# `meridian bench` against Meridian. Needs root for apt (etcd-server) and the benchmark build.
# Each benchmark row also shows the CPU time one operation cost the benchmark client and the
# three servers (user + system, from bash's `time` and /proc/PID/stat).
# The machine's speed drifts by a fifth within minutes, so the 256-client puts then run PAIRS
# more times (etcd first, then Meridian first, in turn) and the script prints each pair's ratio
# and their median.
# Usage: scripts/bench-vs-etcd.sh [TOTAL] [PAIRS]   (defaults 20000 and 5)
set -euo pipefail
TOTAL=${1:-20000}
PAIRS=${2:-5}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=$ROOT/target/release/meridian
[ -x "$BIN" ] || (cd "$ROOT" && cargo build --release -p meridian)
command -v etcd >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -q etcd-server >/dev/null
BENCH=$(bash "$ROOT/../shared/tools/etcd-benchmark.sh")
W=$(mktemp -d /tmp/meridian-bench.XXXXXX)
pids=(); EPIDS=(); MPIDS=()
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
  pids+=($!); EPIDS+=($!)
done

# Meridian, 3 nodes
MEPS=""
for i in 1 2 3; do
  "$BIN" server --id $i --listen 127.0.0.1:0 --data-dir "$W/m$i" --region r$i >"$W/m$i.out" 2>"$W/m$i.log" &
  pids+=($!); MPIDS+=($!)
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

# CPU time (clock ticks, user + system) of the given processes.
ticks() { local t=0 p; for p in "$@"; do t=$(( t + $(awk '{print $14 + $15}' "/proc/$p/stat") )); done; echo $t; }
HZ=$(getconf CLK_TCK)
# Runs etcd's benchmark and prints, besides its figures, the CPU time each operation cost the
# benchmark client and the three servers: at 256 clients the two cores are the limit, and the
# client's share bounds what any server can reach on this machine.
bench_cpu() { # name server-pids... -- benchmark args...
  local name=$1; shift; local sp=(); while [ "$1" != -- ]; do sp+=("$1"); shift; done; shift
  echo "== $name"
  local s0 s1 out
  s0=$(ticks "${sp[@]}")
  out=$( { TIMEFORMAT='%U %S'; time "$BENCH" "$@" --total="$TOTAL" 2>&1 | tr '\r' '\n' | grep -E "Requests/sec|Average|Slowest|(50|90|99|99\.9)% in"; } 2>&1 || true)
  s1=$(ticks "${sp[@]}")
  echo "$out" | grep -v '^[0-9.]* [0-9.]*$'
  echo "$out" | tail -1 | awk -v s=$(( s1 - s0 )) -v hz="$HZ" -v n="$TOTAL" \
    '{ printf "  CPU per op: benchmark client %.0f us, servers %.0f us\n", ($1 + $2) * 1e6 / n, s / hz * 1e6 / n }'
}
run() { # name endpoints clients conns
  local pids_of=("${EPIDS[@]}"); [ "$1" = meridian ] && pids_of=("${MPIDS[@]}")
  bench_cpu "$1 clients=$3" "${pids_of[@]}" -- --endpoints="$2" --target-leader --clients="$3" \
    --conns="$4" put --key-size=8 --val-size=128 --sequential-keys
}
for c in 1 50 256; do
  conns=$(( c < 100 ? c : 100 ))
  run etcd "$EEPS" $c $conns
  run meridian "$MEPS" $c $conns
done
# Requests/sec of the last benchmark run (bench_cpu's output on stdin).
rate() { awk '/Requests\/sec/ {print $2}'; }
echo "== 256 clients, $PAIRS more pairs (Meridian / etcd put rate)"
ratios=()
for p in $(seq "$PAIRS"); do
  if [ $((p % 2)) = 1 ]; then
    e=$(run etcd "$EEPS" 256 100 | rate); m=$(run meridian "$MEPS" 256 100 | rate)
  else
    m=$(run meridian "$MEPS" 256 100 | rate); e=$(run etcd "$EEPS" 256 100 | rate)
  fi
  r=$(awk -v m="$m" -v e="$e" 'BEGIN { printf "%.2f", m / e }')
  ratios+=("$r")
  printf '  pair %d: etcd %.0f ops/s, meridian %.0f ops/s, ratio %s\n' "$p" "$e" "$m" "$r"
done
printf '%s\n' "${ratios[@]}" | sort -n | awk '{ v[NR] = $1 } END { printf "  median ratio of %d pairs: %s\n", NR, (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
bench_cpu "etcd range (linearizable) clients=256" "${EPIDS[@]}" -- --endpoints="$EEPS" --clients=256 --conns=100 range k
bench_cpu "meridian range (linearizable) clients=256" "${MPIDS[@]}" -- --endpoints="$MEPS" --clients=256 --conns=100 range k
echo "== meridian bench"
for c in 1 50 256; do "$BIN" bench put --endpoints "$MEPS" --clients $c --total "$TOTAL" --key-size 8 --value-size 128 --output json; done
"$BIN" bench get --endpoints "$MEPS" --clients 256 --total "$TOTAL" --consistency linearizable --output json
