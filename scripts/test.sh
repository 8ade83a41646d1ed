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

# The C509 decoder under libFuzzer, for a bounded time (IOTPKI_FUZZ_SECONDS, default 60; 0 skips).
# The seed corpus is copied so that the tree is not modified; a crash fails the script and leaves
# its input in build-fuzz/ (reproduce with: build-fuzz/src/iotpki/c509/fuzz_c509 FILE).
fuzz_seconds=${IOTPKI_FUZZ_SECONDS:-60}
if [ "$fuzz_seconds" -gt 0 ] && command -v clang++ >/dev/null; then
  echo "== fuzz (libFuzzer): fuzz_c509 for ${fuzz_seconds} s"
  if [ ! -f "$root/build-fuzz/build.ninja" ]; then
    CC=clang CXX=clang++ cmake -S "$root" -B "$root/build-fuzz" -G Ninja \
      -DCMAKE_BUILD_TYPE=RelWithDebInfo -DIOTPKI_FUZZ=ON -DIOTPKI_WERROR=OFF >/dev/null
  fi
  ninja -C "$root/build-fuzz" -j"$jobs" fuzz_c509
  fuzz_tmp=$(mktemp -d "${TMPDIR:-/tmp}/iotpki-fuzz.XXXXXX")
  trap 'rm -rf "$fuzz_tmp"' EXIT
  mkdir "$fuzz_tmp/corpus"
  cp "$root"/src/iotpki/c509/fuzz_corpus/* "$fuzz_tmp/corpus/"
  if ! "$root/build-fuzz/src/iotpki/c509/fuzz_c509" -max_total_time="$fuzz_seconds" \
    -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="$root/build-fuzz/" "$fuzz_tmp/corpus" 2>"$fuzz_tmp/log"; then
    tail -n 60 "$fuzz_tmp/log" >&2
    echo "fuzz_c509 found a failure; its input is in $root/build-fuzz/ (crash-*, leak-*, ...)" >&2
    exit 1
  fi
  grep -E "^(Done [0-9]+ runs|stat::)" "$fuzz_tmp/log" || true
elif [ "$fuzz_seconds" -gt 0 ]; then
  echo "== fuzz: clang++ not found (scripts/setup.sh installs it); fuzz_c509 not run"
fi
