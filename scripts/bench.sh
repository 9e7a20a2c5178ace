#!/usr/bin/env bash
# Runs ferry's benchmarks and prints one JSON object per line per measurement:
#   {"name":..,"params":{..},"unit":..,"median":..,"min":..,"max":..,"runs":N}
#
# checkpoint/restore of a process that touched 64, 512 and 2048 MiB
# (tests/workloads/bench_mem.c): checkpoint wall time, frozen time and image
# size as reported by --json, restore wall time and restore_ms. RUNS (default
# 3) runs per size; SIZES overrides the sizes (MiB); FERRY_AGENT_BIN the agent
# (default target/release/migrate-agent).
#
# checkpoint/restore of a process tree (tests/workloads/bench_tree.c):
# TREE_PROCS (default 50) processes each holding TREE_MIB (default 16) MiB;
# frozen time and restore_ms as reported by --json, and the wall times.
# post-copy live migration between the two hosts of scripts/testbed.sh (a
# network namespace each, agents on UDP 7420) of a process that touched 64,
# 512 and 2048 MiB (POSTCOPY_SIZES): freeze to running on the destination,
# median fault latency, time from running to every page local.
# BENCHES (default "local tree postcopy") selects the groups.
# Run as root. Everything it starts is killed by PID on exit; images live in
# a temp dir removed at the end.
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
SIZES=${SIZES:-"64 512 2048"}
TREE_PROCS=${TREE_PROCS:-50}
TREE_MIB=${TREE_MIB:-16}
POSTCOPY_SIZES=${POSTCOPY_SIZES:-"64 512 2048"}
BENCHES=${BENCHES:-"local tree postcopy"}
has_bench() { [[ " $BENCHES " == *" $1 "* ]]; }

[ -n "${FERRY_AGENT_BIN:-}" ] || cargo build --release --workspace --locked >&2
agent=${FERRY_AGENT_BIN:-target/release/migrate-agent}
export FERRY_AGENT_BIN=$agent
workload=target/release/workloads/bench_mem
tree_workload=target/release/workloads/bench_tree
mkdir -p target/release/workloads
gcc -O1 -g -pthread -Wall -o "$workload" tests/workloads/bench_mem.c
gcc -O1 -g -pthread -Wall -o "$tree_workload" tests/workloads/bench_tree.c

tmp=$(mktemp -d "${TMPDIR:-/tmp}/ferry-bench.XXXXXX")
# The PIDs of the original and the restored process while they live, and
# of a tree's children.
orig= restored= kids= testbed=
cleanup() {
  [ -z "$testbed" ] || bash scripts/testbed.sh down --name-prefix "fb$$" --agents "$testbed" >/dev/null 2>&1 || true
  [ -z "$orig" ] || kill -KILL "$orig" 2>/dev/null || true
  [ -z "$restored" ] || kill -KILL "$restored" 2>/dev/null || true
  for k in $kids; do kill -KILL "$k" 2>/dev/null || true; done
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

has_bench local && for mib in $SIZES; do
  for ((run = 0; run < RUNS; run++)); do
    dir=$tmp/files
    image=$tmp/image
    rm -rf "$dir" "$image"
    mkdir -p "$dir"
    "$workload" "$dir" "$mib" </dev/null >"$tmp/out" 2>&1 &
    orig=$!
    disown "$orig" # reaped all the same, but no "Killed" notice when the checkpoint kills it
    if ! wait_for grep -q READY "$tmp/out"; then
      echo "bench: bench_mem $mib MiB not READY:" >&2
      cat "$tmp/out" >&2
      exit 1
    fi

    start=$(now_ms)
    agent_run checkpoint checkpoint "$orig" --dir "$image" --json
    end=$(now_ms)
    frozen=$(json_field "$tmp/checkpoint.json" frozen_ms)
    bytes=$(json_field "$tmp/checkpoint.json" image_bytes)
    sample checkpoint_wall "$mib" ms $((end - start))
    sample checkpoint_frozen "$mib" ms "$frozen"
    sample image_size "$mib" bytes "$bytes"
    if ! wait_for gone "$orig"; then
      echo "bench: the checkpoint did not kill pid $orig" >&2
      exit 1
    fi
    orig=

    start=$(now_ms)
    agent_run restore restore --dir "$image" --pidfile "$tmp/pid" --json
    end=$(now_ms)
    restored=$(cat "$tmp/pid")
    restore_ms=$(json_field "$tmp/restore.json" restore_ms)
    sample restore_wall "$mib" ms $((end - start))
    sample restore "$mib" ms "$restore_ms"
    # The restored process is not our child: SIGTERM makes it verify its
    # memory and exit (whoever adopted it reaps it).
    kill -TERM "$restored"
    if ! wait_for gone "$restored"; then
      echo "bench: restored bench_mem (pid $restored) did not exit on SIGTERM" >&2
      exit 1
    fi
    restored=
    if ! grep -q PASS "$tmp/out"; then
      echo "bench: restored bench_mem $mib MiB failed its check:" >&2
      cat "$tmp/out" >&2
      exit 1
    fi
  done
done

has_bench tree && for ((run = 0; run < RUNS; run++)); do
  dir=$tmp/files
  image=$tmp/image
  rm -rf "$dir" "$image"
  mkdir -p "$dir"
  "$tree_workload" "$dir" "$TREE_PROCS" "$TREE_MIB" </dev/null >"$tmp/out" 2>&1 &
  orig=$!
  disown "$orig"
  if ! wait_for grep -q READY "$tmp/out"; then
    echo "bench: bench_tree $TREE_PROCS x $TREE_MIB MiB not READY:" >&2
    cat "$tmp/out" >&2
    exit 1
  fi
  kids=$(cat /proc/"$orig"/task/*/children)

  start=$(now_ms)
  agent_run checkpoint checkpoint "$orig" --dir "$image" --json
  end=$(now_ms)
  sample tree_checkpoint_wall "$TREE_MIB" ms $((end - start)) "$TREE_PROCS"
  sample tree_checkpoint_frozen "$TREE_MIB" ms "$(json_field "$tmp/checkpoint.json" frozen_ms)" "$TREE_PROCS"
  sample tree_image_size "$TREE_MIB" bytes "$(json_field "$tmp/checkpoint.json" image_bytes)" "$TREE_PROCS"
  # The children are reparented to this script, which reaps them.
  if ! wait_for all_gone "$orig" $kids; then
    echo "bench: the checkpoint did not end the tree of pid $orig" >&2
    exit 1
  fi
  orig=

  start=$(now_ms)
  agent_run restore restore --dir "$image" --pidfile "$tmp/pid" --json
  end=$(now_ms)
  restored=$(cat "$tmp/pid")
  sample tree_restore_wall "$TREE_MIB" ms $((end - start)) "$TREE_PROCS"
  sample tree_restore "$TREE_MIB" ms "$(json_field "$tmp/restore.json" restore_ms)" "$TREE_PROCS"
  # SIGTERM: the root stops its children, which check their memory.
  kill -TERM "$restored"
  if ! wait_for all_gone "$restored" $kids; then
    echo "bench: restored bench_tree (pid $restored) did not exit on SIGTERM" >&2
    exit 1
  fi
  restored= kids=
  if ! grep -q PASS "$tmp/out"; then
    echo "bench: restored bench_tree failed its check:" >&2
    cat "$tmp/out" >&2
    exit 1
  fi
done

# ns_pid PID: the PID of PID inside its own PID namespace.
ns_pid() { awk '/^NSpid:/ {print $NF}' "/proc/$1/status"; }

if has_bench postcopy; then
  testbed=$tmp/testbed
  bash scripts/testbed.sh up --name-prefix "fb$$" --agents "$testbed" >&2
  init_a=$(cat "$testbed/a/init.pid")
  init_b=$(cat "$testbed/b/init.pid")
  for mib in $POSTCOPY_SIZES; do
    for ((run = 0; run < RUNS; run++)); do
      dir=$tmp/files
      rm -rf "$dir"
      mkdir -p "$dir"
      nsenter -t "$init_a" -n -p -m -- "$PWD/$workload" "$dir" "$mib" </dev/null >"$tmp/out" 2>&1 &
      orig=$!
      disown "$orig"
      if ! wait_for grep -q READY "$tmp/out"; then
        echo "bench: bench_mem $mib MiB not READY on host A:" >&2
        cat "$tmp/out" >&2
        exit 1
      fi
      child=$(awk '{print $1}' "/proc/$orig/task/$orig/children")
      nspid=$(ns_pid "$child")
      agent_run postcopy migrate "$nspid" --to 10.231.0.2:7420 \
        --control-socket "$testbed/a/agent.sock" --mode postcopy --json
      python3 - "$tmp/postcopy.json" "$mib" >>"$samples" <<'PY'
import json, sys
p = json.load(open(sys.argv[1]))["postcopy"]
for name, unit, key in [("postcopy_freeze_to_running", "ms", "freeze_to_running_ms"),
                        ("postcopy_fault_latency_p50", "us", "fault_latency_p50_us"),
                        ("postcopy_all_local", "ms", "all_local_ms")]:
    print(name, sys.argv[2], unit, p[key], 1)
PY
      # The workload checks its memory on B at SIGTERM.
      nsenter -t "$init_b" -p -m -- kill -TERM "$nspid"
      if ! wait_for grep -q 'PASS\|FAIL' "$tmp/out"; then
        echo "bench: bench_mem $mib MiB did not finish on host B" >&2
        exit 1
      fi
      if ! grep -q PASS "$tmp/out"; then
        echo "bench: bench_mem $mib MiB failed its check after post-copy:" >&2
        cat "$tmp/out" >&2
        exit 1
      fi
      wait_for gone "$orig" || true
      orig=
    done
  done
fi


python3 - "$samples" <<'EOF'
import json, statistics, sys
groups = {}
for line in open(sys.argv[1]):
    name, mib, unit, value, procs = line.split()
    groups.setdefault((name, int(mib), unit, int(procs)), []).append(float(value))
for (name, mib, unit, procs), values in groups.items():
    params = {"mib": mib} if procs == 1 else {"processes": procs, "mib": mib}
    print(json.dumps({"name": name, "params": params, "unit": unit,
                      "median": statistics.median(values), "min": min(values),
                      "max": max(values), "runs": len(values)}))
EOF
