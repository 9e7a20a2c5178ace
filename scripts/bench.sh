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
# Transport throughput on loopback (examples/transport_bench.rs), in MB/s:
# ferry's QUIC page streams (mutual TLS, several connections) against raw
# TCP and TLS over TCP (rustls), each moving TRANSPORT_MIB (default 2048;
# 0 skips) per run, RUNS runs. Run as root. Everything it
# starts is killed by PID on exit; images live in a temp dir removed at the end.
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
TRANSPORT_MIB=${TRANSPORT_MIB:-2048}

cargo build --release --workspace --locked >&2
cargo build --release --locked --example transport_bench >&2
agent=${FERRY_AGENT_BIN:-target/release/migrate-agent}
workload=target/release/workloads/bench_mem
mkdir -p target/release/workloads
gcc -O1 -g -pthread -Wall -o "$workload" tests/workloads/bench_mem.c

tmp=$(mktemp -d "${TMPDIR:-/tmp}/ferry-bench.XXXXXX")
# The PIDs of the original and the restored process while they live.
orig= restored=
cleanup() {
  [ -z "$orig" ] || kill -KILL "$orig" 2>/dev/null || true
  [ -z "$restored" ] || kill -KILL "$restored" 2>/dev/null || true
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
sample() { echo "$1 $2 $3 $4" >>"$samples"; } # name mib unit value

for mib in $SIZES; do
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

if [ "$TRANSPORT_MIB" != 0 ]; then
  for ((run = 0; run < RUNS; run++)); do
    # Prints "transport_MODE MIB MB/s VALUE" lines, the samples' format.
    target/release/examples/transport_bench "$TRANSPORT_MIB" quinn tcp tls >>"$samples"
  done
fi

python3 - "$samples" <<'EOF'
import json, statistics, sys
groups = {}
for line in open(sys.argv[1]):
    name, mib, unit, value = line.split()
    groups.setdefault((name, int(mib), unit), []).append(float(value))
for (name, mib, unit), values in groups.items():
    print(json.dumps({"name": name, "params": {"mib": mib}, "unit": unit,
                      "median": statistics.median(values), "min": min(values),
                      "max": max(values), "runs": len(values)}))
EOF
