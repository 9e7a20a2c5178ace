#!/usr/bin/env bash
# The README's main command. Until live migration between hosts lands, the
# demo shows ferry's checkpoint/restore engine on one host: a counter
# program is checkpointed while it runs, killed, and restored from its image
# with the same PID; its output continues where it stopped, and the
# statistics of both steps are shown. Cleans up what it starts.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
[ "$(id -u)" = 0 ] || { echo "demo: run as root (ptrace, clone3 with set_tid)" >&2; exit 1; }

bash scripts/setup.sh
cargo build --release --workspace --locked -q
agent=target/release/migrate-agent
work=$(mktemp -d /tmp/ferry-demo.XXXXXX)
pid=""
cleanup() {
  [ -n "$pid" ] && kill -KILL "$pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

gcc -O1 -o "$work/counter" tests/demo/counter.c
"$agent" check >/dev/null || { "$agent" check; exit 1; }

# Start the counter in its own session with only stdin, stdout and stderr
# open (ferry refuses fds it cannot carry, such as pipes inherited from a
# terminal multiplexer).
start_with_only_stdio() {
  (
    for fd in /proc/$BASHPID/fd/*; do
      fd=${fd##*/}
      if [ "$fd" -gt 2 ]; then eval "exec $fd>&-" 2>/dev/null || true; fi
    done
    exec setsid "$@"
  ) </dev/null >"$work/out.log" 2>&1 &
  pid=$!
  disown "$pid" 2>/dev/null || true
}
start_with_only_stdio "$work/counter"
echo "demo: counter running as PID $pid; output:"
sleep 3.5
sed 's/^/  | /' "$work/out.log"

echo "demo: checkpoint (the process is killed once its image is written)"
"$agent" checkpoint "$pid" --dir "$work/image"
sleep 2
echo "demo: the process is gone; output while it was away:"
sed 's/^/  | /' "$work/out.log" | tail -n 2

echo "demo: image contents (first lines):"
"$agent" image show "$work/image" | head -n 12 | sed 's/^/  /'

echo "demo: restore"
"$agent" restore --dir "$work/image" --json | sed 's/^/  stats: /'
sleep 3.5
echo "demo: restored PID $pid continues where it stopped:"
tail -n 8 "$work/out.log" | sed 's/^/  | /'
if grep -q MISMATCH "$work/out.log"; then
  echo "demo: FAILED: the counters disagree" >&2
  exit 1
fi
echo "demo: done"
