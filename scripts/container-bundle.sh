#!/usr/bin/env bash
# Builds an OCI bundle for the container tests and the demo: a rootfs made
# of busybox-static (every applet linked in rootfs/bin) and a config.json
# from `runc spec`, edited: no terminal, the busybox counter loop writing
# to /out/counter.txt, OUT_DIR of the host bind-mounted at /out, no network
# namespace (the container shares its host's), CAP_CHECKPOINT_RESTORE added
# (the restored init recreates its children's PIDs with clone3 set_tid) and
# CAP_SYS_PTRACE (a post-copy restore creates, inside the container, a
# userfaultfd that catches faults in system calls).
#   scripts/container-bundle.sh BUNDLE_DIR OUT_DIR [CGROUPS_PATH]
set -euo pipefail
[ $# -ge 2 ] || { echo "usage: $0 BUNDLE_DIR OUT_DIR [CGROUPS_PATH]" >&2; exit 2; }
bundle=$1 out=$2 cgpath=${3:-}
mkdir -p "$bundle/rootfs/bin" "$bundle/rootfs/out" "$bundle/rootfs/tmp" "$out"
cp /bin/busybox "$bundle/rootfs/bin/busybox"
chroot "$bundle/rootfs" /bin/busybox --install -s /bin
rm -f "$bundle/config.json"
(cd "$bundle" && runc spec)
loop='exec >>/out/counter.txt 2>&1 </dev/null; i=0; while true; do echo $i; i=$(expr $i + 1); sleep 1; done'
caps='["CAP_AUDIT_WRITE","CAP_KILL","CAP_NET_BIND_SERVICE","CAP_CHECKPOINT_RESTORE","CAP_SYS_PTRACE"]'
jq --arg loop "$loop" --arg out "$(realpath "$out")" --argjson caps "$caps" --arg cg "$cgpath" '
  .process.terminal = false
  | .process.args = ["sh", "-c", $loop]
  | .process.capabilities = {bounding: $caps, effective: $caps, permitted: $caps, ambient: $caps}
  | .mounts += [{destination: "/out", type: "bind", source: $out, options: ["rbind", "rw"]}]
  | .linux.namespaces |= map(select(.type != "network"))
  | if $cg != "" then .linux.cgroupsPath = $cg else . end
' "$bundle/config.json" > "$bundle/config.json.new"
mv "$bundle/config.json.new" "$bundle/config.json"
