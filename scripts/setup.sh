#!/usr/bin/env bash
# Installs every system package that ferry's build, tests, demo and benchmarks
# need on a fresh Debian 12 machine. Idempotent: prints nothing and touches
# nothing when everything is already there. Run as root.
set -euo pipefail

packages=(
  gcc          # zdtm-style workload programs in tests/workloads are C
  libc6-dev
  make
  pkg-config
  iproute2     # network-namespace testbed
  jq           # container-bundle.sh and container-net.sh read and edit JSON
  procps       # ps/pgrep used by scripts for humans, never by tests
  qemu-system-x86  # scripts/softdirty-vm.sh: a 6.1 guest kernel with soft-dirty
  cpio         # ... its initramfs
  xz-utils     # ... and the decompression of Debian's kernel image
)

# Node.js and CPython for the server tests (tests/servers.rs); any install
# will do.
command -v node >/dev/null 2>&1 || packages+=(nodejs)
command -v python3 >/dev/null 2>&1 || packages+=(python3)
# busybox sh runs issue 3's shell loop (tests/shell_loop.rs); the static
# one is also the rootfs of the container tests (tests/container.rs).
packages+=(busybox-static)
# OCI runtimes whose containers are migrated (tests/container.rs).
packages+=(runc crun)
# Docker and Podman, whose containers ferry-runc checkpoints and restores
# (tests/docker.rs starts its own dockerd; nothing starts one for you).
packages+=(docker.io podman)
# capsh drops capabilities for the refusal test (tests/container.rs).
packages+=(libcap2-bin)
# Real servers from Debian's packages, checkpointed and migrated by
# tests/servers.rs. Each test starts its own copy with its own config, port
# and data in the test's directory; the system services are never used (a
# container's policy-rc.d keeps apt from starting them).
packages+=(redis-server)      # RESP keys set before the checkpoint
packages+=(nginx-light)       # master + workers serving a file
packages+=(postgresql-15)     # postmaster and its workers, as user postgres
packages+=(openjdk-17-jdk-headless)  # javac/java: a com.sun.net.httpserver counter
# nft: the network lock that keeps a frozen workload's TCP connections
# silent (src/netlock/; tests/netlock.rs).
packages+=(nftables)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null 2>&1; then
  if [ -x "$HOME/.cargo/bin/cargo" ]; then
    echo "setup: cargo is in $HOME/.cargo/bin; add it to PATH" >&2
  else
    echo "setup: no Rust toolchain found (cargo); install one with rustup" >&2
  fi
  exit 1
fi

# cargo-fuzz builds and runs the fuzz targets (scripts/fuzz.sh, which
# scripts/test.sh runs after the tests).
if ! command -v cargo-fuzz >/dev/null 2>&1 && [ ! -x "$HOME/.cargo/bin/cargo-fuzz" ]; then
  echo "setup: installing cargo-fuzz"
  cargo install cargo-fuzz --version 0.13.2 --locked --quiet
fi
