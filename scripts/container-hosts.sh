# Sourced by scripts/demo.sh and scripts/bench.sh: gives the two hosts of
# scripts/testbed.sh (up, with agents) what separate machines have for runc
# containers: its own runc state on a tmpfs at /run/runc, the cgroup
# hierarchies mounted in its sysfs, and its own cgroup of every hierarchy
# (under the caller's) holding its agent.
#
#   container_hosts_prepare TAG AGENTS_DIR TESTBED_OPTIONS...
#       for hosts a and b of the testbed brought up with TESTBED_OPTIONS
#       (--agents AGENTS_DIR among them); the cgroups are named TAG-a and
#       TAG-b. Sets
#       container_enter[a|b]: shell text moving the shell that runs it into
#       that host's cgroups (run it before `runc run` or `runc create`).
#   container_hosts_remove_cgroups
#       removes those cgroups: call it after `testbed.sh down`.
#   cgroup_mounts
#       prints the shell text that mounts this host's cgroup hierarchies
#       under /sys/fs/cgroup (on a tmpfs), for a testbed host, whose sysfs
#       `ip netns exec` made without them (also scripts/docker-host.sh).
#   counts_without_gap FILE
#       the busybox counter's output (scripts/container-bundle.sh) is 0, 1,
#       2, ...: no gap, no repeat, no reset.
# shellcheck shell=bash

declare -A container_enter=([a]="" [b]="")
container_cgdirs=()

# _container_host_cgroups NAME: creates cgroup NAME of every hierarchy,
# under this shell's own, and prints their paths.
_container_host_cgroups() {
  local ctrls path m parent d f
  while IFS=: read -r _ ctrls path; do
    case $ctrls in
      "") m=unified ;;
      name=systemd) m=systemd ;;
      *) m=${ctrls%%,*} ;;
    esac
    parent=/sys/fs/cgroup/$m${path%/}
    [ -e "$parent/cgroup.procs" ] || continue
    d=$parent/$1
    mkdir -p "$d"
    for f in cpuset.cpus cpuset.mems; do
      if [ -e "$parent/$f" ]; then cat "$parent/$f" >"$d/$f" 2>/dev/null || true; fi
    done
    echo "$d"
  done </proc/self/cgroup
}

cgroup_mounts() {
  local mounts m how
  mounts="mount -t tmpfs ferry-cgroups /sys/fs/cgroup;"
  # Named hierarchies other than systemd's (a test's own) are left out.
  for m in $(awk -F: '{c=$2; if (c=="") c="unified"; else if (c=="name=systemd") c="systemd"; else if (c ~ /^name=/) next; else sub(/,.*/, "", c); print c}' /proc/self/cgroup); do
    case $m in
      unified) how="-t cgroup2 cgroup2" ;;
      systemd) how="-t cgroup -o none,name=systemd cgroup" ;;
      *) how="-t cgroup -o $m cgroup" ;;
    esac
    mounts+=" mkdir -p /sys/fs/cgroup/$m && mount $how /sys/fs/cgroup/$m;"
  done
  echo "$mounts"
}

container_hosts_prepare() {
  local tag=$1 agents=$2 mounts h dirs d agent_pid p
  shift 2
  # `ip netns exec` gave each host a sysfs without cgroups: mount them there.
  mounts=$(cgroup_mounts)
  for h in a b; do
    dirs=$(_container_host_cgroups "$tag-$h")
    for d in $dirs; do container_cgdirs+=("$d"); done
    agent_pid=$(for p in $(cat "/proc/$(cat "$agents/$h/init.pid")/task/"*/children); do
      if [ "$(cat "/proc/$p/comm")" = migrate-agent ]; then echo "$p"; fi
    done)
    container_enter[$h]=""
    for d in $dirs; do
      echo "$agent_pid" >"$d/cgroup.procs"
      container_enter[$h]+="echo \$\$ > $d/cgroup.procs; "
    done
    bash scripts/testbed.sh exec "$@" "$h" sh -c \
      "set -e; mkdir -p /run/runc; mount -t tmpfs ferry-runc /run/runc; $mounts"
  done
}

container_hosts_remove_cgroups() {
  local d
  for d in "${container_cgdirs[@]}"; do
    for _ in $(seq 100); do
      rmdir "$d"/*/ 2>/dev/null || true
      rmdir "$d" 2>/dev/null && break
      sleep 0.05
    done
  done
  container_cgdirs=()
}

counts_without_gap() {
  awk 'NR == 1 && $1 != 0 { bad = 1 } NR > 1 && $1 != prev + 1 { bad = 1 } { prev = $1 } END { exit bad }' "$1"
}
