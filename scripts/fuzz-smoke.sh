#!/usr/bin/env bash
# Fuzz smoke run: builds the cargo-fuzz targets in fuzz/ and runs each for a bounded time;
# fails if any target crashes (panic, assertion, timeout, out-of-memory).
#
#   scripts/fuzz-smoke.sh                 # every target, FUZZ_SECONDS (default 20) each
#   FUZZ_SECONDS=300 scripts/fuzz-smoke.sh record http_api
#
# Stable Rust, no nightly: cargo-fuzz's coverage instrumentation (`-Cpasses=sancov-module`,
# `-Cllvm-args=-sanitizer-coverage-*`) uses stable codegen flags; only its default
# AddressSanitizer needs the nightly-only `-Zsanitizer=address`. So every build and run here
# passes `--sanitizer none` (`-s none`): no RUSTC_BOOTSTRAP, no nightly toolchain. Losing ASan
# costs little here: the fuzzed code is safe Rust, whose bounds checks already stop on the
# first bad access, and cargo-fuzz still builds with debug assertions and overflow checks.
# libfuzzer-sys compiles libFuzzer (C++) from source, so a C++ compiler must be present.
#
# New inputs the fuzzer finds go to a scratch corpus that is thrown away; the seeds in
# fuzz/corpus/<target>/ are only read. A crash leaves its input in fuzz/artifacts/<target>/
# and the run prints the command that replays it.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${FUZZ_SECONDS:-20}"

if ! command -v c++ >/dev/null 2>&1 && ! command -v g++ >/dev/null 2>&1 && ! command -v clang++ >/dev/null 2>&1; then
  echo "fuzz-smoke: no C++ compiler; installing g++"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -q g++ >/dev/null
fi

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz-smoke: installing cargo-fuzz"
  cargo install cargo-fuzz --locked
fi

if [ "$#" -gt 0 ]; then
  targets=("$@")
else
  mapfile -t targets < <(cargo fuzz list)
fi

cargo fuzz build -s none

scratch="$(mktemp -d -t meridian-fuzz-smoke.XXXXXX)"
trap 'rm -rf "$scratch"' EXIT
# The record target keeps a scratch DiskStore under TMPDIR.
export TMPDIR="$scratch"

failed=()
for t in "${targets[@]}"; do
  mkdir -p "$scratch/corpus/$t"
  echo "=== fuzz $t for ${seconds}s"
  if cargo fuzz run -s none "$t" "$scratch/corpus/$t" "fuzz/corpus/$t" -- \
      -max_total_time="$seconds" -max_len=4096 -timeout=10 -rss_limit_mb=2048 \
      -malloc_limit_mb=512 -print_final_stats=1 >"$scratch/$t.log" 2>&1; then
    grep -E '^stat::number_of_executed_units|^Done' "$scratch/$t.log" | sed "s/^/  $t: /" || true
  else
    failed+=("$t")
    echo "  $t: CRASHED"
    tail -n 60 "$scratch/$t.log"
  fi
done

if [ "${#failed[@]}" -gt 0 ]; then
  echo "fuzz-smoke: crashes in: ${failed[*]} (inputs under fuzz/artifacts/)"
  exit 1
fi
echo "fuzz-smoke: ${#targets[@]} targets, ${seconds}s each, no crash"
