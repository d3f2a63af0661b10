#!/usr/bin/env bash
# The lowest one-at-a-time latency a durable, 3-way replicated publish can have on this machine,
# with no consensus bookkeeping at all: tools/durable-floor/floor.c (a client, a leader and two
# followers as four processes over loopback TCP; the leader answers once its own copy and one
# follower's copy are fdatasynced, a majority of three). Run with SYNC 0 (the network part alone)
# and SYNC 1, ROUNDS times each, alternating, so a figure for one-at-a-time publishes (Meridian's
# `bench publish --clients 1`, JetStream's sync-1) can be set beside what the machine allows.
# Usage: scripts/durable-floor.sh [MESSAGES]   (default 5000; ROUNDS=3; TMPDIR for the files)
# Needs gcc.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
MESSAGES=${1:-5000}
ROUNDS=${ROUNDS:-3}
W=$(mktemp -d "${TMPDIR:-/tmp}/meridian-floor.XXXXXX")
trap 'rm -rf "$W"' EXIT
gcc -O2 -Wall -Wextra -Werror -o "$W/floor" "$ROOT/tools/durable-floor/floor.c"
echo "== durable floor: $MESSAGES publishes one at a time, files in $W"
for _ in $(seq "$ROUNDS"); do
  "$W/floor" "$MESSAGES" 0 "$W"
  "$W/floor" "$MESSAGES" 1 "$W"
done
