#!/usr/bin/env bash
# The whole test suite, as CI runs it:
#   1. the workspace: unit, property, in-process cluster, black-box process, crash-point and
#      real-network fault tests;
#   2. the deterministic simulation seed set (sim/ builds on its own, with --cfg tokio_unstable);
#   3. a bounded fuzz smoke run of every target in fuzz/ (FUZZ_SECONDS each, default 20).
# Set MERIDIAN_SKIP_FUZZ=1 to leave out step 3 (its first build takes ~10 minutes).
set -euo pipefail
cd "$(dirname "$0")/.."

cargo nextest run --workspace
(cd sim && cargo nextest run)
if [ "${MERIDIAN_SKIP_FUZZ:-0}" != 1 ]; then
  scripts/fuzz-smoke.sh
fi
