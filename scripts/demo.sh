#!/usr/bin/env bash
# The README's main command, in two parts.
# 1. The container demo: two hosts on this machine (scripts/testbed.sh),
#    each given what a separate machine has (its own runc state on a tmpfs
#    at /run/runc and its own cgroups), a runc container of busybox
#    counting every second into a file (scripts/container-bundle.sh)
#    started on host A, live-migrated to host B while it runs, its output
#    continuing with no gap and no repeat, the migration's statistics,
#    `runc list` on both hosts and `runc delete` on B.
# 2. The seed's Docker flow on ferry's engine: a dockerd of its own
#    (scripts/docker-host.sh: own network and mount namespace, data root,
#    socket) whose default runtime is ferry-runc, `docker run -d --name
#    looper busybox` with the seed's counter, `docker checkpoint create
#    looper checkpoint1`, `docker start --checkpoint checkpoint1 looper`,
#    each timed, and `docker logs looper` counting on with no gap or
#    repeat. Skipped, saying so, when docker.io is not installed.
# 3. A live move between two Docker hosts: fresh testbed hosts A and B,
#    a dockerd in each (scripts/docker-host.sh --in-host, ferry-runc the
#    default runtime), the seed's counter run on A's, `migrate-agent
#    migrate --docker looper --keep-stopped` to B while it counts, then
#    `docker ps` on both, `docker logs` on A then B counting with no gap
#    or repeat, `docker exec` and `docker stop` on B, `docker rm` of A's
#    stopped copy. Skipped with part 2.
# Cleans up what it starts, also on failure.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
[ "$(id -u)" = 0 ] || { echo "demo: run as root" >&2; exit 1; }

bash scripts/setup.sh
cargo build --release --workspace --locked -q
bin=${CARGO_TARGET_DIR:-$PWD/target}/release
export FERRY_AGENT_BIN=$bin/migrate-agent
agent=$FERRY_AGENT_BIN
work=$(mktemp -d /tmp/ferry-cdemo.XXXXXX)
bed=(--name-prefix ferry-cdemo --agents "$work/hosts")
id=ferry-demo-counter
# Part 2's dockerd: a short path, containerd's sockets live under it.
dk=/tmp/fdemo$$
docker=(/usr/bin/docker -H "unix://$dk/docker.sock")
# Part 3's testbed and its two dockerds.
dbed=(--name-prefix ferry-ddemo --agents "$work/dhosts")
dka=/tmp/fdemoa$$
dkb=/tmp/fdemob$$
docker_a=(/usr/bin/docker -H "unix://$dka/docker.sock")
docker_b=(/usr/bin/docker -H "unix://$dkb/docker.sock")
# shellcheck source=scripts/container-hosts.sh
. scripts/container-hosts.sh
cleanup() {
  for h in a b; do
    bash scripts/testbed.sh exec "${bed[@]}" "$h" runc delete -f "$id" >/dev/null 2>&1 || true
  done
  bash scripts/testbed.sh down "${bed[@]}" >/dev/null 2>&1 || true
  container_hosts_remove_cgroups
  if [ -d "$dk" ]; then
    "${docker[@]}" rm -f looper >/dev/null 2>&1 || true
    bash scripts/docker-host.sh down "$dk" >/dev/null 2>&1 || true
  fi
  for d in "$dka" "$dkb"; do
    [ -d "$d" ] && bash scripts/docker-host.sh down "$d" >/dev/null 2>&1 || true
  done
  bash scripts/testbed.sh down "${dbed[@]}" >/dev/null 2>&1 || true
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

# Part 2: the seed's Docker flow, with ferry-runc as dockerd's runtime.
if [ ! -x /usr/sbin/dockerd ] || [ ! -x /usr/bin/docker ]; then
  echo "demo: docker.io is not installed: the Docker part is skipped (scripts/setup.sh installs it)"
  exit 0
fi
echo
echo "demo: part 2, Docker: a dockerd of its own (own network and mount namespace, data root, socket) whose default runtime is ferry-runc"
bash scripts/docker-host.sh up "$dk" "$bin/ferry-runc"
# No registry: the image is the busybox rootfs of part 1's bundle.
tar -C "$work/bundle/rootfs" -cf "$work/busybox.tar" .
"${docker[@]}" import "$work/busybox.tar" busybox >/dev/null

# timed TEXT CMD...: shows TEXT, runs CMD (its output indented) and prints
# how long it took.
timed() {
  local text=$1 start=${EPOCHREALTIME/./} us
  shift
  echo "  \$ $text"
  "$@" 2>&1 | sed 's/^/  | /'
  us=$((${EPOCHREALTIME/./} - start))
  printf '  (%d.%03d s)\n' $((us / 1000000)) $((us % 1000000 / 1000))
}
# Docker 20.10 may find the checkpoint's blob still held by containerd
# from the checkpoint ("already exists"; no runtime is called): retried.
start_from_checkpoint() {
  local out
  for _ in $(seq 10); do
    if out=$("${docker[@]}" start --checkpoint checkpoint1 looper 2>&1); then return 0; fi
    case $out in *"already exists"*) sleep 1 ;; *) echo "$out"; return 1 ;; esac
  done
  echo "$out"
  return 1
}
# shellcheck disable=SC2016  # the seed's command, for the container's shell
looper='i=0; while true; do echo $i; i=$(expr $i + 1); sleep 1; done'
echo "demo: the seed's scenario 1, verbatim:"
timed "docker run -d --name looper busybox /bin/sh -c '$looper'" \
  "${docker[@]}" run -d --name looper busybox /bin/sh -c "$looper"
sleep 4.5
echo "demo: docker logs looper (last lines):"
"${docker[@]}" logs looper | tail -n 3 | sed 's/^/  | /'
timed "docker checkpoint create looper checkpoint1" \
  "${docker[@]}" checkpoint create looper checkpoint1
sleep 1
echo "demo: the checkpoint stopped it:"
"${docker[@]}" ps -a --format '{{.Names}}: {{.Status}}' | sed 's/^/  | /'
timed "docker start --checkpoint checkpoint1 looper" start_from_checkpoint
"${docker[@]}" ps --format '{{.Names}}: {{.Status}}' | sed 's/^/  | /'
sleep 3.5
echo "demo: docker logs looper, after the restore (last lines):"
"${docker[@]}" logs looper >"$work/looper.log"
tail -n 8 "$work/looper.log" | sed 's/^/  | /'
if ! counts_without_gap "$work/looper.log"; then
  echo "demo: FAILED: docker logs looper has a gap, a repeat or a reset" >&2
  exit 1
fi
echo "demo: docker logs counts on from 0 with no gap and no repeat: $(wc -l <"$work/looper.log") lines"

"${docker[@]}" rm -f looper >/dev/null
bash scripts/docker-host.sh down "$dk"
echo "demo: docker rm -f looper; that dockerd is stopped"

# Part 3: a live move between two Docker hosts.
echo
echo "demo: part 3, a live move between two Docker hosts: fresh hosts A and B (agents on each), a dockerd in each"
bash scripts/testbed.sh down "${bed[@]}" >/dev/null
container_hosts_remove_cgroups
bash scripts/testbed.sh up "${dbed[@]}" | sed 's/^/  /'
bash scripts/docker-host.sh up "$dka" "$bin/ferry-runc" --in-host "$work/dhosts" a
bash scripts/docker-host.sh up "$dkb" "$bin/ferry-runc" --in-host "$work/dhosts" b
"${docker_a[@]}" import "$work/busybox.tar" busybox >/dev/null
"${docker_b[@]}" import "$work/busybox.tar" busybox >/dev/null
timed "docker run -d --name looper busybox ... (on host A)" \
  "${docker_a[@]}" run -d --name looper busybox /bin/sh -c "$looper"
sleep 4.5
echo "demo: docker logs looper on A (last lines):"
"${docker_a[@]}" logs looper | tail -n 3 | sed 's/^/  A| /'
echo "demo: migrating it live to host B (10.231.0.2:7420); --keep-stopped leaves A's container stopped, with its logs"
"$agent" migrate --docker looper --docker-host "unix://$dka/docker.sock" --keep-stopped \
  --to 10.231.0.2:7420 --control-socket "$work/dhosts/a/agent.sock"
sleep 3.5
echo "demo: docker ps -a on A, then on B:"
"${docker_a[@]}" ps -a --format '{{.Names}}: {{.Status}}' | sed 's/^/  A| /'
"${docker_b[@]}" ps -a --format '{{.Names}}: {{.Status}}' | sed 's/^/  B| /'
"${docker_a[@]}" logs looper >"$work/looper-a.log"
"${docker_b[@]}" logs looper >"$work/looper-b.log"
echo "demo: docker logs looper on A (last lines), then on B:"
tail -n 3 "$work/looper-a.log" | sed 's/^/  A| /'
head -n 6 "$work/looper-b.log" | sed 's/^/  B| /'
# A's output then B's: one count from 0, no gap, no repeat.
cat "$work/looper-a.log" "$work/looper-b.log" >"$work/looper-ab.log"
if ! counts_without_gap "$work/looper-ab.log"; then
  echo "demo: FAILED: B does not count on where A stopped (a gap, a repeat or a reset)" >&2
  exit 1
fi
echo "demo: B counts on where A stopped: $(wc -l <"$work/looper-a.log") numbers on A, then $(wc -l <"$work/looper-b.log") on B"
echo "demo: docker exec looper on B:"
"${docker_b[@]}" exec looper /bin/sh -c 'echo "  B| hello from $(hostname), PID 1 is $(cat /proc/1/comm)"'
timed "docker stop -t 2 looper (on host B)" "${docker_b[@]}" stop -t 2 looper
"${docker_a[@]}" rm looper >/dev/null
echo "demo: done: the container moved live from A's dockerd to B's with no gap and no repeat; docker rm looper on A; everything the demo started is stopped on exit"
