#!/usr/bin/env bash
# The testbed's container network hook (configs/agent.toml: [container]
# network_hook): gives a created container's empty network namespace the
# addresses and routes its source recorded, reachable from the host's
# network namespace (the one this runs in) through a veth pair. The tests
# also run it on the source host, between `runc create` and `runc start`,
# as a runtime's createRuntime hook or a CNI plugin would.
#
#   FERRY_NETWORK=JSON [FERRY_NETWORK_PHASE=prepare|activate] \
#     scripts/container-net.sh CONTAINER_ID PID
#
# FERRY_NETWORK: {"interfaces":[{"name":"eth0","addresses":["10.232.0.2/24"]}],
#                 "routes":[{"dst":"default","gateway":"10.232.0.1","dev":"eth0"}]}
# (what ferry records with `ip -j` in the source container's namespace).
# PID is the container's init as this host sees it. The host end is fh<PID>:
# it gets a host route to each container address and, as the container's
# gateway, each gateway address of the routes; the container end takes the
# first interface's name. Only the first interface is configured.
# A destination agent runs it twice: `prepare` when the offer arrives
# (the veth, the container's end configured in its namespace; the host's
# end down and without routes, so nothing outside reaches the address,
# which the source's copy still owns), then `activate` inside the
# downtime (the host's end up, its routes and gateway addresses). Without
# FERRY_NETWORK_PHASE it does both.
set -euo pipefail
[ $# -eq 2 ] || { echo "usage: FERRY_NETWORK=JSON $0 CONTAINER_ID PID" >&2; exit 2; }
id=$1 pid=$2
phase=${FERRY_NETWORK_PHASE:-all}
host_if=fh$pid
tmp_if=fc$pid
in_ns() { nsenter --net="/proc/$pid/ns/net" -- "$@"; }

# One jq, and one `ip -batch` per namespace: each program started costs
# (jq alone 25 ms; a program per value took 250-290 ms).
prepare() {
  local net=${FERRY_NETWORK:?FERRY_NETWORK is not set}
  local name=eth0 addrs=() routes=() kind a b r dst gw
  while read -r kind a b; do
    case $kind in
      name) name=$a ;;
      addr) addrs+=("$a") ;;
      route) routes+=("$a $b") ;;
    esac
  done < <(jq -r '"name \(.interfaces[0].name // "eth0")",
                  (.interfaces[0].addresses[]? | "addr \(.)"),
                  (.routes[]? | "route \(.dst) \(.gateway // "-")")' <<<"$net")
  printf '%s\n' "link add $host_if type veth peer name $tmp_if" \
    "link set $tmp_if netns $pid" | ip -batch -
  {
    echo "link set $tmp_if name $name"
    echo "link set lo up"
    for a in "${addrs[@]}"; do echo "addr add $a dev $name"; done
    echo "link set $name up"
    for r in "${routes[@]}"; do
      read -r dst gw <<<"$r"
      if [ "$gw" != - ]; then
        echo "route replace $dst via $gw dev $name"
      else
        echo "route replace $dst dev $name"
      fi
    done
  } | in_ns ip -batch -
  # Where the host answers ARP for the link's other hosts (proxy ARP, the
  # testbed's), it answers the container at once: a restored container's
  # first packets do not wait up to proxy_delay (0.8 s) for its neighbours.
  sysctl -qw "net.ipv4.neigh.$host_if.proxy_delay=0"
}

# What prepare configured, read back from the namespace (no JSON to parse
# inside the downtime): its global addresses, and its routes' gateways.
activate() {
  local words a gw
  {
    echo "link set $host_if up"
    while read -r -a words; do
      [ "${words[1]}" = lo ] || echo "route replace ${words[3]%/*} dev $host_if"
    done < <(in_ns ip -o addr show scope global)
    # The gateway of each route, as the container's host end.
    while read -r -a words; do
      for i in "${!words[@]}"; do
        [ "${words[$i]}" = via ] || continue
        gw=${words[$((i + 1))]}
        case $gw in *:*) echo "addr replace $gw/128 dev $host_if" ;; *) echo "addr replace $gw/32 dev $host_if" ;; esac
      done
    done < <(in_ns sh -c 'ip -o route show; ip -o -6 route show')
  } | ip -batch -
}

case $phase in
  prepare) prepare ;;
  activate) activate ;;
  all) prepare; activate ;;
  *) echo "unknown FERRY_NETWORK_PHASE $phase (prepare or activate)" >&2; exit 2 ;;
esac
echo "container $id: $phase done in /proc/$pid/ns/net, host end $host_if"
