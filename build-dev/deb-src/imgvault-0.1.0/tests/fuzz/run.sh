#!/usr/bin/env bash
# make fuzz: builds the libFuzzer targets with clang and runs each for
# SECONDS (default 300) on a fresh seed corpus.  A crash leaves its input in
# BUILD/fuzz/<target>.work/ and fails the run: add it to the unit tests.
set -euo pipefail

BUILD=${1:?usage: tests/fuzz/run.sh BUILD_DIR [SECONDS]}
SECONDS_EACH=${2:-300}
HERE=$(cd "$(dirname "$0")" && pwd)
SEEDS=$BUILD/fuzz/seeds

rm -rf "$SEEDS" && mkdir -p "$SEEDS"
bash "$HERE/make-seeds.sh" "$SEEDS" >/dev/null

status=0
for target in fuzz_strip fuzz_admit fuzz_proto fuzz_token; do
  work=$BUILD/fuzz/$target.work
  mkdir -p "$work/corpus"
  cp -n "$SEEDS"/* "$work/corpus/" 2>/dev/null || true
  echo "== $target: ${SECONDS_EACH}s =="
  # libvips keeps process-wide caches: leaks are not findings here.
  if ! (cd "$work" && ASAN_OPTIONS=detect_leaks=0 "$BUILD/fuzz/$target" \
        -max_total_time="$SECONDS_EACH" -max_len=65536 -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 corpus 2>&1 | grep -E "^(#[0-9]+ +DONE|stat::number_of_executed_units|==[0-9]+==ERROR|SUMMARY|artifact)" ); then
    :
  fi
  if ls "$work"/crash-* "$work"/leak-* "$work"/timeout-* "$work"/oom-* >/dev/null 2>&1; then
    echo "$target: FOUND A PROBLEM: $(ls "$work"/crash-* "$work"/timeout-* "$work"/oom-* 2>/dev/null | head -3)"
    status=1
  fi
done
exit $status
