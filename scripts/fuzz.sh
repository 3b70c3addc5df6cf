#!/usr/bin/env bash
# `make fuzz`: coverage-guided fuzzing (cargo-fuzz, libFuzzer) of what firesfu reads from the
# outside, every target for FUZZ_SECONDS (default 300) each; `--smoke` runs each for a few
# seconds (make test). Crashes stop the run with the reproducing input's path. Every input in
# fuzz/regressions/<target>/ (past crashes) is replayed first.
#
# cargo-fuzz passes nightly-only flags to rustc; the project's toolchain is stable, so the
# build runs with RUSTC_BOOTSTRAP=1 (the flags are those of sanitizer coverage, stable in LLVM
# for years). No address sanitizer (`-s none`): the code is safe Rust (`forbid(unsafe_code)`)
# over crates whose unsafe parts are not ours to fix here; what we look for is panics, hangs and
# broken invariants, which libFuzzer catches without it, at several times the speed.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$FIRESFU_ROOT"

seconds="${FUZZ_SECONDS:-300}"
seed=()
if [ "${1:-}" = "--smoke" ]; then
  # A fixed seed: on a fresh clone (no corpus of earlier runs) the smoke explores the same
  # inputs every time, so it fails for a change, not for luck.
  seconds="${FUZZ_SMOKE_SECONDS:-6}"
  seed=(-seed=1)
  shift
fi
targets=("$@")
if [ "${#targets[@]}" -eq 0 ]; then
  targets=(session_document offer_sdp rtp_rewrite join_token load_report datagram)
fi

bash scripts/deps.sh --fuzz
export RUSTC_BOOTSTRAP=1
# Instrumented builds never mix with the project's: their own target directory.
export CARGO_TARGET_DIR="${FUZZ_TARGET_DIR:-${CARGO_TARGET_DIR%/}-fuzz}"
work="$FIRESFU_ROOT/target/fuzz"
mkdir -p "$work"

echo "== fuzz: build (${targets[*]})"
cargo fuzz build -s none --release --fuzz-dir fuzz

status=0
summary=()
for t in "${targets[@]}"; do
  bin="$CARGO_TARGET_DIR/x86_64-unknown-linux-gnu/release/$t"
  corpus="$work/corpus/$t"
  artifacts="$work/artifacts/$t/"
  mkdir -p "$corpus" "$artifacts"
  if [ -d "fuzz/regressions/$t" ] && [ -n "$(ls -A "fuzz/regressions/$t")" ]; then
    "$bin" -runs=0 "fuzz/regressions/$t" >"$work/$t.regressions.log" 2>&1 || {
      echo "fuzz: $t fails on a past crash (fuzz/regressions/$t); log: $work/$t.regressions.log" >&2
      status=1
      continue
    }
  fi
  log="$work/$t.log"
  # New inputs land in target/fuzz/corpus; the seeds in fuzz/corpus are only read.
  if "$bin" "${seed[@]}" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
      -artifact_prefix="$artifacts" "$corpus" "fuzz/corpus/$t" >"$log" 2>&1; then
    runs=$(grep -oP 'stat::number_of_executed_units:\s*\K\d+' "$log" || echo "?")
    cov=$(grep -oP 'cov: \K\d+' "$log" | tail -1 || echo "?")
    summary+=("$t: $runs runs in ${seconds}s, coverage $cov, no crash")
  else
    status=1
    crash=$(ls -t "$artifacts" 2>/dev/null | head -1)
    summary+=("$t: CRASH ($artifacts$crash); log $log")
    tail -n 30 "$log" >&2
  fi
done
printf '%s\n' "${summary[@]}"
if [ "$status" -ne 0 ]; then
  echo "fuzz: a target crashed. Reproduce: RUSTC_BOOTSTRAP=1 cargo fuzz run -s none --release --fuzz-dir fuzz <target> <input>;" \
    "then add the input to fuzz/regressions/<target>/ with the fix." >&2
fi
exit "$status"
