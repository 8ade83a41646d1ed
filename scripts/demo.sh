#!/usr/bin/env bash
# The main job end to end on the embedded SQLite store: create a CA hierarchy, issue a device's
# birth certificate (IDevID) and working certificate (LDevID) from CSRs made by openssl, verify
# them with openssl and GnuTLS, provision a factory batch and query the inventory, onboard devices,
# revoke a stolen one and see its renewal refused, and check the audit log.
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

step "a factory batch: 1,000 devices, keys made by the CA and encrypted for the station"
# The station's passphrase for the device keys; a real line reads it from --key-passphrase-file.
export IOTPKI_KEY_PASSPHRASE=${IOTPKI_KEY_PASSPHRASE:-demo-station-passphrase}
"$iotpki" mfg provision --dir "$ca" --count 1000 --serial-prefix STH-L1- --model SH-THERMO-1 \
  --batch line1-demo --keys ca --out "$data/batch"
echo "device folder: $(ls "$data/batch/STH-L1-000001" | tr '\n' ' ')"
echo "manifest line: $(head -n 1 "$data/batch/manifest.jsonl")"
openssl verify -CAfile "$ca/certs/root.pem" -untrusted "$data/batch/STH-L1-000001/chain.pem" \
  "$data/batch/STH-L1-000001/cert.pem"
openssl pkey -in "$data/batch/STH-L1-000001/key.pem" -passin env:IOTPKI_KEY_PASSPHRASE -noout &&
  echo "key.pem opens with the station passphrase"

step "the inventory: iotpki device count / ls"
echo "devices in batch line1-demo: $("$iotpki" device count --dir "$ca" --batch line1-demo)"
"$iotpki" device ls --dir "$ca" --batch line1-demo --limit 3
echo "devices whose working certificate expires within 91 days:"
"$iotpki" device ls --dir "$ca" --expiring-within 91d

step "onboarding: iotpki serve, and 300 devices of the batch trade their IDevIDs for working certificates"
# 200 over EST (RFC 7030), 100 over the JSON bootstrap API with a token, 4 at a time, each with
# iotpki-agent and its own state directory (the device's factory folder copied in).
agent="$root/build/apps/iotpki-agent/iotpki-agent"
"$iotpki" serve --dir "$ca" --listen 127.0.0.1:0 --port-file "$data/serve.port" \
  >"$data/serve.log" 2>&1 &
server_pid=$!
for _ in $(seq 100); do [ -s "$data/serve.port" ] && break; sleep 0.1; done
head -n 1 "$data/serve.log"
url="https://127.0.0.1:$(cat "$data/serve.port")"
export IOTPKI_DEVICE_KEY_PASSPHRASE=$IOTPKI_KEY_PASSPHRASE
onboard() {  # onboard N: device STH-L1-<N> bootstraps; EST for two in three, JSON for the rest
  local serial state mode=est
  serial=$(printf 'STH-L1-%06d' "$1")
  state="$data/devices/$serial"
  [ $(($1 % 3)) -eq 0 ] && mode=json
  mkdir -p "$state" && cp -r "$data/batch/$serial" "$state/factory"
  "$agent" --state "$state" bootstrap --server "$url" --$mode >/dev/null
}
export -f onboard
export agent data url
start=$(date +%s.%N)
seq 1 300 | xargs -P 4 -I{} bash -c 'onboard {}'
awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN {printf "300 devices onboarded in %.1f s\n", b - a}'
"$agent" --state "$data/devices/STH-L1-000001" renew --rekey
echo "active devices: $("$iotpki" device count --dir "$ca" --state active)"

step "revocation: device STH-L1-000002 is reported stolen; its renewal is refused at once"
stolen=$("$iotpki" device show --dir "$ca" --serial STH-L1-000002 --json |
  sed -n 's/.*"device_id": "\([0-9a-f]\{64\}\)".*/\1/p' | head -n 1)
"$iotpki" cert revoke --dir "$ca" --device "$stolen" --reason keyCompromise
if "$agent" --state "$data/devices/STH-L1-000002" renew 2>"$data/revoked-renew.err"; then
  echo "unexpected: the revoked device renewed" >&2
  exit 1
fi
echo "renewal refused: $(tail -n 1 "$data/revoked-renew.err")"
"$iotpki" cert ls --dir "$ca" --revoked

step "the server's metrics (excerpt)"
curl -sS --cacert "$ca/certs/root.pem" "$url/metrics" |
  grep -E '^iotpki_(http_requests_total|certificates_issued_total|certificates_expiring|enrollment_duration_seconds_(count|sum))'

step "SIGTERM: the server finishes what is in flight and stops"
kill -TERM "$server_pid"
wait "$server_pid"
tail -n 2 "$data/serve.log"

step "iotpki audit verify --dir $ca --manifest (the batch's manifest against the audit chain)"
"$iotpki" audit verify --dir "$ca" --manifest "$data/batch/manifest.jsonl"

"$root/scripts/demo_revocation.sh" "$iotpki" "$data"

bash "$root/scripts/demo_rotation.sh" "$root/build" "$data"
printf '\nDemo data is in %s\n' "$data"
