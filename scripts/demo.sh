#!/usr/bin/env bash
# The README's main command: two hosts on this machine (network namespaces
# joined by a veth pair, each with its own migrate-agent, see
# scripts/testbed.sh), a busybox shell loop printing a counter every second
# started on host A, live-migrated to host B while it runs, its output
# continuing with no gap and no repeat, and the migration's statistics.
# Cleans up what it starts.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
[ "$(id -u)" = 0 ] || { echo "demo: run as root (namespaces, ptrace, clone3 with set_tid)" >&2; exit 1; }

bash scripts/setup.sh
cargo build --release --workspace --locked -q
export FERRY_AGENT_BIN=$PWD/target/release/migrate-agent
agent=$FERRY_AGENT_BIN
work=$(mktemp -d /tmp/ferry-demo.XXXXXX)
bed=(--name-prefix ferry-demo --agents "$work/hosts")
launcher=""
cleanup() {
  bash scripts/testbed.sh down "${bed[@]}" >/dev/null 2>&1 || true
  [ -n "$launcher" ] && kill -KILL "$launcher" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

"$agent" check >/dev/null || { "$agent" check; exit 1; }
echo "demo: bringing up host A (10.231.0.1) and host B (10.231.0.2), an agent on each"
bash scripts/testbed.sh up "${bed[@]}" | sed 's/^/  /'

# The workload: issue 3's busybox loop, a shell that forks `expr` and
# `sleep` children every second. Started inside host A with only stdin,
# stdout and stderr open (ferry refuses fds it cannot carry, such as a pipe
# inherited from a terminal multiplexer).
(
  for fd in /proc/$BASHPID/fd/*; do
    fd=${fd##*/}
    if [ "$fd" -gt 2 ]; then eval "exec $fd>&-" 2>/dev/null || true; fi
  done
  exec bash scripts/testbed.sh exec "${bed[@]}" a busybox sh -c \
    'i=0; while true; do echo $i; i=$(expr $i + 1); sleep 1; done'
) </dev/null >"$work/out.log" 2>&1 &
launcher=$!
disown "$launcher" # no "Killed" notice when the migration ends the source copy
# The launcher becomes nsenter, which forks the shell into host A's PID
# namespace (earlier children are testbed.sh's own helpers).
shell=
for _ in $(seq 200); do
  if [ "$(cat /proc/$launcher/comm 2>/dev/null)" = nsenter ]; then
    shell=$(cat /proc/$launcher/task/*/children 2>/dev/null | awk '{print $1}')
    [ -n "$shell" ] && break
  fi
  sleep 0.05
done
[ -n "$shell" ] || { echo "demo: the loop did not start on host A" >&2; exit 1; }
ns_pid=$(awk '/^NSpid:/ {print $NF}' "/proc/$shell/status")
echo "demo: the loop runs on host A as PID $ns_pid; its output:"
sleep 4.5
sed 's/^/  | /' "$work/out.log" | tail -n 5

echo "demo: migrating PID $ns_pid live from host A to host B (10.231.0.2:7420)"
"$agent" migrate "$ns_pid" --to 10.231.0.2:7420 --control-socket "$work/hosts/a/agent.sock"

sleep 4.5
echo "demo: the loop now runs on host B; its output went on:"
sed 's/^/  | /' "$work/out.log" | tail -n 8
if ! awk 'NR > 1 && $1 != prev + 1 { bad = 1 } { prev = $1 } END { exit bad }' "$work/out.log"; then
  echo "demo: FAILED: the counter has a gap or a repeat" >&2
  exit 1
fi
echo "demo: done: no gap, no repeat"
