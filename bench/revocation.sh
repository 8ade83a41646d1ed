#!/usr/bin/env bash
# Revocation at fleet scale (issue 14), by hand only (minutes; never in CI), each figure next to
# a baseline measured in the same run:
#
#   bench/revocation.sh [N] [BUILD_DIR] [CRL_SIZES]
#   N           devices provisioned and then revoked by batch (default 1,000,000)
#   CRL_SIZES   revoked entries of the in-process CRL builds (default "10000 100000 1000000")
#   IOTPKI_BENCH_DIR=DIR   keep the CA and store there (default: a temporary directory, removed)
#
# 1. `iotpki mfg provision --count N --keys ca --no-bundles --discard-keys` (context only: the
#    store revocation works on; its time is the scale run's, docs/performance.md).
# 2. `iotpki cert revoke --batch B --reason keyCompromise`: N certificates revoked in groups of
#    1,000 devices, each with its audit row: total time and certificates/s. The dry run first.
# 3. `iotpki crl export`: both issuing CAs' CRLs rebuilt from the store (the manufacturing CA's
#    with the N entries: read, lint, encode, sign, written atomically), then `openssl ca -gencrl`
#    over the same N entries (an index.txt made from our CRL) with the same CA key.
# 4. For each of CRL_SIZES: synthetic revocations built in process (bench_tool crl-gen: sort,
#    lint, encode, sign; no store), next to `openssl ca -gencrl` over the same entries.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
n=${1:-1000000}
build=${2:-"$root/build"}
sizes=${3:-"10000 100000 1000000"}
ninja -C "$build" iotpki bench_tool >/dev/null
iotpki="$build/apps/iotpki/iotpki"
tool="$build/bench/bench_tool"
if [ -n "${IOTPKI_BENCH_DIR:-}" ]; then
  work=$IOTPKI_BENCH_DIR
  mkdir -p "$work"
else
  work=$(mktemp -d "${TMPDIR:-/var/tmp}/iotpki-revocation.XXXXXX")
  trap 'rm -rf "$work"' EXIT
fi
export IOTPKI_PASSPHRASE="benchmark passphrase"
ca="$work/ca"
rm -rf "$ca" "$work/out" "$work/ossl"

now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN {printf "%.2f", b - a}'; }

# openssl_gencrl DIR CERT KEY: `openssl ca -gencrl` over DIR/index.txt; prints seconds and size.
openssl_gencrl() {
  local d=$1 cert=$2 key=$3
  cat >"$d/openssl.cnf" <<EOF
[ ca ]
default_ca = bench
[ bench ]
database = $d/index.txt
crlnumber = $d/crlnumber
certificate = $cert
private_key = $key
default_md = sha256
default_crl_days = 7
unique_subject = no
crl_extensions = crl_ext
[ crl_ext ]
authorityKeyIdentifier = keyid:always
EOF
  echo 01 >"$d/crlnumber"
  echo "unique_subject = no" >"$d/index.txt.attr"
  local t0
  t0=$(now)
  openssl ca -config "$d/openssl.cnf" -gencrl -passin env:IOTPKI_PASSPHRASE -out "$d/openssl.crl" \
    2>"$d/openssl.err" || { cat "$d/openssl.err" >&2; return 1; }
  local s
  s=$(since "$t0")
  openssl crl -in "$d/openssl.crl" -outform DER -out "$d/openssl.der"
  echo "$s $(stat -c %s "$d/openssl.der")"
}

echo "== $(date -u +%FT%TZ) on $(nproc) cores, $(openssl version), load $(cut -d' ' -f1-3 /proc/loadavg)"
openssl speed -seconds 2 ecdsap256 2>/dev/null | grep nistp256
"$iotpki" ca init --dir "$ca" --org Revocation >/dev/null

echo "== 1. iotpki mfg provision --count $n --keys ca --no-bundles --discard-keys (context)"
t0=$(now)
"$iotpki" mfg provision --dir "$ca" --count "$n" --serial-prefix R- --model bench --batch rb \
  --keys ca --no-bundles --discard-keys --workers "$(nproc)" --out "$work/out" >/dev/null
echo "provisioned $n devices in $(since "$t0") s"

echo "== 2. iotpki cert revoke --batch rb --reason keyCompromise"
"$iotpki" cert revoke --dir "$ca" --batch rb --reason keyCompromise --dry-run
t0=$(now)
"$iotpki" cert revoke --dir "$ca" --batch rb --reason keyCompromise
s=$(since "$t0")
echo "revoked $n certificates in $s s: $(awk -v n="$n" -v s="$s" 'BEGIN {printf "%.0f", n / s}')" \
  "certificates/s"

echo "== 3. CRL of the store's $n revocations: iotpki crl export vs openssl ca -gencrl"
t0=$(now)
"$iotpki" crl export --dir "$ca" --out "$work/broker.pem" >/dev/null
ours=$(since "$t0")
der="$ca/crl/manufacturing.crl"
echo "iotpki crl export (both CAs, store read included): $ours s;" \
  "manufacturing CRL $(stat -c %s "$der") bytes"
d="$work/ossl"
mkdir -p "$d"
# The same entries as an openssl ca database: serial and revocation time from our CRL's text.
openssl crl -inform DER -in "$der" -noout -text | awk '
  /Serial Number:/ { serial = $3 }
  /Revocation Date:/ {
    split("Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec", m, " ")
    for (i = 1; i <= 12; i++) if (m[i] == $3) mon = i
    split($5, t, ":")
    printf "R\t301231235959Z\t%02d%02d%02d%02d%02d%02dZ,keyCompromise\t%s\tunknown\t/CN=%s\n",
      $6 % 100, mon, $4, t[1], t[2], t[3], serial, serial
  }' >"$d/index.txt"
echo "index.txt: $(wc -l <"$d/index.txt") entries"
read -r theirs bytes < <(openssl_gencrl "$d" "$ca/certs/manufacturing.pem" "$ca/keys/manufacturing.key")
echo "openssl ca -gencrl: $theirs s, $bytes bytes; ratio openssl/ours $(awk -v a="$theirs" \
  -v b="$ours" 'BEGIN {printf "%.1f", a / b}')"

echo "== 4. CRL builds in process (bench_tool crl-gen) vs openssl ca -gencrl, same entries"
for m in $sizes; do
  d="$work/crl-$m"
  rm -rf "$d"
  line=$("$tool" crl-gen "$ca" "$m" "$d")
  ours=$(awk '{print $4}' <<<"$line")
  read -r theirs bytes < <(openssl_gencrl "$d" "$ca/certs/operational.pem" "$ca/keys/operational.key")
  printf '%9d entries: ours %7.2f s %10d bytes | openssl ca -gencrl %7.2f s %10d bytes | ratio %.1f\n' \
    "$m" "$ours" "$(stat -c %s "$d/ours.crl")" "$theirs" "$bytes" \
    "$(awk -v a="$theirs" -v b="$ours" 'BEGIN {print a / b}')"
  rm -rf "$d"
done
