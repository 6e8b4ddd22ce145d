#!/usr/bin/env bash
# Runs each fuzz target for SECONDS (default 600) with cargo-fuzz on the stable toolchain.
# Usage: fuzz/run.sh [seconds] [target...]
set -euo pipefail
cd "$(dirname "$0")"
secs="${1:-600}"; shift || true
targets=("$@"); [ ${#targets[@]} -eq 0 ] && targets=(token jwt introspection headers resp seal dpop purge notice table zone_index)
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t" "work/$t"   # new inputs go to work/ (ignored); corpus/ holds small seeds
  # cargo-fuzz needs nightly flags; RUSTC_BOOTSTRAP enables them on the stable compiler.
  RUSTC_BOOTSTRAP=1 cargo fuzz run "$t" "work/$t" "corpus/$t" -- -max_total_time="$secs" -max_len=4096 2>&1 | tail -n 3
done
