#!/usr/bin/env bash
# Issue 16: P-256 signatures/s through our TPM signer against `tpm2_sign` in a loop on the same
# key (a persistent key made here with tpm2-tools), and `openssl speed ecdsap256`, in one run.
# swtpm is started here on a free loopback port and stopped at the end (tests/swtpm.sh); it
# serves one connection at a time, so the two run one after the other. About 40 seconds.
# Usage: bench/tpm2_bench.sh [BUILD_DIR] [SECONDS_PER_ROW]
set -euo pipefail
BUILD=${1:-build}
SECONDS_PER_ROW=${2:-3}
HERE=$(cd "$(dirname "$0")" && pwd)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/iotpki-tpmbench.XXXXXX")
trap 'bash "$HERE/../tests/swtpm.sh" stop "$WORK/tpm"; rm -rf "$WORK"' EXIT
TCTI=$(bash "$HERE/../tests/swtpm.sh" start "$WORK/tpm")
export TPM2OPENSSL_TCTI=$TCTI TPM2TOOLS_TCTI=$TCTI
HANDLE=0x81000010
# No resource manager between tpm2-tools and swtpm: transient objects are flushed after each step.
(
  cd "$WORK"
  tpm2_createprimary -Q -C o -c primary.ctx && tpm2_flushcontext -t
  tpm2_create -Q -C primary.ctx -G ecc256 -u k.pub -r k.priv && tpm2_flushcontext -t
  tpm2_load -Q -C primary.ctx -u k.pub -r k.priv -c k.ctx && tpm2_flushcontext -t
  tpm2_evictcontrol -Q -C o -c k.ctx "$HANDLE" >/dev/null && tpm2_flushcontext -t
)

"$BUILD/bench/tpm2_bench" "tpm2:handle=$HANDLE" "$SECONDS_PER_ROW" | tee "$WORK/ours.txt"
OURS=$(sed -n 's/^RATE sign=\([0-9.]*\).*/\1/p' "$WORK/ours.txt")

# The TPM's own rate as its tools see it: one tpm2_sign process per signature over a digest,
# the same key, as a shell loop signs.
head -c 400 /dev/zero | tr '\0' 'Z' | openssl dgst -sha256 -binary >"$WORK/digest"
n=0
end=$(($(date +%s%N) + SECONDS_PER_ROW * 3 * 1000000000))
start=$(date +%s%N)
while [ "$(date +%s%N)" -lt "$end" ]; do
  tpm2_sign -Q -c "$HANDLE" -g sha256 -d -f plain -o "$WORK/sig" "$WORK/digest"
  n=$((n + 1))
done
elapsed=$(($(date +%s%N) - start))
TOOL=$(awk -v n="$n" -v ns="$elapsed" 'BEGIN { printf "%.1f", n / (ns / 1e9) }')
printf '%-52s %10.0f\n' "tpm2_sign in a loop (one process per signature)" "$TOOL"
awk -v ours="$OURS" -v tool="$TOOL" \
  'BEGIN { printf "%-52s %9.1fx\n", "our signer against the tpm2_sign loop", ours / tool }'
echo
echo "openssl speed ecdsap256 (sign/s, 1 thread):"
openssl speed -seconds 2 ecdsap256 2>/dev/null | grep -E '^ *256 bits ecdsa'
