#!/usr/bin/env bash
# Configures and builds one tree. Usage: scripts/build.sh [BUILD_DIR] [extra cmake args...]
# A new tree is configured as RelWithDebInfo; extra cmake args are applied to an existing tree too
# (scripts/test.sh passes -DIOTPKI_WERROR=ON, which stays in that tree's cache).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dir=${1:-"$root/build"}
shift || true
if [ ! -f "$dir/build.ninja" ]; then
  cmake -S "$root" -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo "$@" >/dev/null
elif [ $# -gt 0 ]; then
  cmake -S "$root" -B "$dir" "$@" >/dev/null
fi
ninja -C "$dir" -j"$(nproc)"
