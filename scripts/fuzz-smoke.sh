#!/usr/bin/env bash
# Runs every wire fuzz target for a short time (default 20 s each); CI calls this.
#
#   scripts/fuzz-smoke.sh [SECONDS]
#
# cargo-fuzz needs nightly-only compiler flags (-Zsanitizer, coverage options); on a stable
# toolchain RUSTC_BOOTSTRAP=1 enables them. No sanitizer is used: the wire code has no
# `unsafe`, and libFuzzer still finds panics, overflows (debug assertions on) and hangs.
set -euo pipefail

SECONDS_PER_TARGET="${1:-20}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"

if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi

export RUSTC_BOOTSTRAP=1
cd "$ROOT"
mkdir -p fuzz/corpus
for target in $(cargo fuzz list); do
    mkdir -p "fuzz/corpus/$target"
    echo "== fuzzing $target for ${SECONDS_PER_TARGET}s"
    cargo fuzz run --sanitizer none --debug-assertions "$target" "fuzz/corpus/$target" -- \
        -max_total_time="$SECONDS_PER_TARGET" -max_len=4096 -timeout=10
done
