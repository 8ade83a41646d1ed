#!/usr/bin/env bash
# Issue 16: EST enrollment rate (bench/enroll_load: fresh TLS 1.3 connection with the IDevID,
# one simpleenroll each, against a real `iotpki serve`) with the CA keys in a SoftHSM2 token next
# to the same run with encrypted key files, in one run. Well under two minutes with the defaults.
# Usage: bench/hsm_est_bench.sh [BUILD_DIR] [DEVICES] [CONNECTIONS]
set -euo pipefail
BUILD=${1:-build}
N=${2:-1000}
C=${3:-16}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/iotpki-hsmest.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$WORK/tokens"
printf 'directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\n' \
  "$WORK/tokens" >"$WORK/softhsm2.conf"
export SOFTHSM2_CONF="$WORK/softhsm2.conf" IOTPKI_PKCS11_PIN="bench-pin-1"
softhsm2-util --init-token --free --label bench-ca --pin "$IOTPKI_PKCS11_PIN" \
  --so-pin bench-so-pin >/dev/null
for run in file token; do
  extra=()
  [ "$run" = token ] && extra=(--key-store pkcs11:token=bench-ca)
  mkdir -p "$WORK/$run"
  echo "== CA keys in: $run"
  "$BUILD/bench/enroll_load" --iotpki "$BUILD/apps/iotpki/iotpki" --devices "$N" \
    --connections "$C" --mode est --work "$WORK/$run" "${extra[@]}" |
    grep -E "^enrollments|^wall|^server CPU"
  # Which key signed the LDevIDs: a file: URI, or the token's.
  grep -E "^operational = '(file|pkcs11):" "$WORK/$run/ca/iotpki.toml"
done
