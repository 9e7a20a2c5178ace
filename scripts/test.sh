#!/usr/bin/env bash
# The README's test command: installs what is missing, checks formatting and
# lints, builds everything and runs the whole test suite (unit tests and the
# integration tests that checkpoint and restore real processes, as root).
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
cargo test --workspace --locked -- --test-threads="${FERRY_TEST_THREADS:-2}"
