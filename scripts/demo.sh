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
cgdirs=()
cleanup() {
  for h in a b; do
    bash scripts/testbed.sh exec "${bed[@]}" "$h" runc delete -f "$id" >/dev/null 2>&1 || true
  done
  bash scripts/testbed.sh down "${bed[@]}" >/dev/null 2>&1 || true
  for d in "${cgdirs[@]}"; do
    for _ in $(seq 100); do
      rmdir "$d"/*/ 2>/dev/null || true
      rmdir "$d" 2>/dev/null && break
      sleep 0.05
    done
  done
  rm -rf "$work"
}
trap cleanup EXIT

# A cgroup of every hierarchy for host $1, under this script's own.
host_cgroups() {
  while IFS=: read -r _ ctrls path; do
    case $ctrls in
      "") m=unified ;;
      name=systemd) m=systemd ;;
      *) m=${ctrls%%,*} ;;
    esac
    parent=/sys/fs/cgroup/$m${path%/}
    [ -e "$parent/cgroup.procs" ] || continue
    d=$parent/ferry-cdemo-$1
    mkdir -p "$d"
    for f in cpuset.cpus cpuset.mems; do
      if [ -e "$parent/$f" ]; then cat "$parent/$f" >"$d/$f" 2>/dev/null || true; fi
    done
    echo "$d"
  done </proc/self/cgroup
}

echo "demo: bringing up host A (10.231.0.1) and host B (10.231.0.2), an agent on each"
bash scripts/testbed.sh up "${bed[@]}" | sed 's/^/  /'
# `ip netns exec` gave each host a sysfs without cgroups: mount them there.
mounts="mount -t tmpfs ferry-cgroups /sys/fs/cgroup;"
for m in $(awk -F: '{c=$2; if (c=="") c="unified"; else if (c=="name=systemd") c="systemd"; else sub(/,.*/, "", c); print c}' /proc/self/cgroup); do
  case $m in
    unified) how="-t cgroup2 cgroup2" ;;
    systemd) how="-t cgroup -o none,name=systemd cgroup" ;;
    *) how="-t cgroup -o $m cgroup" ;;
  esac
  mounts+=" mkdir -p /sys/fs/cgroup/$m && mount $how /sys/fs/cgroup/$m;"
done
declare -A enter
for h in a b; do
  dirs=$(host_cgroups "$h")
  for d in $dirs; do cgdirs+=("$d"); done
  agent_pid=$(for p in $(cat "/proc/$(cat "$work/hosts/$h/init.pid")/task/"*/children); do
    [ "$(cat "/proc/$p/comm")" = migrate-agent ] && echo "$p"; done)
  enter[$h]=""
  for d in $dirs; do
    echo "$agent_pid" >"$d/cgroup.procs"
    enter[$h]+="echo \$\$ > $d/cgroup.procs; "
  done
  bash scripts/testbed.sh exec "${bed[@]}" "$h" sh -c \
    "set -e; mkdir -p /run/runc; mount -t tmpfs ferry-runc /run/runc; $mounts"
done

bash scripts/container-bundle.sh "$work/bundle" "$work/out" ferry-demo
echo "demo: starting container $id (busybox counting into /out/counter.txt) on host A"
bash scripts/testbed.sh exec "${bed[@]}" a sh -c \
  "${enter[a]} exec runc run -d --bundle $work/bundle $id" </dev/null >/dev/null
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
if ! awk 'NR == 1 && $1 != 0 { bad = 1 } NR > 1 && $1 != prev + 1 { bad = 1 } { prev = $1 } END { exit bad }' "$work/out/counter.txt"; then
  echo "demo: FAILED: the counter has a gap, a repeat or a reset" >&2
  exit 1
fi
bash scripts/testbed.sh exec "${bed[@]}" b runc delete -f "$id"
echo "demo: done: no gap, no repeat; runc delete -f on B removed it"
