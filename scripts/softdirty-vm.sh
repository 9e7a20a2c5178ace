#!/usr/bin/env bash
# Tries the soft-dirty dirty tracker where it exists: boots Debian 12's 6.1
# kernel (CONFIG_MEM_SOFT_DIRTY=y; the development host's kernel lacks it)
# under qemu TCG with examples/softdirty_guest.rs, built statically, as
# /init. Prints the guest's console; exits 0 only when the guest printed
# `softdirty-vm: PASS` and no FAIL line. Run as root (tests/softdirty_vm.rs
# does). Everything is cached under target/softdirty-vm (FERRY_VM_DIR): the
# kernel package is downloaded once.
#
#   scripts/softdirty-vm.sh            # build, pack, boot, check
#   FERRY_VM_TIMEOUT=300 scripts/softdirty-vm.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

work=${FERRY_VM_DIR:-target/softdirty-vm}
timeout_s=${FERRY_VM_TIMEOUT:-120}
mkdir -p "$work"
work=$(cd "$work" && pwd)

for tool in qemu-system-x86_64 cpio xz dpkg-deb apt-get; do
  command -v "$tool" >/dev/null || { echo "softdirty-vm: $tool is missing: run scripts/setup.sh" >&2; exit 2; }
done

# 1. The kernel: the 6.1 image linux-image-amd64 depends on (Debian 12),
#    as an uncompressed vmlinux: qemu boots it directly, and the whole run
#    then takes about 9 s under TCG against 13 s for the bzImage, which
#    spends 4 s decompressing itself.
pkg=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-6\.1\./ { print $2; exit }')
if [ -z "$pkg" ]; then
  pkg=$(apt-cache search --names-only '^linux-image-6\.1\.0-[0-9]+-amd64$' | awk '{ print $1 }' | sort -V | tail -1)
fi
[ -n "$pkg" ] || { echo "softdirty-vm: no linux-image-6.1.*-amd64 package known to apt (apt-get update?)" >&2; exit 2; }
vmlinux="$work/$pkg.vmlinux"
if [ ! -s "$vmlinux" ]; then
  echo "softdirty-vm: fetching $pkg"
  rm -f "$work"/linux-image-*.deb
  (cd "$work" && apt-get download -q "$pkg" 2>&1 | grep -v '^W: Download is performed unsandboxed' || true)
  deb=$(ls "$work"/"$pkg"_*.deb)
  dpkg-deb --fsys-tarfile "$deb" | tar -xO --wildcards './boot/vmlinuz-*' >"$work/vmlinuz"
  # Like the kernel's scripts/extract-vmlinux: find the payload by its
  # compression magic and decompress from there (the bytes after the
  # stream are not part of it). Debian's 6.1 uses xz.
  found=
  for method in 'xz:\xfd7zXZ\x00:xz -dc --single-stream' 'zstd:\x28\xb5\x2f\xfd:zstd -dcq' 'gzip:\x1f\x8b\x08:gzip -dcq'; do
    IFS=: read -r name magic cmd <<<"$method"
    command -v "$name" >/dev/null || continue
    for offset in $(LC_ALL=C grep -obUaP "$magic" "$work/vmlinuz" | cut -d: -f1); do
      tail -c +$((offset + 1)) "$work/vmlinuz" | $cmd >"$vmlinux.tmp" 2>/dev/null || true
      if [ "$(head -c 4 "$vmlinux.tmp" | od -An -c | tr -d ' ')" = '177ELF' ]; then
        found=$name
        break 2
      fi
    done
  done
  [ -n "$found" ] || { echo "softdirty-vm: no compressed vmlinux found in $deb" >&2; exit 2; }
  mv "$vmlinux.tmp" "$vmlinux"
  rm -f "$work/vmlinuz" "$deb"
  echo "softdirty-vm: $pkg decompressed ($found) to $vmlinux"
fi

# 2. The guest program, static so the initramfs needs nothing else. Built
#    for an explicit target so that the flag does not reach proc macros.
RUSTFLAGS="-C target-feature=+crt-static" cargo build -q --locked \
  --example softdirty_guest --target x86_64-unknown-linux-gnu --target-dir "$work/cargo"
guest="$work/cargo/x86_64-unknown-linux-gnu/debug/examples/softdirty_guest"

# 3. The initramfs: /init and a console.
root="$work/initramfs"
rm -rf "$root"
mkdir -p "$root/dev" "$root/proc"
cp "$guest" "$root/init"
mknod "$root/dev/console" c 5 1
(cd "$root" && find . | cpio -o -H newc --quiet) | gzip -1 >"$work/initramfs.cpio.gz"

# 4. Boot; the guest powers off when done. timeout kills qemu (its child,
#    by PID) if it hangs.
log="$work/console.log"
status=0
timeout --kill-after=5 "$timeout_s" qemu-system-x86_64 -accel tcg -cpu max \
  -kernel "$vmlinux" -initrd "$work/initramfs.cpio.gz" \
  -append 'console=ttyS0 quiet panic=-1' \
  -nodefaults -serial stdio -display none -m 512 -no-reboot </dev/null 2>&1 | tee "$log" || status=$?
if [ "$status" -ne 0 ]; then
  echo "softdirty-vm: qemu ended with status $status (124: killed after ${timeout_s} s)" >&2
fi
grep -q '^softdirty-vm: PASS (' "$log" && ! grep -q '^softdirty-vm: FAIL' "$log"
