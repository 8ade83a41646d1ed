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
# whoever builds a release with another compiler). Two trees, two compilers:
# - build/: GCC 12, CMake's Release type (what a packager builds: -O3, where GCC 12 warns most),
#   everything that ships and the benchmarks, no unit tests (IOTPKI_UNIT_TESTS=OFF); every
#   end-to-end script runs against it.
# - build-asan/: clang 14 with AddressSanitizer + UndefinedBehaviorSanitizer (-O1, line tables),
#   everything including the unit tests and the libFuzzer targets (IOTPKI_FUZZ=ON); the unit tests
#   and the scripts labelled `sanitizers` run in it, then the fuzzers.
# clang compiles this code base in 0.5 to 0.75 of GCC's CPU time under ASan (server.cc: 73 vs 100
# CPU-s), and one clang tree replaces the separate fuzz tree: docs/performance.md has the figures.
# GCC still builds every shipped target here; the unit tests' GCC build is scripts/build.sh's
# default tree (developers build it with -DIOTPKI_WERROR=ON; docs/operations.md).
echo "== build (GCC, Release, no unit tests) [${SECONDS}s]"
# The test-only hooks (environment variables the tests use to stop the agent at a rotation step,
# fail an install, or take a PKCS#11 token away mid-batch) are off by default in Release, a
# device's or a packager's build; here they are on, or the tests that need them would not be
# registered at all.
"$root/scripts/build.sh" "$root/build" -DCMAKE_BUILD_TYPE=Release -DIOTPKI_WERROR=ON \
  -DIOTPKI_UNIT_TESTS=OFF -DIOTPKI_AGENT_TEST_HOOKS=ON -DIOTPKI_PKCS11_TEST_HOOKS=ON
echo "== end-to-end tests [${SECONDS}s]"
# The PostgreSQL tests run on a cluster that the pg_cluster_start test starts (tests/
# pg_cluster.sh); without PostgreSQL they skip, except under CI=true, where they fail.
ctest --test-dir "$root/build" -j"$jobs" --output-on-failure -L e2e

asan="$root/build-asan"
# A tree configured by an earlier version of this script with GCC cannot change compilers.
if [ -f "$asan/CMakeCache.txt" ] && ! grep -q '^CMAKE_CXX_COMPILER_ID:.*Clang\|^CMAKE_CXX_COMPILER:.*clang' \
  "$asan/CMakeCache.txt"; then
  echo "== $asan was configured with another compiler; configuring it again with clang"
  rm -rf "$asan"
fi
echo "== build (clang, ASan + UBSan, unit tests and fuzzers) [${SECONDS}s]"
CC=clang CXX=clang++ "$root/scripts/build.sh" "$asan" -DIOTPKI_SANITIZE=ON -DIOTPKI_WERROR=ON \
  -DIOTPKI_UNIT_TESTS=ON -DIOTPKI_FUZZ=ON
# Every unit test, and the end-to-end scripts labelled `sanitizers` (tests/CMakeLists.txt says
# which and why).
# A 16 MB quarantine instead of ASan's 256 MB: a freed block is still poisoned until 16 MB more
# have been freed (use-after-free is still caught), and the tests stop spending a third of their
# CPU faulting fresh pages in for the quarantine (mfg_test KeysByTheCa: 4.1 CPU-s instead of 6.0,
# most of it OpenSSL's PBKDF2 allocating through ASan's allocator).
echo "== unit tests and sanitizer scripts under sanitizers [${SECONDS}s]"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:quarantine_size_mb=16 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  ctest --test-dir "$asan" -j"$jobs" --output-on-failure -L '^(unit|sanitizers)$'

# Three libFuzzer targets (built in the tree above), each for a fixed number of inputs from a
# fixed seed, so that a run that passes here passes on every machine (a time budget lets a faster
# machine explore further and a random seed finds a different input each run: CI went red on a
# bug an earlier run had not reached). IOTPKI_FUZZ_RUNS scales them (default 150000 for the C509
# decoder, a third of that for the slower differential X.509/CSR parser test; 0 skips them);
# IOTPKI_FUZZ_SEED=0 picks a random seed, for exploring. The seed corpora are copied so that the
# tree is not modified; a failure fails the script and leaves its input in build-asan/ (reproduce
# with: build-asan/src/iotpki/<layer>/fuzz_<name> FILE).
fuzz_runs=${IOTPKI_FUZZ_RUNS:-150000}
fuzz_seed=${IOTPKI_FUZZ_SEED:-1}
run_fuzzer() {  # run_fuzzer LAYER NAME RUNS
  local layer=$1 name=$2 runs=$3 tmp
  echo "== fuzz (libFuzzer): fuzz_$name, $runs inputs from seed $fuzz_seed [${SECONDS}s]"
  tmp=$(mktemp -d "${TMPDIR:-/tmp}/iotpki-fuzz.XXXXXX")
  mkdir "$tmp/corpus"
  cp "$root/src/iotpki/$layer/fuzz_corpus/"* "$tmp/corpus/"
  if ! "$asan/src/iotpki/$layer/fuzz_$name" -runs="$runs" -seed="$fuzz_seed" \
    -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="$asan/" "$tmp/corpus" 2>"$tmp/log"; then
    tail -n 60 "$tmp/log" >&2
    echo "fuzz_$name found a failure; its input is in $asan/ (crash-*, leak-*, ...)" >&2
    rm -rf "$tmp"
    exit 1
  fi
  grep -E "^(Done [0-9]+ runs|stat::)" "$tmp/log" || true
  rm -rf "$tmp"
}
if [ "$fuzz_runs" -gt 0 ]; then
  run_fuzzer c509 c509 "$fuzz_runs"
  run_fuzzer x509 x509 $(((fuzz_runs + 2) / 3))
  # A short run: OpenSSL's decoder does the parsing; the target checks the bounds on top.
  run_fuzzer x509 ocsp $((fuzz_runs < 20000 ? fuzz_runs : 20000))
fi
echo "== done [${SECONDS}s]"
