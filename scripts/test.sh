#!/usr/bin/env bash
# The README's test command: installs what is missing, checks formatting and
# lints, builds everything and runs the whole test suite (unit tests and the
# integration tests that checkpoint and restore real processes, as root),
# then the fuzz targets for a bounded time each (scripts/fuzz.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

bash scripts/setup.sh

if [ "$(id -u)" != 0 ]; then
  echo "test: the integration tests ptrace, clone3 with set_tid and restore PIDs: run as root" >&2
  exit 1
fi

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo build --workspace --all-targets --locked
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
cargo test --workspace --locked --no-fail-fast -- --test-threads="${FERRY_TEST_THREADS:-2}" 2>&1 | tee "$log" || status=$?
# One closing line for the whole suite (cargo prints one per test binary,
# the last of which may be an empty doc-test run).
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($i ~ /^passed/) p += $(i-1); if ($i ~ /^failed/) f += $(i-1) } }
     END { printf "all tests: %d passed, %d failed\n", p, f }' "$log"
# The fuzz targets, a bounded time each (FERRY_FUZZ_SECONDS, 0 skips them).
if [ "${FERRY_FUZZ_SECONDS:-60}" != 0 ]; then
  bash scripts/fuzz.sh || status=$?
fi
exit "$status"
