#!/usr/bin/env bash
# The main job end to end on the embedded SQLite store: create a CA hierarchy, issue a device's
# birth certificate (IDevID) and working certificate (LDevID) from CSRs made by openssl, verify
# them with openssl and GnuTLS, and check the audit log.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/scripts/setup.sh"
"$root/scripts/build.sh" "$root/build" >/dev/null
iotpki="$root/build/apps/iotpki/iotpki"

data=${IOTPKI_DEMO_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/iotpki-demo.XXXXXX")}
ca="$data/ca"
rm -rf "$ca"
# A demo passphrase; a real CA reads it from a file (--passphrase-file) or a secret manager.
export IOTPKI_PASSPHRASE=${IOTPKI_PASSPHRASE:-demo-passphrase-change-me}

step() { printf '\n== %s\n' "$*"; }

step "iotpki ca init --dir $ca --org 'SmartHome Industries'"
"$iotpki" ca init --dir "$ca" --org "SmartHome Industries"

step "iotpki ca show --dir $ca"
"$iotpki" ca show --dir "$ca"

serial=STH-2026-000042
fingerprint=$(openssl rand -hex 16)
step "device $serial makes its key and a CSR (openssl, as a secure element would)"
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
  -keyout "$data/device.key" -subj "/CN=$serial" -out "$data/device.csr" 2>/dev/null
echo "CSR: $data/device.csr"

step "iotpki cert issue --profile idevid --serial $serial --fingerprint $fingerprint"
"$iotpki" cert issue --dir "$ca" --csr "$data/device.csr" --profile idevid \
  --serial "$serial" --fingerprint "$fingerprint" --out "$data/idevid.pem"
openssl x509 -in "$data/idevid.pem" -noout -subject -enddate -ext subjectAltName,keyUsage

step "verify the IDevID chain with openssl and GnuTLS certtool"
openssl verify -CAfile "$ca/certs/root.pem" -untrusted "$ca/certs/manufacturing.pem" "$data/idevid.pem"
cat "$data/idevid.pem" "$ca/certs/manufacturing.pem" >"$data/idevid-chain.pem"
certtool --verify --load-ca-certificate "$ca/certs/root.pem" --infile "$data/idevid-chain.pem" \
  2>/dev/null | grep "Chain verification output"

step "the device's working certificate (LDevID) from a new key"
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
  -keyout "$data/ldevid.key" -subj "/CN=$serial" -out "$data/ldevid.csr" 2>/dev/null
"$iotpki" cert issue --dir "$ca" --csr "$data/ldevid.csr" --profile ldevid \
  --serial "$serial" --fingerprint "$fingerprint" --out "$data/ldevid.pem"
openssl verify -CAfile "$ca/certs/root.pem" -untrusted "$ca/certs/operational.pem" \
  -purpose sslclient "$data/ldevid.pem"

step "certificate sizes (DER bytes)"
for f in idevid ldevid; do
  printf '%-8s %s bytes\n' "$f" "$(openssl x509 -in "$data/$f.pem" -outform DER | wc -c)"
done

step "a bad request is refused and nothing is written"
head -c 200 /dev/urandom >"$data/garbage.csr"
if "$iotpki" cert issue --dir "$ca" --csr "$data/garbage.csr" --profile idevid \
  --serial STH-BAD --fingerprint "$fingerprint"; then
  echo "unexpected success" >&2
  exit 1
fi

step "iotpki audit verify --dir $ca"
"$iotpki" audit verify --dir "$ca"

printf '\nDemo data is in %s\n' "$data"
