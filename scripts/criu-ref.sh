#!/usr/bin/env bash
# Builds CRIU v4.2 from source into a directory of the user's, once: the
# reference scripts/bench.sh's Docker section measures ferry-runc against
# (Debian 12's CRIU 3.17 does not run on Linux 6.18: "Unexpected rt vDSO
# area bounds"). Nothing is installed: the binary stays in DIR.
#
#   scripts/criu-ref.sh DIR     prints the path of the criu binary, DIR/criu
#
# Then, for instance: CRIU_BIN=DIR/criu scripts/bench.sh (with the other
# sections skipped; see its header). A DIR/criu that already says
# "Version: 4.2" is kept. CRIU_GIT (default
# https://github.com/checkpoint-restore/criu) is where the source comes
# from: a URL or a local clone or bare mirror holding tag v4.2.
#
# Build dependencies (Debian 12):
#   apt-get install -y build-essential pkg-config libprotobuf-dev \
#     libprotobuf-c-dev protobuf-c-compiler protobuf-compiler libnl-3-dev \
#     libnet1-dev libcap-dev libbsd-dev libgnutls28-dev libaio-dev uuid-dev
# (libnftables-dev and libdrm-dev are optional: without them CRIU locks
# the network with iptables and has no amdgpu plugin, neither of which
# the benchmark uses).
# The build is `make -j"$(nproc)" criu` in a checkout of tag v4.2
# (about a minute on 2 cores). Benchmarks are not run in CI: CI never
# builds CRIU.
set -euo pipefail

[ $# -eq 1 ] || { echo "usage: $0 DIR" >&2; exit 2; }
dir=$(realpath -m "$1")
tag=v4.2
git_src=${CRIU_GIT:-https://github.com/checkpoint-restore/criu}

if [ -x "$dir/criu" ] && [[ $'\n'$("$dir/criu" --version 2>/dev/null)$'\n' == *$'\n'"Version: ${tag#v}"$'\n'* ]]; then
  echo "$dir/criu"
  exit 0
fi
mkdir -p "$dir"
src=$dir/src
if [ ! -f "$src/Makefile.versions" ]; then
  rm -rf "$src"
  if [ -d "$git_src" ] && [ "$(git --git-dir="$git_src" rev-parse --is-bare-repository 2>/dev/null)" = true ]; then
    # A bare mirror: export the tag's tree.
    mkdir -p "$src"
    git --git-dir="$git_src" archive "$tag" | tar -C "$src" -x
  else
    git clone --quiet --depth 1 --branch "$tag" "$git_src" "$src"
  fi
fi
make -C "$src" -j"$(nproc)" criu >&2
cp "$src/criu/criu" "$dir/criu.new"
mv "$dir/criu.new" "$dir/criu"
"$dir/criu" --version >&2
echo "$dir/criu"
