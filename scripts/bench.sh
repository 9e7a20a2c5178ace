#!/usr/bin/env bash
# Runs ferry's benchmarks and prints one JSON object per line per measurement:
#   {"name":..,"params":{..},"unit":..,"median":..,"min":..,"max":..,"runs":N}
#
# checkpoint/restore of a process that touched 64, 512 and 2048 MiB
# (tests/workloads/bench_mem.c): checkpoint wall time, frozen time and image
# size as reported by --json, restore wall time and restore_ms. RUNS (default
# 3) runs per size; SIZES overrides the sizes (MiB; empty skips); FERRY_AGENT_BIN the agent
# (default target/release/migrate-agent).
#
# checkpoint/restore of a process tree (tests/workloads/bench_tree.c):
# TREE_PROCS (default 50; 0 skips) processes each holding TREE_MIB (default 16) MiB;
# frozen time and restore_ms as reported by --json, and the wall times.
# checkpoint/restore of the Node.js request counter
# (tests/workloads/counter_server.js) after 3 requests, the 4th answered by
# the restored server (NODE_RUNS=0 skips): frozen and restore times.
# Transport throughput on loopback (examples/transport_bench.rs), in MB/s:
# ferry's QUIC page streams (mutual TLS, several connections) against raw
# TCP and TLS over TCP (rustls), each moving TRANSPORT_MIB (default 2048;
# 0 skips) per run.
#
# Live migration between the two hosts of scripts/testbed.sh: a workload of
# MIGRATE_MIB (default 1024) MiB rewriting its memory at each rate of
# MIGRATE_RATES (MiB/s, default "0 16 64 256"; empty skips)
# (tests/workloads/steady_dirty.c, which verifies every page after
# arrival): downtime (freeze to running on the destination) and its parts,
# total time, bytes sent over memory size and page throughput, from
# `migrate --json`.
# The dry run against the real migration (issue 17), between the same
# hosts: for each rate of DRYRUN_RATES (MiB/s, default "0 16 64 256";
# empty skips) a steady_dirty workload of DRYRUN_MIB (default 1024) MiB,
# and a tree of DRYRUN_TREE (default 50; 0 skips) bench_tree processes of
# TREE_MIB MiB each: `dry-run --to B --duration DRYRUN_DURATION` (default
# 4s; it freezes the workload once for a few ms) through host A's agent,
# then the real `migrate` in each mode of DRYRUN_MODES (default "precopy
# postcopy hybrid"; a dry run before each, on a fresh workload), side by
# side: the prediction for that mode, downtime and total
# time (expected, low and high of the band, dryrun_*_predicted*), the
# actual ones (dryrun_*_actual), the error of the expected prediction in
# percent and the band's width, and the downtime's parts predicted and
# actual (dryrun_part_NAME_predicted / _actual). Params name the workload
# (steady at RATE, or tree), the mode and the run. Each pre-copy migration
# also goes to the agent's history, which refines the next dry run (as it
# would in use). The mode the dry run recommended is counted
# (dryrun_recommended_MODE), to hold against the mode that gave the least
# downtime.
# The containers section (below) does the same, before each move of a
# container of a kind in DRYRUN_CONTAINERS (default "counter node";
# empty skips), with `dry-run --container`.
# Post-copy between the same hosts of a process that touched each size of
# POSTCOPY_SIZES (MiB, default "64 512 2048"; empty skips;
# tests/workloads/bench_mem.c): freeze to running on the destination, the
# median fault latency, and the time from running to every page local.
# Containers between the same hosts, in each mode of CONTAINER_MODES
# (default "precopy postcopy"; empty skips), for each kind of
# CONTAINER_KINDS (default "counter node mem"): the busybox counter, the
# Node.js request counter in its own network namespace, and a static
# tests/workloads/steady_dirty.c holding CONTAINER_MIB (default 1024) MiB
# (scripts/container-bundle.sh; the hosts prepared by
# scripts/container-hosts.sh, as for the demo): downtime, total time and
# memory, the downtime's parts and the pre-copy rounds from `migrate
# --container --json` (and, after post-copy, the time to every page
# local); each is checked on host B after its move. FERRY_BENCH_KEEP=DIR
# keeps each of those --json outputs there, and the testbed agents' logs
# (agent-a.log, agent-b.log; RUST_LOG=ferry=debug gives every step with
# its time) when the bench ends.
#
# Idle established TCP connections: for each count of CONN_COUNTS (default
# "0 1 100 1000"; empty skips), a process holding that many loopback
# connections to a listener outside its tree (tests/workloads/bench_conns.c
# and a Python peer this script starts) is checkpointed with
# --leave-running RUNS times: the frozen time (the downtime) and the part
# of it spent locking the connections (lock_ms, the network lock's nft
# run inside the freeze), from --json; the connections must all still be
# established afterwards.
#
# Docker (issue 15): `docker checkpoint create` and `docker start
# --checkpoint` of the seed's two containers, the busybox counter and the
# Node.js request counter (tests/workloads/counter_server.js), each kind of
# DOCKER_KINDS (default "busybox node"; empty skips) run with Docker's
# defaults, on a dockerd of the bench's own per runtime
# (scripts/docker-host.sh): ferry-runc (FERRY_RUNC_BIN, default
# target/release/ferry-runc) and, when CRIU_BIN names a criu binary, runc
# with that CRIU (the reference: Debian's CRIU 3.17 does not run on Linux
# 6.18; `scripts/criu-ref.sh DIR` builds CRIU 4.2 into DIR). DOCKER_RUNS
# (default 5; 0 skips) runs, the runtimes taking turns; params name the
# runtime and the container. Figures: both commands' wall times
# (docker_checkpoint_create, docker_start_checkpoint), the runtime's own
# checkpoint and restore call within them (docker_checkpoint_runtime,
# docker_restore_runtime; a wrapper times every runtime call), the rest of
# each command's time, in no runtime call (docker_checkpoint_docker,
# docker_start_docker: Docker's own share), ferry's
# frozen and restore times (docker_checkpoint_frozen, docker_restore_ferry,
# from ferry-runc --debug's log), and the checkpoint's size in Docker's data
# root. Each restored container is checked (the count goes on without a gap
# in `docker logs`; the next request answers 4). FERRY_BENCH_KEEP=DIR
# keeps the runtimes' call traces there. For instance:
#   CRIU_BIN=$(scripts/criu-ref.sh /opt/criu-4.2) SIZES= TREE_PROCS=0 NODE_RUNS=0 \
#     TRANSPORT_MIB=0 MIGRATE_RATES= POSTCOPY_SIZES= CONTAINER_MODES= CONN_COUNTS= \
#     scripts/bench.sh
#
# FERRY_BENCH_BUILD=0 skips the cargo builds (the binaries are already in
# target/release, or given by FERRY_AGENT_BIN and FERRY_RUNC_BIN).
#
# RUNS runs of everything else. Run as root. Everything it starts is killed by
# PID on exit; images live in a temp dir removed at the end.
set -euo pipefail

# Restored processes are detached from migrate-agent and adopted by the nearest
# child subreaper: make that this script (bash reaps them), not whatever
# happens to be above it. The attribute survives execve.
if [ -z "${FERRY_BENCH_SUBREAPER:-}" ]; then
  export FERRY_BENCH_SUBREAPER=1
  exec python3 -c '
import ctypes, os, sys
PR_SET_CHILD_SUBREAPER = 36
if ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0):
    sys.exit("bench: prctl(PR_SET_CHILD_SUBREAPER): " + os.strerror(ctypes.get_errno()))
os.execvp("bash", ["bash"] + sys.argv[1:])
' "$0" "$@"
fi
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

RUNS=${RUNS:-3}
SIZES=${SIZES-"64 512 2048"}
TREE_PROCS=${TREE_PROCS:-50}
NODE_RUNS=${NODE_RUNS:-1}
TREE_MIB=${TREE_MIB:-16}
TRANSPORT_MIB=${TRANSPORT_MIB:-2048}
MIGRATE_MIB=${MIGRATE_MIB:-1024}
MIGRATE_RATES=${MIGRATE_RATES-"0 16 64 256"}
POSTCOPY_SIZES=${POSTCOPY_SIZES-"64 512 2048"}
CONTAINER_MODES=${CONTAINER_MODES-"precopy postcopy"}
CONTAINER_KINDS=${CONTAINER_KINDS-"counter node mem"}
CONTAINER_MIB=${CONTAINER_MIB:-1024}
CONN_COUNTS=${CONN_COUNTS-"0 1 100 1000"}
DRYRUN_RATES=${DRYRUN_RATES-"0 16 64 256"}
DRYRUN_MIB=${DRYRUN_MIB:-1024}
DRYRUN_TREE=${DRYRUN_TREE:-50}
DRYRUN_DURATION=${DRYRUN_DURATION:-4s}
DRYRUN_CONTAINERS=${DRYRUN_CONTAINERS-"counter node"}
DRYRUN_MODES=${DRYRUN_MODES:-"precopy postcopy hybrid"}
DOCKER_RUNS=${DOCKER_RUNS:-5}
DOCKER_KINDS=${DOCKER_KINDS-"busybox node"}
FERRY_RUNC_BIN=${FERRY_RUNC_BIN:-target/release/ferry-runc}

if [ "${FERRY_BENCH_BUILD:-1}" != 0 ]; then
  cargo build --release --workspace --locked >&2
  cargo build --release --locked --example transport_bench >&2
fi
agent=${FERRY_AGENT_BIN:-target/release/migrate-agent}
workload=target/release/workloads/bench_mem
tree_workload=target/release/workloads/bench_tree
mkdir -p target/release/workloads
gcc -O1 -g -pthread -Wall -o "$workload" tests/workloads/bench_mem.c
gcc -O1 -g -pthread -Wall -o "$tree_workload" tests/workloads/bench_tree.c
dirty_workload=target/release/workloads/steady_dirty
gcc -O1 -g -pthread -Wall -o "$dirty_workload" tests/workloads/steady_dirty.c
# Static: the container's rootfs holds busybox and nothing else.
static_dirty_workload=$dirty_workload-static
gcc -O1 -g -pthread -Wall -static -o "$static_dirty_workload" tests/workloads/steady_dirty.c
conns_workload=target/release/workloads/bench_conns
gcc -O1 -g -Wall -o "$conns_workload" tests/workloads/bench_conns.c

tmp=$(mktemp -d "${TMPDIR:-/tmp}/ferry-bench.XXXXXX")
# The PIDs of the original and the restored process while they live, and
# of a tree's children.
orig= restored= kids=
# The listener the connections of bench_conns lead to.
peer=
bed=()
# The directories of the dockerds of the Docker section (scripts/docker-host.sh).
docker_dirs=()
# The container being measured, by ID.
cid=
# shellcheck source=scripts/container-hosts.sh
. scripts/container-hosts.sh
cleanup() {
  if [ -n "${FERRY_BENCH_KEEP:-}" ] && [ ${#bed[@]} != 0 ]; then
    for h in a b; do cp "$tmp/hosts/$h/agent.log" "$FERRY_BENCH_KEEP/agent-$h.log" 2>/dev/null || true; done
  fi
  if [ -n "$cid" ]; then
    for h in a b; do
      bash scripts/testbed.sh exec "${bed[@]}" "$h" runc delete -f "$cid" >/dev/null 2>&1 || true
    done
  fi
  [ ${#bed[@]} = 0 ] || bash scripts/testbed.sh down "${bed[@]}" >/dev/null 2>&1 || true
  container_hosts_remove_cgroups
  [ -z "$orig" ] || kill -KILL "$orig" 2>/dev/null || true
  [ -z "$restored" ] || kill -KILL "$restored" 2>/dev/null || true
  for k in $kids; do kill -KILL "$k" 2>/dev/null || true; done
  [ -z "$peer" ] || kill -KILL "$peer" 2>/dev/null || true
  for d in "${docker_dirs[@]}"; do bash scripts/docker-host.sh down "$d" >/dev/null 2>&1 || true; done
  wait 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT

now_ms() { echo $(($(date +%s%N) / 1000000)); }

# json_field FILE NAME: a field of the one JSON object in FILE.
json_field() {
  python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$1" "$2"
}

# gone PID: the process has exited and been reaped (bash reaps its children,
# disowned or adopted ones included), so its PID is free for the restore.
gone() { [ ! -e "/proc/$1" ]; }

# wait_for COMMAND...: retries for up to 60 s.
wait_for() {
  local i
  for ((i = 0; i < 6000; i++)); do
    "$@" && return 0
    sleep 0.01
  done
  return 1
}

# agent_run NAME ARGS...: runs migrate-agent, its stdout in $tmp/NAME.json;
# on failure prints its stderr and exits.
agent_run() {
  local name=$1
  shift
  if ! "$agent" "$@" >"$tmp/$name.json" 2>"$tmp/$name.err"; then
    echo "bench: migrate-agent $* failed:" >&2
    cat "$tmp/$name.err" >&2
    exit 1
  fi
}

samples=$tmp/samples
: >"$samples"
# name mib unit value [processes]
sample() { echo "$1 $2 $3 $4 ${5:-1}" >>"$samples"; }

# all_gone PID...: every one has exited and been reaped.
all_gone() {
  local p
  for p in "$@"; do gone "$p" || return 1; done
}

# start_workload WHAT COMMAND...: starts COMMAND in the background with only
# stdio open (descriptors of this script would be dumped with it), its output
# in $tmp/out and its PID in $orig, and waits for it to print READY.
start_workload() {
  local what=$1
  shift
  rm -f "$tmp/out"
  (
    for fd in /proc/$BASHPID/fd/*; do
      fd=${fd##*/}
      if [ "$fd" -gt 2 ]; then eval "exec $fd>&-" 2>/dev/null || true; fi
    done
    exec "$@"
  ) </dev/null >"$tmp/out" 2>&1 &
  orig=$!
  disown "$orig" # reaped all the same, but no "Killed" notice when ferry ends it
  if ! wait_for grep -q READY "$tmp/out"; then
    echo "bench: $what not READY:" >&2
    cat "$tmp/out" >&2
    exit 1
  fi
}

# start_on_a WHAT COMMAND...: start_workload on testbed host A; $ns_pid is
# the workload's PID there (the launcher becomes nsenter, which forked it).
start_on_a() {
  local what=$1 shell
  shift
  start_workload "$what on host A" bash scripts/testbed.sh exec "${bed[@]}" a "$@"
  shell=$(cat /proc/$orig/task/*/children | awk '{print $1}')
  ns_pid=$(awk '/^NSpid:/ {print $NF}' "/proc/$shell/status")
}

# expect_pass WHAT: the workload printed PASS (it checks its own memory).
expect_pass() {
  if ! grep -q PASS "$tmp/out"; then
    echo "bench: $1 failed its check:" >&2
    cat "$tmp/out" >&2
    exit 1
  fi
}

# checkpoint_and_restore PREFIX MIB PROCESSES WHAT: checkpoints $orig
# (ending it and its children $kids), restores the image ($restored is the
# restored root) and samples PREFIX-named figures.
checkpoint_and_restore() {
  local prefix=$1 mib=$2 procs=$3 what=$4 start end
  start=$(now_ms)
  agent_run checkpoint checkpoint "$orig" --dir "$image" --json
  end=$(now_ms)
  sample "${prefix}checkpoint_wall" "$mib" ms $((end - start)) "$procs"
  sample "${prefix}checkpoint_frozen" "$mib" ms "$(json_field "$tmp/checkpoint.json" frozen_ms)" "$procs"
  sample "${prefix}image_size" "$mib" bytes "$(json_field "$tmp/checkpoint.json" image_bytes)" "$procs"
  if ! wait_for all_gone "$orig" $kids; then
    echo "bench: the checkpoint did not end $what (pid $orig)" >&2
    exit 1
  fi
  orig=

  start=$(now_ms)
  agent_run restore restore --dir "$image" --pidfile "$tmp/pid" --json
  end=$(now_ms)
  restored=$(cat "$tmp/pid")
  sample "${prefix}restore_wall" "$mib" ms $((end - start)) "$procs"
  sample "${prefix}restore" "$mib" ms "$(json_field "$tmp/restore.json" restore_ms)" "$procs"
}

# end_restored WHAT: SIGTERM to the restored root; it (and its children)
# exit, reaped by this script.
end_restored() {
  kill -TERM "$restored"
  if ! wait_for all_gone "$restored" $kids; then
    echo "bench: restored $1 (pid $restored) did not exit on SIGTERM" >&2
    exit 1
  fi
  restored= kids=
}

# checkpoint_restore PREFIX MIB PROCESSES WHAT: checkpoint_and_restore, then
# SIGTERM makes the restored workload verify its memory and print PASS.
checkpoint_restore() {
  checkpoint_and_restore "$@"
  end_restored "$4"
  expect_pass "restored $4"
}

# http_count PORT: the Node.js counter's answer to one GET on loopback.
http_count() {
  python3 -c 'import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1], timeout=10).read().decode().strip())' \
    "http://127.0.0.1:$1/"
}

# finish_on_b WHAT: SIGTERM to the migrated workload on host B, which checks
# every page and exits.
finish_on_b() {
  bash scripts/testbed.sh exec "${bed[@]}" b kill -TERM "$ns_pid"
  if ! wait_for grep -q -e PASS -e FAIL "$tmp/out"; then
    echo "bench: $1 did not finish on host B" >&2
    exit 1
  fi
  expect_pass "$1 on host B"
  wait_for gone "$orig" || true
  orig=
}

# testbed_up: the two hosts of scripts/testbed.sh with their agents, once.
testbed_up() {
  if [ ${#bed[@]} = 0 ]; then
    bed=(--name-prefix ferry-bench --agents "$tmp/hosts")
    FERRY_AGENT_BIN=$(realpath "$agent") bash scripts/testbed.sh up "${bed[@]}" >&2
  fi
}

image=$tmp/image
for mib in $SIZES; do
  for ((run = 0; run < RUNS; run++)); do
    rm -rf "$tmp/files" "$image"
    mkdir -p "$tmp/files"
    start_workload "bench_mem $mib MiB" "$workload" "$tmp/files" "$mib"
    checkpoint_restore "" "$mib" 1 "bench_mem $mib MiB"
  done
done

if [ "$TREE_PROCS" != 0 ]; then
  for ((run = 0; run < RUNS; run++)); do
    rm -rf "$tmp/files" "$image"
    mkdir -p "$tmp/files"
    start_workload "bench_tree $TREE_PROCS x $TREE_MIB MiB" "$tree_workload" "$tmp/files" "$TREE_PROCS" "$TREE_MIB"
    kids=$(cat /proc/"$orig"/task/*/children)
    checkpoint_restore tree_ "$TREE_MIB" "$TREE_PROCS" "bench_tree $TREE_PROCS x $TREE_MIB MiB"
  done
fi

if [ "$NODE_RUNS" != 0 ]; then
  for ((run = 0; run < RUNS; run++)); do
    rm -rf "$image"
    # libuv's io_uring backend holds an io_uring fd, which ferry does not
    # carry yet.
    start_workload "the Node.js counter" env UV_USE_IO_URING=0 node tests/workloads/counter_server.js 127.0.0.1 0
    port=$(awk '/^READY/ {print $2}' "$tmp/out")
    for _ in 1 2 3; do http_count "$port" >/dev/null; done
    checkpoint_and_restore node_ 0 1 "the Node.js counter"
    answer=$(http_count "$port")
    if [ "$answer" != 4 ]; then
      echo "bench: the restored Node.js counter answered $answer, not 4" >&2
      exit 1
    fi
    end_restored "the Node.js counter"
  done
fi

if [ "$TRANSPORT_MIB" != 0 ]; then
  for ((run = 0; run < RUNS; run++)); do
    # Prints "transport_MODE MIB MB/s VALUE" lines, the samples' format.
    target/release/examples/transport_bench "$TRANSPORT_MIB" quinn tcp tls >>"$samples"
  done
fi

if [ -n "$MIGRATE_RATES" ]; then
  testbed_up
  for rate in $MIGRATE_RATES; do
    for ((run = 0; run < RUNS; run++)); do
      mkdir -p "$tmp/files"
      start_on_a "steady_dirty $MIGRATE_MIB MiB at $rate MiB/s" "$PWD/$dirty_workload" "$tmp/files" "$MIGRATE_MIB" "$rate"
      agent_run migrate migrate "$ns_pid" --to 10.231.0.2:7420 --control-socket "$tmp/hosts/a/agent.sock" --json
      python3 - "$tmp/migrate.json" "$rate" >>"$samples" <<'PY'
import json, sys
s = json.load(open(sys.argv[1])); rate = sys.argv[2]
d = s["downtime"]
for name, unit, value in [
    ("migrate_downtime", "ms", d["total_ms"]),
    ("migrate_downtime_freeze", "ms", d["freeze_ms"]),
    ("migrate_downtime_final_transfer", "ms", d["final_transfer_ms"]),
    ("migrate_downtime_restore", "ms", d["restore_ms"]),
    ("migrate_downtime_resume", "ms", d["resume_ms"]),
    ("migrate_total", "ms", s["total_ms"]),
    ("migrate_sent_over_memory", "ratio", s["bytes_sent"] / max(s["memory_bytes"], 1)),
    ("migrate_throughput", "MB/s", s["throughput_bytes_per_sec"] / 1e6),
    ("migrate_rounds", "rounds", len(s["rounds"])),
]:
    print(f"{name}@{rate}MiB/s {s['memory_bytes'] >> 20} {unit} {value}")
PY
      finish_on_b "steady_dirty $MIGRATE_MIB MiB at $rate MiB/s"
    done
  done
fi

# dry_run_on_a ARGS...: the dry run of the workload ARGS name (a PID on
# host A, or --container ID) to host B, its report in $tmp/dryrun.json.
dry_run_on_a() {
  agent_run dryrun dry-run "$@" --to 10.231.0.2:7420 --control-socket "$tmp/hosts/a/agent.sock" \
    --duration "$DRYRUN_DURATION" --json
}

# dryrun_then_migrate MIB PARAMS WHAT MODE: the dry run of $ns_pid on
# host A to host B, then its migration in MODE; samples the prediction
# for MODE and the actual figures, side by side (PARAMS:
# key=value[,key=value]).
dryrun_then_migrate() {
  local mib=$1 params=$2 what=$3 mode=$4
  dry_run_on_a "$ns_pid"
  agent_run migrate migrate "$ns_pid" --to 10.231.0.2:7420 --control-socket "$tmp/hosts/a/agent.sock" \
    --mode "$mode" --json
  dryrun_samples "$tmp/migrate.json" "$mib" "$params" "$what" "$mode"
}

# dryrun_samples MIGRATE_JSON MIB PARAMS WHAT MODE: samples
# $tmp/dryrun.json's prediction for MODE and the migration's actual
# figures, side by side.
dryrun_samples() {
  local migrated=$1 mib=$2 params=$3 what=$4 mode=$5
  [ -z "${FERRY_BENCH_KEEP:-}" ] || cp "$tmp/dryrun.json" "$FERRY_BENCH_KEEP/dryrun-$params.json"
  [ -z "${FERRY_BENCH_KEEP:-}" ] || cp "$migrated" "$FERRY_BENCH_KEEP/migrate-$params.json"
  python3 - "$tmp/dryrun.json" "$migrated" "$mib" "$params" "$what" "$mode" >>"$samples" <<'PY'
import json, sys
r = json.load(open(sys.argv[1])); s = json.load(open(sys.argv[2])); mib, params, what, mode = sys.argv[3:]
pre = next(p for p in r["predictions"] if p["mode"] == mode)
d, t, parts = pre["downtime_ms"], pre["total_ms"], pre["parts"]
# Post-copy's statistics time its downtime as freeze to running.
lazy = s.get("postcopy") or {}
actual = {"downtime": s["downtime"]["total_ms"] or lazy.get("freeze_to_running_ms", 0), "total": s["total_ms"]}
rows = []
for name, band in [("downtime", d), ("total", t)]:
    rows += [(f"dryrun_{name}_predicted", "ms", band["expected"]),
             (f"dryrun_{name}_predicted_low", "ms", band["low"]),
             (f"dryrun_{name}_predicted_high", "ms", band["high"]),
             (f"dryrun_{name}_actual", "ms", actual[name]),
             (f"dryrun_{name}_error", "pct", (actual[name] - band["expected"]) / max(band["expected"], 1e-9) * 100),
             (f"dryrun_{name}_band_width", "pct", band["width_pct"])]
for part in ["freeze", "final_transfer", "restore", "resume"]:
    rows += [(f"dryrun_part_{part}_predicted", "ms", parts[part + "_ms"]),
             (f"dryrun_part_{part}_actual", "ms", s["downtime"][part + "_ms"])]
rows += [("dryrun_rounds_predicted", "rounds", pre["rounds"] or 0), ("dryrun_rounds_actual", "rounds", len(s["rounds"])),
         ("dryrun_dirty_rate_measured", "MiB/s", r["measurement"]["dirty_bytes_per_sec"] / 2**20),
         ("dryrun_recommended_" + (r["recommendation"]["mode"] or "none"), "runs", 1)]
for name, unit, value in rows:
    print(name, mib, unit, value, params)
print(f"bench: {what}, {mode}: downtime predicted {d['low']:.0f}/{d['expected']:.0f}/{d['high']:.0f} ms, actual {actual['downtime']:.0f} ms; "
      f"total predicted {t['low']:.0f}/{t['expected']:.0f}/{t['high']:.0f} ms, actual {actual['total']:.0f} ms "
      f"(recommended {r['recommendation']['mode']}; {r['measurement']['freeze_note']})", file=sys.stderr)
PY
}

if [ -n "$DRYRUN_RATES" ] || [ "$DRYRUN_TREE" != 0 ]; then
  testbed_up
  for rate in $DRYRUN_RATES; do
    for ((run = 0; run < RUNS; run++)); do
      for mode in $DRYRUN_MODES; do
        mkdir -p "$tmp/files"
        what="steady_dirty $DRYRUN_MIB MiB at $rate MiB/s"
        start_on_a "$what" "$PWD/$dirty_workload" "$tmp/files" "$DRYRUN_MIB" "$rate"
        dryrun_then_migrate "$DRYRUN_MIB" "workload=steady,rate=$rate,mode=$mode,run=$run" "$what" "$mode"
        finish_on_b "$what"
      done
    done
  done
  if [ "$DRYRUN_TREE" != 0 ]; then
    for ((run = 0; run < RUNS; run++)); do
      for mode in $DRYRUN_MODES; do
        what="bench_tree $DRYRUN_TREE x $TREE_MIB MiB"
        start_on_a "$what" "$PWD/$tree_workload" "$tmp/files" "$DRYRUN_TREE" "$TREE_MIB"
        dryrun_then_migrate "$TREE_MIB" "workload=tree,processes=$DRYRUN_TREE,mode=$mode,run=$run" "$what" "$mode"
        finish_on_b "$what"
      done
    done
  fi
fi

if [ -n "$POSTCOPY_SIZES" ]; then
  testbed_up
  for mib in $POSTCOPY_SIZES; do
    for ((run = 0; run < RUNS; run++)); do
      mkdir -p "$tmp/files"
      start_on_a "bench_mem $mib MiB" "$PWD/$workload" "$tmp/files" "$mib"
      agent_run postcopy migrate "$ns_pid" --to 10.231.0.2:7420 \
        --control-socket "$tmp/hosts/a/agent.sock" --mode postcopy --json
      python3 - "$tmp/postcopy.json" "$mib" >>"$samples" <<'PY'
import json, sys
p = json.load(open(sys.argv[1]))["postcopy"]
for name, unit, key in [("postcopy_freeze_to_running", "ms", "freeze_to_running_ms"),
                        ("postcopy_fault_latency_p50", "us", "fault_latency_p50_us"),
                        ("postcopy_all_local", "ms", "all_local_ms")]:
    print(name, sys.argv[2], unit, p[key])
PY
      finish_on_b "bench_mem $mib MiB after post-copy"
    done
  done
fi

if [ -n "$CONTAINER_MODES" ]; then
  testbed_up
  container_hosts_prepare ferry-bench "$tmp/hosts" "${bed[@]}"
  # What scripts/container-net.sh gives the Node.js container (as in
  # tests/container.rs), and where it answers.
  node_net='{"interfaces":[{"name":"eth0","addresses":["10.232.0.2/24"]}],"routes":[{"dst":"default","gateway":"10.232.0.1","dev":"eth0"}]}'
  node_url=http://10.232.0.2:8080/
  on() { bash scripts/testbed.sh exec "${bed[@]}" "$@"; }
  # grew FILE N: FILE has N lines or more.
  grew() { [ -e "$1" ] && [ "$(wc -l <"$1")" -ge "$2" ]; }
  for mode in $CONTAINER_MODES; do
    for kind in $CONTAINER_KINDS; do
      for ((run = 0; run < RUNS; run++)); do
        cid=ferry-bench-$kind-$mode-$run
        dir=$tmp/containers/$cid
        hook='' mib=0
        case $kind in
          counter)
            log=$dir/out/counter.txt
            bash scripts/container-bundle.sh "$dir/bundle" "$dir/out" "$cid" ;;
          node)
            log=$dir/out/node.log
            bash scripts/container-bundle.sh --own-netns --node tests/workloads/counter_server.js \
              10.232.0.2 8080 "$dir/bundle" "$dir/out" "$cid"
            # Configured between create and start, as a runtime hook would:
            # node binds its address at once.
            hook="FERRY_NETWORK='$node_net' bash $PWD/scripts/container-net.sh $cid \$(runc state $cid | jq .pid) >/dev/null;" ;;
          mem)
            log=$dir/out/workload.log mib=$CONTAINER_MIB
            bash scripts/container-bundle.sh --exec "$static_dirty_workload" "/tmp $CONTAINER_MIB 0" \
              "$dir/bundle" "$dir/out" "$cid" ;;
          *) echo "bench: unknown container kind $kind (counter, node or mem)" >&2; exit 1 ;;
        esac
        on a sh -c "set -e; ${container_enter[a]} runc create --bundle $dir/bundle $cid </dev/null >/dev/null; $hook runc start $cid"
        case $kind in
          counter) wait_for grew "$log" 2 ;;
          *) wait_for grep -qs READY "$log" ;;
        esac || { echo "bench: container $kind did not start:" >&2; cat "$log" >&2; exit 1; }
        [ "$kind" != node ] || [ "$(on a curl -sS "$node_url")" = 1 ] || { echo "bench: node on A did not answer 1" >&2; exit 1; }

        predicted=
        if [[ " $DRYRUN_CONTAINERS " == *" $kind "* ]]; then
          dry_run_on_a --container "$cid"
          predicted=1
        fi
        agent_run container migrate --container "$cid" --to 10.231.0.2:7420 \
          --control-socket "$tmp/hosts/a/agent.sock" --mode "$mode" --json
        [ -z "${FERRY_BENCH_KEEP:-}" ] || cp "$tmp/container.json" "$FERRY_BENCH_KEEP/$cid.json"
        [ -z "$predicted" ] || dryrun_samples "$tmp/container.json" "$mib" \
          "workload=container-$kind,mode=$mode,run=$run" "the $kind container" "$mode"
        python3 - "$tmp/container.json" "$kind" "$mode" "$mib" >>"$samples" <<'PY'
import json, sys
s = json.load(open(sys.argv[1])); kind, mode, mib = sys.argv[2:]
if kind == "mem":
    kind = f"{mib}mib"
p = s.get("postcopy") or {}
d = s["downtime"]
figures = [("downtime", "ms", d["total_ms"] or p.get("freeze_to_running_ms", 0)),
           ("downtime_freeze", "ms", d["freeze_ms"]),
           ("downtime_final_transfer", "ms", d["final_transfer_ms"]),
           ("downtime_restore", "ms", d["restore_ms"]),
           ("downtime_resume", "ms", d["resume_ms"]),
           ("total", "ms", s["total_ms"]),
           ("memory", "MiB", s["memory_bytes"] / 2**20),
           ("rounds", "rounds", len(s["rounds"]))]
if p:
    # Post-copy splits its downtime into restore and resume only, and
    # has pre-copy rounds in hybrid mode only.
    figures = [f for f in figures if f[0] not in ("downtime_freeze", "downtime_final_transfer")
               and (f[0] != "rounds" or s["rounds"])]
    figures.append(("all_local", "ms", p["all_local_ms"]))
for name, unit, value in figures:
    print(f"container_{kind}_{name}@{mode} {mib} {unit} {value}")
PY

        # It carries on on host B.
        case $kind in
          counter)
            wait_for grew "$log" $(($(wc -l <"$log") + 2)) \
              || { echo "bench: the counter stopped on host B" >&2; exit 1; }
            counts_without_gap "$log" || { echo "bench: the counter broke across the move:" >&2; cat "$log" >&2; exit 1; } ;;
          node)
            [ "$(on b curl -sS "$node_url")" = 2 ] || { echo "bench: node on B did not answer 2" >&2; exit 1; } ;;
          mem)
            on b runc kill "$cid" TERM
            if ! { wait_for grep -q -e PASS -e FAIL "$log" && grep -q PASS "$log"; }; then
              echo "bench: the $CONTAINER_MIB MiB container failed its check on host B:" >&2
              cat "$log" >&2
              exit 1
            fi ;;
        esac
        on b runc delete -f "$cid"
        cid=
        rm -rf "$dir"
      done
    done
  done
fi

if [ -n "$CONN_COUNTS" ]; then
  # The peer: accepts every connection and holds it, silent.
  python3 -c '
import resource, socket, sys
resource.setrlimit(resource.RLIMIT_NOFILE, (8192, 8192))
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen(4096)
with open(sys.argv[1] + ".tmp", "w") as f:
    f.write(str(s.getsockname()[1]))
import os; os.rename(sys.argv[1] + ".tmp", sys.argv[1])
held = []
while True:
    held.append(s.accept()[0])
' "$tmp/peer_port" </dev/null >/dev/null 2>&1 &
  peer=$!
  disown "$peer" # killed by PID all the same, but no "Killed" notice
  wait_for test -e "$tmp/peer_port" || { echo "bench: the connections' peer did not start" >&2; exit 1; }
  peer_port=$(cat "$tmp/peer_port")
  for n in $CONN_COUNTS; do
    start_workload "bench_conns $n" "$conns_workload" "$peer_port" "$n"
    for ((run = 0; run < RUNS; run++)); do
      rm -rf "$image"
      agent_run checkpoint checkpoint "$orig" --dir "$image" --leave-running --json
      sample conns_checkpoint_frozen 0 ms "$(json_field "$tmp/checkpoint.json" frozen_ms)" "connections=$n"
      # (An older ferry does not report it.)
      lock=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1])).get("lock_ms", ""))' "$tmp/checkpoint.json")
      [ -z "$lock" ] || sample conns_lock 0 ms "$lock" "connections=$n"
    done
    established=$(ss -Htn state established "( sport = :$peer_port )" | wc -l)
    if [ "$established" != "$n" ]; then
      echo "bench: $established of the $n connections still established after the checkpoints" >&2
      exit 1
    fi
    kill -TERM "$orig"
    wait_for gone "$orig" || { echo "bench: bench_conns $n did not exit on SIGTERM" >&2; exit 1; }
    orig=
    expect_pass "bench_conns $n"
  done
  kill -KILL "$peer"
  peer=
fi

if [ "$DOCKER_RUNS" != 0 ] && [ -n "$DOCKER_KINDS" ]; then
  if [ ! -x /usr/sbin/dockerd ] || [ ! -x /usr/bin/docker ]; then
    echo "bench: docker.io is not installed (scripts/setup.sh installs it); DOCKER_RUNS=0 skips the Docker section" >&2
    exit 1
  fi
  # The runtimes: a tag (its dockerd's directory), the name in params, the
  # runtime binary and a directory to put first on its PATH (runc finds
  # criu there).
  docker_rts=(ferry)
  declare -A rt_name=([ferry]=ferry-runc) rt_bin=([ferry]=$(realpath "$FERRY_RUNC_BIN")) rt_path=([ferry]="")
  if [ -n "${CRIU_BIN:-}" ]; then
    criu_version=$("$CRIU_BIN" --version | awk '/^Version:/ {print $2}')
    docker_rts+=(criu)
    rt_name[criu]=runc+criu-$criu_version
    rt_bin[criu]=$(command -v runc)
    rt_path[criu]=$(dirname "$(realpath "$CRIU_BIN")")
    [ "$(basename "$CRIU_BIN")" = criu ] || { echo "bench: CRIU_BIN must name a file called criu (runc runs \"criu\" from PATH)" >&2; exit 1; }
  fi
  # The seed's two images, as tests/common/docker.rs builds them: busybox
  # (busybox-static) and the Node.js counter (the host's node and its
  # libraries).
  rootfs=$tmp/busybox-rootfs
  mkdir -p "$rootfs/bin" "$rootfs/tmp"
  cp /bin/busybox "$rootfs/bin/busybox"
  chroot "$rootfs" /bin/busybox --install -s /bin
  tar -C "$rootfs" -cf "$tmp/busybox.tar" .
  rootfs=$tmp/node-rootfs
  mkdir -p "$rootfs/app" "$rootfs/tmp"
  cp "$(realpath "$(command -v node)")" "$rootfs/app/node"
  cp tests/workloads/counter_server.js "$rootfs/app/server.js"
  for lib in $(ldd "$rootfs/app/node" | grep -o '/[^ ]*'); do
    mkdir -p "$rootfs$(dirname "$lib")"
    cp -L "$lib" "$rootfs$lib"
  done
  tar -C "$rootfs" -cf "$tmp/node.tar" .
  looper='i=0; while true; do echo $i; i=$(expr $i + 1); sleep 1; done'

  # dk TAG ARGS...: Debian's docker client on that runtime's dockerd.
  dk() { local t=$1; shift; /usr/bin/docker -H "unix://$tmp/fb$$-$t/docker.sock" "$@"; }
  # poll COMMAND...: retries every 0.2 s for up to 60 s (a docker call
  # costs a Go client's start).
  poll() {
    local i
    for ((i = 0; i < 300; i++)); do
      "$@" && return 0
      sleep 0.2
    done
    return 1
  }
  logged() { [[ $(dk "$1" logs "$2" 2>/dev/null) == *"$3"* ]]; }
  logged_lines() { [ "$(dk "$1" logs "$2" 2>/dev/null | wc -l)" -ge "$3" ]; }
  # http_in TAG URL: one GET from that dockerd's network namespace.
  http_in() {
    nsenter --net="/run/netns/ferry-docker-fb$$-$1" python3 -c \
      'import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1], timeout=10).read().decode().strip())' "$2"
  }
  # runtime_call TAG COMMAND MARK: "MS STAT" of the last COMMAND call after
  # line MARK of the runtime's trace: its wall time and ferry's frozen or
  # restore time (empty for runc).
  runtime_call() {
    awk -v c="$2" -v m="$3" 'NR > m && $1 == c { ms = ($3 - $2) / 1e6; st = $5 } END { if (ms != "") printf "%.1f %s\n", ms, st }' "$tmp/$1.trace"
  }
  # docker_share TAG MARK START_NS END_NS: the ms of START_NS..END_NS in no
  # runtime call after line MARK of the trace (the calls do not overlap):
  # Docker's own share (client, dockerd, containerd, shim).
  docker_share() {
    awk -v m="$2" -v s="$3" -v e="$4" 'NR > m && $1 !~ /^@/ && $2 >= s && $3 <= e { busy += $3 - $2 } END { printf "%.1f\n", (e - s - busy) / 1e6 }' "$tmp/$1.trace"
  }

  for t in "${docker_rts[@]}"; do
    # The runtime dockerd calls: a wrapper timing every call of the real
    # one into $tmp/TAG.trace (command, start and end in ns, exit status,
    # and for ferry-runc's checkpoint and restore, run with --debug, the
    # frozen or restore time its log shows). It costs both runtimes the
    # same few ms of bash per call.
    {
      echo '#!/usr/bin/env bash'
      printf 'real=%q trace=%q ferry=%q\n' "${rt_bin[$t]}" "$tmp/$t.trace" "$([ "$t" = ferry ] && echo 1)"
      [ -z "${rt_path[$t]}" ] || printf 'export PATH=%q:"$PATH"\n' "${rt_path[$t]}"
      cat <<'WRAP'
cmd= prev= log=
for a in "$@"; do
  case $prev in
    --log) log=$a; prev=; continue ;;
    --root|--log-format|--criu|--rootless) prev=; continue ;;
  esac
  case $a in -*) prev=$a ;; *) cmd=$a; break ;; esac
done
extra=() pattern=
if [ -n "$ferry" ]; then
  case $cmd in
    checkpoint) extra=(--debug) pattern='frozen [0-9.]+ ms' ;;
    restore) extra=(--debug) pattern='processes in [0-9.]+ ms' ;;
  esac
fi
start=$(date +%s%N)
"$real" "${extra[@]}" "$@"
rc=$?
end=$(date +%s%N)
stat=
if [ -n "$pattern" ] && [ -n "$log" ]; then
  stat=$(grep -oE "$pattern" "$log" 2>/dev/null | tail -1 | grep -oE '[0-9.]+')
fi
echo "${cmd:--} $start $end $rc $stat" >>"$trace"
exit $rc
WRAP
    } >"$tmp/$t.runtime"
    chmod +x "$tmp/$t.runtime"
    : >"$tmp/$t.trace"
    docker_dirs+=("$tmp/fb$$-$t")
    bash scripts/docker-host.sh up "$tmp/fb$$-$t" "$tmp/$t.runtime" >&2
    dk "$t" import "$tmp/busybox.tar" busybox >/dev/null
    dk "$t" import "$tmp/node.tar" node-counter >/dev/null
  done

  # docker_once TAG KIND RUN: runs the KIND container with Docker's
  # defaults, checkpoints it, starts it from the checkpoint, checks that
  # it carried on, removes it, and samples the times.
  docker_once() {
    local t=$1 kind=$2 c=$2-$3 params mark start end id size out at n ip tries ms stat
    params="runtime=${rt_name[$t]},container=$kind"
    case $kind in
      busybox)
        dk "$t" run -d --name "$c" busybox /bin/sh -c "$looper" >/dev/null
        poll logged_lines "$t" "$c" 3 || { echo "bench: the busybox counter on ${rt_name[$t]} does not count" >&2; exit 1; } ;;
      node)
        dk "$t" run -d --name "$c" node-counter /app/node /app/server.js 0.0.0.0 8080 >/dev/null
        poll logged "$t" "$c" READY || { echo "bench: the Node.js counter on ${rt_name[$t]} is not READY" >&2; exit 1; }
        ip=$(dk "$t" inspect -f '{{.NetworkSettings.IPAddress}}' "$c")
        for _ in 1 2 3; do n=$(http_in "$t" "http://$ip:8080/"); done
        [ "$n" = 3 ] || { echo "bench: the Node.js counter answered $n to the third request" >&2; exit 1; } ;;
      *) echo "bench: unknown Docker container kind $kind (busybox or node)" >&2; exit 1 ;;
    esac
    id=$(dk "$t" inspect -f '{{.Id}}' "$c")

    mark=$(wc -l <"$tmp/$t.trace")
    start=$(date +%s%N)
    if ! out=$(dk "$t" checkpoint create "$c" checkpoint1 2>&1); then
      echo "bench: docker checkpoint create of $kind on ${rt_name[$t]} failed: $out" >&2
      tail -5 "$tmp/fb$$-$t/dockerd.log" >&2
      exit 1
    fi
    end=$(date +%s%N)
    echo "@checkpoint_create $start $end" >>"$tmp/$t.trace"
    sample docker_checkpoint_create 0 ms $(((end - start) / 1000000)) "$params"
    sample docker_checkpoint_docker 0 ms "$(docker_share "$t" "$mark" "$start" "$end")" "$params"
    read -r ms stat <<<"$(runtime_call "$t" checkpoint "$mark")"
    [ -n "$ms" ] || { echo "bench: docker checkpoint create did not call ${rt_name[$t]}'s checkpoint" >&2; exit 1; }
    sample docker_checkpoint_runtime 0 ms "$ms" "$params"
    [ -z "$stat" ] || sample docker_checkpoint_frozen 0 ms "$stat" "$params"
    size=$(du -sb "$tmp/fb$$-$t/data/containers/$id/checkpoints/checkpoint1" | cut -f1)
    sample docker_checkpoint_size 0 bytes "$size" "$params"
    [ "$(dk "$t" inspect -f '{{.State.Running}}' "$c")" = false ] \
      || { echo "bench: $kind on ${rt_name[$t]} still runs after the checkpoint" >&2; exit 1; }
    at=$(dk "$t" logs "$c" 2>/dev/null | wc -l)

    # Docker 20.10 may fail with "content sha256:...: already exists"
    # before calling the runtime while containerd still holds the
    # checkpoint's blob (tests/docker.rs): retried, the last try timed.
    for ((tries = 0; ; tries++)); do
      mark=$(wc -l <"$tmp/$t.trace")
      start=$(date +%s%N)
      out=$(dk "$t" start --checkpoint checkpoint1 "$c" 2>&1) && break
      if [ "$tries" -lt 10 ] && [[ $out == *"already exists"* ]]; then
        sleep 1
        continue
      fi
      echo "bench: docker start --checkpoint of $kind on ${rt_name[$t]} failed: $out" >&2
      tail -5 "$tmp/fb$$-$t/dockerd.log" >&2
      exit 1
    done
    end=$(date +%s%N)
    echo "@start_checkpoint $start $end" >>"$tmp/$t.trace"
    sample docker_start_checkpoint 0 ms $(((end - start) / 1000000)) "$params"
    sample docker_start_docker 0 ms "$(docker_share "$t" "$mark" "$start" "$end")" "$params"
    read -r ms stat <<<"$(runtime_call "$t" restore "$mark")"
    [ -n "$ms" ] || { echo "bench: docker start --checkpoint did not call ${rt_name[$t]}'s restore" >&2; exit 1; }
    sample docker_restore_runtime 0 ms "$ms" "$params"
    [ -z "$stat" ] || sample docker_restore_ferry 0 ms "$stat" "$params"

    case $kind in
      busybox)
        poll logged_lines "$t" "$c" $((at + 2)) || { echo "bench: the busybox counter on ${rt_name[$t]} stopped after the restore" >&2; exit 1; }
        dk "$t" logs "$c" >"$tmp/logs" 2>&1
        counts_without_gap "$tmp/logs" || { echo "bench: the busybox counter on ${rt_name[$t]} broke across the restore:" >&2; cat "$tmp/logs" >&2; exit 1; } ;;
      node)
        ip=$(dk "$t" inspect -f '{{.NetworkSettings.IPAddress}}' "$c")
        n=$(http_in "$t" "http://$ip:8080/")
        [ "$n" = 4 ] || { echo "bench: the restored Node.js counter on ${rt_name[$t]} answered $n, not 4" >&2; exit 1; } ;;
    esac
    dk "$t" rm -f "$c" >/dev/null
  }

  # The runtimes take turns, so that both see the same load.
  for ((run = 0; run < DOCKER_RUNS; run++)); do
    for kind in $DOCKER_KINDS; do
      for t in "${docker_rts[@]}"; do docker_once "$t" "$kind" "$run"; done
    done
  done
  for d in "${docker_dirs[@]}"; do bash scripts/docker-host.sh down "$d" >&2; done
  docker_dirs=()
  [ -z "${FERRY_BENCH_KEEP:-}" ] || cp "$tmp"/*.trace "$FERRY_BENCH_KEEP/"
fi

python3 - "$samples" <<'EOF'
import json, statistics, sys
groups = {}
for line in open(sys.argv[1]):
    name, mib, unit, value, *procs = line.split()
    procs = procs[0] if procs else 1
    groups.setdefault((name, int(mib), unit, procs), []).append(float(value))
for (name, mib, unit, procs), values in groups.items():
    if isinstance(procs, str) and "=" in procs:  # key=value[,key=value]: parameters of their own
        params = {k: int(v) if v.isdigit() else v
                  for k, v in (p.split("=") for p in procs.split(","))}
        params["mib"] = mib
    else:
        params = {"mib": mib} if int(procs) == 1 else {"processes": int(procs), "mib": mib}
    if mib == 0:  # no size to speak of (a container's own memory is a sample)
        del params["mib"]
    print(json.dumps({"name": name, "params": params, "unit": unit,
                      "median": statistics.median(values), "min": min(values),
                      "max": max(values), "runs": len(values)}))
EOF
