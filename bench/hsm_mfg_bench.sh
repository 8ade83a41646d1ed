#!/usr/bin/env bash
# Issue 16: `mfg provision --csr-dir` with the manufacturing CA key in a SoftHSM2 token next to
# the same batch with a file key, in one run (same CSRs, two CAs). About a minute.
# Usage: bench/hsm_mfg_bench.sh [BUILD_DIR] [DEVICES]
set -euo pipefail
BUILD=${1:-build}
N=${2:-500}
IOTPKI="$BUILD/apps/iotpki/iotpki"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/iotpki-hsmbench.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$WORK/tokens" "$WORK/csr"
printf 'directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\n' \
  "$WORK/tokens" >"$WORK/softhsm2.conf"
export SOFTHSM2_CONF="$WORK/softhsm2.conf" IOTPKI_PKCS11_PIN="bench-pin-1"
export IOTPKI_PASSPHRASE="bench passphrase 1"
softhsm2-util --init-token --free --label bench-ca --pin "$IOTPKI_PKCS11_PIN" \
  --so-pin bench-so-pin >/dev/null
"$IOTPKI" ca init --dir "$WORK/file-ca" >/dev/null
"$IOTPKI" ca init --dir "$WORK/token-ca" --key-store pkcs11:token=bench-ca >/dev/null
for i in $(seq -f '%06g' 1 "$N"); do
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$WORK/key.pem" \
    -subj "/CN=dev" -outform DER -out "$WORK/csr/b-$i.der" 2>/dev/null
done
for ca in file-ca token-ca; do
  printf '%-9s ' "$ca:"
  "$IOTPKI" mfg provision --dir "$WORK/$ca" --batch b --count "$N" --serial-prefix b- \
    --model m --csr-dir "$WORK/csr" --no-bundles --out "$WORK/out-$ca" 2>/dev/null | head -1
done
