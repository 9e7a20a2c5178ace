#!/usr/bin/env bash
# Two "hosts" on one machine for live-migration tests by hand: network
# namespaces PREFIX-a and PREFIX-b joined by a veth pair, 10.231.0.1/24 and
# 10.231.0.2/24, loopback up in each, MTU 9000 for throughput.
#
#   scripts/testbed.sh up   [--name-prefix P]   (default prefix: ferry)
#   scripts/testbed.sh down [--name-prefix P]
#
# `up` and `down` are idempotent: `up` first removes what a previous `up`
# left, `down` removes only what exists. Run a command on host A with
#   ip netns exec ferry-a COMMAND
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
while [ $# -gt 0 ]; do
  case $1 in
    --name-prefix)
      [ $# -ge 2 ] || usage
      prefix=$2
      shift 2
      ;;
    *) usage ;;
  esac
done

bash scripts/setup.sh

ns_a=$prefix-a
ns_b=$prefix-b
# Interface names are limited to 15 characters; both ends live inside the
# namespaces, so the same short names serve every prefix.
if_a=veth-a
if_b=veth-b
addr_a=10.231.0.1
addr_b=10.231.0.2
mtu=9000

ns_exists() { ip netns list | awk '{print $1}' | grep -qx "$1"; }

down() {
  local ns
  for ns in "$ns_a" "$ns_b"; do
    # Deleting a namespace deletes the veth end inside it, and with it the
    # other end.
    if ns_exists "$ns"; then ip netns delete "$ns"; fi
  done
}

up() {
  down
  ip netns add "$ns_a"
  ip netns add "$ns_b"
  # Created inside A, its peer moved to B in the same call: nothing is ever
  # left in the root namespace.
  ip -n "$ns_a" link add "$if_a" mtu "$mtu" type veth peer name "$if_b" netns "$ns_b"
  ip -n "$ns_b" link set "$if_b" mtu "$mtu"
  ip -n "$ns_a" addr add "$addr_a/24" dev "$if_a"
  ip -n "$ns_b" addr add "$addr_b/24" dev "$if_b"
  local ns
  for ns in "$ns_a" "$ns_b"; do
    ip -n "$ns" link set lo up
  done
  ip -n "$ns_a" link set "$if_a" up
  ip -n "$ns_b" link set "$if_b" up
  echo "host A: namespace $ns_a, address $addr_a ($if_a, mtu $mtu)"
  echo "host B: namespace $ns_b, address $addr_b ($if_b, mtu $mtu)"
}

case $action in
  up) up ;;
  down) down ;;
  *) usage ;;
esac
