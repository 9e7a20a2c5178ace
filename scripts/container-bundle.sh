#!/usr/bin/env bash
# Builds an OCI bundle for the container tests and the demo: a rootfs made
# of busybox-static (every applet linked in rootfs/bin) and a config.json
# from `runc spec`, edited: no terminal, the busybox counter loop writing
# to /out/counter.txt, OUT_DIR of the host bind-mounted at /out, no network
# namespace (the container shares its host's), CAP_CHECKPOINT_RESTORE added
# (the restored init recreates its children's PIDs with clone3 set_tid) and
# CAP_SYS_PTRACE (a post-copy restore creates, inside the container, a
# userfaultfd that catches faults in system calls).
#   scripts/container-bundle.sh [--own-netns] [--node SCRIPT.js ADDR PORT]
#                               [--exec BINARY ARGS] [--run BINARY ARGS]
#                               BUNDLE_DIR OUT_DIR [CGROUPS_PATH]
# --own-netns keeps the network namespace of `runc spec` (the container
# gets an empty one of its own: configure it between `runc create` and
# `runc start`, e.g. with scripts/container-net.sh).
# --node runs `node SCRIPT.js ADDR PORT` instead of the loop (output to
# /out/node.log): the node binary, the script and the host's library
# directories (where ldd finds node's libraries) are bind-mounted read-only.
# --exec runs BINARY, a static executable copied into the rootfs, with the
# words of ARGS instead of the loop (output to /out/workload.log).
# --run runs BINARY, a dynamically linked executable of the host (a Debian
# package's server, a test workload), with the words of ARGS instead of the
# loop (output to /out/workload.log): the binary and the host's library
# directories (where ldd finds its libraries) are bind-mounted read-only at
# the same paths.
set -euo pipefail
own_netns=0 node_args=() exec_args=() run_args=()
while [ $# -gt 0 ]; do
  case $1 in
    --own-netns) own_netns=1; shift ;;
    --node) [ $# -ge 4 ] || { echo "--node needs SCRIPT ADDR PORT" >&2; exit 2; }
            node_args=("$2" "$3" "$4"); shift 4 ;;
    --exec) [ $# -ge 3 ] || { echo "--exec needs BINARY ARGS" >&2; exit 2; }
            exec_args=("$2" "$3"); shift 3 ;;
    --run) [ $# -ge 3 ] || { echo "--run needs BINARY ARGS" >&2; exit 2; }
           run_args=("$2" "$3"); shift 3 ;;
    *) break ;;
  esac
done
[ $# -ge 2 ] || { echo "usage: $0 [--own-netns] [--node SCRIPT.js ADDR PORT] [--exec BINARY ARGS] [--run BINARY ARGS] BUNDLE_DIR OUT_DIR [CGROUPS_PATH]" >&2; exit 2; }
bundle=$1 out=$2 cgpath=${3:-}
mkdir -p "$bundle/rootfs/bin" "$bundle/rootfs/out" "$bundle/rootfs/tmp" "$out"
cp /bin/busybox "$bundle/rootfs/bin/busybox"
chroot "$bundle/rootfs" /bin/busybox --install -s /bin
rm -f "$bundle/config.json"
(cd "$bundle" && runc spec)
loop='exec >>/out/counter.txt 2>&1 </dev/null; i=0; while true; do echo $i; i=$(expr $i + 1); sleep 1; done'
args=$(jq -n --arg loop "$loop" '["sh", "-c", $loop]')
mounts='[]'
if ((${#exec_args[@]})); then
  cp "${exec_args[0]}" "$bundle/rootfs/bin/workload"
  args=$(jq -n --arg a "${exec_args[1]}" \
    '["sh", "-c", "exec /bin/workload \($a) >>/out/workload.log 2>&1 </dev/null"]')
fi
ro() { jq -n --arg s "$1" --arg d "$2" '{destination: $d, type: "bind", source: $s, options: ["rbind", "ro"]}'; }
# Every directory holding a library of the binary $1, at the same path.
libs() { ldd "$1" | grep -o '/[^ ]*' | xargs -n1 dirname | sort -u | while read -r d; do ro "$d" "$d"; done; }
if ((${#node_args[@]})); then
  node=$(realpath "$(command -v node)")
  script=$(realpath "${node_args[0]}")
  args=$(jq -n --arg a "${node_args[1]}" --arg p "${node_args[2]}" \
    '["sh", "-c", "exec /app/node /app/server.js \($a) \($p) >>/out/node.log 2>&1 </dev/null"]')
  mounts=$( {
    ro "$node" /app/node
    ro "$script" /app/server.js
    libs "$node"
  } | jq -s .)
fi
if ((${#run_args[@]})); then
  # At the path given: a program may tell what to be from its name
  # (redis-server is a link to redis-check-rdb).
  binary=$(realpath -s "${run_args[0]}")
  args=$(jq -n --arg b "$binary" --arg a "${run_args[1]}" \
    '["sh", "-c", "exec \($b) \($a) >>/out/workload.log 2>&1 </dev/null"]')
  mounts=$( { ro "$(realpath "$binary")" "$binary"; libs "$binary"; } | jq -s .)
fi
caps='["CAP_AUDIT_WRITE","CAP_KILL","CAP_NET_BIND_SERVICE","CAP_CHECKPOINT_RESTORE","CAP_SYS_PTRACE"]'
jq --argjson args "$args" --arg out "$(realpath "$out")" --argjson caps "$caps" --arg cg "$cgpath" \
   --argjson mounts "$mounts" --argjson own_netns "$own_netns" '
  .process.terminal = false
  | .process.args = $args
  | .process.capabilities = {bounding: $caps, effective: $caps, permitted: $caps, ambient: $caps}
  | .mounts += [{destination: "/out", type: "bind", source: $out, options: ["rbind", "rw"]}] + $mounts
  | if $own_netns == 1 then . else .linux.namespaces |= map(select(.type != "network")) end
  | if $cg != "" then .linux.cgroupsPath = $cg else . end
' "$bundle/config.json" > "$bundle/config.json.new"
mv "$bundle/config.json.new" "$bundle/config.json"
