#!/usr/bin/env bash
# Runs the libFuzzer targets of Fuzz/ (docs/fuzzing.md).
#
#   scripts/fuzz.sh TARGET SECONDS [--merge]   build, then fuzz TARGET for SECONDS
#   scripts/fuzz.sh all SECONDS                every CI target in turn (not FuzzCore)
#   scripts/fuzz.sh seeds TARGET|all           rewrite the committed seed corpus
#                                              from the targets' real encoders
#
# A run works on a copy of Fuzz/Corpus/TARGET in Fuzz/.build/fuzz-runs/: new
# inputs stay there unless --merge asks to merge them (minimised, with
# libFuzzer's -merge=1) into the committed corpus. It prints executions,
# coverage and the exit status, and exits non-zero on a crash, naming the
# crash file. FUZZ_NO_BUILD=1 skips the build; FUZZ_ARGS adds libFuzzer
# flags (e.g. "-fork=1 -ignore_crashes=1 -ignore_timeouts=1" to go on past
# crashes and collect them all). One target at a time, niced: the machine is
# shared.
set -euo pipefail
cd "$(dirname "$0")/.."

ci_targets=(FuzzPeerFrames FuzzTopics FuzzNDJSON FuzzBinaryFrames FuzzCompressedBody FuzzTables)
# FuzzCore (the core fed hostile messages; its hour is clean, docs/fuzzing.md)
# is run by hand after core changes, not in CI: a finding there needs a person.
all_targets=("${ci_targets[@]}" FuzzCore)

max_len() {
  case "$1" in
    FuzzTopics) echo 1024 ;;
    FuzzCompressedBody) echo 8192 ;;
    *) echo 4096 ;;
  esac
}

usage() {
  echo "usage: $0 TARGET|all SECONDS [--merge] | $0 seeds TARGET|all" >&2
  echo "targets: ${all_targets[*]}" >&2
  exit 2
}

known() {
  local t
  for t in "${all_targets[@]}"; do [ "$t" = "$1" ] && return 0; done
  return 1
}

bin_dir=Fuzz/.build/release
# Swift's own crash reporter would wait on a crashing fuzzer; libFuzzer and
# ASan report crashes themselves.
export SWIFT_BACKTRACE=enable=no

build() {
  [ "${FUZZ_NO_BUILD:-}" = 1 ] && return 0
  echo "== building the fuzz targets (release, -sanitize=fuzzer,address)"
  local start=$SECONDS
  nice -n 10 swift build -c release --package-path Fuzz --scratch-path Fuzz/.build \
    -Xswiftc -sanitize=fuzzer,address -Xswiftc -parse-as-library
  echo "== build took $((SECONDS - start)) s"
}

seeds() {
  local target=$1
  # Only the seeds are rewritten: the regression-* inputs stay.
  mkdir -p "Fuzz/Corpus/$target"
  rm -f "Fuzz/Corpus/$target"/seed-*
  PIGLIX_FUZZ_MAKE_CORPUS="Fuzz/Corpus/$target" "$bin_dir/$target"
}

# fuzz TARGET SECONDS MERGE: prints a summary line, returns libFuzzer's status.
fuzz() {
  local target=$1 seconds=$2 merge=$3
  local work
  work="Fuzz/.build/fuzz-runs/$target-$(date +%Y%m%d-%H%M%S)"
  mkdir -p "$work/corpus" "$work/artifacts"
  cp Fuzz/Corpus/"$target"/* "$work/corpus/"
  echo "== $target for $seconds s (corpus copy in $work/corpus)"
  local status=0
  # FUZZ_ARGS is split into flags on purpose.
  # shellcheck disable=SC2086
  nice -n 10 "$bin_dir/$target" "$work/corpus" \
    -max_total_time="$seconds" -rss_limit_mb=2048 -malloc_limit_mb=2048 -max_len="$(max_len "$target")" \
    -timeout=10 -print_final_stats=1 -artifact_prefix="$work/artifacts/" ${FUZZ_ARGS:-} >"$work/log" 2>&1 || status=$?
  grep -E '^#[0-9]+[[:space:]]+(INITED|DONE)' "$work/log" | tail -2 || true
  local execs cov
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/log" | tail -1)
  [ -n "$execs" ] || execs=$(grep -oE '^#[0-9]+' "$work/log" | tail -1 | tr -d "#" || true)
  cov=$(grep -oE 'cov: [0-9]+ ft: [0-9]+' "$work/log" | tail -1)
  [ "$status" -ne 0 ] && tail -40 "$work/log"
  # With -fork=1 -ignore_crashes=1 libFuzzer exits 0 past crashes: count the files.
  local crash found=0
  for crash in "$work"/artifacts/*; do
    [ -e "$crash" ] || continue
    echo "CRASH FILE: $crash"
    found=1
  done
  [ "$status" -eq 0 ] && [ "$found" = 1 ] && status=1
  if [ "$merge" = 1 ] && [ "$status" -eq 0 ]; then
    nice -n 10 "$bin_dir/$target" -merge=1 -max_len="$(max_len "$target")" "Fuzz/Corpus/$target" "$work/corpus" >>"$work/log" 2>&1
    echo "merged new inputs into Fuzz/Corpus/$target ($(find "Fuzz/Corpus/$target" -type f | wc -l) files)"
  fi
  summary+=("$(printf '%-20s %6s s  %10s execs  %-22s exit %s  log %s' "$target" "$seconds" "${execs:-?}" "${cov:-cov: ?}" "$status" "$work/log")")
  return "$status"
}

[ $# -ge 2 ] || usage
summary=()
if [ "$1" = seeds ]; then
  build
  if [ "$2" = all ]; then set -- "${all_targets[@]}"; else known "$2" || usage; set -- "$2"; fi
  for target in "$@"; do seeds "$target"; done
  exit 0
fi

what=$1 seconds=$2 merge=0
[[ "$seconds" =~ ^[0-9]+$ ]] || usage
[ "${3:-}" = --merge ] && merge=1
if [ "$what" = all ]; then
  targets=("${ci_targets[@]}")
else
  known "$what" || usage
  targets=("$what")
fi

build
failed=0
for target in "${targets[@]}"; do
  fuzz "$target" "$seconds" "$merge" || failed=1
done
echo "== fuzzing summary"
printf '%s\n' "${summary[@]}"
exit "$failed"
