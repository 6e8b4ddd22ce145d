#!/usr/bin/env bash
# Runs the functional integration tests with nginx (master and workers) under valgrind's
# memcheck and reports the error summaries. Timing-sensitive tests (load) are skipped.
# Usage: scripts/memcheck.sh [test-target ...]   (default: core cache features hostile)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh valgrind
cargo build --release
logs=$(mktemp -d /tmp/phantom-memcheck.XXXXXX)
chmod 755 "$logs"
targets=("$@"); [ ${#targets[@]} -eq 0 ] && targets=(core cache features hostile)
export PHANTOM_TEST_WRAPPER="valgrind --tool=memcheck --trace-children=yes --leak-check=no \
  --error-exitcode=99 --suppressions=$(pwd)/scripts/memcheck.supp --log-file=$logs/vg.%p.log"
status=0
for t in "${targets[@]}"; do
  cargo test --release --test "$t" -- --test-threads 2 || status=1
done
errors=$(grep -h "ERROR SUMMARY" "$logs"/vg.*.log | awk '{s += $4} END {print s + 0}')
processes=$(ls "$logs"/vg.*.log | wc -l)
echo "memcheck: $processes nginx processes, $errors errors (logs in $logs)"
grep -l "ERROR SUMMARY: [1-9]" "$logs"/vg.*.log | head -n 5 | xargs -r grep -A20 "Invalid\|uninitialised\|Mismatched" | head -n 60
[ "$errors" -eq 0 ] && [ $status -eq 0 ]
