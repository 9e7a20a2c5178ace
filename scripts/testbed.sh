#!/usr/bin/env bash
# Three "hosts" on one machine for live-migration tests by hand: network
# namespaces PREFIX-a, PREFIX-b and PREFIX-c (a client) on one link, a
# bridge in namespace PREFIX-l (the switch), 10.231.0.1/24, 10.231.0.2/24
# and 10.231.0.3/24, loopback up in each, MTU 9000 for throughput.
#
# A and B route for the containers they run (the network hook gives each
# container address a host route to its veth) and answer ARP for them on
# the link (proxy ARP, no proxy delay), so a container's address on the
# link's subnet (10.231.0.100/24, say) is reachable from C on whichever
# host the container runs, with no route changed: C finds it by ARP, and
# a host that has it no longer forwards to the one that has it now.
#
#   scripts/testbed.sh up   [--name-prefix P] [--agents DIR]   (default prefix: ferry)
#   scripts/testbed.sh down [--name-prefix P] [--agents DIR]
#   scripts/testbed.sh exec [--name-prefix P] --agents DIR a|b COMMAND...
#
# `up` and `down` are idempotent: `up` first removes what a previous `up`
# left, `down` removes only what exists. Run a command on host A with
#   ip netns exec ferry-a COMMAND
#
# With --agents DIR, `up` also makes a CA and a certificate per host in DIR
# (migrate-agent certs), writes DIR/a.toml and DIR/b.toml and starts an
# agent on each host (port 7420, control socket DIR/a/agent.sock, log
# DIR/a/agent.log) in a PID, mount and IPC namespace of its own, as on a
# real host: a migrated process keeps its PID (and its SysV shmids) while
# the source copy still exists. Host A's PIDs start at 5000, so that they
# are free on host B. `exec` runs a command inside a host (its network,
# PID, mount and IPC namespaces); `down` stops the agents and everything started in their
# hosts. The agent binary is $FERRY_AGENT_BIN, else
# target/release/migrate-agent, else target/debug/migrate-agent.
# Run as root.
set -euo pipefail
cd "$(dirname "$0")/.."

usage() {
  echo "usage: $0 up|down [--name-prefix P]" >&2
  exit 2
}

[ $# -ge 1 ] || usage
action=$1
shift
prefix=ferry
agents=
while [ $# -gt 0 ]; do
  case $1 in
    --name-prefix)
      [ $# -ge 2 ] || usage
      prefix=$2
      shift 2
      ;;
    --agents)
      [ $# -ge 2 ] || usage
      agents=$(realpath -m "$2")
      shift 2
      ;;
    *)
      [ "$action" = exec ] || usage
      break
      ;;
  esac
done

[ "$action" = exec ] || bash scripts/setup.sh >/dev/null

ns_a=$prefix-a
ns_b=$prefix-b
ns_c=$prefix-c
ns_link=$prefix-l
# Interface names are limited to 15 characters; both ends live inside the
# namespaces, so the same short names serve every prefix.
if_a=veth-a
if_b=veth-b
if_c=veth-c
addr_a=10.231.0.1
addr_b=10.231.0.2
addr_c=10.231.0.3
mtu=9000

ns_exists() { ip netns list | awk '{print $1}' | grep -qx "$1"; }

agent_bin() {
  if [ -n "${FERRY_AGENT_BIN:-}" ]; then echo "$FERRY_AGENT_BIN"
  elif [ -x target/release/migrate-agent ]; then realpath target/release/migrate-agent
  else realpath target/debug/migrate-agent
  fi
}

# Starts the agent of host $1 (a or b) at address $2 in namespace $3.
start_agent() {
  local host=$1 addr=$2 ns=$3 bin dir=$agents/$1 i peer=b peer_addr=$addr_b
  [ "$host" = b ] && peer=a peer_addr=$addr_a
  bin=$(agent_bin)
  mkdir -p "$dir"
  [ -f "$dir/cert.pem" ] || "$bin" certs issue --ca "$agents/ca" --name "host-$host" --ip "$addr" --out "$dir" >/dev/null
  cat > "$agents/$host.toml" <<EOF
name = "host-$host"
listen = "$addr:7420"
control_socket = "$dir/agent.sock"
ca = "$agents/ca/ca.pem"
cert = "$dir/cert.pem"
key = "$dir/key.pem"
work_dir = "$dir/work"
log_level = "info"

[peers]
host-$peer = "$peer_addr:7420"

[container]
network_hook = "$(realpath scripts/container-net.sh)"
# Where scripts/docker-host.sh up DIR FERRY_RUNC --in-host $agents $host
# links the socket of the host's dockerd.
docker_socket = "$dir/docker.sock"
EOF
  rm -f "$dir/agent.sock"
  # bash is the init of the host's PID namespace: it reaps orphans (the
  # restored workloads), and when it dies everything in the host dies.
  # With FERRY_TESTBED_LASTING_HOSTS set it outlives its agent, as a real
  # host outlives a crashed agent.
  local init='"$0" serve --config "$1" & wait'
  if [ -n "${FERRY_TESTBED_LASTING_HOSTS:-}" ]; then
    init='"$0" serve --config "$1" & while :; do wait; sleep 1; done'
  fi
  # With FERRY_TESTBED_RESTART_AGENTS set, a dead agent is started again
  # a second later, as a service manager would (a stopped one is not).
  if [ -n "${FERRY_TESTBED_RESTART_AGENTS:-}" ]; then
    init='while :; do "$0" serve --config "$1"; sleep 1; done'
  fi
  # FERRY_TESTBED_FAULT_A / _B: the test-only fault hook (FERRY_FAULT,
  # src/agent/fault.rs) of that host's agent alone.
  local fault_var=FERRY_TESTBED_FAULT_${host^^}
  setsid ip netns exec "$ns" unshare --pid --fork --mount-proc --ipc --kill-child \
    env FERRY_FAULT="${!fault_var:-}" bash -c "$init" "$bin" "$agents/$host.toml" \
    >"$dir/agent.log" 2>&1 </dev/null &
  echo $! > "$dir/unshare.pid"
  for i in $(seq 200); do
    [ -S "$dir/agent.sock" ] && break
    sleep 0.05
  done
  if [ ! -S "$dir/agent.sock" ]; then
    cat "$dir/agent.log" >&2
    echo "testbed: the agent of host $host did not start" >&2
    exit 1
  fi
  cat "/proc/$(cat "$dir/unshare.pid")/task/"*/children | awk '{print $1}' > "$dir/init.pid"
}

stop_agents() {
  local host pid
  for host in a b; do
    if [ -f "$agents/$host/unshare.pid" ]; then
      pid=$(cat "$agents/$host/unshare.pid")
      kill -KILL "$pid" 2>/dev/null || true
      # Gone, or a zombie left for whoever adopted it (a test harness that
      # is a child subreaper reaps it).
      while [ -e "/proc/$pid" ] && [ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" != Z ]; do
        sleep 0.02
      done
      rm -f "$agents/$host/unshare.pid" "$agents/$host/init.pid"
    fi
  done
}

down() {
  [ -z "$agents" ] || stop_agents
  local ns
  for ns in "$ns_a" "$ns_b" "$ns_c" "$ns_link"; do
    # Deleting a namespace deletes the veth end inside it, and with it the
    # other end.
    if ns_exists "$ns"; then ip netns delete "$ns"; fi
  done
}

up() {
  down
  local ns host
  for ns in "$ns_a" "$ns_b" "$ns_c" "$ns_link"; do
    ip netns add "$ns"
    ip -n "$ns" link set lo up
  done
  # Set before the links exist, so that every interface inherits them:
  # the hosts route for their containers, answer ARP for them at once,
  # and send no redirect that would pin a peer's route to the old host.
  for ns in "$ns_a" "$ns_b"; do
    ip netns exec "$ns" sysctl -qw net.ipv4.ip_forward=1 \
      net.ipv4.conf.all.proxy_arp=1 net.ipv4.conf.all.send_redirects=0 \
      net.ipv4.conf.default.send_redirects=0
  done
  ip -n "$ns_link" link add br0 mtu "$mtu" type bridge
  ip -n "$ns_link" link set br0 up
  # Each host's end is created inside the switch, its peer moved to the
  # host in the same call: nothing is ever left in the root namespace.
  for host in a b c; do
    eval "ns=\$ns_$host"
    ip -n "$ns_link" link add "p$host" mtu "$mtu" type veth peer name "veth-$host" netns "$ns"
    ip -n "$ns_link" link set "p$host" master br0 up
    ip -n "$ns" link set "veth-$host" mtu "$mtu"
  done
  # A host answers ARP for its containers at once (proxy_delay is per
  # device in a namespace; the network hook sets it on container links).
  ip netns exec "$ns_a" sysctl -qw "net.ipv4.neigh.$if_a.proxy_delay=0"
  ip netns exec "$ns_b" sysctl -qw "net.ipv4.neigh.$if_b.proxy_delay=0"
  ip -n "$ns_a" addr add "$addr_a/24" dev "$if_a"
  ip -n "$ns_b" addr add "$addr_b/24" dev "$if_b"
  ip -n "$ns_c" addr add "$addr_c/24" dev "$if_c"
  ip -n "$ns_a" link set "$if_a" up
  ip -n "$ns_b" link set "$if_b" up
  ip -n "$ns_c" link set "$if_c" up
  echo "host A: namespace $ns_a, address $addr_a ($if_a, mtu $mtu)"
  echo "host B: namespace $ns_b, address $addr_b ($if_b, mtu $mtu)"
  echo "host C: namespace $ns_c, address $addr_c ($if_c, mtu $mtu), a client"
  if [ -n "$agents" ]; then
    mkdir -p "$agents"
    [ -f "$agents/ca/ca.pem" ] || "$(agent_bin)" certs init --dir "$agents/ca" >/dev/null
    start_agent a "$addr_a" "$ns_a"
    start_agent b "$addr_b" "$ns_b"
    # Host A's processes get PIDs from 5000 on, free on host B.
    nsenter -t "$(cat "$agents/a/init.pid")" -p -m -- sh -c 'echo 4999 > /proc/sys/kernel/ns_last_pid'
    echo "agents: control sockets $agents/a/agent.sock and $agents/b/agent.sock, port 7420"
  fi
}

host_exec() {
  [ -n "$agents" ] && [ $# -ge 2 ] || usage
  local host=$1
  shift
  exec nsenter -t "$(cat "$agents/$host/init.pid")" -n -p -m -i -- "$@"
}


case $action in
  up) up ;;
  down) down ;;
  exec) host_exec "$@" ;;
  *) usage ;;
esac
