#!/usr/bin/env bash
# The microbenchmarks' allocation check (Benchmarks/; docs/performance.md,
# "Microbenchmarks: Benchmarks/"): runs them (ordo-one/benchmark, release) and
# compares each one's mallocCountTotal with the stored baseline `main`
# (Benchmarks/.benchmarkBaselines/). A benchmark that allocates more than 5 %
# over it (p50 or p90; thresholds in Benchmarks/Benchmarks/PiglixBenchmarks/
# PiglixBenchmarks.swift) fails the check. Time is measured, never checked:
# it moves with the machine's load.
#
# Usage: scripts/bench-check.sh            # check (CI runs this)
#        scripts/bench-check.sh --update   # store this tree's counts as the
#                                          # baseline, after a change that
#                                          # meant to allocate differently;
#                                          # commit Benchmarks/.benchmarkBaselines
# With Swift 6.3 the counts come from ordo-one's malloc-interposer (the
# MallocInterposer trait): jemalloc is not needed.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${1:-}" = --update ]; then
  exec swift package --package-path Benchmarks --allow-writing-to-package-directory \
    benchmark baseline update main --metric mallocCountTotal --no-progress
fi

# `swift package` exits 1 for a regression and for an improvement alike (the
# tool's own codes, 2 and 4, do not come through the plugin): read its verdict.
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
swift package --package-path Benchmarks benchmark baseline check main --metric mallocCountTotal --no-progress 2>&1 | tee "$log" || status=$?
if grep -q "is WORSE than the 'main' baseline thresholds" "$log"; then
  echo "bench-check: FAILED: a microbenchmark allocates more than the baseline allows (above); if that is intended, scripts/bench-check.sh --update"
  exit 1
elif grep -q "is BETTER than the 'main' baseline thresholds" "$log"; then
  echo "bench-check: fewer allocations than the baseline (no regression); store the new counts with scripts/bench-check.sh --update"
elif grep -q "is WITHIN the 'main' baseline thresholds" "$log" && [ "$status" = 0 ]; then
  echo "bench-check: every microbenchmark allocates within the baseline's thresholds"
else
  echo "bench-check: FAILED: the benchmarks did not run to a verdict (exit $status)"
  exit 1
fi
