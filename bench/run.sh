#!/usr/bin/env bash
# Runs the benchmarks, each next to its `openssl speed` baseline measured in the same run. Never
# run by ctest or CI: the figures depend on the machine; docs/performance.md records them.
#
#   bench/run.sh [BUILD_DIR]        default BUILD_DIR: build/ (configured RelWithDebInfo if new)
#   IOTPKI_BENCH_DEVICES=20000      devices per batch run
#   IOTPKI_BENCH_WORKERS=2          signing threads per batch run
#
# 1. issue_bench: one certificate at a time (issue 2): certs/s and the ratio to one ECDSA P-256
#    verify + sign on one core.
# 2. mfg_bench: the per-device cost of each step of a batch, on one thread.
# 3. Batch rate of `iotpki mfg provision` in both key modes, with and without device folders,
#    store and output on disk (TMPDIR, default /var/tmp), next to the two-core crypto limit of
#    `openssl speed -multi 2`: --keys ca needs a key generation (about one ECDH) and a signature
#    per device, --csr-dir a verification (proof of possession) and a signature.
# 4. mfg_floor: the least work per device any batch must do (key generation or CSR read and
#    verification, signature, one store row), OpenSSL and SQLite called directly on one thread,
#    as a share of the same two-core limit: whether the floor alone leaves room for 80% of it.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-"$root/build"}
if [ ! -f "$build/build.ninja" ]; then
  cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
fi
ninja -C "$build" iotpki issue_bench mfg_bench bench_tool mfg_floor >/dev/null
bin="$build/bench"
iotpki="$build/apps/iotpki/iotpki"
n=${IOTPKI_BENCH_DEVICES:-20000}
workers=${IOTPKI_BENCH_WORKERS:-2}
work=$(mktemp -d "${TMPDIR:-/var/tmp}/iotpki-bench.XXXXXX")
trap 'rm -rf "$work"' EXIT
export IOTPKI_PASSPHRASE="benchmark passphrase"
export IOTPKI_KEY_PASSPHRASE="benchmark transport passphrase"

echo "== $(date -u +%FT%TZ) on $(nproc) cores, $(openssl version), load $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "== 1. single-certificate issuance (bench/issue_bench)"
"$bin/issue_bench" --benchmark_counters_tabular=true
echo
echo "== 2. per-device cost of each batch step, one thread (bench/mfg_bench)"
"$bin/mfg_bench"
echo
echo "== 3. batch rate: $n devices, --workers $workers, store and output in $work"
speed=$(openssl speed -seconds 3 -multi 2 ecdsap256 ecdhp256 2>/dev/null)
sign=$(awk '/ecdsa \(nistp256\)/ {print $(NF-1)}' <<<"$speed")
verify=$(awk '/ecdsa \(nistp256\)/ {print $NF}' <<<"$speed")
ecdh=$(awk '/ecdh \(nistp256\)/ {print $NF}' <<<"$speed")
limit_ca=$(awk -v s="$sign" -v e="$ecdh" 'BEGIN {printf "%.0f", 1 / (1 / s + 1 / e)}')
limit_csr=$(awk -v s="$sign" -v v="$verify" 'BEGIN {printf "%.0f", 1 / (1 / s + 1 / v)}')
echo "openssl speed -seconds 3 -multi 2 ecdsap256 ecdhp256: sign $sign/s, verify $verify/s, ecdh $ecdh/s"
echo "two-core limit: --keys ca (ecdh + sign) $limit_ca/s, --csr-dir (verify + sign) $limit_csr/s"

"$iotpki" ca init --dir "$work/ca" --org Bench >/dev/null
"$bin/bench_tool" make-csrs "$work/csrs" "$work/csrs1.csv" "$n" CSR-
"$bin/bench_tool" make-csrs "$work/csrs" "$work/csrs2.csv" "$n" CSQ-

printf '\n%-10s %-12s %9s %11s %11s %9s %7s\n' mode output seconds wall/s issuing/s limit/s ratio
batch() {  # batch NAME OUTPUT LIMIT ARGS...
  local name=$1 output=$2 limit=$3
  shift 3
  local t0 t1 log
  log="$work/$name-$output.log"
  t0=$(date +%s.%N)
  "$iotpki" mfg provision --dir "$work/ca" --workers "$workers" --model bench \
    --batch "$name-$output" --out "$work/out-$name-$output" "$@" >"$log" 2>&1
  t1=$(date +%s.%N)
  local issuing
  issuing=$(sed -n 's/.*issued now at \([0-9]*\)\/s.*/\1/p' "$log")
  awk -v n="$n" -v a="$t0" -v b="$t1" -v i="$issuing" -v l="$limit" -v m="$name" -v o="$output" \
    'BEGIN {r = n / (b - a); printf "%-10s %-12s %9.1f %11.0f %11.0f %9.0f %6.0f%%\n", m, o, b - a, r, i, l, 100 * i / l}'
}
batch ca folders "$limit_ca" --count "$n" --serial-prefix CA- --keys ca
batch ca manifest "$limit_ca" --count "$n" --serial-prefix CB- --keys ca --no-bundles --discard-keys
batch csr folders "$limit_csr" --serials "$work/csrs1.csv" --csr-dir "$work/csrs"
batch csr manifest "$limit_csr" --serials "$work/csrs2.csv" --csr-dir "$work/csrs" --no-bundles
echo "(ratio: issuing rate / limit; wall includes start-up, unlocking the CA keys and the preflight)"
echo "(store: $(du -sh "$work/ca/iotpki.db" | cut -f1) after $((4 * n)) devices)"

echo
echo "== 4. floor per device, one thread, OpenSSL and SQLite only (bench/mfg_floor)"
"$bin/mfg_floor" --devices "$((n < 1000000 ? n : 1000000))" --dir "$work/floor" --limit-ca "$limit_ca" --limit-csr "$limit_csr"
