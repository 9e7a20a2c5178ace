#!/usr/bin/env bash
# The README's main command, the container demo: two hosts on this machine (scripts/testbed.sh), each
# given what a separate machine has (its own runc state on a tmpfs at
# /run/runc and its own cgroups), a runc container of busybox counting
# every second into a file (scripts/container-bundle.sh) started on host A,
# live-migrated to host B while it runs, its output continuing with no gap
# and no repeat, the migration's statistics, `runc list` on both hosts and
# `runc delete` on B. Cleans up what it starts.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
[ "$(id -u)" = 0 ] || { echo "demo: run as root" >&2; exit 1; }

bash scripts/setup.sh
cargo build --release --workspace --locked -q
export FERRY_AGENT_BIN=$PWD/target/release/migrate-agent
agent=$FERRY_AGENT_BIN
work=$(mktemp -d /tmp/ferry-cdemo.XXXXXX)
bed=(--name-prefix ferry-cdemo --agents "$work/hosts")
id=ferry-demo-counter
# shellcheck source=scripts/container-hosts.sh
. scripts/container-hosts.sh
cleanup() {
  for h in a b; do
    bash scripts/testbed.sh exec "${bed[@]}" "$h" runc delete -f "$id" >/dev/null 2>&1 || true
  done
  bash scripts/testbed.sh down "${bed[@]}" >/dev/null 2>&1 || true
  container_hosts_remove_cgroups
  rm -rf "$work"
}
trap cleanup EXIT

echo "demo: bringing up host A (10.231.0.1) and host B (10.231.0.2), an agent on each"
bash scripts/testbed.sh up "${bed[@]}" | sed 's/^/  /'
container_hosts_prepare ferry-cdemo "$work/hosts" "${bed[@]}"

bash scripts/container-bundle.sh "$work/bundle" "$work/out" ferry-demo
echo "demo: starting container $id (busybox counting into /out/counter.txt) on host A"
bash scripts/testbed.sh exec "${bed[@]}" a sh -c \
  "${container_enter[a]} exec runc run -d --bundle $work/bundle $id" </dev/null >/dev/null
sleep 4.5
bash scripts/testbed.sh exec "${bed[@]}" a runc list | sed 's/^/  A| /'
echo "demo: its output:"
sed 's/^/  | /' "$work/out/counter.txt" | tail -n 5

echo "demo: migrating container $id live from host A to host B (10.231.0.2:7420)"
"$agent" migrate --container "$id" --to 10.231.0.2:7420 --control-socket "$work/hosts/a/agent.sock"

sleep 4.5
echo "demo: runc on host A, then on host B:"
bash scripts/testbed.sh exec "${bed[@]}" a runc list | sed 's/^/  A| /'
bash scripts/testbed.sh exec "${bed[@]}" b runc list | sed 's/^/  B| /'
echo "demo: the counter now runs on host B; its output went on:"
sed 's/^/  | /' "$work/out/counter.txt" | tail -n 8
if ! counts_without_gap "$work/out/counter.txt"; then
  echo "demo: FAILED: the counter has a gap, a repeat or a reset" >&2
  exit 1
fi
bash scripts/testbed.sh exec "${bed[@]}" b runc delete -f "$id"
echo "demo: done: no gap, no repeat; runc delete -f on B removed it"
