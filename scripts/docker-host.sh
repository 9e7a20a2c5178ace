#!/usr/bin/env bash
# A Docker host of its own for tests and by hand: dockerd (Debian's
# docker.io, which starts its own containerd) in a network namespace and a
# mount namespace of its own, with its own data root, exec root, socket,
# pidfile and cgroup parent, ferry-runc registered as runtime "ferry" and
# made the default, experimental mode on (`docker checkpoint` needs it).
#
#   scripts/docker-host.sh up DIR FERRY_RUNC   starts it; the socket is DIR/docker.sock
#   scripts/docker-host.sh up DIR FERRY_RUNC --in-host AGENTS a|b
#                                              starts it inside host A or B of
#                                              `scripts/testbed.sh up --agents AGENTS`
#                                              (its network, PID, mount and IPC
#                                              namespaces, where its agent runs), for
#                                              live moves between two dockerds; its
#                                              socket is also AGENTS/HOST/docker.sock
#                                              (a link), which that host's agent uses
#   scripts/docker-host.sh down DIR            stops it and removes what it made
#
# Use it with `/usr/bin/docker -H unix://DIR/docker.sock ...`.
#
# What dockerd changes on its host (iptables rules and FORWARD policy,
# ip_forward, docker0) happens in the network namespace made here and goes
# with it; its mounts (overlay layers, network namespace pins) live in the
# mount namespace made here (host mounts propagate in, none out) and go
# when its last process exits. Every process it starts (containerd, the
# shims) stays in a pids cgroup made here, so that `down` stops exactly
# those, by PID, even when dockerd did not. Containers' cgroups go under
# /ferry-docker-NAME (NAME: DIR's base name), removed by `down`.
# Run as root.
set -euo pipefail

usage() {
  echo "usage: $0 up DIR FERRY_RUNC [--in-host AGENTS a|b] | down DIR" >&2
  exit 2
}
[ $# -ge 2 ] || usage
action=$1
dir=$(realpath -m "$2")
name=$(basename "$dir")
ns=ferry-docker-$name
cg=/sys/fs/cgroup/pids/ferry-docker-$name-daemon
parent=ferry-docker-$name
docker=(/usr/bin/docker -H "unix://$dir/docker.sock")

down() {
  # (Inside a testbed host, dockerd's pidfile holds the PID its namespace
  # gives it, which is not ours: the cgroup below stops it.)
  if [ ! -f "$dir/in-host" ] && [ -f "$dir/dockerd.pid" ]; then
    pid=$(cat "$dir/dockerd.pid")
    if kill -0 "$pid" 2>/dev/null; then
      kill -TERM "$pid" 2>/dev/null || true
      for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    fi
  fi
  # containerd, the shims, and dockerd if it did not stop: all in our cgroup.
  if [ -d "$cg" ]; then
    for sig in TERM KILL; do
      pids=$(cat "$cg/cgroup.procs" 2>/dev/null || true)
      [ -n "$pids" ] || break
      kill -"$sig" $pids 2>/dev/null || true
      for _ in $(seq 50); do [ -z "$(cat "$cg/cgroup.procs" 2>/dev/null)" ] && break; sleep 0.1; done
    done
    rmdir "$cg" 2>/dev/null || true
  fi
  # What is left of the containers (dockerd killed before it stopped
  # them): every process in the cgroups under our cgroup parent.
  if [ -d "/sys/fs/cgroup/pids/$parent" ]; then
    for _ in 1 2 3; do
      pids=$(find "/sys/fs/cgroup/pids/$parent" -name cgroup.procs -exec cat {} + 2>/dev/null || true)
      [ -n "$pids" ] || break
      kill -KILL $pids 2>/dev/null || true
      sleep 0.2
    done
  fi
  # Containers' cgroups, deepest first (again while killed processes are
  # still being reaped: a cgroup holding a zombie cannot go yet).
  for _ in $(seq 50); do
    left=
    for h in /sys/fs/cgroup/*/; do
      [ -d "$h$parent" ] && find "$h$parent" -depth -type d -exec rmdir {} \; 2>/dev/null || true
      [ -d "$h$parent" ] && left=1
    done
    [ -d "$cg" ] && { rmdir "$cg" 2>/dev/null || left=1; }
    [ -z "$left" ] && break
    sleep 0.1
  done
  if ip netns list | grep -qx "$ns\( .*\)\?"; then ip netns delete "$ns"; fi
  rm -rf "$dir"
}

case $action in
  up)
    [ $# -eq 3 ] || [ $# -eq 6 ] || usage
    runtime=$(realpath "$3")
    [ -x "$runtime" ] || { echo "$runtime is not executable" >&2; exit 1; }
    down
    mkdir -p "$dir/data" "$dir/exec" "$cg"
    if [ $# -eq 6 ]; then
      [ "$4" = --in-host ] || usage
      init=$(cat "$5/$6/init.pid")
      enter=(nsenter -t "$init" -n -p -m -i --)
      touch "$dir/in-host"
      # `ip netns exec` gave the host a sysfs without cgroups, which
      # dockerd needs: mount them there (once; they go with the host).
      if ! "${enter[@]}" mountpoint -q /sys/fs/cgroup; then
        # shellcheck source=scripts/container-hosts.sh
        . "$(dirname "$0")/container-hosts.sh"
        "${enter[@]}" sh -c "set -e; $(cgroup_mounts)"
      fi
      ln -sfn "$dir/docker.sock" "$5/$6/docker.sock"
    else
      ip netns add "$ns"
      ip -n "$ns" link set lo up
      enter=(nsenter --net="/run/netns/$ns" unshare --mount --propagation slave)
    fi
    cat >"$dir/daemon.json" <<JSON
{
  "runtimes": {"ferry": {"path": "$runtime"}},
  "default-runtime": "ferry",
  "experimental": true,
  "cgroup-parent": "/$parent",
  "log-driver": "json-file"
}
JSON
    (
      echo $BASHPID >"$cg/cgroup.procs"
      # dockerd hands its fds to every runtime call: give it none.
      for fd in /proc/$BASHPID/fd/*; do
        fd=${fd##*/}
        [ "$fd" -gt 2 ] && eval "exec $fd>&-" 2>/dev/null || true
      done
      exec "${enter[@]}" \
        /usr/sbin/dockerd --config-file "$dir/daemon.json" --data-root "$dir/data" \
        --exec-root "$dir/exec" -H "unix://$dir/docker.sock" --pidfile "$dir/dockerd.pid" \
        </dev/null >"$dir/dockerd.log" 2>&1
    ) &
    for _ in $(seq 300); do
      if "${docker[@]}" version >/dev/null 2>&1; then exit 0; fi
      sleep 0.1
    done
    echo "dockerd did not answer within 30 s; its log:" >&2
    tail -20 "$dir/dockerd.log" >&2 || true
    exit 1
    ;;
  down) down ;;
  *) usage ;;
esac
