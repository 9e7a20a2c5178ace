#!/usr/bin/env bash
# Runs ferry's cargo-fuzz targets (tests/fuzz/fuzz_targets): the image
# reader, every control message decoder and the page stream parser, each
# for a bounded time on its kept corpus (tests/fuzz/corpus/TARGET). A crash
# fails the run and leaves its input in tests/fuzz/artifacts/TARGET/.
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]
#
# SECONDS_PER_TARGET defaults to $FERRY_FUZZ_SECONDS, else 60. New inputs
# the fuzzer finds go to a scratch copy of the corpus, so a run leaves the
# repository as it was; to keep them, merge them into the corpus with
# `cargo fuzz cmin`. Needs cargo-fuzz (scripts/setup.sh installs it).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

seconds=${1:-${FERRY_FUZZ_SECONDS:-60}}
shift || true
targets=("$@")
((${#targets[@]})) || targets=(control pages image)

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
# Coverage instrumentation without a sanitizer: works on the stable
# toolchain, and ferry's only unsafe code (src/kernel/) is not what the
# decoders reach.
fuzz=(cargo fuzz run --fuzz-dir tests/fuzz --sanitizer none --release)
for t in "${targets[@]}"; do
  mkdir -p "$scratch/$t"
  cp -a "tests/fuzz/corpus/$t/." "$scratch/$t/" 2>/dev/null || true
  echo "fuzz: $t for ${seconds}s"
  status=0
  "${fuzz[@]}" "$t" "$scratch/$t" -- -max_total_time="$seconds" -rss_limit_mb=2048 \
    -timeout=10 -print_final_stats=1 >"$scratch/$t.log" 2>&1 || status=$?
  # libFuzzer prints a line per new input; show its summary and any crash.
  grep -E 'stat::number_of_executed_units|stat::peak_rss_mb|Done [0-9]+ runs|==[0-9]+==|panicked|SUMMARY|error' "$scratch/$t.log" || true
  if [ "$status" != 0 ]; then
    tail -n 40 "$scratch/$t.log" >&2
    echo "fuzz: target $t failed (exit $status); its input is in tests/fuzz/artifacts/$t/" >&2
    exit "$status"
  fi
done
echo "fuzz: ${targets[*]}: no crash in ${seconds}s each"
