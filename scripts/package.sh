#!/usr/bin/env bash
# Builds ferry's Debian package from the workspace:
#   bash scripts/package.sh            # release build (cargo build --release)
#   FERRY_PROFILE=debug bash scripts/package.sh
#                                      # the debug binaries (what
#                                      # `cargo build --workspace` made; the
#                                      # test uses these: no second build)
# Prints the path of the .deb on its last line:
#   $CARGO_TARGET_DIR/debian/ferry_VERSION_ARCH.deb (target/ by default).
#
# The package is assembled here and built with dpkg-deb rather than with
# cargo-deb: dpkg-deb is in every Debian base system, while cargo-deb is
# compiled from crates.io (minutes on a 2-core CI machine) for a layout
# of a dozen files; the metadata cargo-deb would read from
# [package.metadata.deb] is in this file, next to the layout it describes.
#
# Contents:
#   /usr/bin/migrate-agent, /usr/bin/ferry-runc      (debug info stripped)
#   /lib/systemd/system/ferry-agent.service          (configs/; not started)
#   /etc/ferry/agent.toml                            (conffile; configs/)
#   /etc/ferry/certs/                                (mode 0700, empty)
#   /usr/share/man/man1/migrate-agent*.1.gz          (clap_mangen)
#   bash, zsh and fish completions                   (clap_complete)
#   /usr/share/doc/ferry/README.md, copyright
# Docker is not told about ferry-runc: README.md ("Installing") has the
# daemon.json snippet an operator adds by hand.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
profile=${FERRY_PROFILE:-release}
target=${CARGO_TARGET_DIR:-$root/target}
case "$profile" in
  release) cargo build --release --locked -p migrate-agent --bins >&2 ;;
  debug) cargo build --locked -p migrate-agent --bins >&2 ;;
  *) echo "package.sh: FERRY_PROFILE must be release or debug, not $profile" >&2; exit 2 ;;
esac
bin="$target/$profile"

version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
arch=$(dpkg --print-architecture)
out="$target/debian"
stage="$out/ferry_${version}_${arch}"
rm -rf "$stage"
mkdir -p "$stage/DEBIAN" "$stage/usr/bin" "$stage/lib/systemd/system" \
  "$stage/etc/ferry/certs" "$stage/usr/share/man/man1" \
  "$stage/usr/share/bash-completion/completions" \
  "$stage/usr/share/zsh/vendor-completions" \
  "$stage/usr/share/fish/vendor_completions.d" "$stage/usr/share/doc/ferry"

for b in migrate-agent ferry-runc; do
  objcopy --strip-debug "$bin/$b" "$stage/usr/bin/$b"
  chmod 0755 "$stage/usr/bin/$b"
done
install -m 0644 configs/ferry-agent.service "$stage/lib/systemd/system/"
install -m 0644 configs/agent.toml "$stage/etc/ferry/agent.toml"
# Host keys go here (`certs issue --out /etc/ferry/certs`): root only.
chmod 0700 "$stage/etc/ferry/certs"

docs=$(mktemp -d)
trap 'rm -rf "$docs"' EXIT
"$bin/migrate-agent" generate-docs --out "$docs"
for page in "$docs"/man/*.1; do
  gzip -9n <"$page" >"$stage/usr/share/man/man1/$(basename "$page").gz"
done
install -m 0644 "$docs/completions/migrate-agent.bash" \
  "$stage/usr/share/bash-completion/completions/migrate-agent"
install -m 0644 "$docs/completions/_migrate-agent" "$stage/usr/share/zsh/vendor-completions/"
install -m 0644 "$docs/completions/migrate-agent.fish" "$stage/usr/share/fish/vendor_completions.d/"
install -m 0644 README.md "$stage/usr/share/doc/ferry/"
cat >"$stage/usr/share/doc/ferry/copyright" <<COPYRIGHT
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: ferry
License: Apache-2.0
 On Debian systems the full text is in /usr/share/common-licenses/Apache-2.0.
COPYRIGHT
chmod 0644 "$stage/usr/share/doc/ferry/copyright"

# The libraries the binaries link against, as dpkg-shlibdeps would say
# (glibc only: everything else is Rust, statically linked).
glibc=$(dpkg-query -W -f='${Version}' libc6 | sed 's/-.*//')
size=$(du -sk --exclude=DEBIAN "$stage" | cut -f1)
cat >"$stage/DEBIAN/control" <<CONTROL
Package: ferry
Version: $version
Architecture: $arch
Maintainer: ferry developers <ferry@localhost>
Installed-Size: $size
Depends: libc6 (>= $glibc)
Recommends: nftables, runc | crun
Suggests: docker.io
Section: admin
Priority: optional
Description: live migration of Linux process trees and containers
 migrate-agent checkpoints, restores and live-migrates processes and OCI
 containers between hosts (ptrace, userfaultfd, QUIC with mutual TLS);
 ferry-runc is an OCI runtime with runc's command line whose checkpoint
 and restore are ferry's. The agent runs as the ferry-agent service.
CONTROL
# dpkg keeps an operator's edits of these across upgrades.
echo /etc/ferry/agent.toml >"$stage/DEBIAN/conffiles"

# Maintainer scripts: systemd is told about the unit, never asked to start
# it (the agent needs its certificates first: README's bring-up). Under
# `dpkg --root` (DPKG_ROOT set) they touch nothing outside that root.
cat >"$stage/DEBIAN/postinst" <<'POSTINST'
#!/bin/sh
set -e
install -d -m 0700 "$DPKG_ROOT/etc/ferry/certs" "$DPKG_ROOT/var/lib/ferry"
if [ -z "$DPKG_ROOT" ] && [ -d /run/systemd/system ]; then
  systemctl daemon-reload || true
fi
POSTINST
cat >"$stage/DEBIAN/prerm" <<'PRERM'
#!/bin/sh
set -e
if [ "$1" = remove ] && [ -z "$DPKG_ROOT" ] && [ -d /run/systemd/system ]; then
  systemctl stop ferry-agent.service || true
fi
PRERM
cat >"$stage/DEBIAN/postrm" <<'POSTRM'
#!/bin/sh
set -e
if [ -z "$DPKG_ROOT" ] && [ -d /run/systemd/system ]; then
  systemctl daemon-reload || true
fi
# Certificates and keys stay, even on purge: they are the operator's.
if [ "$1" = purge ]; then
  rm -rf "$DPKG_ROOT/var/lib/ferry"
fi
POSTRM
chmod 0755 "$stage/DEBIAN/postinst" "$stage/DEBIAN/prerm" "$stage/DEBIAN/postrm"

deb="$out/ferry_${version}_${arch}.deb"
dpkg-deb --root-owner-group -Zgzip -z6 --build "$stage" "$deb" >&2
rm -rf "$stage"
echo "$deb"
