#!/usr/bin/env bash
# Installs what is missing, builds, and runs every test: the normal build, then again under
# AddressSanitizer + UndefinedBehaviorSanitizer. Also checks formatting.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
"$root/scripts/setup.sh"

echo "== format check (clang-format, .clang-format)"
files=$(git ls-files '*.cc' '*.h' 2>/dev/null || true)
if [ -n "$files" ]; then
  # shellcheck disable=SC2086
  if ! clang-format --dry-run -Werror $files; then
    echo "format check failed: run clang-format -i on the files above" >&2
    exit 1
  fi
fi

jobs=$(nproc)

echo "== build (RelWithDebInfo)"
"$root/scripts/build.sh" "$root/build"
echo "== tests"
ctest --test-dir "$root/build" -j"$jobs" --output-on-failure

echo "== build (ASan + UBSan)"
"$root/scripts/build.sh" "$root/build-asan" -DIOTPKI_SANITIZE=ON
echo "== tests under sanitizers"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  ctest --test-dir "$root/build-asan" -j"$jobs" --output-on-failure
