#!/usr/bin/env bash
# Issue 16: P-256 signatures/s through our PKCS#11 signer on a SoftHSM2 token this script makes
# (private SOFTHSM2_CONF, removed afterwards), the token's own C_Sign rate on the same key and
# `openssl speed ecdsap256`, all in one run; then the overhead as the median of 25 short
# pairs (steadier on a shared machine). About 35 seconds.
# Usage: bench/pkcs11_bench.sh [BUILD_DIR]
set -euo pipefail
BUILD=${1:-build}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/iotpki-p11bench.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$WORK/tokens"
printf 'directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\n' \
  "$WORK/tokens" >"$WORK/softhsm2.conf"
export SOFTHSM2_CONF="$WORK/softhsm2.conf" IOTPKI_PKCS11_PIN="bench-pin-1"
softhsm2-util --init-token --free --label bench --pin "$IOTPKI_PKCS11_PIN" \
  --so-pin bench-so-pin >"$WORK/init.out"
"$BUILD/bench/pkcs11_bench" bench 1
echo
echo "openssl speed ecdsap256 (sign/s, 1 thread, then $(nproc) processes):"
openssl speed -seconds 2 ecdsap256 2>/dev/null | grep -E '^ *256 bits ecdsa'
openssl speed -seconds 2 -multi "$(nproc)" ecdsap256 2>/dev/null | grep -E '^ *256 bits ecdsa|^ecdsa'
