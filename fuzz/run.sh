#!/usr/bin/env bash
# Runs every cargo-fuzz target for N seconds each (default 60) and reports
# the executions each made; exits non-zero when a target finds a crash
# (cargo-fuzz keeps the input under fuzz/artifacts/).
#
#   fuzz/run.sh [seconds-per-target]
#
# Needs cargo-fuzz (installed here with `cargo install cargo-fuzz` if
# missing). RUSTC_BOOTSTRAP=1 lets the stable toolchain accept the sanitizer
# flags cargo-fuzz passes.
set -euo pipefail
cd "$(dirname "$0")"
SECS=${1:-60}
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
export RUSTC_BOOTSTRAP=1
targets=$(cargo fuzz list)
status=0
for t in $targets; do
  mkdir -p "corpus/$t"
  log=$(mktemp)
  if cargo fuzz run "$t" "corpus/$t" -- -max_total_time="$SECS" >"$log" 2>&1; then
    runs=$(grep -Eo '#[0-9]+' "$log" | tail -1 | tr -d '#')
    echo "$t: ${runs:-?} runs in ${SECS}s, no crash"
  else
    echo "$t: FAILED (see fuzz/artifacts/$t)"; tail -30 "$log"; status=1
  fi
  rm -f "$log"
done
exit $status
