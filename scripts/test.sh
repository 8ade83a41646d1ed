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

# Warnings are errors in the project's own builds (CMake's default leaves them warnings, for
# whoever builds a release with another compiler).
# Optimized as RelWithDebInfo but without debug information (-g costs CI a minute of compiling
# and linking that nobody reads; the sanitizer build below keeps line tables for its reports).
# The unit tests are built and run once, in the sanitizer tree below (IOTPKI_UNIT_TESTS=OFF here):
# this tree builds what is shipped and runs every end-to-end script against it.
echo "== build (RelWithDebInfo without -g, no unit tests) [${SECONDS}s]"
"$root/scripts/build.sh" "$root/build" -DIOTPKI_WERROR=ON -DIOTPKI_UNIT_TESTS=OFF \
  -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O2 -DNDEBUG"
echo "== end-to-end tests [${SECONDS}s]"
# The PostgreSQL tests run on a cluster that the pg_cluster_start test starts (tests/
# pg_cluster.sh); without PostgreSQL they skip, except under CI=true, where they fail.
ctest --test-dir "$root/build" -j"$jobs" --output-on-failure -L e2e

echo "== build (ASan + UBSan) [${SECONDS}s]"
"$root/scripts/build.sh" "$root/build-asan" -DIOTPKI_SANITIZE=ON -DIOTPKI_WERROR=ON \
  -DIOTPKI_UNIT_TESTS=ON
# Every unit test, and the end-to-end scripts labelled `sanitizers` (tests/CMakeLists.txt says
# which and why).
echo "== unit tests and sanitizer scripts under sanitizers [${SECONDS}s]"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  ctest --test-dir "$root/build-asan" -j"$jobs" --output-on-failure -L '^(unit|sanitizers)$'

# A packager's build: Release (-O3, where GCC 12 warns differently), built but not tested, with
# warnings as errors. Off by default (a whole third build); IOTPKI_RELEASE_CHECK=1 turns it on.
if [ "${IOTPKI_RELEASE_CHECK:-0}" = 1 ]; then
  echo "== build (Release, warnings as errors)"
  "$root/scripts/build.sh" "$root/build-release" -DCMAKE_BUILD_TYPE=Release -DIOTPKI_WERROR=ON
fi

# Two libFuzzer targets, each for a fixed number of inputs from a fixed seed, so that a run that
# passes here passes on every machine (a time budget lets a faster machine explore further and a
# random seed finds a different input each run: CI went red on a bug an earlier run had not
# reached). IOTPKI_FUZZ_RUNS scales both (default 150000 for the C509 decoder, a third of that
# for the slower differential X.509/CSR parser test; 0 skips both); IOTPKI_FUZZ_SEED=0 picks a
# random seed, for exploring. The seed corpora are copied so that the tree is not modified; a
# failure fails the script and leaves its input in build-fuzz/ (reproduce with:
# build-fuzz/src/iotpki/<layer>/fuzz_<name> FILE).
fuzz_runs=${IOTPKI_FUZZ_RUNS:-150000}
fuzz_seed=${IOTPKI_FUZZ_SEED:-1}
run_fuzzer() {  # run_fuzzer LAYER NAME RUNS
  local layer=$1 name=$2 runs=$3 tmp
  echo "== fuzz (libFuzzer): fuzz_$name, $runs inputs from seed $fuzz_seed"
  ninja -C "$root/build-fuzz" -j"$jobs" "fuzz_$name"
  tmp=$(mktemp -d "${TMPDIR:-/tmp}/iotpki-fuzz.XXXXXX")
  mkdir "$tmp/corpus"
  cp "$root/src/iotpki/$layer/fuzz_corpus/"* "$tmp/corpus/"
  if ! "$root/build-fuzz/src/iotpki/$layer/fuzz_$name" -runs="$runs" -seed="$fuzz_seed" \
    -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="$root/build-fuzz/" "$tmp/corpus" 2>"$tmp/log"; then
    tail -n 60 "$tmp/log" >&2
    echo "fuzz_$name found a failure; its input is in $root/build-fuzz/ (crash-*, leak-*, ...)" >&2
    rm -rf "$tmp"
    exit 1
  fi
  grep -E "^(Done [0-9]+ runs|stat::)" "$tmp/log" || true
  rm -rf "$tmp"
}
if [ "$fuzz_runs" -gt 0 ] && command -v clang++ >/dev/null; then
  if [ ! -f "$root/build-fuzz/build.ninja" ]; then
    # clang 14 with warnings as errors: the fuzz tree doubles as the clang check of the
    # libraries it builds (the GCC builds above check everything).
    CC=clang CXX=clang++ cmake -S "$root" -B "$root/build-fuzz" -G Ninja \
      -DCMAKE_BUILD_TYPE=RelWithDebInfo -DIOTPKI_FUZZ=ON -DIOTPKI_WERROR=ON >/dev/null
  fi
  run_fuzzer c509 c509 "$fuzz_runs"
  run_fuzzer x509 x509 $(((fuzz_runs + 2) / 3))
  # A short run: OpenSSL's decoder does the parsing; the target checks the bounds on top.
  run_fuzzer x509 ocsp $((fuzz_runs < 20000 ? fuzz_runs : 20000))
elif [ "$fuzz_runs" -gt 0 ]; then
  echo "== fuzz: clang++ not found (scripts/setup.sh installs it); the fuzzers were not run"
fi
echo "== done [${SECONDS}s]"
